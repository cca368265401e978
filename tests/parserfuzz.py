"""Property tests shared by the line-oriented parsers (blog posts, notes, social archives): whatever
text they get, they return a ParseResult with clear per-item errors, never raise, and parse the
same text the same way twice. Each test module supplies its parser and its own tricky lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.errors import ImportFormatError
from tidings.records import ParseResult

Parse = Callable[[str, str], ParseResult]
"""``parse(text, file)``."""


def check_result(result: ParseResult, kind: str, *, titled: bool = True) -> None:
    assert isinstance(result, ParseResult)
    for error in result.errors:
        assert isinstance(error, ImportFormatError)
        assert "internal parser error" not in error.reason, error.reason
    for item in result.items:
        assert item.kind == kind and item.url
        if titled:
            assert item.title
        json.dumps(item.extra, allow_nan=False)  # it goes into a JSON column


def never_raises_tests(
    parse: Parse,
    looks_like: Callable[[str], object],
    check: Callable[[ParseResult], None],
    lines: st.SearchStrategy[str],
    *,
    files: Sequence[str] = ("r.md",),
    max_lines: int = 40,
) -> tuple[Callable[..., None], Callable[..., None]]:
    """The two tests, to be bound in the calling module under ``test_…`` names."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.text())
    def random_text(text: str) -> None:
        check(parse(text, "r.md"))
        looks_like(text)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(lines | st.text(max_size=30), max_size=max_lines), st.sampled_from(list(files)))
    def structured_noise(chosen: list[str], file: str) -> None:
        text = "\n".join(chosen)
        result = parse(text, file)
        check(result)
        assert parse(text, file).items == result.items

    return random_text, structured_noise
