"""Parser for saved pages that arrived as plain text (copy-pasted, or scraped without HTML): one
item per file, with the title, the date and the article found by the text's shape.

What such pages look like, and how this parser answers:

* **Blog indexes.** A copied blog page often starts with its category and tag indexes: a short
  label line (``技术``, ``标签``, ``Tags:``) and then one very long line of every category or tag
  name separated by spaces, sometimes several such blocks, sometimes at the end, or between the
  title and the body. A *name run* is recognised by its shape alone, never by its words: many
  tokens, short on average, nearly all short, nearly all distinct, carrying words, and without
  sentence punctuation. An *index block* is a label line (or a ``Label:`` prefix on the same
  line) followed by name runs; unlabelled name runs count only when they follow such a block.
  Blocks are dropped only outside the article, before its first paragraph of prose or after
  its last one: a block inside the article may be the article's own list, and when unsure the
  text is kept. Dropped blocks are kept verbatim in ``extra["index_blocks"]``, never in tags.
* **Date.** The first short, non-prose line of the page head carrying a date:
  ``2023年05月20日``, ``2023-05-20``, ``2023/5/20``, ``2023.05.20``, ``May 20, 2023``,
  ``20 May 2023``. The line itself is kept in ``extra["date_line"]``.
* **Title.** The first line of the head that is neither the date line nor prose. A page that
  opens with prose has no title line: the title is its first sentence, marked
  ``extra["title_derived"]`` as extraction does for pages without a title.
* **Article.** Every other line, in order, blank lines between paragraphs kept.
* **Identity.** ``text:<sha1 of title, date and the article's head>``: the same page imported
  twice is one item; two pages sharing a title are not.
* **Bounds.** Only the first :data:`MAX_CHARS` characters are read (the cut is reported with its
  line); every step is one pass over the lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import ImportFormatError
from ..records import ItemRecord, ParseResult
from ..textutil import CJK_CHAR_RE, calendar_day
from .links import parse_link_line
from .social import dedupe, detect_language, headline, normalize_newlines, stable_id

FORMAT = "text"
MAX_CHARS = 2_000_000
"""Characters of a page read at most: far beyond any article (a long one is ~100,000)."""

# --- the shape of a name run (see the module doc). First set on index blocks we wrote; then made
# stricter where real text matched: an English paragraph and an unpunctuated English headline of the
# corpus pages (hence no punctuation, and 16 Latin names), two Chinese sentences with spaced English
# names in the social archive (hence CJK neighbours). The 87 digests, never looked at while tuning,
# have no line that matches (tests/test_text_import.py checks all of the corpus's Markdown). ---
MIN_NAMES = 8  # a label followed by a handful of words is as likely a sentence as an index
# Chinese prose puts no spaces between words, so eight spaced CJK names are a list; English puts
# spaces everywhere, and an unpunctuated headline runs to a dozen words or so.
MIN_LATIN_NAMES = 16
MIN_CJK_SHARE = 1 / 3
MIN_CJK_NEIGHBOURS = 1 / 4
MAX_MEAN_NAME = 8.0  # mean characters per name: category and tag names are short
SHORT_NAME = 12
MIN_SHORT_SHARE = 0.9
NAMES_PER_PUNCTUATION = 50  # one stray "Inc." in fifty names is still an index; a sentence is not
MIN_WORDY_SHARE = 0.95  # "( ) { } = +" are code, not names
MIN_DISTINCT_SHARE = 0.9  # an index names each thing once; prose repeats its little words
# --- a label line ---
MAX_LABEL_CHARS = 16
MAX_LABEL_TOKENS = 2
# --- prose and the page head ---
MIN_PROSE_CHARS = 40
MAX_DATE_LINE = 80
MAX_TITLE_CHARS = 150
HEAD_LINES = 12  # content lines looked at for the title and date before giving up

_CJK_SENTENCE = "。！？；，、：…"
_SENTENCE_RE = re.compile(rf"[{_CJK_SENTENCE}]|[.!?;,:](?=\s|$|[\"')\]”’])")
_WORDY_RE = re.compile(r"\w")
# Text copied from a page holds bare URLs, not Markdown. (social.find_links also parses Markdown
# links, and its link pattern backtracks quadratically on a long line of "[a](" fragments.)
_URL_RE = re.compile(r"https?://[^\s<>\"'，。；！？、）】」》]+")
# The Markdown helpers used on the head only (title, language) see at most this much text.
SAMPLE_CHARS = 4000
_HEADING_MARK_RE = re.compile(r"^#{1,6}\s+")
_LABEL_PREFIX_RE = re.compile(r"^\s*(\S{1,16}?)\s*[:：]\s*(.+)$")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(?P<mon>(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?)"
_DATE_RES = (
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日?"),
    re.compile(r"(?<![\d.])(?P<y>(?:19|20)\d{2})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?![\d])"),
    re.compile(rf"(?<![a-z]){_MONTH}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>(?:19|20)\d{{2}})(?!\d)", re.I),
    re.compile(rf"(?<!\d)(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH}\s+(?P<y>(?:19|20)\d{{2}})(?!\d)", re.I),
)


@dataclass
class _Line:
    number: int  # 1-based, as an editor counts
    text: str


def _tokens_are_names(tokens: Sequence[str]) -> bool:
    """The shape test of a name run (see the module docstring), on a line's tokens."""
    count = len(tokens)
    if count < MIN_NAMES:
        return False
    is_cjk = [CJK_CHAR_RE.search(token) is not None for token in tokens]
    cjk = sum(is_cjk)
    if cjk >= MIN_CJK_SHARE * count:
        # Chinese prose spaces only around Latin words ("由 DeepMind 的 CEO 撰写"), so two CJK tokens
        # side by side are what a list of Chinese names has and a sentence has not.
        side_by_side = sum(1 for a, b in zip(is_cjk, is_cjk[1:], strict=False) if a and b)
        if side_by_side < MIN_CJK_NEIGHBOURS * cjk:
            return False
    elif count < MIN_LATIN_NAMES:
        return False
    lengths = [len(token) for token in tokens]
    if sum(lengths) / count > MAX_MEAN_NAME:
        return False
    if sum(1 for n in lengths if n <= SHORT_NAME) < MIN_SHORT_SHARE * count:
        return False
    if sum(1 for token in tokens if _WORDY_RE.search(token)) < MIN_WORDY_SHARE * count:
        return False
    punctuated = sum(1 for token in tokens if _SENTENCE_RE.search(token + " "))
    if punctuated > count // NAMES_PER_PUNCTUATION:
        return False
    return len(set(tokens)) >= MIN_DISTINCT_SHARE * count


