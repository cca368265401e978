"""Feed parsing against the 22 real feeds of the corpus, and polling over loopback HTTP."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import LoopbackServer, Reply, Request

from tidings.errors import FetchError, ImportFormatError
from tidings.sources.feeds import ParsedFeed, looks_like, parse_date, parse_feed, poll_feed
from tidings.sources.urlcheck import FetchPolicy

FEEDS = CORPUS / "feeds"  # module level: parametrize needs SOURCES.tsv at collection time

# Where a feed was served from, for the one feed whose links are all relative and which names no
# absolute base anywhere (hugo_chanjarster: <link>/</link>, relative atom:link self). A fetched
# feed always has this URL; a file read from disk has not, see test_relative_links_without_base.
SERVED_FROM = {"hugo_chanjarster_index.xml": "https://chanjarster.github.io/index.xml"}

# SOURCES.tsv kind → what looks_like says.
KIND = {"rss2": "rss", "atom": "atom", "rdf": "rdf"}


def _sources() -> list[dict[str, str]]:
    with open(FEEDS / "SOURCES.tsv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


SOURCES = _sources()
NAMES = [row["file"] for row in SOURCES]


def _parse(name: str) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), file=name, url=SERVED_FROM.get(name))


def _absolute(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def test_all_22_files_listed(corpus_dir: Path) -> None:
    files = {p.name for p in (corpus_dir / "feeds").iterdir() if p.name != "SOURCES.tsv"}
    assert files == set(NAMES) and len(NAMES) == 22


@pytest.mark.parametrize("row", SOURCES, ids=NAMES)
def test_corpus_feed(row: dict[str, str]) -> None:
    name = row["file"]
    content = (FEEDS / name).read_bytes()
    feed = _parse(name)
    assert feed.errors == []
    # No deviations: every file yields exactly the entry count SOURCES.tsv gives.
    assert len(feed.items) == int(row["entries"])
    assert feed.title
    for item in feed.items:
        assert item.kind == "article"
        assert _absolute(item.url), item.url
        assert item.title or item.text, item
        assert item.guid
        assert item.published_at is None or isinstance(item.published_at, datetime)
        assert item.text is None or "content_html" in item.extra
        assert "\ufffd" not in (item.title or "") or name == "broken_linuxsoft_invalid_utf8.xml"
        for link in item.links:
            assert _absolute(link)
    assert looks_like(content) == (True, KIND[row["kind"]])


@pytest.mark.parametrize("name", ["gb2312_dvbbs_kc0011.rss", "gb2312_qq_news_china.xml"])
def test_gb2312_is_not_valid_utf8_and_still_parses(name: str) -> None:
    content = (FEEDS / name).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")
    feed = parse_feed(content)
    assert all(re.search(r"[\u4e00-\u9fff]", i.title or "") for i in feed.items)
    assert feed.bozo_reason is None


def test_gb2312_forum_feed_details() -> None:
    feed = _parse("gb2312_dvbbs_kc0011.rss")
    assert feed.title == "投资资讯网交易在线--流通纪念币最新20篇论坛主题-全文"
    first = feed.items[0]
    assert first.title == "建国35周年纪念，华表，和平鸽"
    assert first.author == "大鱼儿"
    # '2020/1/10 14:33:00' names no zone: a naive datetime, not feedparser's "1 December" guess.
    assert first.published_at == datetime(2020, 1, 10, 14, 33)
    assert first.guid == first.url  # no <guid>


def test_qq_news_gb2312_dates_and_summary() -> None:
    first = _parse("gb2312_qq_news_china.xml").items[0]
    assert first.title == "习近平为何如此强调崇尚英雄？"
    assert first.url == "http://news.qq.com/a/20180918/009846.htm"
    assert first.published_at == datetime(2018, 9, 18, 14, 38, 10)
    assert first.text is None and first.extra["feed_summary"].startswith("编者按：")


def test_hugo_atom_named_file_is_rss_with_full_description() -> None:
    feed = _parse("hugo_keelii_atom.xml")
    first = feed.items[0]
    assert first.title == "前端开发的瓶颈与未来之路"
    assert first.published_at == datetime(2020, 5, 10, 18, 33, 57, tzinfo=timezone(timedelta(hours=8)))
    # The whole post is in <description>: it is the text, not a summary.
    assert first.text and len(first.text) > 1500 and first.extra["content_from"] == "description"
    assert "<" not in first.text and "&#34;" not in first.text


def test_relative_links_resolved_against_feed_link() -> None:
    feed = _parse("github_releases_shopify_timber.atom")
    assert feed.items[0].url == "https://github.com/Shopify/Timber/releases/tag/v2.0.2"
    assert feed.items[0].guid == "tag:github.com,2008:Repository/17219500/v2.0.2"
    assert feed.items[0].text and feed.items[0].author == "cshold"


def test_relative_links_resolved_against_feed_url() -> None:
    feed = _parse("hugo_chanjarster_index.xml")
    assert feed.link == "https://chanjarster.github.io/"
    first = feed.items[0]
    assert first.url == "https://chanjarster.github.io/post/spring-boot-jdk-comp-table-copy/"
    assert first.guid == first.url
    assert first.text is None and "feed_summary" not in first.extra  # empty <description>


def test_relative_links_without_base() -> None:
    """Deviation, on purpose: read from disk with no URL, this feed's 407 links cannot be made
    absolute, so it yields no items and one error that says how to fix it."""
    feed = parse_feed((FEEDS / "hugo_chanjarster_index.xml").read_bytes(), file="chanjarster.xml")
    assert feed.items == []
    [error] = feed.errors
    assert isinstance(error, ImportFormatError)
    assert "407 entries have relative links" in error.reason and "URL" in error.reason


def test_double_escaped_entities_are_decoded() -> None:
    feed = _parse("hugo_mogeko_posts_index.xml")
    assert feed.title == "Posts on Mogeko`s Blog"
    summaries = [i.extra["feed_summary"] for i in feed.items]
    assert not any(re.search(r"&(emsp|hellip|nbsp|amp);", s) for s in summaries)
    assert summaries[0].startswith("plaintext -- 三年啊！")
    assert all(i.text is None for i in feed.items)  # summaries only


def test_jekyll_zone_without_space() -> None:
    first = _parse("jekyll_halfrost_feed.xml").items[0]
    assert first.published_at == datetime(2016, 9, 5, 7, 2, 3, tzinfo=timezone(timedelta(hours=8)))
    assert first.tags == ["iOS", "Blog"]
    assert first.text and len(first.text) > 5000


def test_bare_dates_are_naive_midnight() -> None:
    ego = _parse("ego_lujun9972_rss.xml").items[0]
    assert ego.published_at == datetime(2026, 7, 24)
    assert "用-proc-pid-fd" in ego.url  # raw Chinese in the URL is kept as published
    dede = _parse("dedecms_fangyafei_rss.xml").items[0]
    assert dede.published_at == datetime(2014, 7, 30)
    assert dede.guid == dede.url == "http://www.fangyafei.com/BLOG/N/cxy.html"
    assert dede.tags == ["无关技术"] and dede.author == "Aslan"


def test_feedgen_uses_published_not_build_time() -> None:
    feed = _parse("feedgen_yihong0618_gitblog_feed.xml")
    first = feed.items[0]
    assert first.published_at == datetime(2026, 8, 18, 15, 33, 38, tzinfo=UTC)
    assert first.text and first.text.startswith("来，喝一杯")
    assert "feed_summary" not in first.extra  # content only, no separate summary
    assert len({i.guid for i in feed.items}) == 274


def test_atom_content_and_summary_both_kept() -> None:
    first = _parse("hexo_wzpan_hahack_atom.xml").items[0]
    assert first.text and len(first.text) > 1000
    assert first.extra["content_html"].lstrip().startswith("<")
    assert (
        first.extra["feed_summary"]
        == "以 montage 的形式，回顾我的 2020 年。本文所有内容仅代表个人观点，与雇主无关。"
    )
    assert first.tags == ["life", "summary"]


def test_summary_only_atom() -> None:
    for name in ("hexo_xaoxuu_atom_summary.xml", "zh_bbc_chinese_atom.xml"):
        for item in _parse(name).items:
            assert item.text is None and "content_html" not in item.extra
            assert item.extra["feed_summary"]
    bbc = _parse("zh_bbc_chinese_atom.xml")
    assert bbc.items[0].title == "国际足联调查香港球迷嘘国歌事件"
    assert bbc.items[0].published_at == datetime(2015, 9, 11, 2, 26, 15, tzinfo=UTC)


def test_wordpress_content_encoded() -> None:
    first = _parse("wordpress_natashatherobot.xml").items[0]
    assert first.author == "Natasha Murashev"
    assert first.text and first.text.startswith("For try! Swift NYC")
    assert "<p>" in first.extra["content_html"]
    assert first.extra["feed_summary"].endswith("...")
    assert "https://www.tryswift.co/events/2017/nyc/" in first.links
    assert first.tags[:2] == ["iPhone", "event"]


def test_github_commits() -> None:
    first = _parse("github_commits_miniflux.atom").items[0]
    assert first.url == "https://github.com/miniflux/v2/commit/6d97f8b4582414b6ce69467656824690057d4793"
    assert first.guid.startswith("tag:github.com,2008:Grit::Commit/")
    assert first.published_at == datetime(2024, 3, 12, 5, 30, 27, tzinfo=UTC)  # only <updated>


def test_iso_8859_1() -> None:
    first = _parse("de_golem_iso-8859-1.xml").items[0]
    assert first.title == "Red Dead Redemption 2: Hinweise auf PC-Umsetzung in App von Rockstar Games"
    assert "wünschen" in first.extra["feed_summary"]
    assert first.text and "Ã" not in first.text
    assert first.published_at == datetime(2018, 10, 28, 13, 48, tzinfo=timezone(timedelta(hours=1)))


def test_rdf_without_dates() -> None:
    feed = _parse("de_heise_rdf.xml")
    assert all(i.published_at is None for i in feed.items)
    assert feed.items[1].title == "Mega-Deal: IBM übernimmt Red Hat"
    assert feed.items[0].guid == feed.items[0].url


def test_broken_prolog_and_leading_newline() -> None:
    php = _parse("broken_phpxml_prolog_fcutrecht.rss")
    assert php.items[0].title == "Serdar Gözübüyük scheidsrechter bij FC Twente - FC Utrecht"
    tc = _parse("broken_techcrunch_leading_newline.xml")
    assert tc.bozo_reason and "whitespace" in tc.bozo_reason
    assert tc.items[0].author == "Leena Rao" and tc.items[0].text


def test_truncated_utf8_keeps_the_valid_text() -> None:
    """Declared UTF-8 with bytes cut mid-character: feedparser alone re-reads it as ISO-8859-2
    (mojibake throughout); we replace only the broken bytes. Items have no <link>/<guid>, so the
    brief's story link in the description is the item URL."""
    feed = _parse("broken_linuxsoft_invalid_utf8.xml")
    assert feed.title == "Linuxsoft.cz - zprávičky"
    assert feed.bozo_reason == "invalid UTF-8 bytes replaced"
    first = feed.items[0]
    assert first.title.startswith("Zamyšlení na tím, že Google")
    assert first.url == "http://economictimes.indiatimes.com/articleshow/1508998.cms"
    assert first.extra["link_from"] == "description"


