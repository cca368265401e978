"""Rendering digests: an imported one back to its exact source, a new one through a template.

The other formats (Hugo, Jekyll, Markdown, HTML) and the one renderer registry, ``RENDERERS``,
are in :mod:`tidings.publish.formats`."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined
from jinja2 import TemplateError as JinjaTemplateError

from ..config import Config, DigestConfig
from ..errors import ConfigError
from ..records import Cover, DigestDoc, DigestEntry, RawBlock
from ..sources.digest import BOUNDARY_ROLES, parse_head, trailing_ws

if TYPE_CHECKING:
    from ..store import Digest

TEMPLATE_NAME = "docusaurus.md.j2"
_FRONT_MATTER_ORDER = ("slug", "title", "authors", "tags")
_BLANK_END_RE = re.compile(r"(?:\A|\n)[ \t\r]*\n\Z")


# --- Markdown pieces -----------------------------------------------------------------------------


# Characters that open or close inline syntax anywhere in a line. CommonMark: code spans,
# links and images (``[``, ``]``), autolinks and raw HTML (``<``); MDX on top: JSX (``<``) and
# JavaScript expressions (``{``, ``}``). All are ASCII punctuation, so a backslash before each one
# is a character escape in CommonMark, GFM and MDX alike and renders as the plain character.
_INLINE_SPECIAL_RE = re.compile(r"[`{}\[\]<]")
# A backslash is literal unless it escapes ASCII punctuation (or ends the text, where it could
# escape what the template puts next): only those need doubling, so ``\d`` stays readable.
_ESCAPING_BACKSLASH_RE = re.compile(r"\\(?=[!-/:-@\[-`{-~]|\Z)")
# Emphasis (``*``, ``_``) and GFM strikethrough (``~``) delimiter runs. A run with whitespace on
# both sides can neither open nor close (CommonMark's flanking rules, which MDX and GFM share), nor
# can an ``_`` run inside a word (``snake_case``): those stay as they are, every other is escaped.
_DELIMITER_RUN_RE = re.compile(r"\*+|_+|~+")
_WORD_CHAR_RE = re.compile(r"[^\W_]")
# ``-->`` ends a comment; escaped, ``<!--truncate-->`` and ``<!--more-->`` (which Docusaurus, Hugo
# and Jekyll look for in the raw source to cut the excerpt) are no longer there to find.
_COMMENT_END_RE = re.compile(r"(?<=--)>")
# ``&`` only matters where it would start a character reference (``&amp;``, ``&#60;``).
_ENTITY_START_RE = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{0,31};)")
# Block syntax that only counts at the start of a line: ATX headings, block quotes, list items,
# thematic breaks and setext underlines, Docusaurus directives (``:::tip``, ``::leaf``), ordered
# lists (``1.``). ``*``, ``_``, ``~`` and backticks there are escaped already. A ``:name`` inside a
# line is a text directive to remark-directive, but with ``[`` and ``{`` escaped it can only be the
# bare kind (``node:fs``), which Docusaurus turns back into its text: it needs no escape.
_LINE_START_RE = re.compile(r"\A([#>+=:-]|[0-9]{1,9}(?=[.)]))")
# MDX reads ``import``/``export`` at the start of a line as JavaScript (ESM); letters cannot be
# backslash-escaped, but a character reference renders as the letter in CommonMark and MDX.
_ESM_START_RE = re.compile(r"\A(?:import|export)(?![A-Za-z0-9_$])")
# Line breaks of CommonMark and of the YAML/JS readers downstream, with the space around them.
_LINE_BREAK_RE = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]\s*")
# Link destinations that run script when clicked.
_SCRIPT_SCHEME_RE = re.compile(r"^\s*(?:javascript|vbscript|data):", re.IGNORECASE)


def _is_space(char: str) -> bool:
    # Whitespace to CommonMark and to micromark (JS ``\s``) alike: not str.isspace, which also
    # counts control characters such as U+001F that both read as ordinary characters.
    return char in (" ", "\t") or (char != "" and unicodedata.category(char) == "Zs")


def _escape_run(match: re.Match[str]) -> str:
    run, text = match.group(), match.string
    before = text[match.start() - 1] if match.start() else ""
    after = text[match.end()] if match.end() < len(text) else ""
    if _is_space(before) and _is_space(after):
        return run
    if run[0] == "_" and _WORD_CHAR_RE.match(before) and _WORD_CHAR_RE.match(after):
        return run
    return "".join("\\" + char for char in run)


def escape_markdown(text: str, *, line_start: bool = True) -> str:
    """Plain text (a fetched title, an extracted or LLM summary) as Markdown on one line that
    CommonMark, GFM and MDX (Docusaurus 3 compiles ``.md`` as MDX) all render as exactly that text:
    no emphasis, links, HTML, JSX or ``{expressions}`` from whatever the page or the model wrote.

    Line breaks become spaces (an entry is one line; a blank line would end its paragraph).
    ``line_start``: the text may start a line (a title without a link does), so block syntax at
    its start is escaped too; link text and a summary after ``。`` pass False. Characters that
    cannot start syntax where they stand are left alone, so the Markdown stays readable."""
    text = _LINE_BREAK_RE.sub(" ", text).strip()
    text = _ESCAPING_BACKSLASH_RE.sub(r"\\\\", text)
    text = _DELIMITER_RUN_RE.sub(_escape_run, text)
    text = _INLINE_SPECIAL_RE.sub(lambda m: "\\" + m.group(), text)
    text = _ENTITY_START_RE.sub(r"\\&", text)
    text = _COMMENT_END_RE.sub(r"\\>", text)
    if not line_start:
        return text
    if _ESM_START_RE.match(text):
        return f"&#{ord(text[0])};{text[1:]}"
    match = _LINE_START_RE.match(text)
    if match is None:
        return text
    if match.group(1).isdigit():  # "1. " / "1) " starts an ordered list: escape the dot
        end = match.end()
        return text[:end] + "\\" + text[end:]
    return "\\" + text


def _keep_one_link(text: str) -> str:
    """The curator's own link text (an edited imported entry) kept as one link: brackets escaped,
    and backslashes that would escape; the rest is the curator's Markdown and stays."""
    text = re.sub(r"\\(?=[!-/:-@\[-`{-~]|\Z)", r"\\\\", text)
    return text.replace("[", "\\[").replace("]", "\\]")


