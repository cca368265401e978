"""The links format: one item per line, a bare URL or ``[title](url)``, optionally followed by a summary.

    https://go.dev/blog/go1.22
    [《你好，Qwen2!》](https://mp.weixin.qq.com/s/s5vChAY6B2s_ZVK-ALYP2w)。本文介绍了……
    ./saved/page.html

Blank lines and ``#`` comment lines are ignored. A leading ``。``, ``：`` or ``-`` before the
summary is dropped."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ImportFormatError
from ..records import ItemRecord, ParseResult

_MD_LINK = re.compile(r"^\[(?P<title>(?:\\.|[^\]\\])*)\]\((?P<url>[^)\s]+)(?:\s+\"[^\"]*\")?\)(?P<rest>.*)$")
_BARE = re.compile(r"^(?P<url>\S+)(?P<rest>.*)$")
_SEPARATOR = re.compile(r"^\s*[。：:\-—]+\s*")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_ACCEPTED = re.compile(r"^(https?://|file://|/|\./|\.\./|~/)", re.IGNORECASE)


def clean_title(raw: str) -> str:
    """Link text as a reader sees it: no 《》 wrapper, no Markdown escapes."""
    title = re.sub(r"\\(.)", r"\1", raw.strip())
    if title.startswith("《") and title.endswith("》"):
        title = title[1:-1]
    return title.strip()


def parse_link_line(line: str) -> ItemRecord | None:
    """One line of the links format, or None when the line holds no link."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    match = _MD_LINK.match(text)
    if match:
        title: str | None = clean_title(match["title"]) or None
    else:
        match = _BARE.match(text)
        title = None
    if not match:
        return None
    url, rest = match["url"], match["rest"]
    if not (_ACCEPTED.match(url) or url.lower().endswith((".html", ".htm")) or "://" in url):
        return None
    summary = _SEPARATOR.sub("", rest).strip() or None
    return ItemRecord(url=url, title=title, summary=summary, summary_origin="human" if summary else None)


def looks_like(text: str) -> tuple[bool, str]:
    """Is this a links file? Yes when at least three lines and 80 % of the lines that are neither blank
    nor ``#`` comments are links. Its ``#`` comment lines look like level-1 headings to the notes
    detector, so this check comes first."""
    lines = [line.strip() for line in text.splitlines()[:2000]]
    content = [line for line in lines if line and not line.startswith("#")]
    linked = sum(1 for line in content if parse_link_line(line) is not None)
    if linked >= 3 and linked >= 0.8 * len(content):
        return True, f"{linked} of {len(content)} lines are links"
    return False, f"{linked} of {len(content)} lines are links"


def parse_links(text: str, *, file: str | None = None) -> ParseResult:
    result = ParseResult(format="links")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _CONTROL.search(stripped):
            # A URL with a NUL or a control byte in it names nothing; the line goes, not the file.
            what = "a NUL byte" if "\x00" in stripped else "a control character"
            result.errors.append(ImportFormatError(file or "-", number, f"{what}: line rejected"))
            continue
        record = parse_link_line(stripped)
        if record is None:
            result.errors.append(ImportFormatError(file or "-", number, f"not a URL or Markdown link: {stripped[:60]!r}"))
            continue
        record.line = number
        result.items.append(record)
    return result


def resolve_local(url: str, base: Path | None = None) -> str:
    """A relative local path in a links file is relative to that file, not to the working directory."""
    if "://" in url:
        return url
    path = Path(url).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.resolve().as_uri()
