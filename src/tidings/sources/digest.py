"""Weekly "内容汇总" digests (Docusaurus posts) parsed losslessly into a ``DigestDoc``.

Two layouts exist. Sectioned digests (2023-07-30 on) put ``[《title》](url)。summary`` or bare
``[title](url)`` lines under ``## section`` headings. Older ones have no headings: a line that
starts with an emoji marker (📒 ⭐️ 🌟 🌛) opens a note that runs up to the next marker line.

How whitespace is split, so that dropping, editing or moving an entry stays clean:

* every block owns the blank lines after it (an entry's ``verbatim`` ends with its blank-line
  separator), except that the document's final whitespace is split off into an ``eof`` block;
* blank lines before the first block form a ``blank`` block;
* a non-bullet entry only starts after a blank line, at the start of the body, or right after a
  heading, code, comment or admonition block; so two non-bullet entries always have a blank line
  between them, which lets the renderer repair the gaps a move or an insertion leaves behind.

A marker note owns everything up to the next marker line (prose, code, ``:::tip``, MDX), so that
dropping it drops its explanation too; ``summary`` is that text as written and ``.prose`` the
same without code and markup. An HTML comment ends a note: commented-out notes stay RawBlocks.
Text before the first marker (MDX imports, a cover) is RawBlocks. In sectioned digests only the
link lines (and ``- [t](u)`` bullets, as in 2024-07-21's ``:::tip`` lists) are entries; prose and
code between them are RawBlocks under their section.

The parser is total: any text either parses (and re-renders byte for byte) or is refused with an
``ImportFormatError``; nothing else escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ..errors import ImportFormatError
from ..records import Cover, DigestDoc, DigestEntry, RawBlock
from . import YAMLLimitError, load_yaml

MARKERS = ("📒", "⭐️", "⭐", "🌟", "🌛")  # "⭐️" before "⭐" so the variation selector stays with it
_MARKER_RE = re.compile(r"(?:(?:📒|⭐️|⭐|🌟|🌛)[ \t]*)+")
_BULLET_RE = re.compile(r"[-*][ \t]+")
_HEADING_RE = re.compile(r"##[ \t]+(.*?)[ \t]*$")
_FENCE_RE = re.compile(r"[ \t]*(`{3,}|~{3,})")
_ADMONITION_RE = re.compile(r"[ \t]*:::")
_FRONT_DELIM_RE = re.compile(r"---[ \t]*\r?\n?")
_FRONT_CLOSE_RE = re.compile(r"(?:---|\.\.\.)[ \t]*\r?\n?")
_COVER_IMAGE_RE = re.compile(r"!\[")
_COVER_CAPTION_RE = re.compile(r"(封面图|题图)：(.*?)[ \t]*\r?\n?$")
_QUOTED_URL_RE = re.compile(r"[ \t]*>[ \t]*(<?https?://[^\s<>]+>?)")
_BARE_URL_RE = re.compile(r"[ \t]*(<?https?://[^\s<>]+>?)[ \t]*\r?$")
_TRAILING_WS_RE = re.compile(r"[ \t\r\n]*\Z")
# Between a link and its summary: punctuation as the curator typed it, or the line break(s)
# before a continuation (the summary keeps its own indentation).
_SEPARATOR_RE = re.compile(r"[ \t]*(?:。|---|——|：|:)[ \t]*|[ \t\r]*\n(?:[ \t\r]*\n)*|[ \t]+")
_SLUG_DAY_RE = re.compile(r"(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_PATH_DATE_RE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")

BOUNDARY_ROLES = {"heading", "code", "comment", "admonition", "cover"}
REASONS = ("empty", "binary", "unclosed_front_matter", "not_a_digest", "internal_error")


# --- small text helpers ------------------------------------------------------------------------


def _is_blank(line: str) -> bool:
    return not line.strip(" \t\r\n")


def _content(line: str) -> str:
    return line.rstrip("\r\n")


def trailing_ws(text: str) -> str:
    """The whitespace run a block ends with: its blank-line separator."""
    match = _TRAILING_WS_RE.search(text)
    return match.group(0) if match else ""


def parse_link(text: str, pos: int) -> tuple[str, str, int] | None:
    """A Markdown inline link ``[text](dest "title")`` at ``text[pos]``, within one line.

    Returns ``(link_text_raw, destination_raw, end)``; brackets nest and honour backslash
    escapes, parentheses in the destination nest, as CommonMark has it."""
    if pos >= len(text) or text[pos] != "[":
        return None
    depth = 0
    i = pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "\n":
            return None
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                break
        i += 1
    else:
        return None
    close_text = i
    if close_text + 1 >= len(text) or text[close_text + 1] != "(":
        return None
    j = close_text + 2
    depth = 1
    quote: str | None = None
    while j < len(text):
        ch = text[j]
        if ch == "\n":
            return None
        if quote is not None:
            if ch == "\\":
                j += 2
                continue
            if ch == quote:
                quote = None
        elif ch == "\\":
            j += 2
            continue
        elif ch in "\"'" and j > close_text + 2 and text[j - 1] in " \t":
            quote = ch  # a title attribute: parentheses inside it do not count
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : close_text], text[close_text + 2 : j], j + 1
        j += 1
    return None


@dataclass
class _Head:
    """The first line of an entry: what precedes the link, the link, where the head ends."""

    prefix: str  # "📒 ", "- ", "[" (the ``[[《…》](…)`` typo), ""
    marker: str | None
    bullet: bool
    title_raw: str | None
    url_raw: str | None
    end: int  # offset just past the link (or past a plain-text title)


def _marker_of(prefix: str) -> str | None:
    for marker in MARKERS:
        if prefix.startswith(marker):
            return marker
    return None


def parse_head(line: str, *, plain_title: bool) -> _Head | None:
    """Parse an item's first line. ``plain_title``: a marker line may hold a title with no link."""
    text = _content(line)
    prefix_end = 0
    marker = None
    bullet = False
    match = _MARKER_RE.match(text)
    if match:
        prefix_end = match.end()
        marker = _marker_of(text)
    else:
        match = _BULLET_RE.match(text)
        if match:
            prefix_end = match.end()
            bullet = True
    link = parse_link(text, prefix_end)
    start = prefix_end
    if link is None and text.startswith("[[", prefix_end):
        link = parse_link(text, prefix_end + 1)
        start = prefix_end + 1
    if link is not None:
        title_raw, url_raw, end = link
        return _Head(text[:start], marker, bullet, title_raw, url_raw, end)
    if marker is not None and plain_title:
        title = text[prefix_end:].rstrip(" \t")
        return _Head(text[:prefix_end], marker, False, title, None, prefix_end + len(title))
    return None