def link_destination(url: str) -> str:
    """A plain URL as a link destination: in ``<>`` when spaces or unbalanced parentheses
    would end it early. Line breaks and other control characters, which no destination may hold
    (the link would fall apart into text), are percent-encoded."""
    url = re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), url)
    if re.search(r"[\s<>]", url) or url.count("(") != url.count(")"):
        return "<" + url.replace("<", "%3C").replace(">", "%3E") + ">"
    return url


def _head_style(entry: DigestEntry) -> tuple[str, bool]:
    """The prefix an entry's line starts with and whether its title is a link, from its source."""
    if entry.verbatim is None:
        return (f"{entry.marker} " if entry.marker else ""), entry.url_raw is not None
    first = entry.verbatim.split("\n", 1)[0]
    head = parse_head(first, plain_title=entry.marker is not None)
    if head is None:
        return (f"{entry.marker} " if entry.marker else ""), entry.url_raw is not None
    # The ``[[《…》](…)`` typo is not carried into a re-rendered line.
    return head.prefix.rstrip("["), head.url_raw is not None


def _plain_title(title_raw: str | None) -> str:
    """A new entry's title as the page gave it. Not ``DigestEntry.title``: that undoes Markdown
    escapes, and a fetched title is not Markdown (``Regex \\d and \\.`` keeps both backslashes).
    Only a 《》 wrapper around the whole title goes, since the one-line style adds its own."""
    text = (title_raw or "").strip()
    if len(text) >= 2 and text[0] == "《" and text[-1] == "》" and "》" not in text[1:-1]:
        text = text[1:-1].strip()
    return text


