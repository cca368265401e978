"""The static site: ``tidings site build --out DIR``.

A site that works from a plain file server and straight from disk (``file://``): every link is
relative and names its ``index.html``, the search index is a script loaded with a ``<script>``
tag (Chromium refuses ``fetch()`` of ``file:`` URLs), and nothing needs a server.

Layout::

    index.html                      digests, newest first
    digests/YYYY-MM-DD/index.html   one page per digest (its Markdown rendered, sanitized)
    sections/index.html, sections/<slug>/index.html   items per section, across weeks
    sections/<slug>/rss.xml, atom.xml                 one feed per section
    tags/index.html, tags/<slug>/index.html           digests and items per tag
    search.html, assets/search-index.js, assets/search.js
    rss.xml, atom.xml, sitemap.xml
    .tidings-manifest.json          what the last build wrote, so stale pages can go

The build is deterministic (no clock, sorted everything) and compares each file's bytes before
writing, so a rebuild over unchanged data rewrites nothing."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..config import Config, canonical_section
from ..errors import UsageError
from ..htmltext import markdown_html, safe_href, tokens
from ..records import DigestEntry, ItemView
from ..sources.digest import split_front_matter
from ..store import Digest, DigestEntryRow, Item, Store
from ..textutil import slugify
from .docusaurus import doc_of, render_docusaurus, write_if_changed

MANIFEST = ".tidings-manifest.json"
FEED_DIGESTS = 20  # the digest feeds carry the newest N digests in full
FEED_ITEMS = 50  # a section feed carries its newest N items
SUMMARY_CHARS = 280  # of an item's summary on listing pages and in the search index
_INVALID_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_WEEK_LINK_RE = re.compile(r"^(?:\.\./|\./|/)*(?:blog/)?(\d{4}-\d{2}-\d{2})/?(?:index(?:\.mdx?|\.html)?)?$")
STATIC = Path(__file__).resolve().parent.parent / "static" / "site"


@dataclass
class SiteEntry:
    """One kept digest entry as the site lists it. The item's own fields come from ``item`` (the
    :class:`~tidings.records.ItemView` every interface shares); title, link, summary and section
    are the entry's as this digest shows them, shortened for listing pages."""

    key: str  # stable across stores: a hash of the item's canonical URL
    item: ItemView | None  # None for an imported entry that matched no stored item
    title: str
    url: str | None  # the external link, http(s) only
    summary: str
    week: date
    section: str | None

    @property
    def tags(self) -> list[str]:
        """The item's tags: an entry has none of its own."""
        return self.item.tags if self.item is not None else []


@dataclass
class SiteDigest:
    week: date
    title: str
    path: str  # root-relative, e.g. digests/2024-06-09/index.html
    tags: list[str]
    authors: list[str]
    sections: list[str]
    entries: list[SiteEntry]
    html: str = ""
    assets: dict[str, Path] = field(default_factory=dict)  # root-relative path -> source file


@dataclass
class SiteReport:
    out: Path
    pages: int = 0
    feeds: int = 0
    files: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    digests: int = 0


# --- names and paths -----------------------------------------------------------------------------


