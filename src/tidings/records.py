"""Plain dataclasses that flow between stages. Parsers and stages return these; only the store
and the pipeline turn them into database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class ItemRecord:
    """One thing a source produced: an article link, a social post, a note or a blog post."""

    url: str | None
    kind: str = "article"  # article | post | note | blog
    title: str | None = None
    author: str | None = None
    author_handle: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    text: str | None = None
    summary: str | None = None
    summary_origin: str | None = None  # human | extractive | llm:<model>
    section: str | None = None
    tags: list[str] = field(default_factory=list)
    category: str | None = None
    note: str | None = None  # the user's own thoughts (个人思考)
    links: list[str] = field(default_factory=list)  # outgoing links found in the body
    guid: str | None = None  # feed entry id
    extra: dict[str, Any] = field(default_factory=dict)
    line: int | None = None  # where in the source file it started, for messages


@dataclass(frozen=True)
class ItemView:
    """One stored item as every interface shows it. ``tidings items --json``, the web's pages, the
    static site and search results all derive from this one shape (``Item.view()`` makes it), so a
    field means the same everywhere."""

    id: int
    url: str
    """The canonical URL, or a stable ``post:``/``note:``/``blog:`` identifier."""
    link: str
    """The URL to open: the first one the item was seen under (canonicalization may drop what a
    server needs)."""
    urls: list[str]
    title: str | None
    title_derived: bool
    """The page named no title: this one is its first heading or sentence."""
    summary: str | None
    summary_origin: str | None
    section: str | None
    section_confidence: float | None
    section_origin: str | None
    tags: list[str]
    kind: str
    author: str | None
    author_handle: str | None
    category: str | None
    note: str | None
    links: list[str]
    language: str | None
    published_at: datetime | None
    seen_at: datetime | None
    status: str
    error: str | None
    error_reason: str | None
    text: str | None

    @property
    def byline(self) -> str | None:
        """``Name @handle``, either part when only one is known."""
        parts = [self.author, f"@{self.author_handle}" if self.author_handle else None]
        return " ".join(p for p in parts if p) or None

    def to_json(self) -> dict[str, Any]:
        """The ``items --json`` object: every field, dates as ISO 8601."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("published_at", "seen_at"):
            moment = data[name]
            data[name] = moment.isoformat() if moment else None
        return data


@dataclass
class Extracted:
    """What extraction found in one page."""

    title: str | None
    text: str
    author: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    site_name: str | None = None


@dataclass
class ParseResult:
    """What an importer's parser returns: the valid items, plus one error per rejected part."""

    items: list[ItemRecord] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)  # ImportFormatError instances
    format: str | None = None


# --- the digest document model ---------------------------------------------------------------
#
# An imported digest is a list of blocks whose texts concatenate to its body exactly; entries keep
# their source text (``verbatim``) and are rendered from their parts only once edited.

from datetime import date  # noqa: E402  (appended section: the file's top is not ours to edit)

_MD_ESCAPABLE = r"""!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"""


def _md_unescape(text: str) -> str:
    """Undo CommonMark backslash escapes (only ASCII punctuation can be escaped)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _MD_ESCAPABLE:
            out.append(text[i + 1])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _link_destination(url_raw: str) -> str | None:
    """The URL of a link destination as written: without ``<>`` and without a ``"title"`` attribute."""
    text = url_raw.strip()
    if text.startswith("<"):
        end = text.find(">")
        text = text[1:end] if end > 0 else text[1:]
    else:
        text = text.split(None, 1)[0] if text else ""
    return text or None


@dataclass
class Cover:
    image: str
    alt: str
    label: str  # "封面图" or "题图", verbatim
    caption: str


@dataclass
class DigestEntry:
    """One listed link (or, in the old marker-style digests, one marker-headed note)."""

    url_raw: str | None  # exactly as written: fragment, trailing slash, ` "title attr"` kept
    title_raw: str | None  # the link text exactly as written, 《》 and escapes included
    separator: str | None  # "。", " 。", "---", "\n\n" ... exactly as written between link and summary
    summary: str | None  # the human summary / prose, as written
    section: str | None  # the ``##`` section it stands under (None in marker-style digests)
    marker: str | None = None  # "📒" / "⭐️" / "🌟" / "🌛" on marker-style lines
    verbatim: str | None = None  # exact source text of this entry; None for new entries
    edited: bool = False  # once the user edits it, render from parts instead of verbatim
    kept: bool = True
    see_also: tuple[tuple[str, str], ...] = ()  # (label, URL) of the story's other sources ([publish] see_also)

    @property
    def url(self) -> str | None:
        return _link_destination(self.url_raw) if self.url_raw else None

    @property
    def title(self) -> str | None:
        """The title as a reader sees it: no ``《》`` wrapper, no ``# `` prefix, escapes undone."""
        if self.title_raw is None:
            return None
        text = self.title_raw.strip()
        if text.startswith("#"):
            stripped = text.lstrip("#")
            if stripped[:1].isspace():
                text = stripped.strip()
        text = _md_unescape(text)
        # Only a wrapper around the whole title goes: 《A》与《B》 keeps both pairs.
        if len(text) >= 2 and text[0] == "《" and text[-1] == "》" and "》" not in text[1:-1]:
            text = text[1:-1].strip()
        return text

    @property
    def prose(self) -> str | None:
        """The summary without code, admonition fences, HTML/MDX, images and tables.

        Marker-style notes carry whole code samples in their summary; this is the part worth
        indexing or showing as a one-paragraph summary."""
        if not self.summary:
            return None
        kept_lines: list[str] = []
        fence: str | None = None
        for line in self.summary.split("\n"):
            stripped = line.strip()
            if fence is not None:
                if stripped.startswith(fence):
                    fence = None
                continue
            if stripped.startswith(("```", "~~~")):
                fence = stripped[:3]
                continue
            if stripped.startswith((":::", "<", "![", "|", "import ", "export ")):
                continue
            kept_lines.append(line.rstrip())
        text = "\n".join(kept_lines).strip()
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        return text or None


@dataclass
class RawBlock:
    """Source text that is not an entry, kept verbatim."""

    text: str
    section: str | None = None
    role: str = "text"  # blank | cover | heading | text | code | comment | admonition | eof


@dataclass
class DigestDoc:
    meta: dict[str, Any]  # every front-matter key, parsed (slug, title, authors, tags, others)
    front_matter_raw: str | None  # exact text incl. the --- lines, None for new digests
    cover: Cover | None
    sections: list[str]  # in order of appearance
    blocks: list[RawBlock | DigestEntry]  # concatenating the texts gives back the body exactly
    week: date | None = None
    week_guessed: bool = False

    @property
    def entries(self) -> list[DigestEntry]:
        return [block for block in self.blocks if isinstance(block, DigestEntry)]
