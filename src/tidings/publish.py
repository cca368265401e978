"""Rendering digests: an imported one back to its exact source, a new one through a template.

``RENDERERS`` maps a publishing target to its renderer; only Docusaurus exists so far."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined
from jinja2 import TemplateError as JinjaTemplateError

from .config import DigestConfig
from .errors import ConfigError
from .records import Cover, DigestDoc, DigestEntry, RawBlock
from .sources.digest import BOUNDARY_ROLES, parse_head, trailing_ws

TEMPLATE_NAME = "docusaurus.md.j2"
_FRONT_MATTER_ORDER = ("slug", "title", "authors", "tags")
_BLANK_END_RE = re.compile(r"(?:\A|\n)[ \t\r]*\n\Z")


# --- Markdown pieces -----------------------------------------------------------------------------


def escape_link_text(text: str) -> str:
    """Link text that stays one link: brackets escaped, and backslashes that would escape."""
    text = re.sub(r"\\(?=[!-/:-@\[-`{-~]|\Z)", r"\\\\", text)
    return text.replace("[", "\\[").replace("]", "\\]")


def link_destination(url: str) -> str:
    """A plain URL as a link destination: in ``<>`` when spaces or unbalanced parentheses
    would end it early."""
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


def entry_markdown(entry: DigestEntry) -> str:
    """An entry's text rebuilt from its parts, without the blank line after it.

    ``[《title》](url)。summary`` with a summary, ``[title](url)`` without. A summary on the lines
    below the link (marker notes, nested bullets) keeps the line break it had, and such titles
    keep their plain look: the 《》 belong to the one-line style."""
    prefix, linked = _head_style(entry)
    title = entry.title or ""
    summary = (entry.summary or "").rstrip()
    multiline = bool(entry.separator and "\n" in entry.separator)
    url = entry.url_raw.strip() if entry.url_raw else None
    if linked and url:
        text = f"《{title}》" if summary and not multiline else title
        # A parsed destination is Markdown already (title attribute and all); a new one is a URL.
        destination = url if entry.verbatim is not None else link_destination(url)
        head = f"[{escape_link_text(text)}]({destination})"
    else:
        # A marker note headed by plain text: its URL (a "> https://…" line) is in its summary.
        head = (entry.title_raw or "").strip() if entry.verbatim is not None else title
    if not summary:
        return prefix + head
    separator = entry.separator if multiline and entry.separator else "。"
    return prefix + head + separator + summary


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


def yaml_value(value: Any, *, flow: bool = False) -> str:
    """A front-matter value on one line, plain when YAML reads it back unchanged."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v, flow=True) for v in value) + "]"
    if isinstance(value, str):
        try:
            plain_ok = (yaml.safe_load(f"[{value}]") == [value]) if flow else (yaml.safe_load(value) == value)
        except yaml.YAMLError:
            plain_ok = False
        if plain_ok and value == value.strip() and "\n" not in value and value:
            return value
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one
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
            _EntryView(e.title, e.url, e.summary, e.marker, e.section, entry_markdown(e))
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
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=False,  # Markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )


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


RENDERERS: dict[str, Callable[[DigestDoc], str]] = {"docusaurus": render_docusaurus}


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


# Hugo, Jekyll, plain Markdown and HTML live in formats.py; it imports nothing from here at load time.
from . import formats as _formats  # noqa: E402

_formats.register(RENDERERS)
