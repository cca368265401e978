"""Property tests shared by the line-oriented parsers (blog posts, notes, social archives): whatever
text they get, they return a ParseResult with clear per-item errors, never raise, and parse the
same text the same way twice. Each test module supplies its parser and its own tricky lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.errors import ImportFormatError
from tidings.records import ParseResult
from tidings.sources import decode_bytes
from tidings.textutil import has_cjk

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


# --- damaged files: cut short, NUL bytes, random bytes ------------------------------------------
#
# A file cut at any byte offset (a partial download, a full disk) must import what it holds: the
# items before the cut as they were, at most the one character the cut went through lost and
# reported, never U+FFFD and never the whole file re-read as GB18030 mojibake ("宝玉" → "瀹濈帀").


def garbled(text: str | None, *, fffd_ok: bool = False) -> bool:
    """U+FFFD (unless the source itself holds one: real files do), or UTF-8 bytes that were
    decoded as GB18030: such text encodes back (as GB18030) to valid UTF-8, which real Chinese
    text in GB18030 practically never is."""
    if not text:
        return False
    if "\ufffd" in text and not fffd_ok:
        return True
    if text.isascii():
        return False
    try:
        original = text.encode("gb18030").decode("utf-8")
    except (UnicodeError, ValueError):
        return False
    # A lone "转" round-trips to Hebrew by chance; mojibake round-trips to the Chinese it came from.
    return has_cjk(original)


def check_clean(result: ParseResult, *, fffd_ok: bool = False) -> None:
    for item in result.items:
        for value in (item.title, item.text, item.summary, item.author):
            assert not garbled(value, fffd_ok=fffd_ok), value


def kept_before(full: ParseResult, cut: ParseResult, cut_line: int) -> None:
    """Every item of ``full`` whose block ends before ``cut_line`` (the next item starts there or
    earlier) is in ``cut`` unchanged, url and title alike."""
    starts = sorted(item.line or 0 for item in full.items)
    whole = [item for item in full.items if any(start > (item.line or 0) and start < cut_line for start in starts)]
    got = {(item.url, item.title) for item in cut.items}
    for item in whole:
        assert (item.url, item.title) in got, (item.line, item.title, cut_line)


def cut_file_test(parse: Parse, paths: Sequence[Path], *, examples: int = 30) -> Callable[..., None]:
    """Cut one of ``paths`` at a random byte offset, decode it the way every importer does, parse:
    no exception, no garbled text, the items before the cut kept, the cut reported when it split
    a character."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(list(paths)), st.floats(0, 1))
    def cut_file(path: Path, where: float) -> None:
        data = path.read_bytes()
        offset = int(len(data) * where)
        decoded = decode_bytes(data[:offset])
        assert decoded.binary is None, decoded.binary
        assert decoded.text == decode_bytes(data).text[: len(decoded.text)]  # a prefix: nothing re-read
        if offset < len(data) and 0x80 <= data[offset] < 0xC0:  # the cut split a character
            assert decoded.problems and "cut short" in decoded.problems[-1][1]
        full, cut = parse(decode_bytes(data).text, str(path)), parse(decoded.text, str(path))
        check_clean(cut, fffd_ok=b"\xef\xbf\xbd" in data)
        kept_before(full, cut, decoded.text.count("\n") + 1)

    return cut_file


_JUNK = st.binary(min_size=1, max_size=6).filter(lambda junk: b"\n" not in junk and b"\r" not in junk)


def injected_line_test(parse: Parse, paths: Sequence[Path], *, examples: int = 30) -> Callable[..., None]:
    """A NUL byte or a few random bytes put into one line of a real UTF-8 file: that line is
    rejected with its number, the file is not refused, nothing garbled comes out."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(list(paths)), st.floats(0, 1), _JUNK | st.just(b"\x00"))
    def injected(path: Path, where: float, junk: bytes) -> None:
        lines = path.read_bytes().split(b"\n")
        number = int((len(lines) - 1) * where)
        lines[number] = lines[number][: len(lines[number]) // 2] + junk + lines[number][len(lines[number]) // 2 :]
        decoded = decode_bytes(b"\n".join(lines))
        assert decoded.binary is None and decoded.encoding == "utf-8", decoded
        damaged = b"\x00" in junk or not _valid_utf8(lines[number])
        assert {line for line, _why in decoded.problems} == ({number + 1} if damaged else set())
        check_clean(parse(decoded.text, str(path)), fffd_ok=b"\xef\xbf\xbd" in b"\n".join(lines))

    return injected


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
