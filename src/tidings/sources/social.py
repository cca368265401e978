"""Parser for social-post archives: Markdown files of ``### NN`` blocks, one post per block.

Two author layouts occur in the real archive (``·`` marks a blank line)::

    ### 12                        ### 99
    ·                             ·
    宝玉 @dotey 2023-12-05         2023-11-30
    ·                             ·
    body ...                      Barret李靖
                                  ·
                                  @Barret_China
                                  ·
                                  body ...

An optional ``https://x.com/<handle>/status/<id>`` line right under the author lines is the
post's own URL when ``<handle>`` is the author's; otherwise it is a quoted post and stays in
the body (and in ``links``).

Other exports of the same archives write these header lines in other orders (``### 286``, the
date, the status URL, the name, ``@op7418``), with any blank lines among them. Each header line
is therefore known by its shape (bare date, bare ``@handle``, status URL, short name), not by its
position, and the header ends at the first line that is none of these or repeats a kind already
read. A block whose header cannot be read is rejected on its own, with its line number; it is
never folded into its neighbour.

This module also holds the small text helpers (language guess, link and hashtag finding, code
fence masks, stable ids) that the notes and blog parsers share.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import ImportFormatError
from ..records import ItemRecord, ParseResult
from ..textutil import calendar_day

FORMAT = "social"
TITLE_LIMIT = 80

# --------------------------------------------------------------------------------------------
# Shared helpers (also used by notes.py and blog.py)
# --------------------------------------------------------------------------------------------


def normalize_newlines(text: str) -> str:
    """Drop a byte-order mark and turn CRLF / CR into LF, so line numbers match an editor's."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def stable_id(prefix: str, *parts: str) -> str:
    """``prefix:<first 16 hex of sha1>`` over the parts; the unit separator keeps ("ab","c") and
    ("a","bc") apart."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}:{digest[:16]}"


_FENCE_OPEN_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")


def fence_mask(lines: Sequence[str]) -> list[bool]:
    """True for every line that is part of a fenced code block (fence lines included).

    Fences are recognised at any indentation because notes put them inside list items; an
    unclosed fence runs to the end, as in CommonMark."""
    mask = [False] * len(lines)
    fence: str | None = None
    for i, line in enumerate(lines):
        if fence is None:
            m = _FENCE_OPEN_RE.match(line)
            # A backtick fence's info string may not contain a backtick (CommonMark), which keeps
            # inline ```code``` spans on one line from opening a block.
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                mask[i] = True
        else:
            mask[i] = True
            stripped = line.strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                fence = None
    return mask


_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_KANA_RE = re.compile(r"[\u3040-\u30ff]")
_HANGUL_RE = re.compile(r"[\uac00-\ud7af]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_URLISH_RE = re.compile(r"https?://\S+")


def detect_language(text: str | None) -> str | None:
    """A cheap guess: ``zh`` when CJK-heavy, else ``en``; None when there are no letters at all.

    One CJK character carries roughly as much as three Latin letters, so a post that is an
    English quote plus its Chinese translation still counts as Chinese."""
    if not text:
        return None
    # Code, URLs and HTML tags are Latin letters that say nothing about the prose's language.
    lines = text.split("\n")
    mask = fence_mask(lines)
    text = "\n".join(
        line for i, line in enumerate(lines) if not mask[i] and not line.startswith(("    ", "\t"))
    )
    text = _INLINE_CODE_RE.sub(" ", text)
    text = _MD_LINK_RE.sub(lambda m: " " if m.group(1) else m.group(2), text)
    text = _URLISH_RE.sub(" ", text)
    text = re.sub(r"</?[A-Za-z][^>]*>", " ", text)
    han = len(_HAN_RE.findall(text))
    kana = len(_KANA_RE.findall(text))
    hangul = len(_HANGUL_RE.findall(text))
    latin = len(_LATIN_RE.findall(text))
    cjk = han + kana + hangul
    if cjk == 0 and latin == 0:
        return None
    if cjk * 3 >= latin:
        if kana * 10 > cjk:
            return "ja"
        if hangul > han:
            return "ko"
        return "zh"
    return "en"


# The address may hold balanced parentheses, as CommonMark allows (Wikipedia's "Go_(language)"), and
# stops at a bracket: on a line of unclosed "[a](" it would otherwise run to the end of the line from
# every "[" and back off, time growing with the square of the line's length.
_MD_LINK_RE = re.compile(
    r"(!?)\[((?:[^\[\]\\]|\\.)*)\]\(\s*<?((?:[^()\[\]\s<>]|\([^()\[\]\s]*\))+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)"
)
_AUTOLINK_RE = re.compile(r"<(https?://[^>\s]+)>")
_BARE_URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_INLINE_CODE_RE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_TRAILING_PUNCT = ".,;:!?'\"*_~"


def _trim_url(url: str) -> str:
    # Prose punctuation glued to a bare URL is not part of it; a ')' is kept only when balanced.
    while url:
        last = url[-1]
        if last in _TRAILING_PUNCT:
            url = url[:-1]
        elif last == ")" and url.count("(") < url.count(")"):
            url = url[:-1]
        elif last == "]" and url.count("[") < url.count("]"):
            url = url[:-1]
        else:
            break
    return url


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://")) and len(url) > len("https://")


def dedupe(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def find_links(markdown: str) -> list[str]:
    """Absolute http(s) links in Markdown: ``[label](url)``, ``<url>`` and bare URLs, in order of
    appearance, deduplicated. Images and anything inside code (fenced or inline) are skipped:
    they are pictures and examples, not things to read."""
    lines = markdown.split("\n")
    mask = fence_mask(lines)
    found: list[tuple[int, int, str]] = []  # (line, column, url) so the order is the reading order
    for n, line in enumerate(lines):
        if mask[n]:
            continue
        line = _INLINE_CODE_RE.sub(lambda m: " " * len(m.group(0)), line)
        taken: list[tuple[int, int]] = []
        for m in _MD_LINK_RE.finditer(line):
            taken.append(m.span())
            if m.group(1):  # image
                continue
            url = m.group(3)
            if _is_http(url):
                found.append((n, m.start(), url))
            # A link label can itself be a URL ("[https://a](https://a)"); it is the same link.
        for m in _AUTOLINK_RE.finditer(line):
            taken.append(m.span())
            found.append((n, m.start(), m.group(1)))
        for m in _BARE_URL_RE.finditer(line):
            if any(a <= m.start() < b for a, b in taken):
                continue
            url = _trim_url(m.group(0))
            if _is_http(url):
                found.append((n, m.start(), url))
    found.sort(key=lambda t: (t[0], t[1]))
    return dedupe(url for _, _, url in found)


# Labels that introduce the original article, a translation or a project page in Chinese posts.
LINK_LABELS = (
    "原文链接",
    "原文地址",
    "原文",
    "译文",
    "翻译",
    "项目地址",
    "传送门",
    "GitHub",
    "Github",
    "github",
)
_LABEL_RE = re.compile(
    r"^\s*(?:[-*+]\s+)?\**(" + "|".join(re.escape(label) for label in LINK_LABELS) + r")\**\s*[:：]\s*(.*)$"
)


def labelled_links(markdown: str) -> list[dict[str, str]]:
    """``原文：<url>`` style links, also when the URL is alone on the next non-blank line
    (``原文：Some Title`` then the URL)."""
    lines = markdown.split("\n")
    mask = fence_mask(lines)
    out: list[dict[str, str]] = []
    for n, line in enumerate(lines):
        if mask[n]:
            continue
        m = _LABEL_RE.match(line)
        if not m:
            continue
        urls = find_links(m.group(2))
        if not urls:
            following = next((s.strip() for s in lines[n + 1 : n + 3] if s.strip()), "")
            urls = find_links(following) if _BARE_URL_RE.fullmatch(following) else []
        if urls:
            out.append({"label": m.group(1), "url": urls[0]})
    return out


# ``\#AI`` (escaped so Markdown does not read a heading), ``#AI``, and Weibo's ``#话题#``; the tag
# is the word up to whitespace, punctuation or a closing '#'.
_TAG_CHARS = r"[^\s#\\,，.。:：;；!！?？、()（）\[\]【】{}<>《》「」『』\"'“”‘’/|`*]"
_HASHTAG_RE = re.compile(r"(?:(?<=\s)|^)\\?#(" + _TAG_CHARS + r"+)#?")


def find_hashtags(markdown: str) -> list[str]:
    lines = markdown.split("\n")
    mask = fence_mask(lines)
    tags: list[str] = []
    for n, line in enumerate(lines):
        if mask[n]:
            continue
        line = _INLINE_CODE_RE.sub(" ", line)
        for m in _HASHTAG_RE.finditer(line):
            tag = m.group(1)
            if not tag.isdigit():  # "#1" is a number, not a topic
                tags.append(tag)
    return dedupe(tags)


_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)")


def atx_heading(line: str) -> tuple[int, str] | None:
    """(level, text) for an ATX heading line, closing '#'s removed; None otherwise.

    String operations rather than one regex: a lazy ``(.*?)`` followed by optional closing
    hashes backtracks quadratically on long runs of spaces."""
    m = _ATX_RE.match(line)
    if not m:
        return None
    text = line[m.end() :].strip()
    stripped = text.rstrip("#")
    if stripped != text and (not stripped or stripped[-1] in " \t"):
        text = stripped.rstrip()
    return len(m.group(1)), text


_MD_ESCAPE_RE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")
_SENTENCE_END_RE = re.compile(r"[。！？!?](?=\s|$|[^。！？!?])|\.(?=\s)")


def plain_inline(text: str) -> str:
    """Markdown inline syntax reduced to readable text: links to their labels, emphasis and
    escapes dropped. Good enough for titles, not a renderer."""
    text = _MD_LINK_RE.sub(lambda m: m.group(2), text)
    text = _MD_ESCAPE_RE.sub(r"\1", text)
    text = re.sub(r"(\*\*|__|~~)(.+?)\1", r"\2", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return " ".join(text.split())


def headline(body: str, limit: int = TITLE_LIMIT) -> str | None:
    """The first meaningful line of a body as a title: heading marks, quote marks and list bullets
    stripped; cut at the first sentence end when too long, else hard-cut with an ellipsis."""
    lines = body.split("\n")
    mask = fence_mask(lines)
    for n, raw in enumerate(lines):
        if mask[n]:
            continue
        line = raw.strip()
        line = re.sub(r"^\\?#{1,6}\s+", "", line)
        line = re.sub(r"^(?:>\s*)+", "", line)
        line = re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", line)
        line = plain_inline(line)
        if not line or _BARE_URL_RE.fullmatch(line) or re.fullmatch(r"[-*_=\s]+", line):
            continue
        if re.fullmatch(r"@\w+", line):  # a dangling @mention left by copying from X
            continue
        if len(line) <= limit:
            return line
        for m in _SENTENCE_END_RE.finditer(line):
            if 0 < m.end() <= limit:
                cut = line[: m.end()].strip()
                if len(cut) >= 8:
                    return cut
            if m.end() > limit:
                break
        return line[: limit - 1].rstrip() + "…"
    return None


# --------------------------------------------------------------------------------------------
# Social archive parser
# --------------------------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"^###[ \t]+(\d+)[ \t]*$")
_HANDLE = r"[A-Za-z0-9_]{1,30}"
_INLINE_RE = re.compile(
    r"^(?P<name>.*?\S)[ \t]+(?:@(?P<handle>" + _HANDLE + r")[ \t]+)?(?P<date>\d{1,4}-\d{1,2}-\d{1,2})$"
)
_DATE_ONLY_RE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_HANDLE_ONLY_RE = re.compile(r"^@(" + _HANDLE + r")$")
_NAME_HANDLE_RE = re.compile(r"^(?P<name>.*?\S)[ \t]+@(?P<handle>" + _HANDLE + r")$")
_NAME_URL_RE = re.compile(r"^(?P<name>.*?\S)[ \t]+(?P<url>https?://\S+)$")
_STATUS_RE = re.compile(
    r"^https?://(?:www\.|mobile\.)?(?:x|twitter)\.com/(" + _HANDLE + r")/status(?:es)?/(\d+)\S*$", re.I
)
# The archive compiler's own remarks, e.g. ``1『已经关注了。（2023-12-09）』``.
_COMPILER_NOTE_START_RE = re.compile(r"^\s*\d*『")
_MAX_HEADER_LINE = 200  # author lines are short; longer lines are body, and skipping them keeps regexes cheap


@dataclass
class _Header:
    name: str | None
    handle: str | None
    date: datetime
    layout: str  # inline | stacked
    author_url: str | None
    body_start: int  # index into the file's lines: the first line after the header lines
    status: int | None  # index of the status URL line among the header lines, if any
    status_last: bool  # that status line was the last header line (the canonical position)


@dataclass
class _HeaderScan:
    """What the header lines of one block have said so far; each kind of line is read once."""

    date: datetime | None = None
    name: str | None = None
    handle: str | None = None
    status: int | None = None
    inline: bool = False
    last: int = -1  # index of the last header line taken


def _plausible_name(text: str) -> bool:
    """A display name: short, not a URL, not Markdown structure, not a sentence."""
    if not text or len(text) > 40 or _BARE_URL_RE.match(text):
        return False
    if text[0] in "#>-*+![|`" or text[-1] in "。！？!?.,，：:；;":
        return False
    return True


# Sentence punctuation or an @mention anywhere in a line: names do not have them, first lines
# of posts often do.
_NOT_A_NAME_RE = re.compile(r"[，。：；！？、《》「」『』“”]|[,;:!?](?:\s|$)|@[A-Za-z0-9_]")


def _name_shaped(text: str) -> bool:
    """Stricter than _plausible_name, for a name line that comes after both the date and the
    @handle: there it could as well be the post's first line. A short unpunctuated first line
    under a name-less header is still read as a name; no export we know writes such headers."""
    name = _split_name_url(text)[0]
    return _plausible_name(name) and not _NOT_A_NAME_RE.search(name)


def _split_name_url(name: str) -> tuple[str, str | None]:
    m = _NAME_URL_RE.match(name)
    if m:
        return m.group("name"), m.group("url")
    return name, None


def _parse_inline(line: str) -> tuple[str | None, str | None, datetime] | str | None:
    """``Name @handle YYYY-MM-DD`` (handle optional). Returns (name, handle, date), an error
    reason, or None when the line is not an author line at all."""
    m = _INLINE_RE.match(line)
    if not m:
        return None
    name: str | None = m.group("name").strip()
    handle = m.group("handle")
    year, month, day = m.group("date").split("-")
    if len(year) < 4 and name:
        # The archive has "2宝玉 @dotey 023-12-06": the year's first digit slipped in front of the
        # name. Move leading digits back when that completes a four-digit year.
        lead = re.match(r"^\d+", name)
        if lead and len(lead.group(0)) + len(year) == 4:
            year = lead.group(0) + year
            name = name[len(lead.group(0)) :].strip()
    if len(year) != 4:
        return None
    if name and handle is None:
        hm = _HANDLE_ONLY_RE.match(name)
        if hm:
            name, handle = None, hm.group(1)
    if not name and not handle:
        return None
    date = calendar_day(year, month, day)
    if date is None:
        return f"invalid date {m.group('date')!r} in author line"
    return name or None, handle, date


def _next_nonblank(lines: Sequence[str], i: int, end: int) -> int:
    while i < end and not lines[i].strip():
        i += 1
    return i


def _is_header_line(line: str) -> bool:
    """Lines that can only be header lines: a bare date, a bare @handle, a status URL."""
    return bool(_DATE_ONLY_RE.match(line) or _HANDLE_ONLY_RE.match(line) or _STATUS_RE.match(line))


def _take_header_line(scan: _HeaderScan, index: int, line: str, following: str) -> bool | str:
    """Read ``line`` into ``scan`` when it is a header line the block still lacks.

    True when taken, False when the header has ended (``line`` is body), or an error reason.
    Exports write the date, name, @handle and status URL lines in different orders, so each is
    recognised by its shape, not its position; a kind already seen ends the header."""
    if scan.status is None and _STATUS_RE.match(line):
        scan.status = index
        return True
    if scan.inline:  # a one-line author line says everything but the status URL
        return False
    empty = scan.date is None and scan.name is None and scan.handle is None
    if empty:
        inline = _parse_inline(line)
        if isinstance(inline, str):
            return inline
        if inline is not None:
            scan.name, scan.handle, scan.date = inline
            scan.inline = True
            return True
    dm = _DATE_ONLY_RE.match(line)
    if dm:
        if scan.date is not None:
            return False
        date = calendar_day(*dm.groups())
        if date is None:
            return f"invalid date {line!r} in author lines"
        scan.date = date
        return True
    hm = _HANDLE_ONLY_RE.match(line)
    if hm:
        if scan.handle is not None:
            return False
        scan.handle = hm.group(1)
        return True
    if scan.name is not None:
        return False
    nm = _NAME_HANDLE_RE.match(line)
    if nm and _plausible_name(_split_name_url(nm.group("name"))[0]):
        # "Name @handle" after a bare "@handle" line is the same author written twice.
        if scan.handle is None or scan.handle.lower() == nm.group("handle").lower():
            scan.name, scan.handle = nm.group("name"), scan.handle or nm.group("handle")
            return True
        return False  # another account's "Name @handle": a mention in the body
    if not _plausible_name(_split_name_url(line)[0]) or _INLINE_RE.match(line):
        return False  # an author line with its own date is no one's name
    if empty:
        # Nothing read yet: a short first line is a name only when a header line follows it,
        # else a block with no header would lose its first body line into the author.
        taken = _is_header_line(following)
    elif scan.date is not None and scan.handle is not None:
        taken = _name_shaped(line)
    else:
        taken = True  # the header still lacks its date or its author: we are inside it
    if taken:
        scan.name = line
    return taken


def _parse_header(lines: Sequence[str], start: int, end: int) -> _Header | str:
    """Read the header lines of a block (``lines[start:end]``, heading excluded): a date, a name,
    an @handle and an optional status URL, each on its own line in any order with any blank
    lines between them, or one ``Name @handle YYYY-MM-DD`` line plus the optional status URL."""
    i = _next_nonblank(lines, start, end)
    if i >= end:
        return "block has no author line"
    scan = _HeaderScan()
    while i < end:
        line = lines[i].strip()
        if len(line) > _MAX_HEADER_LINE:
            break
        j = _next_nonblank(lines, i + 1, end)
        taken = _take_header_line(scan, i, line, lines[j].strip() if j < end else "")
        if isinstance(taken, str):
            return taken
        if not taken:
            break
        scan.last = i
        i = j
    if scan.date is None or (not scan.name and not scan.handle):
        if scan.date is None:
            reason = "no author/date line under the heading"
        else:
            reason = "author lines have a date but no name or @handle"
        if i < end:
            # Name the line that stopped the reading: it is what the user has to fix.
            reason += f" (line {i + 1} is not a header line: {lines[i].strip()[:60]!r})"
        return reason
    name, author_url = _split_name_url(scan.name) if scan.name else (None, None)
    return _Header(
        name=name,
        handle=scan.handle,
        date=scan.date,
        layout="inline" if scan.inline else "stacked",
        author_url=author_url,
        body_start=scan.last + 1,
        status=scan.status,
        status_last=scan.status is not None and scan.status == scan.last,
    )


def _strip_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return [line.rstrip() for line in lines[start:end]]


def _split_compiler_notes(body_lines: list[str]) -> tuple[list[str], list[str]]:
    """Move the compiler's ``N『…』`` remarks out of the post: they are the archive owner's
    thoughts (ItemRecord.note), not the author's words."""
    kept: list[str] = []
    notes: list[str] = []
    mask = fence_mask(body_lines)
    i = 0
    while i < len(body_lines):
        line = body_lines[i]
        if not mask[i] and _COMPILER_NOTE_START_RE.match(line):
            # A remark may wrap over several lines; it ends at the line holding '』'.
            j = i
            while j < len(body_lines) and "』" not in body_lines[j] and j - i < 20:
                j += 1
            if j < len(body_lines) and "』" in body_lines[j]:
                chunk = "\n".join(body_lines[i : j + 1]).strip()
                inner = chunk[chunk.index("『") + 1 : chunk.rindex("』")].strip()
                if inner:
                    notes.append(inner)
                i = j + 1
                continue
        kept.append(line)
        i += 1
    return kept, notes