def test_bom() -> None:
    feed = _parse("bom_donthitsave.xml")
    assert feed.title == "Don't Hit Save"
    assert feed.items[0].published_at == datetime(2019, 5, 24, tzinfo=timezone(timedelta(hours=-7)))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   \n",
        b"<html><head><title>x</title></head><body><p>Not a feed</p></body></html>",
        b"just some words",
        b"\x00\x01\x02\xff\xfe",
        b'<?xml version="1.0"?><opml version="1.0"><body/></opml>',
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>cut',
    ],
)
def test_unparseable_gives_an_error_not_an_exception(content: bytes) -> None:
    feed = parse_feed(content, file="x.xml")
    assert feed.items == []
    [error] = feed.errors
    assert isinstance(error, ImportFormatError) and error.file == "x.xml" and error.reason


def test_error_line_points_into_the_original_file() -> None:
    content = b'\n\n<?xml version="1.0"?>\n<rss version="2.0">\n<channel>\n<title>a</title>\n</chanel>'
    feed = parse_feed(content, url="http://feeds.example/x")
    [error] = feed.errors
    assert error.file == "http://feeds.example/x"
    assert error.line == 7


def test_bytes_are_never_taken_for_a_file_name(tmp_path: Path) -> None:
    secret = tmp_path / "feed.xml"
    secret.write_bytes((FEEDS / "bom_donthitsave.xml").read_bytes())
    feed = parse_feed(str(secret).encode())
    assert feed.items == [] and feed.errors


