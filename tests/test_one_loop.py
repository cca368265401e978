"""One stage loop: the CLI (`tidings add` + `tidings run`) and the web's add-links box advance the
same links through the same calls, and end with the same items.

Real pages from ../shared/corpus/html/ are served on loopback; both paths fetch them over HTTP into
their own real SQLite store. Every call into ``pipeline.run`` is recorded (and passed on unchanged),
and the resulting items are compared field by field."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from loopback import LoopbackServer, Reply
from netguard import no_traffic_off_machine
from starlette.testclient import TestClient
from weblib import wait_for_job

from tidings import pipeline
from tidings.cli import run_cli
from tidings.config import Config, FetchConfig
from tidings.store import open_store
from tidings.web import create_app

PAGES = [
    "juejin_post_vue3-effect-computed.html",
    "golang-blog_godoc-documenting-go-code.html",
    "zhihu_zhuanlan_rl-ppo-basics.html",
    "juejin_homepage_mostly-navigation.html",  # rejected: not an article
]
FIELDS = ("title", "summary", "summary_origin", "section", "status", "error_reason", "language", "text")
WEEK = date(2024, 6, 9)


@pytest.fixture()
def served(corpus_dir: Path):  # type: ignore[no-untyped-def]
    routes = {}
    for name in PAGES:
        body = (corpus_dir / "html" / name).read_bytes()
        routes[f"/{name}"] = lambda _r, body=body: Reply(200, body, {"Content-Type": "text/html; charset=utf-8"})
    with LoopbackServer(routes) as server:
        yield server


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = pipeline.run

    def recording(store, config, **kwargs):  # type: ignore[no-untyped-def]
        calls.append({"stages": tuple(kwargs.get("stages") or pipeline.STAGES), "force": bool(kwargs.get("force")),
                      "item_ids": kwargs.get("item_ids") is not None})
        return real(store, config, **kwargs)

    monkeypatch.setattr(pipeline, "run", recording)
    return calls


def _items(db: Path | str) -> dict[str, tuple[Any, ...]]:
    from tidings.store import Item

    store = open_store(db)
    try:
        with store.session() as session:
            return {
                (item.urls[0].url if item.urls else item.url).rsplit("/", 1)[-1]: tuple(getattr(item, f) for f in FIELDS)
                for item in session.query(Item)
            }
    finally:
        store.close()


def _through_the_cli(tmp_path: Path, urls: list[str], host_port: str) -> Path:
    db = tmp_path / "cli.db"
    config = tmp_path / "tidings.toml"
    config.write_text(f'[fetch]\nallow_hosts = ["{host_port}"]\nretries = 0\n', encoding="utf-8")
    assert run_cli(["--db", str(db), "--config", str(config), "add", *urls]) == 0
    assert run_cli(["--db", str(db), "--config", str(config), "run", "--week", WEEK.isoformat(),
                    "--out", str(tmp_path / "out")]) in (0, 1)
    return db


def _through_the_web(db: str, urls: list[str], host_port: str) -> str:
    store = open_store(db)
    config = Config(fetch=FetchConfig(allow_hosts=[host_port], retries=0))
    try:
        with TestClient(create_app(store, config), base_url="http://127.0.0.1:8000") as client:
            page = client.get("/search").text
            token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)  # type: ignore[union-attr]
            response = client.post("/week/links", data={"csrf": token, "week": WEEK.isoformat(), "links": "\n".join(urls)},
                                   follow_redirects=False)
            assert response.status_code == 303, response.text[:300]
            job = wait_for_job(client, response.headers["location"], timeout=120, every=0.1)
            assert job["state"] == "done", job
    finally:
        store.close()
    return db


def test_cli_and_web_advance_the_same_items_through_the_same_loop(
    served: LoopbackServer, recorded: list[dict[str, Any]], tmp_path: Path, db_url: str
) -> None:
    """The CLI on a SQLite file; the web on a second SQLite file, then on PostgreSQL: the same items."""
    urls = [served.url(f"/{name}") for name in PAGES]
    with no_traffic_off_machine():
        cli_db = _through_the_cli(tmp_path, urls, served.host_port)
        cli_calls = list(recorded)
        recorded.clear()
        web_db = _through_the_web(db_url, urls, served.host_port)
        web_calls = list(recorded)
    # Both went through pipeline.run once, with every stage; the web limits it to the job's links.
    assert cli_calls == [{"stages": pipeline.STAGES, "force": False, "item_ids": False}]
    assert web_calls == [{"stages": pipeline.STAGES, "force": False, "item_ids": True}]
    cli_items, web_items = _items(cli_db), _items(web_db)
    assert set(cli_items) == set(web_items) == set(PAGES)
    for name in PAGES:
        assert cli_items[name] == web_items[name], name
    assert cli_items["juejin_homepage_mostly-navigation.html"][FIELDS.index("status")] == "rejected"
    assert all(cli_items[name][FIELDS.index("summary")] for name in PAGES[:3])