def entry_markdown(entry: DigestEntry) -> str:
    """An entry's text rebuilt from its parts, without the blank line after it.

    ``[《title》](url)。summary`` with a summary, ``[title](url)`` without. A summary on the lines
    below the link (marker notes, nested bullets) keeps the line break it had, and such titles
    keep their plain look: the 《》 belong to the one-line style.

    An imported entry's parts are the curator's Markdown and stay Markdown; a new entry's are
    plain text from a fetched page, an extractor or an LLM, and go through ``escape_markdown``,
    so nothing in them becomes markup, HTML, JSX or script in any output format."""
    prefix, linked = _head_style(entry)
    curators = entry.verbatim is not None
    title = (entry.title or "") if curators else _plain_title(entry.title_raw)
    summary = (entry.summary or "").rstrip()
    multiline = bool(entry.separator and "\n" in entry.separator)
    if not curators:
        summary = escape_markdown(summary, line_start=multiline)  # on a line of its own, or after "。"
    url = entry.url_raw.strip() if entry.url_raw else None
    if not curators and url and _SCRIPT_SCHEME_RE.match(url):
        url = None  # a javascript: link from a feed is shown as its title, not made clickable
    if linked and url:
        text = f"《{title}》" if summary and not multiline else title
        # A parsed destination is Markdown already (title attribute and all); a new one is a URL.
        destination = url if curators else link_destination(url)
        head = f"[{_keep_one_link(text) if curators else escape_markdown(text, line_start=False)}]({destination})"
    else:
        # A marker note headed by plain text: its URL (a "> https://…" line) is in its summary.
        head = (entry.title_raw or "").strip() if curators else escape_markdown(title)
    if not summary:
        return prefix + head
    separator = entry.separator if multiline and entry.separator else "。"
    return prefix + head + separator + summary


def see_also_markdown(entry: DigestEntry) -> str:
    """The "另见" paragraph under a new entry: the other sources of its story, as links (labels
    escaped like any fetched text), or "" when there are none."""
    if not entry.see_also:
        return ""
    links = [
        f"[{escape_markdown(label, line_start=False)}]({link_destination(url)})"
        for label, url in entry.see_also
        if not _SCRIPT_SCHEME_RE.match(url)
    ]
    return "\n\n另见：" + "、".join(links) if links else ""


def _entry_text(entry: DigestEntry) -> str:
    if entry.verbatim is not None and not entry.edited:
        return entry.verbatim
    if entry.verbatim is not None:
        return entry_markdown(entry) + trailing_ws(entry.verbatim)
    return entry_markdown(entry) + "\n\n"


def _is_bullet(entry: DigestEntry) -> bool:
    return _head_style(entry)[0].startswith(("- ", "* "))


# --- imported digests ----------------------------------------------------------------------------


def _omitted_headings(blocks: list[RawBlock | DigestEntry]) -> set[int]:
    """Headings whose every entry was dropped and that hold nothing else."""
    omitted: set[int] = set()
    heading: int | None = None
    dropped = 0
    other = False

    def close() -> None:
        if heading is not None and dropped and not other:
            omitted.add(heading)

    for index, block in enumerate(blocks):
        if isinstance(block, RawBlock) and block.role == "heading":
            close()
            heading, dropped, other = index, 0, False
        elif isinstance(block, DigestEntry):
            if block.kept:
                other = True
            else:
                dropped += 1
        elif block.role != "eof" and block.text.strip():
            other = True
    close()
    return omitted


def _render_body(doc: DigestDoc) -> str:
    """The blocks joined, repairing the seams that drops, moves and additions leave.

    Every repair is a no-op on a document as parsed: its blocks join back to the source."""
    out = ""
    omitted = _omitted_headings(doc.blocks)
    previous: RawBlock | DigestEntry | None = None
    eof = ""
    dropped_any = False
    for index, block in enumerate(doc.blocks):
        if isinstance(block, RawBlock) and block.role == "eof":
            eof += block.text
            continue
        dropped = index in omitted or (isinstance(block, DigestEntry) and not block.kept)
        if dropped:
            dropped_any = True
            # The gap after the dropped block survives when it is the wider one (the blank line
            # that closes a list, say); the start of the body keeps its own.
            text = block.text if isinstance(block, RawBlock) else (block.verbatim or "")
            gap, current = trailing_ws(text), trailing_ws(out)
            if out.strip() and gap.count("\n") > current.count("\n"):
                out = out[: len(out) - len(current)] + gap
            continue
        text = _entry_text(block) if isinstance(block, DigestEntry) else block.text
        if out and not out.endswith("\n"):
            # Only a block that ended the file lacks a line end; something now follows it.
            both_bullets = (
                isinstance(block, DigestEntry)
                and isinstance(previous, DigestEntry)
                and _is_bullet(block)
                and _is_bullet(previous)
            )
            out += "\n" if both_bullets else "\n\n"
        if (
            isinstance(block, DigestEntry)
            and not _is_bullet(block)
            and previous is not None
            and not (isinstance(previous, RawBlock) and previous.role in BOUNDARY_ROLES)
            and out.strip()
            and not _BLANK_END_RE.search(out)
        ):
            # Without a blank line the entry would continue the paragraph above it. The parser
            # starts such entries only after a blank line or a boundary block, so this never
            # fires on a document as parsed.
            out += "\n"
        out += text
        previous = block
    if eof and not (dropped_any and not out.strip()):
        # (Once everything is dropped, the final line end belongs to the front matter.)
        out = out.rstrip(" \t\r\n") + eof
    elif not eof and isinstance(previous, DigestEntry) and previous.verbatim is None:
        out = out.rstrip(" \t\r\n") + "\n"  # a new entry that ends the file ends its line only
    return out