def is_name_run(line: str) -> bool:
    """Is this line a run of short space-separated names (a category or tag index)?"""
    return _tokens_are_names(line.split())


def _label_of(line: str) -> str | None:
    """The label when ``line`` is a label line (``技术``, ``Tags:``), else None."""
    text = line.strip().rstrip(":：").strip()
    if not text or len(text) > MAX_LABEL_CHARS or len(text.split()) > MAX_LABEL_TOKENS:
        return None
    if _SENTENCE_RE.search(text + " ") or not _WORDY_RE.search(text) or find_date(text) is not None:
        return None
    return text


def _inline_index(line: str) -> str | None:
    """The label of a ``Label: name name name …`` line, else None."""
    m = _LABEL_PREFIX_RE.match(line)
    if m and _label_of(m.group(1)) is not None and is_name_run(m.group(2)):
        return m.group(1)
    return None


def is_prose(line: str) -> bool:
    """A line of article text: long enough and punctuated like sentences, and not a name run."""
    text = line.strip()
    # A CJK character carries about what a short Latin word does: count it twice.
    if len(text) + len(CJK_CHAR_RE.findall(text[:MIN_PROSE_CHARS])) < MIN_PROSE_CHARS:
        return False
    if not _SENTENCE_RE.search(text):
        return False
    return not is_name_run(text)


def find_date(line: str) -> datetime | None:
    """The first date written in ``line`` (see the module docstring for the forms), or None."""
    best: tuple[int, datetime] | None = None
    for pattern in _DATE_RES:
        m = pattern.search(line)
        if m is None or (best is not None and m.start() >= best[0]):
            continue
        month = m.group("mon")[:3].lower() if "mon" in m.groupdict() else None
        found = calendar_day(m.group("y"), _MONTHS.index(month) + 1 if month else m.group("m"), m.group("d"))
        if found is not None:
            best = (m.start(), found)
    return best[1] if best else None


# --- index blocks ------------------------------------------------------------------------------


@dataclass
class _Block:
    first: int  # index into the content lines
    last: int
    label: str | None
    label_line: bool = False  # the label stands on its own line (``技术``), not before names on one