def split_entry(verbatim: str, head: _Head) -> tuple[str | None, str | None]:
    """``(separator, summary)`` of an entry whose text is ``verbatim``."""
    body = verbatim[: len(verbatim) - len(trailing_ws(verbatim))]
    rest = body[head.end :]
    if not rest:
        return None, None
    match = _SEPARATOR_RE.match(rest)
    separator = match.group(0) if match else ""
    summary = rest[len(separator) :]
    if not summary:
        return (separator or None), None
    return separator, summary


# --- front matter --------------------------------------------------------------------------------


def split_front_matter(text: str, file: str = "<text>") -> tuple[str | None, str, dict[str, Any]]:
    """``(front_matter_raw, body, meta)``; front_matter_raw is None when there is none."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    start = len(bom)
    first = _FRONT_DELIM_RE.match(text, start)
    if not first or not (first.end() == len(text) or text[first.end() - 1] == "\n"):
        return None, text, {}
    pos = first.end()
    while pos < len(text):
        newline = text.find("\n", pos)
        line_end = len(text) if newline < 0 else newline + 1
        close = _FRONT_CLOSE_RE.fullmatch(text, pos, line_end)
        if close:
            raw = text[:line_end]
            try:
                meta = parse_meta(text[first.end() : pos])
            except YAMLLimitError as exc:
                raise ImportFormatError(file, 1, str(exc)) from None
            return raw, text[line_end:], meta
        pos = line_end
    raise ImportFormatError(file, 1, "unclosed_front_matter")


_MALFORMED = object()


def parse_meta(inner: str) -> dict[str, Any]:
    """Front-matter keys. Malformed YAML falls back to one ``key: value`` line at a time.
    Raises YAMLLimitError for an alias bomb (which no fallback may read either)."""
    try:
        data = load_yaml(inner)
    except YAMLLimitError:
        raise
    except Exception:  # YAMLError, but also ValueError from impossible dates like 2024-13-45
        data = _MALFORMED
    if data is None:
        return {}
    if isinstance(data, dict):
        return {str(k): v for k, v in data.items()}
    meta: dict[str, Any] = {}
    for line in inner.splitlines():
        match = re.match(r"([^\s:#][^:]*?)[ \t]*:[ \t]*(.*?)[ \t]*$", line)
        if not match:
            continue
        key, value = match.group(1), match.group(2)
        try:
            meta[key] = load_yaml(value) if value else None
        except YAMLLimitError:
            raise
        except Exception:
            meta[key] = value
    return meta



# --- line scanning -------------------------------------------------------------------------------


class _Lines:
    """The body's lines (with their line ends) and which of them are code or HTML comment."""

    def __init__(self, body: str) -> None:
        self.lines = re.findall(r"[^\n]*\n|[^\n]+\Z", body)
        n = len(self.lines)
        self.fence_end: dict[int, int] = {}  # opening line -> one past the closing line
        self.comment_end: dict[int, int] = {}
        self.inside = [False] * n  # in a fence or an HTML comment, opening line excluded
        i = 0
        while i < n:
            text = _content(self.lines[i])
            fence = _FENCE_RE.match(text)
            if fence and not (fence.group(1)[0] == "`" and "`" in text[fence.end() :]):
                char, size = fence.group(1)[0], len(fence.group(1))
                j = i + 1
                while j < n:
                    close = _FENCE_RE.match(_content(self.lines[j]))
                    if (
                        close
                        and close.group(1)[0] == char
                        and len(close.group(1)) >= size
                        and not _content(self.lines[j])[close.end() :].strip()
                    ):
                        break
                    j += 1
                end = min(j + 1, n)
                self.fence_end[i] = end
                for k in range(i + 1, end):
                    self.inside[k] = True
                i = end
                continue
            stripped = text.lstrip(" \t")
            if stripped.startswith("<!--"):
                j = i
                if "-->" not in stripped[4:]:
                    j = i + 1
                    while j < n and "-->" not in self.lines[j]:
                        j += 1
                end = min(j + 1, n)
                self.comment_end[i] = end
                for k in range(i + 1, end):
                    self.inside[k] = True
                i = end
                continue
            i += 1

    def __len__(self) -> int:
        return len(self.lines)

    def heading(self, i: int) -> str | None:
        if self.inside[i] or i in self.fence_end or i in self.comment_end:
            return None
        match = _HEADING_RE.match(_content(self.lines[i]))
        if not match:
            return None
        return match.group(1) or None  # "## " alone names no section

    def free(self, i: int) -> bool:
        """Plain Markdown: not code, not an HTML comment."""
        return not self.inside[i] and i not in self.fence_end and i not in self.comment_end