def _slugs(names: Iterable[str]) -> dict[str, str]:
    """One slug per name, unique even when two names slugify alike (``C++`` and ``C#``)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(names)):
        slug = slugify(name)
        if slug in taken:
            slug = f"{slug}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"
        taken.add(slug)
        out[name] = slug
    return out


def href(from_path: str, to_path: str) -> str:
    """A relative, percent-encoded link from one root-relative file to another."""
    base = posixpath.dirname(from_path) or "."
    return quote(posixpath.relpath(to_path, base), safe="/#")


def _item_key(item: ItemView | None, row: DigestEntryRow, week: date) -> str:
    basis = item.url if item is not None else f"digest:{week.isoformat()}/{row.position}"
    return hashlib.sha1(basis.encode("utf-8")).hexdigest()[:16]


# --- collecting ----------------------------------------------------------------------------------


def _short(text: str | None, limit: int = SUMMARY_CHARS) -> str:
    text = re.sub(r"\s+", " ", text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _body_markdown(doc_text: str) -> str:
    _raw, body, _meta = split_front_matter(doc_text)
    return body


def _digest_title(digest: Digest) -> str:
    meta_title = (digest.meta or {}).get("title")
    return str(digest.title or meta_title or f"{digest.week.isoformat()}")


def collect_digests(store: Store, config: Config, *, include_drafts: bool = False) -> list[SiteDigest]:
    """Every digest the site shows, newest first, with its entries as a reader sees them."""
    digests: list[SiteDigest] = []
    items = selectinload(Digest.entries).selectinload(DigestEntryRow.item)
    with store.session() as session:
        query = (
            select(Digest)
            .options(
                selectinload(Digest.blocks),
                # Item.view() reads each item's URLs, tags and links: a query each, not three per entry.
                items.selectinload(Item.tag_rows),
                items.selectinload(Item.urls),
                items.selectinload(Item.link_rows),
            )
            .order_by(Digest.week.desc())
        )
        if not include_drafts:
            query = query.where(Digest.status != "draft")
        for digest in session.scalars(query):
            doc = doc_of(digest, config)
            entries: list[SiteEntry] = []
            doc_entries = doc.entries
            # doc_of orders blocks by position, and the relationship orders entries the same way.
            for row, entry in zip(digest.entries, doc_entries, strict=True):
                if not entry.kept:
                    continue
                entries.append(_site_entry(row, entry, digest.week, config))
            text = render_docusaurus(doc, template_dir=config.digest.template_dir)
            raw = doc.front_matter_raw
            # An imported digest renders its front matter verbatim first: no need to parse it off.
            markdown = text[len(raw):] if raw is not None and text.startswith(raw) else _body_markdown(text)
            site_digest = SiteDigest(
                week=digest.week,
                title=_digest_title(digest),
                path=f"digests/{digest.week.isoformat()}/index.html",
                tags=[str(t) for t in (digest.tags or [])],
                authors=[str(a) for a in (digest.authors or [])],
                sections=[],
                entries=entries,
            )
            site_digest.sections = list(dict.fromkeys(e.section for e in entries if e.section))
            site_digest.html = markdown  # rendered once every digest's week is known
            site_digest.assets = {"_source": Path(digest.source_path)} if digest.source_path else {}
            digests.append(site_digest)
    return digests


def _site_entry(row: DigestEntryRow, entry: DigestEntry, week: date, config: Config) -> SiteEntry:
    # No page shows an item's text: leave it out of the view.
    item = row.item.view(with_text=False) if row.item is not None else None
    title = entry.title or (item.title if item is not None else None) or entry.url or "(untitled)"
    url = safe_href(entry.url) or (safe_href(item.url) if item is not None else None)
    summary = entry.prose or entry.summary or (item.summary if item is not None else None)
    section = canonical_section(entry.section or (item.section if item is not None else None), config)
    return SiteEntry(
        key=_item_key(item, row, week),
        item=item,
        title=_short(title, 300),
        url=url,
        summary=_short(summary),
        week=week,
        section=section,
    )


# --- rendering -----------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tidings", "templates/site"),
        autoescape=select_autoescape(["html", "xml"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )
    env.filters["isodate"] = lambda d: d.isoformat()
    return env


def _week_time(week: date) -> datetime:
    # Midnight UTC of the week's date: deterministic whatever the machine's time zone.
    return datetime.combine(week, time.min, UTC)


def _xml(text: str) -> str:
    clean = _INVALID_XML_RE.sub("", text)
    return clean.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class _Site:
    def __init__(self, digests: list[SiteDigest], config: Config, title: str, base_url: str | None) -> None:
        self.digests = digests
        self.config = config
        self.title = title
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.env = _environment()
        self.files: dict[str, bytes] = {}
        self.copies: dict[str, Path] = {}
        self.by_week = {d.week.isoformat(): d for d in digests}
        section_names = [s for d in digests for e in d.entries if (s := e.section)]
        order = {name: i for i, name in enumerate(config.section_names)}
        self.sections = sorted(set(section_names), key=lambda s: (order.get(s, len(order)), s))
        self.section_slugs = _slugs(self.sections)
        tag_names = {t for d in digests for t in d.tags} | {t for d in digests for e in d.entries for t in e.tags}
        self.tags = sorted(tag_names, key=lambda t: (t.lower(), t))
        self.tag_slugs = _slugs(self.tags)
        self.pages: list[tuple[str, date | None]] = []

    # -- helpers --

    def section_path(self, name: str) -> str:
        return f"sections/{self.section_slugs[name]}/index.html"

    def tag_path(self, name: str) -> str:
        return f"tags/{self.tag_slugs[name]}/index.html"

    def absolute(self, path: str) -> str:
        return (self.base_url or "") + quote(path, safe="/#")

    def link(self, from_path: str, to_path: str) -> str:
        """In feeds and the sitemap: absolute when a base URL is known, else relative."""
        if self.base_url:
            return self.absolute(to_path)
        return href(from_path, to_path)

    def page(self, path: str, template: str, lastmod: date | None = None, **context: Any) -> None:
        root = href(path, "index.html")[: -len("index.html")]

        def to(target: str) -> str:
            return href(path, target)

        html = self.env.get_template(template).render(
            site_title=self.title,
            root=root,
            to=to,
            site=self,
            here=path,
            **context,
        )
        self.files[path] = html.encode("utf-8")
        self.pages.append((path, lastmod))

    # -- digests --

    def render_digest_html(self, digest: SiteDigest) -> None:
        source = digest.assets.pop("_source", None)
        source_dir = source.parent if source is not None else None

        def url_filter(tag: str, url: str) -> str | None:
            path_part = unquote(urlsplit(url).path)
            week_link = _WEEK_LINK_RE.match(path_part)
            if tag == "a" and week_link and week_link.group(1) in self.by_week:
                return href(digest.path, self.by_week[week_link.group(1)].path)
            if source_dir is None or not path_part or path_part.startswith("/"):
                return None
            candidate = (source_dir / path_part).resolve()
            try:
                relative = candidate.relative_to(source_dir.resolve())
            except ValueError:
                return None  # ``../`` out of the digest's own folder: not ours to publish
            if not candidate.is_file():
                return None  # the image was not published with the Markdown: no broken link
            target = posixpath.join(posixpath.dirname(digest.path), relative.as_posix())
            self.copies[target] = candidate
            return href(digest.path, target)

        digest.html = markdown_html(digest.html, url_filter)

    def build(self) -> None:
        for digest in self.digests:
            self.render_digest_html(digest)
        newest_first = self.digests
        self.page("index.html", "index.html", newest_first[0].week if newest_first else None, digests=newest_first)
        for i, digest in enumerate(newest_first):
            newer = newest_first[i - 1] if i > 0 else None
            older = newest_first[i + 1] if i + 1 < len(newest_first) else None
            self.page(digest.path, "digest.html", digest.week, digest=digest, newer=newer, older=older)
        self.build_sections()
        self.build_tags()
        self.page("search.html", "search.html")
        self.build_feed("rss.xml", "atom.xml", f"{self.title}", "index.html", self.digest_feed_items("rss.xml"),
                        self.digest_feed_items("atom.xml"), "urn:tidings:digests")
        self.files["assets/search-index.js"] = self.search_index()
        for name in ("style.css", "search.js"):
            self.files[f"assets/{name}"] = (STATIC / name).read_bytes()
        self.files["sitemap.xml"] = self.sitemap()

    def section_entries(self, name: str) -> list[tuple[SiteEntry, list[date]]]:
        """The section's items, newest first, each once with every week that listed it there."""
        seen: dict[str, tuple[SiteEntry, list[date]]] = {}
        for digest in self.digests:
            for entry in digest.entries:
                if entry.section != name:
                    continue
                if entry.key in seen:
                    if entry.week not in seen[entry.key][1]:
                        seen[entry.key][1].append(entry.week)
                else:
                    seen[entry.key] = (entry, [entry.week])
        return list(seen.values())

    def build_sections(self) -> None:
        rows = []
        for name in self.sections:
            entries = self.section_entries(name)
            path = self.section_path(name)
            base = posixpath.dirname(path)
            rows.append((name, path, len(entries)))
            self.page(path, "section.html", entries[0][0].week if entries else None, name=name, entries=entries,
                      rss=f"{base}/rss.xml", atom=f"{base}/atom.xml")
            rss_items = [self.entry_feed_item(f"{base}/rss.xml", e) for e, _ in entries[:FEED_ITEMS]]
            atom_items = [self.entry_feed_item(f"{base}/atom.xml", e) for e, _ in entries[:FEED_ITEMS]]
            guid = "urn:tidings:section:" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:16]
            self.build_feed(f"{base}/rss.xml", f"{base}/atom.xml", f"{self.title}: {name}", path, rss_items,
                            atom_items, guid)
        self.page("sections/index.html", "sections.html", sections=rows)

    def build_tags(self) -> None:
        rows = []
        for tag in self.tags:
            digests = [d for d in self.digests if tag in d.tags]
            entries = [e for d in self.digests for e in d.entries if tag in e.tags]
            path = self.tag_path(tag)
            rows.append((tag, path, len(digests), len(entries)))
            self.page(path, "tag.html", digests[0].week if digests else None, tag=tag, digests=digests,
                      entries=entries)
        self.page("tags/index.html", "tags.html", tags=rows)

    # -- feeds --

    def digest_feed_items(self, feed_path: str) -> list[dict[str, Any]]:
        items = []
        for digest in self.digests[:FEED_DIGESTS]:
            items.append({
                "title": digest.title,
                "link": self.link(feed_path, digest.path),
                "guid": f"urn:tidings:digest:{digest.week.isoformat()}",
                "when": _week_time(digest.week),
                "html": digest.html,
                "categories": digest.sections + digest.tags,
                "author": ", ".join(digest.authors),
            })
        return items

    def entry_feed_item(self, feed_path: str, entry: SiteEntry) -> dict[str, Any]:
        digest = self.by_week[entry.week.isoformat()]
        summary = _xml_text_html(entry.summary)
        return {
            "title": entry.title,
            "link": entry.url or self.link(feed_path, digest.path),
            "guid": f"urn:tidings:item:{entry.key}",
            "when": _week_time(entry.week),
            "html": summary,
            "categories": [entry.section] if entry.section else [],
            "author": ", ".join(digest.authors),
        }

    def build_feed(self, rss_path: str, atom_path: str, title: str, page_path: str,
                   rss_items: list[dict[str, Any]], atom_items: list[dict[str, Any]], feed_id: str) -> None:
        if not rss_items:
            return  # an empty feed is no feed: readers reject it
        updated = max(i["when"] for i in rss_items)
        self.files[rss_path] = _rss(title, self.link(rss_path, page_path),
                                    self.absolute(rss_path) if self.base_url else None, updated, rss_items)
        self.files[atom_path] = _atom(title, self.link(atom_path, page_path),
                                      self.absolute(atom_path) if self.base_url else None, updated, atom_items,
                                      feed_id, ", ".join(self.config.digest.authors) or self.title)

    # -- search and sitemap --

    def search_index(self) -> bytes:
        """``window.TIDINGS_SEARCH = {docs, index}``: docs are ``[title, path, week, section, url]``,
        the index maps each token to the docs holding it (see htmltext.tokens)."""
        docs: list[list[str]] = []
        postings: dict[str, list[int]] = {}

        def add(title: str, path: str, week: date, section: str, url: str, text: str) -> None:
            number = len(docs)
            docs.append([title, path, week.isoformat(), section, url])
            for token in dict.fromkeys(tokens(title + " " + text)):
                postings.setdefault(token, []).append(number)

        for digest in self.digests:
            add(digest.title, digest.path, digest.week, "", "", " ".join(digest.tags))
            for entry in digest.entries:
                add(entry.title, digest.path, entry.week, entry.section or "", entry.url or "",
                    (entry.section or "") + " " + entry.summary)
        payload = {"docs": docs, "index": dict(sorted(postings.items()))}
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        # Inside a <script> file, "</" cannot end anything, but keep the JSON inert all the same.
        text = text.replace("</", "<\\/")
        return ("window.TIDINGS_SEARCH = " + text + ";\n").encode("utf-8")

    def sitemap(self) -> bytes:
        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
        for path, lastmod in sorted(self.pages):
            loc = self.absolute(path) if self.base_url else quote(path, safe="/")
            mod = f"<lastmod>{lastmod.isoformat()}</lastmod>" if lastmod else ""
            lines.append(f"  <url><loc>{_xml(loc)}</loc>{mod}</url>")
        lines.append("</urlset>")
        return ("\n".join(lines) + "\n").encode("utf-8")