def _index_blocks(lines: Sequence[_Line]) -> list[_Block]:
    """Every index block among non-blank ``lines``, in order (one pass)."""
    blocks: list[_Block] = []
    runs = [is_name_run(line.text) for line in lines]
    i = 0
    while i < len(lines):
        inline = _inline_index(lines[i].text)
        label = None if inline else _label_of(lines[i].text)
        if inline is not None:
            start, end = i, i
        elif label is not None and i + 1 < len(lines) and runs[i + 1]:
            start, end = i, i + 1
        elif runs[i] and blocks and blocks[-1].last == i - 1:
            blocks[-1].last = i  # an unlabelled run continues the block right before it
            i += 1
            continue
        else:
            i += 1
            continue
        while end + 1 < len(lines) and runs[end + 1]:
            end += 1
        blocks.append(_Block(start, end, inline or label, label_line=inline is None))
        i = end + 1
    return blocks


def _outside_article(blocks: list[_Block], prose: Sequence[bool]) -> list[_Block]:
    """The blocks before the first prose line or after the last one: only those are dropped."""
    if not any(prose):
        return blocks
    first = prose.index(True)
    last = len(prose) - 1 - prose[::-1].index(True)
    return [b for b in blocks if b.last < first or b.first > last]


# --- the parser ---------------------------------------------------------------------------------


def parse_text_page(text: str, *, file: str | None = None) -> ParseResult:
    """Parse one plain-text page into a single ``kind="article"`` item, already extracted."""
    name = file or "<text>"
    result = ParseResult(format=FORMAT)
    try:
        item = _parse(text, name, result.errors)
    except ImportFormatError as exc:
        result.errors.append(exc)
    except Exception as exc:  # the contract: callers only ever see ImportFormatError
        result.errors.append(ImportFormatError(name, None, f"internal parser error: {exc!r}"))
    else:
        result.items.append(item)
    return result


def _read_lines(text: str, name: str, errors: list[Exception]) -> list[str]:
    if len(text) > MAX_CHARS:
        cut = text.rfind("\n", 0, MAX_CHARS)
        cut = cut if cut > 0 else MAX_CHARS
        line = text.count("\n", 0, cut) + 1
        errors.append(ImportFormatError(name, line, f"the page is longer than {MAX_CHARS:,} characters; "
                                        f"only the text before line {line} was imported"))
        text = text[:cut]
    lines = normalize_newlines(text).split("\n")
    for number, line in enumerate(lines, start=1):
        if "\x00" in line:
            lines[number - 1] = line.replace("\x00", "")
            errors.append(ImportFormatError(name, number, "a NUL character: dropped"))
    return lines


def _parse(text: str, name: str, errors: list[Exception]) -> ItemRecord:
    raw = _read_lines(text, name, errors)
    content = [_Line(n, line.rstrip()) for n, line in enumerate(raw, start=1) if line.strip()]
    if not content:
        raise ImportFormatError(name, None, "the page holds no text")
    blocks = _index_blocks(content)
    in_block = {i for block in blocks for i in range(block.first, block.last + 1)}
    prose = [i not in in_block and is_prose(line.text) for i, line in enumerate(content)]
    # A title may read like a sentence ("学会了这 10 个技巧!"): an index right after it is still
    # outside the article.
    opening = next((i for i in range(len(content)) if i not in in_block), None)
    article = list(prose)
    if opening is not None and _title_like(content[opening].text):
        article[opening] = False
    dropped = _outside_article(blocks, article)
    gone = {i for block in dropped for i in range(block.first, block.last + 1)}
    kept = [i for i in range(len(content)) if i not in gone]
    if not kept:
        raise ImportFormatError(name, content[0].number, "the page holds only category or tag indexes, no article")

    date_at, published, title_at = _head(content, prose, kept)
    if title_at is None and date_at is not None:
        title_at = _title_taken_for_a_label(dropped, kept, date_at)
    # A page of one line (or a title and a date only) is all article: an item is never left empty.
    if not [i for i in kept if i not in (date_at, title_at)]:
        title_at = None if title_at in kept else title_at
    if not [i for i in kept if i not in (date_at, title_at)]:
        date_at, published = None, None
    used = {content[i].number for i in (date_at, title_at) if i is not None}
    # The body keeps the original lines (blank ones included) between the kept content lines.
    removed = {content[i].number for i in gone} | used
    body = _body(raw, removed)
    title = _HEADING_MARK_RE.sub("", content[title_at].text.strip()) if title_at is not None else None
    extra: dict[str, object] = {"format": FORMAT}
    if title is None:
        title = headline(body[:SAMPLE_CHARS]) or content[kept[0]].text.strip()[:80]
        extra["title_derived"] = True
    if date_at is not None:
        extra["date_line"] = content[date_at].text.strip()
    if dropped:
        extra["index_blocks"] = [
            {"line": content[b.first].number, "label": b.label,
             "text": "\n".join(content[i].text for i in range(b.first, b.last + 1))}
            for b in dropped
        ]
    head = " ".join(body[:500].split())
    return ItemRecord(
        url=stable_id("text", " ".join(title.split()).casefold(), published.date().isoformat() if published else "",
                      head),
        kind="article",
        title=title,
        published_at=published,
        language=detect_language(f"{title}\n{body[:SAMPLE_CHARS]}"),
        text=body,
        links=page_links(body),
        extra=extra,
        line=content[kept[0]].number,
    )