def _is_marker_line(line: str) -> bool:
    return line.startswith(MARKERS)


# --- the parser ----------------------------------------------------------------------------------


class _Builder:
    def __init__(self, lines: _Lines, sectioned: bool) -> None:
        self.lines = lines
        self.sectioned = sectioned
        self.blocks: list[RawBlock | DigestEntry] = []
        self.section: str | None = None
        self.sections: list[str] = []
        self.cover: Cover | None = None

    def text(self, start: int, end: int) -> str:
        return "".join(self.lines.lines[start:end])

    def blank_run(self, i: int) -> int:
        while i < len(self.lines) and _is_blank(self.lines.lines[i]):
            i += 1
        return i

    def may_start_entry(self, i: int) -> bool:
        if i == 0 or _is_blank(self.lines.lines[i - 1]):
            return True
        last = self.blocks[-1] if self.blocks else None
        return isinstance(last, RawBlock) and last.role in BOUNDARY_ROLES

    def entry_head(self, i: int) -> _Head | None:
        """The head of an entry starting at line ``i``, if one may start there."""
        if not self.lines.free(i):
            return None
        line = self.lines.lines[i]
        if self.sectioned:
            head = parse_head(line, plain_title=False)
            if head is None:
                return None
            if head.bullet:
                return head
            return head if self.may_start_entry(i) else None
        if _is_marker_line(line) and self.may_start_entry(i):
            return parse_head(line, plain_title=True)
        return None

    def interrupts(self, i: int) -> bool:
        """Whether line ``i`` ends a running paragraph (or a one-line item's continuation)."""
        line = self.lines.lines[i]
        if _is_blank(line) or not self.lines.free(i) or self.lines.heading(i) is not None:
            return True
        text = _content(line)
        if _ADMONITION_RE.match(text):
            return True
        if self.sectioned:
            bullet = _BULLET_RE.match(text)
            if bullet and parse_link(text, bullet.end()) is not None:
                return True
        return False

    def add_raw(self, start: int, end: int, role: str) -> int:
        end = self.blank_run(end)
        self.blocks.append(RawBlock(text=self.text(start, end), section=self.section, role=role))
        return end

    def raw_unit(self, i: int) -> int:
        """Add the RawBlock that starts at (non-blank) line ``i``; returns the next line."""
        lines = self.lines
        if i in lines.fence_end:
            return self.add_raw(i, lines.fence_end[i], "code")
        if i in lines.comment_end:
            return self.add_raw(i, lines.comment_end[i], "comment")
        name = lines.heading(i)
        if name is not None:
            self.section = name
            if name not in self.sections:
                self.sections.append(name)
            return self.add_raw(i, i + 1, "heading")
        if _ADMONITION_RE.match(_content(lines.lines[i])):
            return self.add_raw(i, i + 1, "admonition")
        j = i + 1
        while j < len(lines) and not self.interrupts(j):
            j += 1
        return self.add_raw(i, j, "text")

    def cover_at(self, i: int) -> int | None:
        """A cover image and its 封面图/题图 caption at the top of the body."""
        lines = self.lines
        if i >= len(lines) or not lines.free(i):
            return None
        image_line = _content(lines.lines[i])
        if not _COVER_IMAGE_RE.match(image_line):
            return None
        link = parse_link(image_line, 1)
        if link is None or image_line[link[2] :].strip():
            return None
        j = self.blank_run(i + 1)
        if j == i + 1 or j >= len(lines) or not lines.free(j):
            return None
        caption = _COVER_CAPTION_RE.match(lines.lines[j])
        if not caption:
            return None
        alt, image, _ = link
        self.cover = Cover(image=image.strip(), alt=alt, label=caption.group(1), caption=caption.group(2))
        return self.add_raw(i, j + 1, "cover")

    def add_entry(self, i: int, head: _Head) -> int:
        lines = self.lines
        j = i + 1
        if self.sectioned:
            if head.bullet:
                # A list item's continuation is its indented lines (nested bullets, code).
                while j < len(lines) and not _is_blank(lines.lines[j]) and lines.lines[j][:1] in " \t":
                    j += 1
            else:
                while j < len(lines) and not self.interrupts(j):
                    j += 1
            end = self.blank_run(j)
        else:
            # A marker note runs to the next marker line, or to an HTML comment (commented-out
            # notes are kept verbatim, outside any entry).
            while j < len(lines):
                if j in lines.comment_end:
                    break
                if lines.free(j) and _is_marker_line(lines.lines[j]) and _is_blank(lines.lines[j - 1]):
                    break
                j += 1
            end = j
        verbatim = self.text(i, end)
        separator, summary = split_entry(verbatim, head)
        url_raw = head.url_raw
        if url_raw is None and not self.sectioned:
            url_raw = _note_url(lines, i + 1, end)
        self.blocks.append(
            DigestEntry(
                url_raw=url_raw,
                title_raw=head.title_raw,
                separator=separator,
                summary=summary,
                section=self.section if self.sectioned else None,
                marker=head.marker,
                verbatim=verbatim,
            )
        )
        return end

    def build(self) -> None:
        lines = self.lines
        i = self.blank_run(0)
        if i:
            self.blocks.append(RawBlock(text=self.text(0, i), role="blank"))
        after_cover = self.cover_at(i)
        if after_cover is not None:
            i = after_cover
        while i < len(lines):
            head = self.entry_head(i)
            i = self.add_entry(i, head) if head is not None else self.raw_unit(i)
        self.split_eof()

    def split_eof(self) -> None:
        """Give the document's final whitespace a block of its own."""
        if not self.blocks:
            return
        last = self.blocks[-1]
        text = last.text if isinstance(last, RawBlock) else (last.verbatim or "")
        tail = trailing_ws(text)
        if not tail:
            return
        if tail == text and isinstance(last, RawBlock):
            last.role = "eof"
            return
        if isinstance(last, RawBlock):
            last.text = text[: len(text) - len(tail)]
        else:
            last.verbatim = text[: len(text) - len(tail)]
        self.blocks.append(RawBlock(text=tail, section=self.section, role="eof"))