# --- new digests ---------------------------------------------------------------------------------


@dataclass
class _EntryView:
    title: str | None
    url: str | None
    summary: str | None
    marker: str | None
    section: str | None
    markdown: str


@dataclass
class _SectionView:
    name: str | None
    entries: list[_EntryView]


# Plain scalars that YAML 1.2 (js-yaml, which reads Docusaurus front matter) takes for a number
# though PyYAML (YAML 1.1) reads them as strings: ``1e3``, ``0o17``.
_YAML12_NUMBER_RE = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
# Characters JSON leaves raw but YAML reads as a line break or refuses in a document.
_YAML_RAW_UNSAFE_RE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def yaml_value(value: Any, *, flow: bool = False) -> str:
    """A front-matter value on one line, plain when YAML (1.1 and 1.2) reads it back unchanged,
    else double-quoted with every line break and control character escaped."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v, flow=True) for v in value) + "]"
    if isinstance(value, str):
        try:
            plain_ok = (yaml.safe_load(f"[{value}]") == [value]) if flow else (yaml.safe_load(value) == value)
        except yaml.YAMLError:
            plain_ok = False
        plain_ok = plain_ok and not _YAML12_NUMBER_RE.fullmatch(value) and not _YAML_RAW_UNSAFE_RE.search(value)
        if plain_ok and value == value.strip() and "\n" not in value and value:
            return value
        # A JSON string is a YAML double-quoted one, once the characters JSON leaves raw are escaped.
        quoted = json.dumps(value, ensure_ascii=False)
        return _YAML_RAW_UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _front_matter(meta: dict[str, Any]) -> list[tuple[str, str]]:
    keys = [k for k in _FRONT_MATTER_ORDER if k in meta] + [k for k in meta if k not in _FRONT_MATTER_ORDER]
    return [(key, yaml_value(meta[key])) for key in keys]


def _section_views(doc: DigestDoc) -> list[_SectionView]:
    entries = [b for b in doc.blocks if isinstance(b, DigestEntry) and b.kept]
    order: list[str | None] = [None, *doc.sections]
    for entry in entries:
        if entry.section not in order:
            order.append(entry.section)
    views = []
    for name in order:
        members = [
            _EntryView(e.title, e.url, e.summary, e.marker, e.section, entry_markdown(e) + see_also_markdown(e))
            for e in entries
            if e.section == name
        ]
        if members:
            views.append(_SectionView(name, members))
    return views


def _environment(template_dir: str | Path | None) -> Environment:
    loaders: list[Any] = []
    if template_dir is not None:
        path = Path(template_dir).expanduser()
        if not path.is_dir():
            raise ConfigError(f"digest.template_dir: not a directory: {path}")
        loaders.append(FileSystemLoader(str(path)))
    loaders.append(PackageLoader("tidings", "templates"))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=False,  # Markdown, not HTML: entry.markdown is escaped already (escape_markdown)
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )
    # A template of one's own that shows entry.title or entry.summary (plain text) writes
    # ``{{ entry.title | md }}`` to get them as safely as entry.markdown has them.
    env.filters["md"] = escape_markdown
    return env


def _render_new(doc: DigestDoc, template_dir: str | Path | None) -> str:
    try:
        template = _environment(template_dir).get_template(TEMPLATE_NAME)
        return template.render(
            meta=doc.meta,
            front_matter=_front_matter(doc.meta),
            cover=doc.cover,
            sections=_section_views(doc),
            week=doc.week,
        )
    except JinjaTemplateError as exc:
        raise ConfigError(f"digest template {TEMPLATE_NAME}: {exc}") from exc


def render_docusaurus(doc: DigestDoc, template_dir: str | Path | None = None) -> str:
    """The digest as a Docusaurus ``blog/<date>/index.md``.

    An imported digest (``front_matter_raw`` set) renders from its blocks, entries verbatim
    unless edited, dropped ones left out; a new one goes through ``docusaurus.md.j2`` from
    ``template_dir`` if it has one, else the built-in template."""
    if doc.front_matter_raw is not None:
        return doc.front_matter_raw + _render_body(doc)
    return _render_new(doc, template_dir)


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        raise ConfigError(f"digest: unknown placeholder {{{key}}} (use {{month}}, {{day}}, {{year}}, {{date}})")


def _fill(template: str, week: date, name: str) -> str:
    fields = _Fields(month=week.month, day=week.day, year=week.year, date=week.isoformat())
    try:
        return template.format_map(fields)
    except (ValueError, IndexError, AttributeError) as exc:
        raise ConfigError(f"digest.{name}: {exc}") from exc


def new_digest_doc(week: date, entries: list[DigestEntry], sections: list[str], cfg: DigestConfig) -> DigestDoc:
    """A digest that does not exist yet: front matter and cover from the configuration."""
    meta: dict[str, Any] = {
        "slug": _fill(cfg.slug, week, "slug"),
        "title": _fill(cfg.title, week, "title"),
        "authors": list(cfg.authors),
        "tags": list(cfg.tags),
    }
    cover = None
    if cfg.cover_image:
        cover = Cover(image=cfg.cover_image, alt=cfg.cover_alt, label=cfg.cover_label, caption=cfg.cover_caption or "")
    return DigestDoc(
        meta=meta,
        front_matter_raw=None,
        cover=cover,
        sections=list(sections),
        blocks=list(entries),
        week=week,
    )


def write_if_changed(path: Path, content: bytes | str) -> bool:
    """Write ``content`` to ``path`` unless it already holds exactly that; returns whether it wrote.
    Every published file goes through here: an unchanged re-run touches nothing (static site
    generators and git see no change), and the write is atomic, so a reader never sees half a file."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tidings-tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def doc_of(
    digest: Digest, config: Config, order: list[str] | None = None,
    see_also: dict[int, list[tuple[str, str]]] | None = None,
) -> DigestDoc:
    """The stored digest as a document to render: blocks and entries in position order (overrides
    applied), its cover, and its sections (a draft's in ``order``, entries filed elsewhere last).
    ``see_also`` maps an entry's item id to the other sources of its story (a draft's "另见")."""
    parts: list[tuple[int, RawBlock | DigestEntry]] = []
    for block in digest.blocks:
        parts.append((block.position, RawBlock(text=block.text, section=block.section, role=block.role)))
    for row in digest.entries:
        title = row.title_override if row.title_override is not None else row.title_raw
        summary = row.summary_override if row.summary_override is not None else row.summary_raw
        entry = DigestEntry(
            url_raw=row.url_raw,
            title_raw=title,
            separator=row.separator,
            summary=summary,
            section=row.section,
            marker=row.marker,
            verbatim=row.verbatim,
            edited=row.edited,
            kept=row.kept,
        )
        item_id = row.item_id if row.item_id is not None else (row.item.id if row.item is not None else None)
        if see_also and item_id in see_also:
            entry.see_also = tuple(see_also[item_id])
        parts.append((row.position, entry))
    parts.sort(key=lambda pair: pair[0])
    cover = None
    if digest.cover_image:
        cover = Cover(
            image=digest.cover_image,
            alt=digest.cover_alt or "",
            label=digest.cover_label or config.digest.cover_label,
            caption=digest.cover_caption or "",
        )
    meta = {k: v for k, v in (digest.meta or {}).items() if not k.startswith("_")}
    sections = digest.sections or config.section_names
    if digest.front_matter_raw is None:
        # Drafts render in the learned (or configured) section order; an entry filed elsewhere goes last.
        sections = list(order or config.section_names)
        for _, part in parts:
            if isinstance(part, DigestEntry) and part.section and part.section not in sections:
                sections.append(part.section)
    return DigestDoc(
        meta=meta,
        front_matter_raw=digest.front_matter_raw,
        cover=cover,
        sections=sections,
        blocks=[part for _, part in parts],
        week=digest.week,
    )
