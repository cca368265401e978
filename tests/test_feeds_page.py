"""The feeds page at scale: every shared OPML file subscribed (about 2,200 feeds), paged 100 at a
time, filtered by state and folder, each feed with a sparkline of items per week."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from loopback import Handler, LoopbackServer, Reply
from sqlalchemy import func, select, update

from tidings import collect, feedlist
from tidings.config import Config
from tidings.sources.urlcheck import FetchPolicy
from tidings.store import Item, ItemSource, Source, Store, open_store
from tidings.web import create_app


def served_feed(content: bytes) -> Handler:
    return lambda request: Reply(200, content, {"Content-Type": "application/xml"})


@pytest.fixture(scope="module")
def store(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The real feeds served on loopback, subscribed and polled (their items make the sparklines),
    then every shared OPML file subscribed (never polled: those are real sites)."""
    store = open_store(tmp_path_factory.mktemp("feeds") / "feeds.db")
    files = sorted(p for p in (corpus_dir / "feeds").iterdir() if p.suffix in (".xml", ".rss", ".atom"))
    with LoopbackServer({f"/{p.name}": served_feed(p.read_bytes()) for p in files}) as server:
        for path in files:
            assert collect.subscribe(store, server.url(f"/{path.name}"), folder="corpus feeds")
        report = collect.poll_feeds(store, FetchPolicy(allow_hosts=(server.host_port,), retries=0, backoff_base=0.0))
        assert report.new > 400, report.failures
    report, _ = collect.import_paths(store, [str(corpus_dir / "opml")], "opml", Config())
    assert report.done > 2000, report.failures[:5]
    with store.session() as session:  # a few feeds in trouble, as polling leaves them
        ids = session.scalars(select(Source.id).where(Source.kind == "feed").order_by(Source.id).limit(7)).all()
        session.execute(update(Source).where(Source.id.in_(ids[:3])).values(dead=True, consecutive_failures=9))
        session.execute(update(Source).where(Source.id.in_(ids[3:])).values(consecutive_failures=2,
                                                                          last_error="HTTP 503"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store, Config()), base_url="http://127.0.0.1:8000") as c:
        yield c


def feed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="feed[^"]*" data-feed="(\d+)"', html)]


def total_feeds(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count(Source.id)).where(Source.kind == "feed")) or 0


def test_every_feed_is_on_exactly_one_page_of_100(client: TestClient, store: Store) -> None:
    total = total_feeds(store)
    assert total > 2200
    first = client.get("/feeds")
    assert first.status_code == 200
    assert len(feed_ids(first.text)) == 100
    assert len(first.content) < 250_000  # was 1 MB with every feed on it
    pages = -(-total // 100)
    assert f"page 1 of {pages}" in first.text and 'rel="next"' in first.text
    seen: list[int] = []
    for number in range(1, pages + 1):
        seen += feed_ids(client.get(f"/feeds?page={number}").text)
    assert len(seen) == len(set(seen)) == total
    last = client.get(f"/feeds?page={pages + 5}")  # past the end: the last page
    assert feed_ids(last.text) == seen[-len(feed_ids(last.text)):]


def test_filters_by_state_and_folder(client: TestClient, store: Store) -> None:
    dead = feed_ids(client.get("/feeds?state=dead").text)
    failing = feed_ids(client.get("/feeds?state=failing").text)
    assert len(dead) == 3 and len(failing) == 4 and not set(dead) & set(failing)
    assert "failing ×2" in client.get("/feeds?state=failing").text
    ok = feedlist.feed_page(store, state="ok")
    assert ok.matching == total_feeds(store) - 7
    with store.session() as session:
        folder, count = session.execute(
            select(Source.folder, func.count(Source.id)).where(Source.kind == "feed", Source.folder.is_not(None))
            .group_by(Source.folder).order_by(func.count(Source.id).desc())).first()  # type: ignore[misc]
        expected = set(session.scalars(select(Source.id).where(Source.kind == "feed", Source.folder == folder)))
    shown: set[int] = set()
    for number in range(1, -(-count // 100) + 1):
        shown |= set(feed_ids(client.get("/feeds", params={"folder": folder, "page": number}).text))
    assert shown == expected
    assert client.get("/feeds?state=nonsense").status_code in (400, 422)
    assert client.get("/feeds?page=0").status_code in (400, 422)


def test_a_sparkline_counts_the_feeds_items_per_week(client: TestClient, store: Store) -> None:
    listing = feedlist.feed_page(store, per_page=5000)
    assert listing.weeks_end is not None
    start = listing.weeks_end - timedelta(days=7 * feedlist.SPARK_WEEKS - 1)
    busy = max(listing.rows, key=lambda r: sum(r.weekly))
    assert sum(busy.weekly) > 0
    with store.session() as session:
        days = session.scalars(select(func.coalesce(Item.published_at, Item.seen_at))
                               .join(ItemSource, ItemSource.item_id == Item.id)
                               .where(ItemSource.source_id == busy.id)).all()
    in_window = [d.date() if isinstance(d, datetime) else date.fromisoformat(str(d)[:10]) for d in days]
    in_window = [d for d in in_window if start <= d <= listing.weeks_end]
    assert sum(busy.weekly) == len(in_window)
    # Its page shows it as bars, one per week with items, in an inline SVG with a text label.
    page = next(n for n in range(1, 40)
                if busy.id in feed_ids(client.get(f"/feeds?page={n}").text))
    html = client.get(f"/feeds?page={page}").text
    row = html.split(f'data-feed="{busy.id}"', 1)[1].split("</tr>", 1)[0]
    assert row.count("<rect ") == sum(1 for n in busy.weekly if n)
    assert f"{sum(busy.weekly)} items in {feedlist.SPARK_WEEKS} weeks" in row


def test_removing_a_feed_returns_to_its_page_and_filter(client: TestClient, store: Store) -> None:
    html = client.get("/feeds?page=3&state=ok").text
    victim = feed_ids(html)[0]
    with store.session() as session:
        url = session.scalar(select(Source.locator).where(Source.id == victim))
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert token and url
    response = client.post("/feeds/remove", data={"csrf": token.group(1), "url": url, "page": "3", "state": "ok"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/feeds?page=3&state=ok"
    assert victim not in feed_ids(client.get(response.headers["location"]).text)
