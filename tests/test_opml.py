"""OPML import and export against the real exports in the corpus."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tidings.errors import ImportFormatError
from tidings.sources.opml import FeedRecord, export_opml, looks_like, parse_opml

# Unique xmlUrls per file. SOURCES.tsv counts xmlUrl attributes with duplicates; where the two
# differ the unique count is given by the corpus README (rtfingc 776 of 785, kilimchoi 420 of 422).
EXPECTED = {
    "feedly_jysperm_2015.opml": 43,
    "feedly_rtfingc_security.opml": 776,
    "inoreader_echopi.opml": 17,  # plus 2 in a commented-out folder, which are not active
    "xianguo_xuqiang_2014.opml": 571,
    "curated_tuna_blogroll_opml.xml": 196,
    "netnewswire_Subs.opml": 207,
    "curated_kilimchoi_engineering_blogs.opml": 420,
}


def _sources(corpus: Path) -> dict[str, dict[str, str]]:
    with open(corpus / "opml" / "SOURCES.tsv", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}


def _read(corpus: Path, name: str) -> bytes:
    return (corpus / "opml" / name).read_bytes()


def test_every_corpus_file_is_covered(corpus_dir: Path) -> None:
    assert set(_sources(corpus_dir)) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(corpus_dir: Path, name: str) -> None:
    content = _read(corpus_dir, name)
    feeds = parse_opml(content, file=name)
    assert len(feeds) == EXPECTED[name]
    # The file's own xmlUrl count is an upper bound; it equals ours where there are no duplicates.
    declared = int(_sources(corpus_dir)[name]["entries"])
    assert len(feeds) <= declared
    urls = [f.url for f in feeds]
    assert len(set(urls)) == len(urls)
    for feed in feeds:
        assert feed.url.startswith(("http://", "https://")), feed
        assert feed.url == feed.url.strip()
        assert feed.title is None or feed.title.strip()
        assert feed.html_url is None or feed.html_url.strip()
        assert feed.folder is None or 1 <= len(feed.folder.split("/")) <= 2
    assert looks_like(content) == (True, "opml")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip(corpus_dir: Path, name: str) -> None:
    feeds = parse_opml(_read(corpus_dir, name))
    text = export_opml(feeds, title=f"export of {name}")
    assert parse_opml(text.encode("utf-8")) == feeds
    etree.fromstring(text.encode("utf-8"))  # well-formed XML


def test_duplicates_keep_the_first_occurrence(corpus_dir: Path) -> None:
    content = _read(corpus_dir, "feedly_rtfingc_security.opml")
    root = etree.fromstring(content.lstrip())
    first: dict[str, str] = {}
    for outline in root.iter("outline"):
        url = outline.get("xmlUrl")
        if url and url not in first:
            first[url] = outline.get("text")
    feeds = parse_opml(content)
    assert [f.url for f in feeds] == list(first)
    assert {f.url: f.title for f in feeds} == first


def test_commented_out_folder_is_ignored(corpus_dir: Path) -> None:
    feeds = parse_opml(_read(corpus_dir, "inoreader_echopi.opml"))
    urls = {f.url for f in feeds}
    assert not any("twitrss.me" in u for u in urls)
    assert {f.folder for f in feeds} == {"cs", "info"}
    # &amp; in a query string is the XML escape, so the URL has a plain "&".
    assert all("&amp;" not in u for u in urls)


def test_feedly_folders_and_missing_html_url(corpus_dir: Path) -> None:
    feeds = parse_opml(_read(corpus_dir, "feedly_jysperm_2015.opml"))
    geekpark = feeds[0]
    assert geekpark == FeedRecord(
        "http://feeds.geekpark.net/", "极客公园", "http://www.geekpark.net/", "IT资讯"
    )
    assert {f.folder for f in feeds} == {"IT资讯", "List", "博客", "博客精选", "朋友", "科普"}
    assert sum(1 for f in feeds if f.html_url is None) == 1


def test_blogroll_without_declaration_or_text_attributes(corpus_dir: Path) -> None:
    content = _read(corpus_dir, "curated_tuna_blogroll_opml.xml")
    assert not content.lstrip().startswith(b"<?xml")
    feeds = parse_opml(content)
    assert feeds[0] == FeedRecord("https://fff.ac.cn/rss/", "0x1000-1", "https://fff.ac.cn/", None)
    assert all(f.folder is None and f.title for f in feeds)


def test_netnewswire_top_level_and_folders(corpus_dir: Path) -> None:
    feeds = parse_opml(_read(corpus_dir, "netnewswire_Subs.opml"))
    assert feeds[0].folder is None and feeds[0].title == "Daring Fireball"
    assert {f.folder for f in feeds} == {None, "Programming", "Macintosh", "Weblogs", "Writers"}
    assert any(f.html_url is None for f in feeds)  # htmlUrl="" means none


def test_xianguo_wrapped_attributes(corpus_dir: Path) -> None:
    feeds = parse_opml(_read(corpus_dir, "xianguo_xuqiang_2014.opml"))
    assert feeds[0] == FeedRecord(
        "http://www.36kr.com/feed", "36氪 | 关注互联网创业", "http://www.36kr.com/", "技术博客"
    )


def test_two_level_folders_and_order_survive_export() -> None:
    feeds = [
        FeedRecord("https://a.example/1.xml", "One", None, None),
        FeedRecord("https://a.example/2.xml", "Two & <two>", "https://a.example/", "Tech"),
        FeedRecord("https://a.example/3.xml", None, None, "Tech/Go"),
        FeedRecord("https://a.example/4.xml", "Four", None, "Tech"),
        FeedRecord("https://a.example/5.xml?a=1&b=2", 'Five "quoted"', None, "生活"),
        FeedRecord("https://a.example/6.xml", "Six", None, None),
    ]
    text = export_opml(feeds, title="mine & yours")
    assert parse_opml(text.encode()) == feeds
    root = etree.fromstring(text.encode())
    assert root.findtext("head/title") == "mine & yours"
    go = root.xpath("//outline[@text='Tech']/outline[@text='Go']/outline")
    assert [o.get("xmlUrl") for o in go] == ["https://a.example/3.xml"]


def test_nested_two_levels_parse_as_path() -> None:
    content = b"""<?xml version="1.0"?><opml version="2.0"><head/><body>
      <outline text="A"><outline title="B"><outline text="f" xmlUrl="http://x.example/f"/></outline>
      <outline text="g" xmlurl="http://x.example/g"/></outline></body></opml>"""
    assert parse_opml(content) == [
        FeedRecord("http://x.example/f", "f", None, "A/B"),
        FeedRecord("http://x.example/g", "g", None, "A"),
    ]


def test_bare_ampersand_is_recovered() -> None:
    content = (
        b'<opml version="1.0"><body><outline text="q" xmlUrl="http://x.example/?a=1&b=2"/></body></opml>'
    )
    assert [f.url for f in parse_opml(content)] == ["http://x.example/?a=1&b=2"]


def test_leading_newline_before_declaration() -> None:
    content = b'\n\n<?xml version="1.0" encoding="UTF-8"?><opml><body><outline xmlUrl="http://x.example/"/></body></opml>'
    assert parse_opml(content) == [FeedRecord("http://x.example/", None, None, None)]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   ",
        b"not xml at all",
        b"<html><body><p>hello</p></body></html>",
        b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>',
        b"<opml version='1.0'><head/></opml>",
        b"\x00\xff\xfe garbage",
    ],
)
def test_not_opml_raises_import_format_error(content: bytes) -> None:
    with pytest.raises(ImportFormatError) as info:
        parse_opml(content, file="subs.opml")
    assert info.value.file == "subs.opml"
    assert "OPML" in info.value.reason or "opml" in info.value.reason


def test_a_feed_file_is_not_opml(corpus_dir: Path) -> None:
    content = (corpus_dir / "feeds" / "wordpress_natashatherobot.xml").read_bytes()
    ok, why = looks_like(content)
    assert not ok and "rss" in why
    with pytest.raises(ImportFormatError):
        parse_opml(content)


def test_looks_like_rejects_html(corpus_dir: Path) -> None:
    page = next(p for p in sorted((corpus_dir / "html").iterdir()) if p.suffix in (".html", ".htm"))
    assert looks_like(page.read_bytes())[0] is False


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_import_format_error(content: bytes) -> None:
    try:
        feeds = parse_opml(content)
    except ImportFormatError:
        return
    assert all(isinstance(f, FeedRecord) for f in feeds)


_SAMPLE = (CORPUS / "opml" / "inoreader_echopi.opml").read_bytes()


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(_SAMPLE)), st.binary(max_size=16))
def test_truncated_or_damaged_real_file(cut: int, junk: bytes) -> None:
    for content in (_SAMPLE[:cut], _SAMPLE[:cut] + junk + _SAMPLE[cut:]):
        try:
            feeds = parse_opml(content)
        except ImportFormatError:
            continue
        assert len({f.url for f in feeds}) == len(feeds)


_text = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufffe\uffff"
        ),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
_folder = st.lists(_text.filter(lambda s: "/" not in s), min_size=0, max_size=2).map(
    lambda p: "/".join(p) or None
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.none() | _text, st.none() | _text.map(lambda s: f"https://h.example/{s}"), _folder),
        max_size=12,
    )
)
def test_export_round_trip_property(rows: list[tuple[str | None, str | None, str | None]]) -> None:
    feeds = [FeedRecord(f"https://f.example/{i}?a=1&b=<{i}>", t, h, f) for i, (t, h, f) in enumerate(rows)]
    assert parse_opml(export_opml(feeds).encode("utf-8")) == feeds


def test_an_opml_import_asks_no_dns_and_still_refuses_private_addresses(tmp_path: Path) -> None:
    """Thousands of feeds are judged by their URLs alone (a lookup each took hours offline); addresses
    written as private, loopback or localhost are refused all the same, and names wait for the fetch."""
    from netguard import VIOLATIONS, no_traffic_off_machine

    from tidings import collect
    from tidings.config import Config
    from tidings.store import open_store

    outlines = "".join(f'<outline type="rss" text="f{n}" xmlUrl="{url}"/>' for n, url in enumerate((
        "http://127.0.0.1:8080/feed", "http://localhost/feed.xml", "http://[::1]/rss", "http://10.1.2.3/atom",
        "http://app.localhost/feed", "https://blog.example.invalid/feed.xml", "https://go.dev/blog/feed.atom")))
    opml = tmp_path / "subs.opml"
    opml.write_text(f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>', encoding="utf-8")
    store = open_store(tmp_path / "t.db")
    VIOLATIONS.clear()
    with no_traffic_off_machine():
        report, _ = collect.import_paths(store, [str(opml)], "opml", Config())
    assert VIOLATIONS == []
    refused = {url for url, _why in report.failures}
    assert refused == {"http://127.0.0.1:8080/feed", "http://localhost/feed.xml", "http://[::1]/rss",
                       "http://10.1.2.3/atom", "http://app.localhost/feed"}
    assert all("private" in why for _url, why in report.failures)
    assert report.done == 2
