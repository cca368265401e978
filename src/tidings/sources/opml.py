"""OPML subscription lists: read exports of Feedly, Inoreader, NetNewsWire, 鲜果 and blogrolls; write
our own.

A feed is an ``<outline>`` with an ``xmlUrl``; an outline without one is a folder, and nested
folders become a ``"A/B"`` path. Outlines inside XML comments are not parsed at all: a folder
commented out by its owner is one they switched off."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

import lxml.etree

from ..errors import ImportFormatError

__all__ = ["FeedRecord", "export_opml", "looks_like", "parse_opml"]


@dataclass
class FeedRecord:
    url: str
    title: str | None
    html_url: str | None
    folder: str | None  # "A" or "A/B"; None at the top level


_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def looks_like(content: bytes) -> tuple[bool, str]:
    """Is this OPML? ``(True, "opml")`` or ``(False, why not)``."""
    head = content[:65536]
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        text = head.decode("utf-16", errors="ignore")
    else:
        # Tag names are ASCII in any charset an OPML file may use.
        text = head.removeprefix(codecs.BOM_UTF8).decode("latin-1")
    pos = 0
    # Skip the prolog: whitespace, the XML declaration and other PIs, comments, a doctype.
    prolog = re.compile(r"\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>", re.S | re.I)
    while True:
        m = prolog.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
    m = re.compile(r"<([A-Za-z_][\w.:-]*)").match(text, pos)
    if not m:
        return False, "no XML root element found"
    tag = m.group(1)
    if tag.rsplit(":", 1)[-1].lower() == "opml":
        return True, "opml"
    return False, f"root element <{tag}> is not opml"


def _attr(el: lxml.etree._Element, name: str) -> str | None:
    """An attribute by name, ignoring case (``xmlUrl``, ``xmlurl``, ``XMLURL`` all occur)."""
    value = el.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in el.attrib.items():
            if isinstance(key, str) and key.lower() == lowered:
                value = val
                break
    if value is None:
        return None
    value = value.strip()
    return value or None


_BARE_AMP = re.compile(rb"&(?!(?:#[0-9]+|#x[0-9a-fA-F]+|[A-Za-z_][\w.-]*);)")


def _parse_tree(content: bytes, where: str) -> lxml.etree._Element:
    # Junk whitespace before the XML declaration is fatal to libxml2 but harmless in practice.
    data = content
    for bom in _BOMS:
        if data.startswith(bom):
            break
    else:
        data = data.lstrip(b" \t\r\n")
    strict = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = lxml.etree.fromstring(data, strict)
    except lxml.etree.XMLSyntaxError as exc:
        # Hand-edited exports often carry a bare "&" in a URL; recovery keeps every other feed.
        # Anything that is still not an <opml> document afterwards is rejected below.
        first_error = exc
        lenient = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=True)
        try:
            # libxml2's recovery drops "&b" from "?a=1&b=2", so escape bare ampersands first.
            root = lxml.etree.fromstring(_BARE_AMP.sub(b"&amp;", data), lenient)
        except (lxml.etree.XMLSyntaxError, ValueError):
            root = None
        if root is None or not _is_opml(root):
            raise ImportFormatError(
                where, first_error.lineno or None, f"not OPML: {first_error.msg}"
            ) from None
    except ValueError as exc:  # e.g. a str with an encoding declaration; defensive
        raise ImportFormatError(where, None, f"not OPML: {exc}") from None
    if not _is_opml(root):
        raise ImportFormatError(where, root.sourceline, f"not OPML: root element is <{_local(root)}>")
    return root


def _local(el: lxml.etree._Element) -> str:
    """An element's name without namespace; "" for comments and PIs. Not QName(): recovered
    garbage can carry names QName rejects (e.g. ":")."""
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _is_opml(root: lxml.etree._Element | None) -> bool:
    return root is not None and _local(root).lower() == "opml"


def parse_opml(content: bytes, *, file: str | None = None) -> list[FeedRecord]:
    """Every feed in the file, once: the first occurrence of an ``xmlUrl`` wins."""
    where = file or "<opml>"
    try:
        return _feeds(content, where)
    except ImportFormatError:
        raise
    except Exception as exc:  # the contract is "ImportFormatError or nothing", even for lxml surprises
        raise ImportFormatError(where, None, f"unreadable OPML: {type(exc).__name__}: {exc}") from None


def _feeds(content: bytes, where: str) -> list[FeedRecord]:
    root = _parse_tree(content, where)
    body = next((el for el in root if _local(el) == "body"), None)
    if body is None:
        raise ImportFormatError(where, root.sourceline, "not OPML: no <body>")

    feeds: list[FeedRecord] = []
    seen: set[str] = set()
    # lxml's iter() walks in document order without Python recursion, so "first wins" means
    # first in the file and deep nesting cannot exhaust the stack.
    for outline in body.iter():
        if _local(outline) != "outline":
            continue
        url = _attr(outline, "xmlUrl")
        if not url or url in seen:
            continue
        seen.add(url)
        folders: list[str] = []
        for ancestor in outline.iterancestors():
            if ancestor is body:
                break
            # A feed nested under another feed (some readers do this) stays in the enclosing folder.
            if _attr(ancestor, "xmlUrl") is None:
                name = _attr(ancestor, "text") or _attr(ancestor, "title")
                if name:
                    folders.append(name)
        title = _attr(outline, "text") or _attr(outline, "title")
        feeds.append(FeedRecord(url, title, _attr(outline, "htmlUrl"), "/".join(reversed(folders)) or None))
    return feeds


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _q(value: str) -> str:
    # Control characters cannot appear in XML 1.0 at all, not even escaped.
    return quoteattr(_XML_INVALID.sub("", value))


def export_opml(feeds: Iterable[FeedRecord], title: str = "tidings feeds") -> str:
    """OPML 2.0 text. Folders become nested outlines; the order of feeds is kept exactly, so a
    folder whose feeds are not contiguous appears more than once."""
    now = format_datetime(datetime.now(UTC), usegmt=True)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{xml_escape(_XML_INVALID.sub('', title))}</title>",
        f"    <dateCreated>{now}</dateCreated>",
        "  </head>",
        "  <body>",
    ]
    open_path: list[str] = []
    for feed in feeds:
        path = [part for part in (feed.folder or "").split("/") if part]
        common = 0
        while common < min(len(path), len(open_path)) and path[common] == open_path[common]:
            common += 1
        while len(open_path) > common:
            open_path.pop()
            lines.append("    " + "  " * len(open_path) + "</outline>")
        for part in path[common:]:
            indent = "    " + "  " * len(open_path)
            lines.append(f"{indent}<outline text={_q(part)} title={_q(part)}>")
            open_path.append(part)
        attrs = [f"text={_q(feed.title or '')}"]
        if feed.title is not None:
            attrs.append(f"title={_q(feed.title)}")
        attrs += ['type="rss"', f"xmlUrl={_q(feed.url)}"]
        if feed.html_url:
            attrs.append(f"htmlUrl={_q(feed.html_url)}")
        lines.append("    " + "  " * len(open_path) + f"<outline {' '.join(attrs)}/>")
    while open_path:
        open_path.pop()
        lines.append("    " + "  " * len(open_path) + "</outline>")
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines)