def _xml_text_html(text: str) -> str:
    return f"<p>{_xml(text)}</p>" if text else ""


def _rss(title: str, link: str, self_url: str | None, updated: datetime, items: list[dict[str, Any]]) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">', "<channel>",
           f"<title>{_xml(title)}</title>", f"<link>{_xml(link)}</link>",
           f"<description>{_xml(title)}</description>", "<generator>tidings</generator>",
           f"<lastBuildDate>{format_datetime(updated)}</lastBuildDate>"]
    if self_url:
        out.append(f'<atom:link href="{_xml(self_url)}" rel="self" type="application/rss+xml"/>')
    for item in items:
        out.append("<item>")
        out.append(f"<title>{_xml(item['title'])}</title>")
        out.append(f"<link>{_xml(item['link'])}</link>")
        out.append(f'<guid isPermaLink="false">{_xml(item["guid"])}</guid>')
        out.append(f"<pubDate>{format_datetime(item['when'])}</pubDate>")
        for category in item["categories"]:
            out.append(f"<category>{_xml(category)}</category>")
        out.append(f"<description>{_xml(item['html'] or item['title'])}</description>")
        out.append("</item>")
    out += ["</channel>", "</rss>"]
    return ("\n".join(out) + "\n").encode("utf-8")


def _atom(title: str, link: str, self_url: str | None, updated: datetime, items: list[dict[str, Any]],
          feed_id: str, author: str) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<feed xmlns="http://www.w3.org/2005/Atom">',
           f"<title>{_xml(title)}</title>", f"<id>{_xml(feed_id)}</id>",
           f"<updated>{updated.isoformat()}</updated>", f'<link rel="alternate" type="text/html" href="{_xml(link)}"/>',
           f"<author><name>{_xml(author)}</name></author>", "<generator>tidings</generator>"]
    if self_url:
        out.append(f'<link rel="self" type="application/atom+xml" href="{_xml(self_url)}"/>')
    for item in items:
        out.append("<entry>")
        out.append(f"<title>{_xml(item['title'])}</title>")
        out.append(f'<link rel="alternate" type="text/html" href="{_xml(item["link"])}"/>')
        out.append(f"<id>{_xml(item['guid'])}</id>")
        out.append(f"<published>{item['when'].isoformat()}</published>")
        out.append(f"<updated>{item['when'].isoformat()}</updated>")
        if item["author"]:
            out.append(f"<author><name>{_xml(item['author'])}</name></author>")
        for category in item["categories"]:
            out.append(f'<category term="{_xml(category)}"/>')
        out.append(f'<content type="html">{_xml(item["html"] or item["title"])}</content>')
        out.append("</entry>")
    out.append("</feed>")
    return ("\n".join(out) + "\n").encode("utf-8")