def _block_spans(lines: Sequence[str]) -> list[tuple[int, str]]:
    mask = fence_mask(lines)
    return [(i, m.group(1)) for i, line in enumerate(lines) if not mask[i] and (m := _BLOCK_RE.match(line))]


def _parse_block(lines: Sequence[str], heading: int, end: int, number: str, file: str) -> ItemRecord:
    header = _parse_header(lines, heading + 1, end)
    if isinstance(header, str):
        raise ImportFormatError(file, heading + 1, f"### {number}: {header}")

    url: str | None = None
    raw_body = _strip_blank_edges(list(lines[header.body_start : end]))
    if header.status is not None:
        status_line = lines[header.status].strip()
        sm = _STATUS_RE.match(status_line)  # matches: _parse_header took the line for it
        if sm and header.handle and sm.group(1).lower() == header.handle.lower():
            # The post's own address. Canonical form so that x.com / twitter.com / ?s=20 variants
            # of one post give one item.
            url = f"https://x.com/{sm.group(1)}/status/{sm.group(2)}"
        elif header.status_last:
            # A quoted post under the author lines is what the author posted first: the body
            # starts there, verbatim, as it always has.
            raw_body = _strip_blank_edges(list(lines[header.status : end]))
        else:
            # A quoted post's URL written among the author lines by another export: it is the
            # same first body line, set off by the one blank line of the usual order.
            raw_body = [status_line, ""] + raw_body if raw_body else [status_line]

    body_lines, notes = _split_compiler_notes(raw_body)
    body = "\n".join(_strip_blank_edges(body_lines))
    if not body:
        raise ImportFormatError(file, heading + 1, f"### {number}: post has no body")

    who = (header.handle or "").lower() or (header.name or "")
    if url is None:
        url = stable_id("post", who, header.date.date().isoformat(), body[:200])

    links = [link for link in find_links(body) if link not in (url, header.author_url)]
    extra: dict[str, object] = {"block": number, "layout": header.layout}
    if header.author_url:
        extra["author_url"] = header.author_url
    labelled = labelled_links(body)
    if labelled:
        extra["labelled_links"] = labelled
    return ItemRecord(
        url=url,
        kind="post",
        title=headline(body),
        author=header.name or header.handle,
        author_handle=header.handle,
        published_at=header.date,
        language=detect_language(body),
        text=body,
        tags=find_hashtags(body),
        note="\n\n".join(notes) or None,
        links=links,
        extra=extra,
        line=heading + 1,
    )