def _note_url(lines: _Lines, start: int, end: int) -> str | None:
    """A marker note without a link on its line: its first ``> https://…`` or bare-URL line."""
    for k in range(start, end):
        if not lines.free(k):
            continue
        text = _content(lines.lines[k])
        match = _QUOTED_URL_RE.match(text) or _BARE_URL_RE.match(text)
        if match:
            return match.group(1)
    return None


def parse_digest(text: str, *, path: str | None = None) -> DigestDoc:
    """Parse one digest. Raises ``ImportFormatError`` (and nothing else) for what is not one."""
    file = path or "<text>"
    try:
        return _parse(text, file, path)
    except ImportFormatError:
        raise
    except Exception as exc:  # a parser bug must still surface as this file's import error
        raise ImportFormatError(file, None, "internal_error") from exc


def _parse(text: str, file: str, path: str | None) -> DigestDoc:
    if not text.strip():
        raise ImportFormatError(file, None, "empty")
    if "\x00" in text:
        raise ImportFormatError(file, None, "binary")
    front_raw, body, meta = split_front_matter(text, file)
    lines = _Lines(body)
    sectioned = any(lines.heading(i) is not None for i in range(len(lines)))
    builder = _Builder(lines, sectioned)
    builder.build()
    if front_raw is None and not builder.sections and not any(
        isinstance(b, DigestEntry) for b in builder.blocks
    ):
        raise ImportFormatError(file, 1, "not_a_digest")
    week, guessed = infer_week(path, meta)
    return DigestDoc(
        meta=meta,
        # "" rather than None: an imported file without front matter is still not a new digest.
        front_matter_raw=front_raw if front_raw is not None else "",
        cover=builder.cover,
        sections=builder.sections,
        blocks=builder.blocks,
        week=week,
        week_guessed=guessed,
    )


