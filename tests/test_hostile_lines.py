"""Long lines of unclosed Markdown and HTML openers ("[a](" × 25,000, "<!--" × 25,000 …) must not make
the link, headline, language and translation-protection patterns back off from every opener to the end
of the line: before the fix a 16,000-character line took over 4 s and 100,000 characters several
minutes. Not a timing test: the alarm only turns a hang into a failure, with two orders of magnitude
to spare over what the fixed patterns take."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tidings.llm.translate import protect
from tidings.sources import social

HANG_AFTER_S = 30

HOSTILE = {
    "unclosed links": "[a](" * 25_000,
    "unclosed images": "![a](" * 20_000,
    "image openers": "![" * 50_000,
    "link targets": "](" * 50_000,
    "comments": "<!--" * 25_000,
    "tags": "<a" * 50_000,
    "links with spaces": "[a](b " * 16_000,
}


@contextmanager
def hang_guard() -> Iterator[None]:
    def hung(_signum: int, _frame: object) -> None:
        raise AssertionError(f"still running after {HANG_AFTER_S} s: a pattern backtracks over the whole line")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_AFTER_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


FUNCTIONS: dict[str, Callable[[str], object]] = {
    "find_links": social.find_links,
    "headline": social.headline,
    "detect_language": social.detect_language,
    "protect": protect,
}


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_line_finishes(name: str, kind: str) -> None:
    with hang_guard():
        FUNCTIONS[name](HOSTILE[kind])


def test_links_with_parentheses_still_found() -> None:
    text = "see [Go](https://en.wikipedia.org/wiki/Go_(programming_language)) and ![x](https://a.example/i.png)"
    assert social.find_links(text) == ["https://en.wikipedia.org/wiki/Go_(programming_language)"]
    protected = protect(text)
    assert "https://a.example/i.png" not in protected.text
    assert "wikipedia.org" not in protected.text