def _head(content: Sequence[_Line], prose: Sequence[bool], kept: Sequence[int]) -> tuple[
        int | None, datetime | None, int | None]:
    """(date line, its date, title line) among the first kept lines before the article's prose.

    The first line may read like a sentence ("学会了这 10 个技巧!") and still be the title: it is,
    when a date line follows it in the head; a page that opens with prose has no title line."""
    head: list[int] = []
    for i in kept[:HEAD_LINES]:
        if prose[i] and head:
            break
        head.append(i)
    date_at, published = None, None
    for i in head:
        line = content[i].text
        if len(line.strip()) <= MAX_DATE_LINE and not prose[i] and (found := find_date(line)) is not None:
            date_at, published = i, found
            break
    titles = [i for i in head if i != date_at and _title_like(content[i].text)]
    if date_at is not None and titles and titles[0] < date_at:
        title_at: int | None = titles[0]
    else:
        title_at = next((i for i in titles if not prose[i]), None)
    if title_at is not None and title_at == kept[-1] and len(kept) > 1:
        title_at = None  # the last line of a page is never its title
    return date_at, published, title_at


def page_links(text: str) -> list[str]:
    """The http(s) URLs written in plain text, in order, once each, without the punctuation that
    ends the sentence around them."""
    return dedupe([url.rstrip(".,;:!?)]'\"") for url in _URL_RE.findall(text)])


def _title_taken_for_a_label(dropped: list[_Block], kept: Sequence[int], date_at: int) -> int | None:
    """A short title right above an unlabelled tag line ("Go 并发" then the tags) reads as that
    index's label. When nothing but index blocks stands before the date line, the label line of
    the last of them is the title: the block gives it back (its names stay dropped)."""
    if any(i < date_at for i in kept):
        return None
    before = [b for b in dropped if b.last < date_at]
    if not before or not before[-1].label_line:
        return None
    block = before[-1]
    title_at = block.first
    block.first, block.label, block.label_line = block.first + 1, None, False
    return title_at


def _title_like(line: str) -> bool:
    text = line.strip()
    return (0 < len(text) <= MAX_TITLE_CHARS and _WORDY_RE.search(text) is not None
            and parse_link_line(text) is None)


def _body(raw: Sequence[str], removed: set[int]) -> str:
    lines: list[str] = []
    for number, line in enumerate(raw, start=1):
        if number in removed:
            if lines and lines[-1]:
                lines.append("")  # what stood between two paragraphs still separates them
            continue
        lines.append(line.rstrip())
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


# --- detection ----------------------------------------------------------------------------------

_SAMPLE = 65536


def looks_like(text: str) -> tuple[bool, str]:
    """Is this a plain-text page rather than a list of links? Yes when most of its lines are not
    links and it holds prose (sentence-punctuated lines) or a category/tag index."""
    # '#' lines are comments in a links file: they say nothing about what the file is.
    lines = [line.strip() for line in normalize_newlines(text[:_SAMPLE]).split("\n")
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return False, "empty"
    links = sum(1 for line in lines if parse_link_line(line) is not None)
    if links * 2 >= len(lines):
        return False, f"{links} of {len(lines)} lines are links"
    prose = sum(1 for line in lines if is_prose(line))
    indexes = len(_index_blocks([_Line(n, line) for n, line in enumerate(lines, start=1)]))
    if prose == 0 and indexes == 0:
        return False, "no prose and no category or tag index"
    what = f"{prose} lines of prose" + (f", {indexes} category/tag index block(s)" if indexes else "")
    return True, f"plain text: {what}, {links} link line(s)"
