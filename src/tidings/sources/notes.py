"""Parser for personal notes files (e.g. "AiNotes"): one note per level-1 heading.

Layout::

    # AiNotes                      <- file title (optional), with a one-line description
    AI 的摘要与思考
    ---
    2025-04-27                     <- bare date line: dates the notes below it
    # [Title](https://source)      <- linked note: the URL is the note's url
    body ...
    个人思考：...                  <- the author's own voice -> ItemRecord.note
    # Title                        <- unlinked note
    ```python
    # a comment, not a heading     <- '#' inside a code fence is code
    ```

Decisions (the real file leaves these open):

* Note identity. A linked note's url is its source URL. An unlinked note gets
  ``note:<sha1 of its normalised title>[:16]``: the title is what the author uses to refer to
  the note, and bodies of personal notes get edited and extended over time, so hashing the body
  would turn every edit into a new item on re-import. A second note with the same title in the
  same file hashes title *and* body so it does not collide with the first. Every note also
  carries its title-based id in ``guid``, linked or not.
* Personal note extent. A label (``个人思考`` / ``思考`` / ``疑问``) at the start of a line, followed
  by a colon or set in bold or as a heading, starts the author's own part. It runs until the
  next heading, the next bold label line (``**Something**``, ``**Something**：``), a thematic
  break, another own-voice label, or the end of the note - the author tends to continue a
  thought over several paragraphs (e.g. ``思考：<question>`` then ``方案：<answer>``). A note whose
  *title* says ``个人思考`` is own voice throughout. Several parts are joined by blank lines; the
  labels themselves are dropped (``extra["note_labels"]`` keeps them). The body (``text``)
  keeps everything, labelled parts included.
* Bare date lines (``2025-04-27``, ``2025/4/27``, ``2025年4月27日``, optionally bold or as a
  heading) are separators, not content: they date every note after them, and also the note they
  sit in when nothing but blank lines separates them from its heading.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import ImportFormatError
from ..records import ItemRecord, ParseResult
from ..textutil import calendar_day
from .social import (
    atx_heading,
    detect_language,
    fence_mask,
    find_links,
    headline,
    normalize_newlines,
    plain_inline,
    stable_id,
)

FORMAT = "notes"

_LINK_HEADING_RE = re.compile(
    r"^\[((?:[^\[\]\\]|\\.)+)\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)(.*)$"
)
_DATE_LINE_RE = re.compile(
    r"^\s*(?:#{1,6}\s+)?(\*\*|__|\*|_)?\s*"
    r"(\d{4})\s*(?:[-/.]\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})|年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?)"
    r"\s*(?(1)(?:\*\*|__|\*|_))\s*$"
)
_THEMATIC_BREAK_RE = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_OWN_LABELS = ("个人思考", "思考", "疑问")
_LABEL_ALT = "|".join(_OWN_LABELS)
# "个人思考：…", "**疑问**：…", "**思考：**…", "- 个人思考: …", "## 个人思考"
_OWN_LABEL_RE = re.compile(
    r"^\s*(?:[-*+]\s+)?(?:"
    r"(?P<h>#{1,6})\s+(?P<hl>" + _LABEL_ALT + r")\s*[:：]?\s*$"
    r"|(?P<b>\*\*|__)(?P<bl>" + _LABEL_ALT + r")\s*(?:[:：]\s*(?P=b)|(?P=b)\s*[:：]?)\s*(?P<brest>.*)"
    r"|(?P<pl>" + _LABEL_ALT + r")\s*[:：]\s*(?P<prest>.*)"
    r")$"
)
# A line that opens a new labelled paragraph, e.g. "**方案**：" or "**关键洞察**：…" or "**AI 安全启示**".
_BOLD_LABEL_RE = re.compile(
    r"^\s*(?:\*\*|__)[^*_]{1,40}(?:\*\*|__)\s*(?:[:：]|$)|^\s*(?:\*\*|__)[^*_]{1,40}[:：](?:\*\*|__)"
)
_TITLE_HINT_RE = re.compile(r"notes?|笔记|札记|随记|摘要", re.I)


@dataclass
class _Note:
    heading_line: int  # 0-based index of the '# ' line
    heading: str
    date: datetime | None
    body: list[str] = field(default_factory=list)
    dated_by_own_line: bool = False


def _date_of(line: str) -> datetime | None:
    line = line.strip()
    if len(line) > 40:  # a date line is short; the check also keeps the regex cheap
        return None
    m = _DATE_LINE_RE.match(line)
    if not m:
        return None
    year = m.group(2)
    month = m.group(3) or m.group(5)
    day = m.group(4) or m.group(6)
    return calendar_day(year, month, day)


def _heading_text(line: str) -> str | None:
    """The text of a level-1 heading line, or None when the line is not one."""
    heading = atx_heading(line)
    if heading is None or heading[0] != 1:
        return None
    return heading[1]


def _split_title(heading: str) -> tuple[str, str | None]:
    """``[Title](url) rest`` -> ("Title rest", url); anything else -> (plain title, None)."""
    m = _LINK_HEADING_RE.match(heading)
    if m:
        url = m.group(2)
        title = plain_inline(m.group(1) + m.group(3))
        if url.lower().startswith(("http://", "https://")):
            return title, url
        return title, None
    return plain_inline(heading), None


def _trim(lines: Sequence[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    # Trailing '---' lines separate this note from the next one; they are not part of it.
    while end > start and (not lines[end - 1].strip() or _THEMATIC_BREAK_RE.match(lines[end - 1])):
        end -= 1
    return [line.rstrip() for line in lines[start:end]]


def _own_voice(body: Sequence[str]) -> tuple[list[str], list[str]]:
    """The labelled parts of a note body (see the module docstring for where a part ends)."""
    mask = fence_mask(body)
    parts: list[str] = []
    labels: list[str] = []
    current: list[str] | None = None
    current_heading_level = 7

    def close() -> None:
        nonlocal current
        if current is not None:
            text = "\n".join(_trim(current)).strip()
            if text:
                parts.append(text)
        current = None

    for i, line in enumerate(body):
        if mask[i]:
            if current is not None:
                current.append(line)
            continue
        m = _OWN_LABEL_RE.match(line)
        if m:
            close()
            label = m.group("hl") or m.group("bl") or m.group("pl")
            labels.append(label)
            rest = m.group("brest") if m.group("bl") else m.group("prest")
            current = [rest.strip()] if rest and rest.strip() else []
            current_heading_level = len(m.group("h")) if m.group("h") else 7
            continue
        if current is None:
            continue
        hm = atx_heading(line)
        if hm and hm[0] <= current_heading_level:
            close()
            continue
        if _THEMATIC_BREAK_RE.match(line) or _BOLD_LABEL_RE.match(line):
            close()
            continue
        current.append(line)
    close()
    return parts, labels


def _is_file_title(lines: Sequence[str], mask: Sequence[bool], first: int, next_heading: int | None) -> bool:
    """Is the first heading the file's title rather than a note?

    It is when it is the file's first line of text, is not a link, there are more headings after
    it, and its own section is at most a couple of description lines - and either the heading
    reads like a notebook name ("AiNotes", "读书笔记") or the section ends in a '---' break."""
    if next_heading is None:
        return False
    heading = _heading_text(lines[first]) or ""
    if _LINK_HEADING_RE.match(heading):
        return False
    content = [
        line
        for i, line in enumerate(lines[first + 1 : next_heading], start=first + 1)
        if line.strip() and not _THEMATIC_BREAK_RE.match(line) and _date_of(line) is None
    ]
    if len(content) > 2 or any(mask[i] for i in range(first + 1, next_heading)):
        return False
    section = [line for line in lines[first + 1 : next_heading] if line.strip() and _date_of(line) is None]
    ends_in_break = bool(section) and bool(_THEMATIC_BREAK_RE.match(section[-1]))
    return ends_in_break or bool(_TITLE_HINT_RE.search(heading))


def _build(note: _Note, url_counts: dict[str, int], notebook: str | None, file: str) -> ItemRecord:
    title, url = _split_title(note.heading)
    body_lines = _trim(note.body)
    body = "\n".join(body_lines)
    if not title:
        # "# " with nothing after it: borrow the first body line rather than lose the note.
        title = headline(body) or ""
    if not title:
        raise ImportFormatError(file, note.heading_line + 1, "note heading has no title and the note no body")

    key = " ".join(title.split()).casefold()
    seen = url_counts.get(key, 0)
    url_counts[key] = seen + 1
    note_id = stable_id("note", key) if seen == 0 else stable_id("note", key, body)

    parts, labels = _own_voice(body_lines)
    if "个人思考" in title and body:
        parts, labels = [body], ["个人思考"]
    extra: dict[str, object] = {}
    if notebook:
        extra["notebook"] = notebook
    if labels:
        extra["note_labels"] = labels
    return ItemRecord(
        url=url or note_id,
        kind="note",
        title=title,
        published_at=note.date,
        language=detect_language(f"{title}\n{body}"),
        text=body,
        note="\n\n".join(parts) or None,
        links=[link for link in find_links(body) if link != url],
        guid=note_id,
        extra=extra,
        line=note.heading_line + 1,
    )


def parse_notes(text: str, *, file: str | None = None) -> ParseResult:
    """Parse a notes file into ``kind="note"`` items, one per level-1 heading outside code."""
    name = file or "<notes>"
    result = ParseResult(format=FORMAT)
    lines = normalize_newlines(text).split("\n")
    mask = fence_mask(lines)
    headings = [
        i
        for i, line in enumerate(lines)
        if not mask[i] and _heading_text(line) is not None and _date_of(line) is None
    ]
    if not headings:
        if text.strip():
            result.errors.append(ImportFormatError(name, None, "no '# ' note headings found"))
        return result

    notebook: str | None = None
    first_text = next((i for i, line in enumerate(lines) if line.strip()), None)
    start = 0
    if first_text == headings[0] and _is_file_title(
        lines, mask, headings[0], headings[1] if len(headings) > 1 else None
    ):
        notebook = _heading_text(lines[headings[0]]) or None
        start = headings[0] + 1
        headings = headings[1:]

    current_date: datetime | None = None
    notes: list[_Note] = []
    note: _Note | None = None
    stray: int | None = None  # first line of text that belongs to no note
    description: list[str] = []
    heading_set = set(headings)
    for i in range(start, len(lines)):
        line = lines[i]
        if i in heading_set:
            note = _Note(i, _heading_text(line) or "", current_date)
            notes.append(note)
            continue
        if not mask[i]:
            date = _date_of(line)
            if date is not None:
                current_date = date
                if note is not None and not any(s.strip() for s in note.body):
                    note.date = date
                continue
        if note is None:
            if not line.strip() or _THEMATIC_BREAK_RE.match(line):
                continue
            if notebook is not None:
                description.append(line.strip())  # the file title's own lines, e.g. "AI 的摘要与思考"
            elif stray is None:
                stray = i
            continue
        note.body.append(line)

    if stray is not None:
        result.errors.append(
            ImportFormatError(name, stray + 1, "text before the first note heading belongs to no note")
        )

    url_counts: dict[str, int] = {}
    for n in notes:
        try:
            item = _build(n, url_counts, notebook, name)
            if description:
                item.extra["notebook_description"] = " ".join(description)
            result.items.append(item)
        except ImportFormatError as exc:
            result.errors.append(exc)
        except Exception as exc:  # one odd note must not lose the whole file
            result.errors.append(
                ImportFormatError(name, n.heading_line + 1, f"internal parser error: {exc!r}")
            )
    return result


def looks_like(text: str) -> tuple[bool, str]:
    """Is this a notes file? Yes when it has level-1 headings outside code and no front matter
    or ``### NN`` post blocks (those belong to the blog and social parsers)."""
    norm = normalize_newlines(text)
    lines = norm.split("\n")
    first = next((line.strip() for line in lines if line.strip()), "")
    if first in ("---", "+++"):
        return False, "starts with front matter (a blog post)"
    mask = fence_mask(lines)
    h1 = sum(1 for i, line in enumerate(lines) if not mask[i] and _heading_text(line) is not None)
    posts = sum(1 for i, line in enumerate(lines) if not mask[i] and re.match(r"^###[ \t]+\d+[ \t]*$", line))
    if posts and posts >= h1:
        return False, f"{posts} '### NN' blocks (a social archive)"
    if h1 >= 2:
        return True, f"{h1} level-1 headings outside code"
    return False, f"only {h1} level-1 heading(s)"
