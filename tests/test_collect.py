"""Collecting into the store: feed subscriptions polled on loopback (ETag, 304, 500, dead feeds),
OPML subscriptions, follow-links and robots.txt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from loopback import LoopbackServer, Reply
from sqlalchemy import select

from tidings import collect, pipeline
from tidings.config import Config
from tidings.records import ItemRecord
from tidings.sources.urlcheck import FetchPolicy
from tidings.store import Item, Source, open_store, utcnow


def test_feeds_poll_with_etag_304_errors_and_dead_feeds(db_url: str, corpus_dir: Path) -> None:
    feed = (corpus_dir / "feeds" / "hexo_tiann_weishu_atom.xml").read_bytes()

    def serve_feed(request: object) -> Reply:
        if getattr(request, "headers", {}).get("if-none-match") == '"v1"':
            return Reply(304, b"")
        return Reply(200, feed, {"Content-Type": "application/atom+xml", "ETag": '"v1"'})

    store = open_store(db_url)  # a SQLite file, then PostgreSQL
    with LoopbackServer({"/atom.xml": serve_feed, "/broken.xml": lambda r: Reply(500, b"oops")}) as server:
        policy = FetchPolicy(allow_hosts=(server.host_port,), retries=0, backoff_base=0.0)
        assert collect.subscribe(store, server.url("/atom.xml"))
        assert collect.subscribe(store, server.url("/broken.xml"))
        assert not collect.subscribe(store, server.url("/atom.xml"))  # already subscribed

        first = collect.poll_feeds(store, policy)
        assert first.new == 20 and first.failed == 1
        second = collect.poll_feeds(store, policy)
        assert second.new == 0 and second.skipped == 1  # 304 Not Modified: nothing re-parsed
        assert any(r.headers.get("if-none-match") == '"v1"' for r in server.requests)

        rows = {feed.locator.rsplit("/", 1)[-1]: (feed, count) for feed, count in collect.feed_rows(store)}
        good, good_count = rows["atom.xml"]
        assert good_count == 20 and good.last_success_at and good.etag == '"v1"'
        broken, _ = rows["broken.xml"]
        assert broken.consecutive_failures == 2 and "500" in (broken.last_error or "")
        assert not broken.dead  # two failures in a minute are not a dead feed

        # five consecutive failures spanning three days make it dead; `feeds fetch` then skips it
        with store.session() as session:
            row = session.scalar(select(Source).where(Source.locator == server.url("/broken.xml")))
            assert row is not None
            row.consecutive_failures, row.first_failure_at = 4, utcnow() - timedelta(days=4)
        collect.poll_feeds(store, policy)
        assert dict((f.locator, f.dead) for f, _ in collect.feed_rows(store))[server.url("/broken.xml")]
        polled = len(server.requests)
        collect.poll_feeds(store, policy)
        assert not any(r.path == "/broken.xml" for r in server.requests[polled:])
        collect.poll_feeds(store, policy, include_dead=True)
        assert any(r.path == "/broken.xml" for r in server.requests[polled:])

    with store.session() as session:
        urls = session.scalars(select(Item.url)).all()
    assert len(urls) == len(set(urls)) == 20


def test_feeds_are_polled_concurrently_with_per_host_limits(tmp_path: Path, corpus_dir: Path) -> None:
    """Two hosts (two loopback ports), six feeds each: never more than two polls at a time on one
    host, yet both hosts are polled at once."""
    feed = (corpus_dir / "feeds" / "hexo_tiann_weishu_atom.xml").read_bytes()
    changed = threading.Condition()
    now = {"a": 0, "b": 0, "all": 0}
    peak = dict.fromkeys(now, 0)

    def slow_feed(host: str) -> Callable[[object], Reply]:
        def serve(_request: object) -> Reply:
            with changed:
                for key in (host, "all"):
                    now[key] += 1
                    peak[key] = max(peak[key], now[key])
                changed.notify_all()
                # Hold the poll until all four allowed ones are in flight (or a second has passed), so
                # that a loaded machine cannot hide a missing limit by never overlapping polls.
                changed.wait_for(lambda: now["all"] >= 4, timeout=1.0)
            time.sleep(0.05)
            with changed:
                now[host] -= 1
                now["all"] -= 1
            return Reply(200, feed, {"Content-Type": "application/atom+xml"})
        return serve

    store = open_store(tmp_path / "t.db")
    with LoopbackServer({"*": slow_feed("a")}) as a, LoopbackServer({"*": slow_feed("b")}) as b:
        policy = FetchPolicy(allow_hosts=(a.host_port, b.host_port), retries=0, concurrency=8,
                             per_host_concurrency=2)
        for server in (a, b):
            for i in range(6):
                assert collect.subscribe(store, server.url(f"/feed{i}.xml"))
        report = collect.poll_feeds(store, policy)
    assert report.failed == 0 and len(a.requests) == len(b.requests) == 6
    assert peak["a"] == peak["b"] == 2
    assert peak["all"] > 2


def test_opml_subscriptions_round_trip(tmp_path: Path, corpus_dir: Path) -> None:
    store = open_store(tmp_path / "t.db")
    report = pipeline.StageReport("feeds import")
    path = corpus_dir / "opml" / "inoreader_echopi.opml"
    collect.subscribe_opml(store, path.read_bytes(), str(path), report)
    assert report.new == 17
    collect.subscribe_opml(store, path.read_bytes(), str(path), report)
    assert report.unchanged == 17  # re-importing changes nothing
    exported = collect.export_feeds(store)
    other = open_store(tmp_path / "other.db")
    again = pipeline.StageReport("feeds import")
    collect.subscribe_opml(other, exported.encode("utf-8"), "export.opml", again)
    assert again.new == 17
    assert [(f.locator, f.folder) for f, _ in collect.feed_rows(other)] == [
        (f.locator, f.folder) for f, _ in collect.feed_rows(store)
    ]


def test_opml_given_to_import_goes_through_the_url_check(tmp_path: Path, corpus_dir: Path) -> None:
    """``tidings import`` of an OPML file subscribes only what ``feeds import`` would (issue 13.6):
    a real export with a file and a cloud-metadata address slipped in."""
    real = (corpus_dir / "opml" / "inoreader_echopi.opml").read_bytes()
    bad = (b'<outline type="rss" text="p" xmlUrl="file:///etc/passwd"/>'
           b'<outline type="rss" text="m" xmlUrl="http://169.254.169.254/latest/meta-data/"/>'
           b'<outline type="rss" text="ok" xmlUrl="https://93.184.216.34/feed.xml"/>')
    body = real.index(b"<body>") + len(b"<body>")
    # Only the three added feeds: the real ones would need DNS, which tests may not use.
    path = tmp_path / "subs.opml"
    path.write_bytes(real[:body] + bad + b"</body></opml>")
    store = open_store(tmp_path / "t.db")
    report, outcomes = collect.import_paths(store, [str(path)], "auto", Config())
    assert [o.format for o in outcomes] == ["opml"]
    assert report.new == 1 and report.failed == 2
    assert {what for what, _ in report.failures} == {"file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"}
    assert [f.locator for f, _ in collect.feed_rows(store)] == ["https://93.184.216.34/feed.xml"]


def test_follow_links_queues_outgoing_links(tmp_path: Path, corpus_dir: Path) -> None:
    store = open_store(tmp_path / "t.db")
    social = corpus_dir / "social" / "posts-2023-12-part1.md"
    collect.import_paths(store, [str(social)], "social", Config(), follow_links=True)
    with store.session() as session:
        posts = session.scalars(select(Item).where(Item.kind == "post")).all()
        queued = session.scalars(select(Item).where(Item.kind == "article")).all()
        outgoing = {link for post in posts for link in post.links}
    assert len(posts) == 154
    assert queued and all(item.status == "pending" and item.extra.get("followed") for item in queued)
    assert len(queued) <= len(outgoing)


def test_followed_links_obey_robots_txt(tmp_path: Path) -> None:
    page = b"<html><head><title>Allowed page</title></head><body><article><h1>Allowed page</h1>" + (
        b"<p>" + "这是一段足够长的正文，用来确认页面确实被抓取并抽取了。".encode() * 8 + b"</p>"
    ) + b"</article></body></html>"
    routes = {
        "/robots.txt": lambda r: Reply(200, b"User-agent: *\nDisallow: /private\n", {"Content-Type": "text/plain"}),
        "/open": lambda r: Reply(200, page, {"Content-Type": "text/html; charset=utf-8"}),
        "/private": lambda r: Reply(200, page, {"Content-Type": "text/html; charset=utf-8"}),
        "/added": lambda r: Reply(200, page, {"Content-Type": "text/html; charset=utf-8"}),
    }
    store = open_store(tmp_path / "t.db")
    with LoopbackServer(routes) as server:
        records = [ItemRecord(url=server.url(p), extra={"followed": True}) for p in ("/open", "/private")]
        records.append(ItemRecord(url=server.url("/private-but-added")))
        pipeline.ingest(store, records, source_kind="follow", locator="test")
        server.routes["/private-but-added"] = routes["/added"]
        policy = FetchPolicy(allow_hosts=(server.host_port,), retries=0)
        report = pipeline.fetch_and_extract(store, policy)
    with store.session() as session:
        by_path = {i.url.rsplit("/", 1)[-1]: i for i in session.scalars(select(Item))}
    assert by_path["open"].status == "extracted"
    assert by_path["private"].error_reason == "robots_disallowed"
    # a link the user added is fetched as feed readers do, whatever robots.txt says
    assert by_path["private-but-added"].status == "extracted"
    assert report.failed == 1


def test_draft_sections_follow_the_curators_digests(tmp_path: Path, corpus_dir: Path) -> None:
    from tidings.curate import section_order

    store = open_store(tmp_path / "t.db")
    config = Config()
    assert section_order(store, config) == config.section_names  # no history yet: the defaults
    collect.import_paths(store, [str(corpus_dir / "digests" / "blog" / "2023-11-12")], "digest", config)
    # that week had three sections, one under its old name, which the alias maps
    assert section_order(store, config) == ["🌟 AI 相关", "⭐️ Go & 云原生 & Rust 相关", "📒 前端相关"]


def test_a_links_file_with_comment_lines_is_detected_as_links(tmp_path: Path) -> None:
    """'# ' comment lines read like level-1 headings: the README's own links file was taken for notes."""
    from tidings.sources import detect

    examples = Path(__file__).resolve().parents[1] / "examples" / "links.txt"
    text = examples.read_text(encoding="utf-8")
    assert detect(examples, text.encode(), [], text)[0] == "links"
    notes = "# 第一条笔记\n\n读了一篇文章，个人思考如下。\n\nhttps://go.dev/blog/go1.22\n\n# 第二条笔记\n\n另一段思考，写得很长。\n"
    assert detect(tmp_path / "n.md", notes.encode(), [], notes)[0] == "notes"