def parse_social(text: str, *, file: str | None = None) -> ParseResult:
    """Parse a social archive into ``kind="post"`` items, one per ``### NN`` block.

    A block whose author lines cannot be read, or that has no body, is rejected with an
    ImportFormatError in ``errors``; the other blocks still import."""
    name = file or "<social>"
    result = ParseResult(format=FORMAT)
    lines = normalize_newlines(text).split("\n")
    spans = _block_spans(lines)
    if not spans:
        if text.strip():
            result.errors.append(ImportFormatError(name, None, "no '### NN' post blocks found"))
        return result
    first = spans[0][0]
    preamble = next((i for i in range(first) if lines[i].strip()), None)
    if preamble is not None:
        result.errors.append(
            ImportFormatError(name, preamble + 1, "text before the first '### NN' block is not a post")
        )
    for k, (heading, number) in enumerate(spans):
        end = spans[k + 1][0] if k + 1 < len(spans) else len(lines)
        try:
            result.items.append(_parse_block(lines, heading, end, number, name))
        except ImportFormatError as exc:
            result.errors.append(exc)
        except Exception as exc:  # one odd block must not lose the whole archive
            result.errors.append(
                ImportFormatError(name, heading + 1, f"### {number}: internal parser error: {exc!r}")
            )
    return result


def looks_like(text: str) -> tuple[bool, str]:
    """Is this a social archive? Yes when it has ``### NN`` blocks and most start with author lines."""
    lines = normalize_newlines(text).split("\n")
    spans = _block_spans(lines)
    if not spans:
        return False, "no '### NN' post blocks"
    good = 0
    for k, (heading, _) in enumerate(spans):
        end = spans[k + 1][0] if k + 1 < len(spans) else len(lines)
        try:
            if not isinstance(_parse_header(lines, heading + 1, end), str):
                good += 1
        except Exception:  # detection must never fail
            pass
    if good * 2 >= len(spans) and good:
        return True, f"{len(spans)} '### NN' blocks, {good} with author/date lines"
    return False, f"{len(spans)} '### NN' blocks but only {good} with author/date lines"