def test_an_empty_valid_feed_is_no_error() -> None:
    feed = parse_feed(
        b'<rss version="2.0"><channel><title>Quiet</title><link>http://q.example/</link></channel></rss>'
    )
    assert feed.errors == [] and feed.items == [] and feed.title == "Quiet"


def test_entry_without_link_is_one_error() -> None:
    content = (
        b'<rss version="2.0"><channel><title>t</title><link>http://s.example/</link>'
        b"<item><title>no link</title></item>"
        b"<item><title>ok</title><link>http://s.example/a</link></item></channel></rss>"
    )
    feed = parse_feed(content)
    assert [i.url for i in feed.items] == ["http://s.example/a"]
    [error] = feed.errors
    assert "entry 1" in str(error) and "no link" in error.reason


def test_declared_charset_wrong_but_utf8() -> None:
    content = '<?xml version="1.0" encoding="gb2312"?><rss version="2.0"><channel><title>中文标题</title><link>http://s.example/</link><item><title>条目</title><link>http://s.example/1</link></item></channel></rss>'.encode()
    feed = parse_feed(content)
    assert feed.title == "中文标题" and feed.items[0].title == "条目"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Mon, 05 Sep 2016 07:02:03+0800",
            datetime(2016, 9, 5, 7, 2, 3, tzinfo=timezone(timedelta(hours=8))),
        ),
        ("Sat, 02 Jan 2021 10:00:00 UTC", datetime(2021, 1, 2, 10, tzinfo=UTC)),
        ("2025-12-08T12:08:10.000Z", datetime(2025, 12, 8, 12, 8, 10, tzinfo=UTC)),
        ("2014-07-30", datetime(2014, 7, 30)),
        ("2020/1/10 14:33:00", datetime(2020, 1, 10, 14, 33)),
        ("2018-09-18 14:38:10", datetime(2018, 9, 18, 14, 38, 10)),
        ("2018-09-18 14:38 +08:00", datetime(2018, 9, 18, 14, 38, tzinfo=timezone(timedelta(hours=8)))),
        ("yesterday", None),
        ("", None),
        ("2020-13-45", None),
    ],
)
def test_parse_date(raw: str, expected: datetime | None) -> None:
    assert parse_date(raw) == expected