# --- writing -------------------------------------------------------------------------------------


def _copy_if_changed(source: Path, target: Path) -> bool:
    content = source.read_bytes()
    return write_if_changed(target, content)


def build_site(
    store: Store,
    config: Config,
    out: Path,
    *,
    title: str = "tidings",
    base_url: str | None = None,
    include_drafts: bool = False,
) -> SiteReport:
    """Write the static site into ``out``; returns what was written, kept and removed."""
    if base_url is not None and urlsplit(base_url).scheme not in ("http", "https"):
        raise UsageError(f"--base-url must be an http(s) URL, not {base_url!r}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a directory")
    digests = collect_digests(store, config, include_drafts=include_drafts)
    site = _Site(digests, config, title, base_url)
    site.build()
    report = SiteReport(out=out, digests=len(digests))
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    previous: list[str] = []
    if manifest_path.is_file():
        try:
            previous = list(json.loads(manifest_path.read_text(encoding="utf-8")).get("files", []))
        except (ValueError, AttributeError):
            previous = []
    names = sorted(set(site.files) | set(site.copies))
    for name in names:
        target = out / name
        changed = (_copy_if_changed(site.copies[name], target) if name in site.copies
                   else write_if_changed(target, site.files[name]))
        report.written += changed
        report.unchanged += not changed
    for stale in sorted(set(previous) - set(names)):
        path = (out / stale).resolve()
        # Only files an earlier build wrote, and only inside ``out``: never anything else there.
        if path.is_file() and out.resolve() in path.parents:
            path.unlink()
            report.removed += 1
            _prune_dirs(path.parent, out.resolve())
    manifest = json.dumps({"generator": "tidings", "files": names}, ensure_ascii=False, indent=0) + "\n"
    write_if_changed(manifest_path, manifest.encode("utf-8"))
    report.files = len(names)
    report.pages = sum(1 for n in names if n.endswith(".html"))
    report.feeds = sum(1 for n in names if n.endswith(("rss.xml", "atom.xml")))
    return report


def _prune_dirs(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


__all__ = ["SiteReport", "build_site", "collect_digests", "href", "slugify"]
