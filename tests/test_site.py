"""The static site, built from the 87 shared digests: links, feeds, sitemap, search index, rebuilds."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import feedparser
import pytest
from sqlalchemy import select
from weblib import WEEK, copy_db, corpus_db

from tidings import curate
from tidings.config import Config
from tidings.htmltext import markdown_html, tokens
from tidings.publish.site import build_site
from tidings.store import Digest, DigestEntryRow, open_store
from tidings.textutil import slugify

ATOM = "{http://www.w3.org/2005/Atom}"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append((tag, name, value))
            if name.startswith("on"):
                raise AssertionError(f"event handler attribute on <{tag}>: {name}")
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def built(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(store path, site dir): the whole corpus, built once for this module."""
    work = tmp_path_factory.mktemp("site")
    db = copy_db(corpus_db(corpus_dir), work / "t.db")
    store = open_store(db)
    build_site(store, Config(), work / "site")
    store.close()
    return db, work / "site"


def test_every_internal_link_and_source_resolves(built: tuple[Path, Path]) -> None:
    _db, site = built
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 100  # 87 digests, sections, tags, index, search
    checked = 0
    for page in pages:
        parsed = _parse(page)
        # Only our own two scripts, never inline code: the site works under a strict CSP.
        assert all(s.endswith(("assets/search-index.js", "assets/search.js")) for s in parsed.scripts), page
        for tag, _attribute, value in parsed.links:
            assert not value.lower().startswith(("javascript:", "data:", "vbscript:")), (page, value)
            if re.match(r"^[a-z]+:", value, re.I) or value.startswith(("//", "#")):
                continue
            path = unquote(urlsplit(value).path)
            target = (page.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{page.relative_to(site)}: <{tag}> {value} does not resolve"
            # file:// does not turn a directory into its index.html: every link names the file.
            assert not path.endswith("/"), f"{page.relative_to(site)}: {value} ends in a directory"
            checked += 1
    assert checked > 2000


def _feeds(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.xml") if p.name in ("rss.xml", "atom.xml"))


def test_feeds_parse_and_carry_every_required_element(built: tuple[Path, Path]) -> None:
    _db, site = built
    feeds = _feeds(site)
    # The digests' RSS and Atom, and one pair per section (the four current ones plus the old name).
    assert (site / "rss.xml") in feeds and (site / "atom.xml") in feeds
    assert len([f for f in feeds if f.parent.parent.name == "sections"]) >= 8
    for feed in feeds:
        parsed = feedparser.parse(str(feed))
        assert not parsed.bozo, (feed, parsed.get("bozo_exception"))
        assert parsed.entries, feed
        root = ET.parse(feed).getroot()
        if feed.name == "rss.xml":
            assert root.tag == "rss" and root.get("version") == "2.0"
            channel = root.find("channel")
            assert channel is not None
            for required in ("title", "link", "description"):
                assert (channel.findtext(required) or "").strip(), (feed, required)
            items = channel.findall("item")
            assert items
            guids = []
            for item in items:
                assert (item.findtext("title") or item.findtext("description") or "").strip(), feed
                assert (item.findtext("link") or "").strip(), feed
                guid = item.find("guid")
                assert guid is not None and (guid.text or "").strip(), feed
                guids.append(guid.text)
            assert len(guids) == len(set(guids)), f"{feed}: GUIDs repeat"
        else:
            assert root.tag == f"{ATOM}feed"
            for required in ("title", "id", "updated"):
                assert (root.findtext(f"{ATOM}{required}") or "").strip(), (feed, required)
            assert root.find(f"{ATOM}link").get("href")  # type: ignore[union-attr]
            assert root.find(f"{ATOM}author/{ATOM}name") is not None
            ids = []
            for entry in root.findall(f"{ATOM}entry"):
                assert (entry.findtext(f"{ATOM}title") or "").strip(), feed
                assert (entry.findtext(f"{ATOM}id") or "").strip(), feed
                assert (entry.findtext(f"{ATOM}updated") or "").strip(), feed
                link = entry.find(f"{ATOM}link")
                assert link is not None and link.get("href"), feed
                ids.append(entry.findtext(f"{ATOM}id"))
            assert len(ids) == len(set(ids)), f"{feed}: ids repeat"


def test_feed_links_resolve_inside_the_site(built: tuple[Path, Path]) -> None:
    _db, site = built
    root = ET.parse(site / "rss.xml").getroot()
    newest = root.find("channel/item")
    assert newest is not None
    assert newest.findtext("guid") == "urn:tidings:digest:2024-07-21"
    assert (site / unquote(newest.findtext("link") or "")).is_file()
    section_feed = site / "sections" / slugify("🌟 AI 相关") / "atom.xml"
    parsed = feedparser.parse(str(section_feed))
    assert parsed.feed.title.endswith("🌟 AI 相关")
    assert all(e.link.startswith(("http://", "https://", "../")) for e in parsed.entries)


def test_index_section_and_tag_pages_list_what_they_should(built: tuple[Path, Path]) -> None:
    _db, site = built
    index = (site / "index.html").read_text(encoding="utf-8")
    weeks = re.findall(r'href="digests/(\d{4}-\d{2}-\d{2})/index.html"', index)
    assert len(weeks) == 87 and weeks == sorted(weeks, reverse=True)  # newest first
    digest = (site / "digests" / WEEK / "index.html").read_text(encoding="utf-8")
    assert "你好，Qwen2!" in digest and "https://mp.weixin.qq.com/s/s5vChAY6B2s_ZVK-ALYP2w" in digest
    assert "<h2>🌟 AI 相关</h2>" in digest
    ai = (site / "sections" / slugify("🌟 AI 相关") / "index.html").read_text(encoding="utf-8")
    assert "你好，Qwen2!" in ai  # 2024-06-09
    assert "2023-07-30" in ai  # the section's first week
    go = (site / "sections" / slugify("⭐️ Go & 云原生 & Rust 相关") / "index.html").read_text(encoding="utf-8")
    # "⭐️ Golang 相关" was renamed: its old items are listed under the new name.
    assert "2023-07-30" in go
    tag = (site / "tags" / slugify("VS Code") / "index.html").read_text(encoding="utf-8")
    assert "Tag: VS Code" in tag and "digests/" in tag


def test_marker_style_digest_pages_render_admonitions_and_code(built: tuple[Path, Path]) -> None:
    _db, site = built
    page = (site / "digests" / "2024-07-21" / "index.html").read_text(encoding="utf-8")
    assert 'class="admonition admonition-tip"' in page
    assert ":::tip" not in page.split('<div class="body">', 1)[1]
    code_pages = [p for p in (site / "digests").rglob("index.html") if "<pre><code" in p.read_text(encoding="utf-8")]
    assert code_pages


def test_sitemap_lists_every_page(built: tuple[Path, Path]) -> None:
    _db, site = built
    root = ET.parse(site / "sitemap.xml").getroot()
    locs = {unquote(e.text or "") for e in root.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")}
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert locs == pages


def test_search_index_holds_cjk_bigrams_and_known_titles(built: tuple[Path, Path]) -> None:
    _db, site = built
    text = (site / "assets" / "search-index.js").read_text(encoding="utf-8")
    assert text.startswith("window.TIDINGS_SEARCH = ")
    data = json.loads(text[len("window.TIDINGS_SEARCH = "):].rstrip().rstrip(";"))
    titles = [doc[0] for doc in data["docs"]]
    assert "你好，Qwen2!" in titles
    number = titles.index("你好，Qwen2!")
    for token in tokens("你好，Qwen2!"):
        assert number in data["index"][token]
    assert number in data["index"]["你好"] and number in data["index"]["qwen2"]


def test_tokens_are_bigrams_for_cjk_and_words_otherwise() -> None:
    assert tokens("你好，Qwen2!") == ["你好", "qwen2"]
    assert tokens("开源大模型") == ["开源", "源大", "大模", "模型"]
    assert tokens("Ｇｏ 1.22") == ["go", "1", "22"]  # NFKC folds full-width letters
    assert tokens("云") == ["云"]


def test_an_unchanged_rebuild_rewrites_nothing_and_an_edit_rewrites_little(
    corpus_dir: Path, tmp_path: Path
) -> None:
    store = open_store(copy_db(corpus_db(corpus_dir), tmp_path / "t.db"))
    config = Config()
    site = tmp_path / "site"
    first = build_site(store, config, site)
    assert first.written == first.files and first.removed == 0
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in site.rglob("*") if p.is_file()}
    again = build_site(store, config, site)
    assert again.written == 0 and again.unchanged == again.files
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in site.rglob("*") if p.is_file()}
    assert after == before

    old_guids = re.findall(r"<guid[^>]*>([^<]+)</guid>", (site / "rss.xml").read_text(encoding="utf-8"))
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == curate.date.fromisoformat(WEEK)))
        assert digest is not None
        entry = next(e for e in digest.entries if e.title_raw and "Qwen2" in e.title_raw)
        curate.set_kept(session, entry, False)
    edited = build_site(store, config, site)
    assert 0 < edited.written < 20  # the digest's page, its section, the feeds, the index, the search index
    page = (site / "digests" / WEEK / "index.html").read_text(encoding="utf-8")
    assert "你好，Qwen2!" not in page
    new_guids = re.findall(r"<guid[^>]*>([^<]+)</guid>", (site / "rss.xml").read_text(encoding="utf-8"))
    assert new_guids == old_guids  # GUIDs are stable: an edited digest keeps its id

    # A file an earlier build wrote and this one does not is removed; nothing else is touched.
    (site / "notes.txt").write_text("mine", encoding="utf-8")
    manifest = json.loads((site / ".tidings-manifest.json").read_text(encoding="utf-8"))
    manifest["files"].append("tags/gone/index.html")
    (site / "tags" / "gone").mkdir()
    (site / "tags" / "gone" / "index.html").write_text("old", encoding="utf-8")
    (site / ".tidings-manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    cleaned = build_site(store, config, site)
    assert cleaned.removed == 1 and not (site / "tags" / "gone").exists()
    assert (site / "notes.txt").read_text(encoding="utf-8") == "mine"
    store.close()


def test_base_url_makes_feed_and_sitemap_links_absolute(corpus_dir: Path, tmp_path: Path) -> None:
    from weblib import week_db

    store = open_store(copy_db(week_db(corpus_dir), tmp_path / "t.db"))
    site = tmp_path / "site"
    build_site(store, Config(), site, base_url="https://example.org/weekly", title="Weekly")
    rss = ET.parse(site / "rss.xml").getroot()
    assert rss.findtext("channel/link") == "https://example.org/weekly/index.html"
    assert rss.findtext("channel/item/link", "").startswith("https://example.org/weekly/digests/")
    assert rss.find("channel/{http://www.w3.org/2005/Atom}link").get("rel") == "self"  # type: ignore[union-attr]
    locs = [e.text for e in ET.parse(site / "sitemap.xml").getroot().iter() if e.tag.endswith("loc")]
    assert locs and all((loc or "").startswith("https://example.org/weekly/") for loc in locs)
    with pytest.raises(Exception, match="base-url"):
        build_site(store, Config(), site, base_url="javascript:alert(1)")
    store.close()


def test_hostile_markdown_is_sanitized() -> None:
    # A labelled synthetic fixture: the corpus has no attacks in it.
    html = markdown_html(
        '[x](javascript:alert(1)) <img src=x onerror=alert(1)> <script>alert(2)</script>'
        ' [ok](https://go.dev/) <a href="data:text/html,hi">d</a>\n'
    )
    assert 'href="javascript:' not in html and "onerror" not in html and "<script" not in html
    assert 'href="data:' not in html and "src=" not in html
    assert 'href="https://go.dev/"' in html


def test_a_stored_xss_title_is_escaped_on_the_site(corpus_dir: Path, tmp_path: Path) -> None:
    from weblib import week_db

    store = open_store(copy_db(week_db(corpus_dir), tmp_path / "t.db"))
    with store.session() as session:
        entry = session.scalars(select(DigestEntryRow).where(DigestEntryRow.title_raw.like("%Qwen2%"))).first()
        assert entry is not None
        curate.edit_entry(session, entry, title="<img src=x onerror=alert(1)>")
    site = tmp_path / "site"
    build_site(store, Config(), site)
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text and 'onerror="' not in text, page
    # Listing pages show the title as text; the digest body is Markdown, whose HTML nh3 defuses.
    section = (site / "sections" / slugify("🌟 AI 相关") / "index.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in section
    store.close()


def test_cli_site_build(corpus_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner
    from weblib import week_db

    from tidings.cli import app

    db = copy_db(week_db(corpus_dir), tmp_path / "t.db")
    runner = CliRunner()
    result = runner.invoke(app, ["--db", str(db), "site", "build", "--out", str(tmp_path / "out")],
                           env={**os.environ, "TIDINGS_DB": str(db)})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "digests" / WEEK / "index.html").is_file()
    assert "2 digests" in result.output