# --- week dates and detection --------------------------------------------------------------------


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        match = _PATH_DATE_RE.search(value)
        if match:
            try:
                return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                return None
    return None


def infer_week(
    path: str | None, meta: dict[str, Any], override: date | None = None, *, today: date | None = None
) -> tuple[date | None, bool]:
    """The digest's week date and whether it was guessed.

    In order: ``override``; a ``YYYY-MM-DD`` in the path (the blog's ``blog/<date>/index.md``);
    the front-matter ``date:``; the month and day of the slug (or title), e.g. ``6月9日内容汇总``.
    A slug has no year, so the guess is the most recent year in which that day is not in the
    future (relative to ``today``): published digests look back, never ahead."""
    if override is not None:
        return override, False
    if path:
        for match in reversed(list(_PATH_DATE_RE.finditer(path))):
            try:
                return date(int(match.group(1)), int(match.group(2)), int(match.group(3))), False
            except ValueError:
                continue
    found = _as_date(meta.get("date"))
    if found is not None:
        return found, False
    now = today or date.today()
    for key in ("slug", "title"):
        value = meta.get(key)
        match = _SLUG_DAY_RE.search(value) if isinstance(value, str) else None
        if not match:
            continue
        month, day = int(match.group(1)), int(match.group(2))
        for year in range(now.year, now.year - 8, -1):  # 8 years always include a 29 February
            try:
                guess = date(year, month, day)
            except ValueError:
                continue
            if guess <= now:
                return guess, True
    return None, False


def _loose(name: str) -> str:
    # Emoji and their variation selectors differ between weeks ("⭐" / "⭐️"); the words do not.
    return re.sub(r"[^\w&]+", " ", name).strip().lower()


def is_digest(text: str, section_names: list[str]) -> tuple[bool, str]:
    """Whether ``text`` is a 内容汇总 digest, and why (for ``--format auto``)."""
    try:
        try:
            _, body, meta = split_front_matter(text)
        except ImportFormatError:
            return False, "its front matter is never closed"
        title = meta.get("title")
        if isinstance(title, str) and "内容汇总" in title:
            return True, f"front-matter title {title!r} contains 内容汇总"
        lines = _Lines(body)
        headings = [h for h in (lines.heading(i) for i in range(len(lines))) if h]
        wanted = {_loose(n) for n in section_names}
        matched = [h for h in headings if h in section_names or _loose(h) in wanted]
        if matched:
            return True, "## headings match configured sections: " + ", ".join(dict.fromkeys(matched))
        return False, "no 内容汇总 in the front-matter title and no ## heading matching a configured section"
    except Exception as exc:  # detection must never stop an import run
        return False, f"could not be read as a digest ({type(exc).__name__})"