def test_looks_like_rejects_other_formats(corpus_dir: Path) -> None:
    opml = (corpus_dir / "opml" / "inoreader_echopi.opml").read_bytes()
    assert looks_like(opml) == (False, "root element <opml> is not rss, feed or rdf:RDF")
    assert looks_like(b"<feed><entry/></feed>")[0] is False  # no Atom namespace
    assert looks_like(b"hello")[0] is False
    assert looks_like(b"")[0] is False
    assert looks_like(b'\xef\xbb\xbf<!-- c --><?xml-stylesheet href="x"?><rss version="2.0"/>') == (
        True,
        "rss",
    )


# --------------------------------------------------------------------------- property tests


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(content: bytes) -> None:
    feed = parse_feed(content)
    assert isinstance(feed, ParsedFeed)
    assert all(isinstance(e, ImportFormatError) for e in feed.errors)


_SAMPLES = [(FEEDS / n).read_bytes() for n in ("gb2312_qq_news_china.xml", "hexo_xaoxuu_atom_summary.xml")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES), st.floats(min_value=0, max_value=1), st.binary(max_size=8))
def test_truncated_or_damaged_real_feeds_never_raise(sample: bytes, where: float, junk: bytes) -> None:
    cut = int(len(sample) * where)
    for content in (sample[:cut], sample[:cut] + junk + sample[cut:]):
        feed = parse_feed(content, file="sample.xml")
        assert all(isinstance(e, ImportFormatError) for e in feed.errors)
        for item in feed.items:
            assert _absolute(item.url)
            assert item.title or item.text or item.extra.get("feed_summary")


# --------------------------------------------------------------------------- polling


def _policy(srv: LoopbackServer) -> FetchPolicy:
    return FetchPolicy(
        allow_hosts=(srv.host_port,),
        connect_timeout=2.0,
        read_timeout=2.0,
        retries=1,
        backoff_base=0.001,
    )


