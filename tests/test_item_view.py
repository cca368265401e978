"""One item view (issue 14, point 3): ``tidings items --json``, the web's item page and the week
view all show an item as ``Item.view()`` has it.

A real page from ../shared/corpus/html/ is served on loopback and goes through the library as a
user's link does (add, fetch, extract, summarize, classify), then into a week's draft; its tags are
set as the week view's tag form sets them. Each interface is then read the way a user reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import lxml.html
import pytest
from loopback import LoopbackServer, Reply
from netguard import no_traffic_off_machine
from starlette.testclient import TestClient

import tidings
from tidings import curate
from tidings.cli import run_cli
from tidings.config import Config, FetchConfig
from tidings.records import ItemView
from tidings.sources.urlcheck import FetchPolicy
from tidings.store import Item, Store

PAGE = "golang-blog_godoc-documenting-go-code.html"
WEEK = date(2024, 6, 9)
TAGS = ["Go", "文档"]


@dataclass
class Stored:
    store: Store
    db: Path
    config: Config
    view: ItemView


@pytest.fixture()
def stored(corpus_dir: Path, tmp_path: Path) -> Iterator[Stored]:
    body = (corpus_dir / "html" / PAGE).read_bytes()
    routes = {f"/{PAGE}": lambda _r: Reply(200, body, {"Content-Type": "text/html; charset=utf-8"})}
    db = tmp_path / "view.db"
    store = tidings.open_store(db)
    try:
        with LoopbackServer(routes) as server, no_traffic_off_machine():
            config = Config(workers=1, fetch=FetchConfig(allow_hosts=[server.host_port], retries=0))
            added = tidings.add_urls(store, [server.url(f"/{PAGE}")])
            tidings.run(store, config, policy=FetchPolicy.from_config(config.fetch))
        (item_id,) = added.item_ids
        with store.session() as session:
            item = session.get(Item, item_id)
            assert item is not None
            curate.set_item_tags(session, item, TAGS)
        curate.assign_to_week(store, [item_id], WEEK, config)
        with store.session() as session:
            item = session.get(Item, item_id)
            assert item is not None
            view = item.view()
        yield Stored(store, db, config, view)
    finally:
        store.close()


def test_the_item_went_through_every_stage(stored: Stored) -> None:
    # Otherwise the comparisons below would compare empty fields.
    view = stored.view
    assert view.status == "extracted"
    assert view.title and view.summary and view.section and view.url.startswith("http://127.0.0.1:")
    assert view.tags == TAGS


def test_items_json_is_the_view(stored: Stored, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--db", str(stored.db), "items", "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == stored.view.to_json()
    for key in ("id", "url", "urls", "title", "summary", "summary_origin", "section", "tags", "kind", "author",
                "author_handle", "category", "note", "links", "language", "published_at", "seen_at", "status",
                "error", "error_reason", "text"):
        assert key in listed, key  # every key scripts read before the view existed


def test_item_page_and_week_view_show_the_view(stored: Stored) -> None:
    from tidings.web import create_app

    view = stored.view
    with TestClient(create_app(stored.store, stored.config), base_url="http://127.0.0.1:8000") as client:
        item_page = client.get(f"/item/{view.id}")
        week_page = client.get(f"/week?week={WEEK.isoformat()}")
    assert item_page.status_code == 200 and week_page.status_code == 200

    page = lxml.html.fromstring(item_page.text)
    facts = dict(zip((dt.text_content() for dt in page.cssselect("dl.facts dt")),
                     page.cssselect("dl.facts dd"), strict=True))
    assert page.cssselect("h1")[0].text_content() == view.title
    assert facts["Summary"].text.strip() == view.summary
    assert facts["Section"].text.strip() == view.section
    assert [chip.text_content() for chip in facts["Tags"].cssselect(".chip")] == view.tags
    assert page.cssselect("p.meta a")[0].get("href") == view.link

    week = lxml.html.fromstring(week_page.text)
    (entry,) = week.cssselect("li.entry")
    assert entry.cssselect(".entry-head .title")[0].text_content() == view.title
    assert entry.cssselect("p.summary")[0].text_content() == view.summary
    assert entry.get("data-section") == view.section
    assert [chip.text_content() for chip in entry.cssselect("p.tags .chip")] == view.tags
    assert entry.cssselect("a.domain")[0].get("href") == view.link
    assert entry.cssselect("a.item-link")[0].get("href") == f"/item/{view.id}"