def test_poll_etag_then_304() -> None:
    body = (FEEDS / "wordpress_natashatherobot.xml").read_bytes()
    etag = '"v1-natasha"'

    def handler(request: Request) -> Reply:
        if request.headers.get("if-none-match") == etag:
            return Reply(304, b"", {"ETag": etag})
        return Reply(200, body, {"Content-Type": "application/rss+xml; charset=UTF-8", "ETag": etag})

    with LoopbackServer({"/feed": handler}) as srv:
        first = poll_feed(srv.url("/feed"), _policy(srv))
        assert first.status == 200 and first.etag == etag
        assert first.feed is not None and len(first.feed.items) == 10
        assert "if-none-match" not in srv.requests[0].headers
        again = poll_feed(srv.url("/feed"), _policy(srv), etag=first.etag)
        assert srv.requests[-1].headers["if-none-match"] == etag
        assert again.status == 304 and again.feed is None and again.etag == etag


def test_poll_last_modified() -> None:
    body = (FEEDS / "zh_bbc_chinese_atom.xml").read_bytes()
    stamp = "Fri, 11 Sep 2015 03:40:00 GMT"

    def handler(request: Request) -> Reply:
        if request.headers.get("if-modified-since") == stamp:
            return Reply(304, b"")
        return Reply(200, body, {"Content-Type": "application/atom+xml", "Last-Modified": stamp})

    with LoopbackServer({"/atom": handler}) as srv:
        first = poll_feed(srv.url("/atom"), _policy(srv))
        assert first.last_modified == stamp and first.etag is None
        assert first.feed is not None and len(first.feed.items) == 55
        again = poll_feed(srv.url("/atom"), _policy(srv), last_modified=first.last_modified)
        assert srv.requests[-1].headers["if-modified-since"] == stamp
        # The 304 carried no validators, so the ones we sent are kept.
        assert (again.status, again.feed, again.last_modified) == (304, None, stamp)


def test_poll_server_error_raises_fetch_error() -> None:
    with LoopbackServer({"/broken": lambda r: Reply(500, b"oops")}) as srv:
        with pytest.raises(FetchError) as info:
            poll_feed(srv.url("/broken"), _policy(srv))
    assert info.value.reason == "http_500"


@pytest.mark.parametrize(
    "content_type", ["application/rss+xml; charset=gb2312", "text/xml", "text/xml; charset=iso-8859-1"]
)
def test_poll_gb2312_real_bytes(content_type: str) -> None:
    body = (FEEDS / "gb2312_qq_news_china.xml").read_bytes()
    with LoopbackServer({"/rss": lambda r: Reply(200, body, {"Content-Type": content_type})}) as srv:
        result = poll_feed(srv.url("/rss"), _policy(srv))
    assert result.feed is not None and result.feed.errors == []
    assert result.feed.title == "新闻国内"
    assert [i.title for i in result.feed.items][:2] == [
        "习近平为何如此强调崇尚英雄？",
        "习近平谈抗战：牢记历史是要以史为鉴、面向未来",
    ]


def test_poll_resolves_relative_links_against_the_final_url() -> None:
    body = (FEEDS / "hugo_chanjarster_index.xml").read_bytes()
    with LoopbackServer(
        {"/index.xml": lambda r: Reply(200, body, {"Content-Type": "application/rss+xml"})}
    ) as srv:
        result = poll_feed(srv.url("/index.xml"), _policy(srv))
        assert result.feed is not None and len(result.feed.items) == 407
        assert result.feed.items[0].url == srv.url("/post/spring-boot-jdk-comp-table-copy/")


def test_titles_plain_keep_angle_brackets_html_lose_tags() -> None:
    def title(raw: bytes) -> str | None:
        content = (
            b'<rss version="2.0"><channel><item><title>' + raw + b"</title><link>http://x.example/</link>"
        )
        return parse_feed(content + b"</item></channel></rss>").items[0].title

    assert title(b"Rust Vec&lt;T&gt; guide") == "Rust Vec<T> guide"
    assert title(b"<![CDATA[a <b>bold</b> & y]]>") == "a bold & y"
    assert title(b"A &amp;amp; B") == "A & B"
