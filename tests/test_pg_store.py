"""The store on PostgreSQL, against a real server the session starts (tests/pg.py).

Migrations from one history on both dialects, values that round-trip identically, concurrent
ingest without UNIQUE races, a clear refusal for search, and ``tidings store copy`` both ways."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from tidings.cli import run_cli
from tidings.store import Base, Digest, Item, Source, Story, current_revision, head_revision, open_store
from tidings.storecopy import copy_order


def test_migrations_build_the_models_schema_on_both_dialects(db_url: str, pg_server) -> None:  # noqa: ANN001
    target = pg_server.fresh_database(migrated=False) if db_url.startswith("postgresql") else db_url
    store = open_store(target)
    try:
        assert current_revision(store.engine) == head_revision()
        tables = set(inspect(store.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
    finally:
        store.close()


def test_values_round_trip_identically(db_url: str) -> None:
    published = datetime(2024, 6, 3, 8, 30, 15, 123456, tzinfo=UTC)
    store = open_store(db_url)
    try:
        with store.session() as session:
            session.add(Source(kind="feed", locator="https://example.org/feed", dead=True))
            session.add(Item(url="https://example.org/a", title="标题 ✓", published_at=published,
                             extra={"title_derived": True, "nested": {"n": [1, 2.5, None, "字"]}},
                             fingerprint=b"\x00\xff\x10", error_transient=True, section_confidence=0.25))
            session.add(Digest(week=date(2024, 6, 9), authors=["a", "b"], meta={"draft": False}))
        with store.session() as session:
            item = session.query(Item).one()
            assert item.id == 1
            assert item.published_at == published.replace(tzinfo=None)  # the wall clock, as SQLite always kept it
            assert item.extra == {"title_derived": True, "nested": {"n": [1, 2.5, None, "字"]}}
            assert item.fingerprint == b"\x00\xff\x10" and item.error_transient is True
            assert item.title == "标题 ✓" and item.section_confidence == 0.25
            assert session.query(Source).one().dead is True
            digest = session.query(Digest).one()
            assert digest.week == date(2024, 6, 9) and digest.authors == ["a", "b"] and digest.meta == {"draft": False}
    finally:
        store.close()


# --- tidings store copy: SQLite → PostgreSQL → SQLite, nothing lost -----------------------------------

def _import_sample(corpus: Path, db: str) -> None:
    """The 87 shared digests, and a sample of every other kind of source."""
    imports = [
        ("digest", corpus / "digests" / "blog"),
        ("social", corpus / "social" / "posts-2023-12-part1.md"),
        ("notes", corpus / "notes" / "ainotes-part1.md"),
        ("blog", corpus / "blog" / "Gaohaoyang-gaohaoyang.github.io"),
        ("feed", corpus / "feeds" / "hexo_tiann_weishu_atom.xml"),
        ("feed", corpus / "feeds" / "gb2312_qq_news_china.xml"),
    ]
    for fmt, path in imports:
        assert run_cli(["--db", db, "-q", "import", "--format", fmt, str(path)]) == 0, (fmt, path)
    # Stories and items point at each other (the copy's one foreign-key cycle): group a few.
    store = open_store(db)
    try:
        with store.session() as session:
            items = session.scalars(select(Item).order_by(Item.id).limit(6)).all()
            for pair in (items[0:3], items[3:6]):
                story = Story(best_item_id=pair[1].id, size=len(pair), chosen_by="curator", pinned=True)
                session.add(story)
                session.flush()
                for item in pair:
                    item.story_id = story.id
            # An item folded into a later one: a row pointing forward in its own table.
            newest = session.scalar(select(func.max(Item.id)))
            items[0].duplicate_of_id = newest
    finally:
        store.close()


def _all_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    store = open_store(url)
    try:
        with store.engine.connect() as connection:
            return {table.name: [dict(row._mapping) for row in connection.execute(select(table).order_by(table.c.id))]
                    for table in copy_order()[0]}
    finally:
        store.close()


def _weeks(url: str) -> list[date]:
    store = open_store(url)
    try:
        with store.session() as session:
            return list(session.scalars(select(Digest.week).order_by(Digest.week)))
    finally:
        store.close()


def _rendered(url: str, weeks: list[date], capsys: pytest.CaptureFixture[str]) -> dict[date, str]:
    rendered = {}
    capsys.readouterr()
    for week in weeks:
        assert run_cli(["--db", url, "-q", "digest", "--week", week.isoformat()]) == 0
        rendered[week] = capsys.readouterr().out
    return rendered


def test_store_copy_to_postgresql_and_back_loses_nothing(
    corpus_dir: Path, tmp_path: Path, pg_server, capsys: pytest.CaptureFixture[str]  # noqa: ANN001
) -> None:
    source = str(tmp_path / "source.db")
    _import_sample(corpus_dir, source)
    on_pg = pg_server.fresh_database(migrated=False)
    back = str(tmp_path / "back.db")
    assert run_cli(["--db", source, "store", "copy", "--from", source, "--to", on_pg, "--batch", "300"]) == 0
    assert run_cli(["store", "copy", "--from", on_pg, "--to", back]) == 0
    capsys.readouterr()

    original = _all_rows(source)
    assert len(original["digests"]) == 87 and len(original["items"]) > 2000
    assert {row["kind"] for row in original["items"]} >= {"article", "post", "note"}
    assert sum(1 for row in original["items"] if row["story_id"]) == 6 and len(original["stories"]) == 2
    assert original["items"][0]["duplicate_of_id"] == original["items"][-1]["id"]
    assert _all_rows(on_pg) == original
    assert _all_rows(back) == original

    weeks = _weeks(source)
    assert len(weeks) == 87
    expected = _rendered(source, weeks, capsys)
    assert all(expected.values())
    assert _rendered(on_pg, weeks, capsys) == expected
    assert _rendered(back, weeks, capsys) == expected

    # Ids continue after the copied ones on PostgreSQL (the sequences were moved past them).
    store = open_store(on_pg)
    try:
        with store.session() as session:
            session.add(Item(url="https://example.org/after-the-copy"))
        with store.session() as session:
            newest = session.scalar(select(func.max(Item.id)))
            assert newest == max(row["id"] for row in original["items"]) + 1
    finally:
        store.close()


def test_store_copy_refuses_a_non_empty_target_unless_forced(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(tmp_path / "s.db")
    store = open_store(source)
    with store.session() as session:
        session.add(Item(url="https://example.org/one", title="one"))
    store.close()
    target = open_store(pg_url)
    with target.session() as session:
        session.add(Item(url="https://example.org/other", title="kept"))
    target.close()
    capsys.readouterr()
    assert run_cli(["store", "copy", "--from", source, "--to", pg_url]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [row["title"] for row in _all_rows(pg_url)["items"]] == ["kept"]
    assert run_cli(["store", "copy", "--from", source, "--to", pg_url, "--force"]) == 0
    assert [row["title"] for row in _all_rows(pg_url)["items"]] == ["one"]
    assert run_cli(["store", "copy", "--from", str(tmp_path / "missing.db"), "--to", pg_url]) == 1
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


def test_two_imports_at_once_on_postgresql_both_succeed(corpus_dir: Path, pg_url: str) -> None:
    """Both read "no such item" and insert: without the ingest lock the second fails on UNIQUE."""
    posts = corpus_dir / "social" / "posts-2023-12-part1.md"
    env = {**os.environ, "TIDINGS_DB": pg_url}
    argv = [sys.executable, "-m", "tidings.cli", "-q", "import", "--format", "social", str(posts)]
    runs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcomes = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _out, err in outcomes]
    rows = _all_rows(pg_url)
    urls = [row["url"] for row in rows["items"]]
    assert len(urls) == len(set(urls)) > 100
    assert len(rows["sources"]) == 1


def test_search_and_ask_run_on_postgresql(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Search, ask and index run on PostgreSQL (issue 15, part 2; tests/test_pg_search.py tests them
    in depth); questions about the archive as SQL say "not yet": one clear error, never a traceback."""
    from fastapi.testclient import TestClient

    from tidings.config import Config
    from tidings.web import create_app

    for argv in (["index"], ["search", "模型"], ["ask", "什么是 RAG"]):
        assert run_cli(["--db", pg_url, *argv]) == 0, argv
    capsys.readouterr()
    assert run_cli(["--db", pg_url, "ask", "一共有多少期周刊"]) in (1, 2)
    err = capsys.readouterr().err
    assert "on PostgreSQL: not yet" in err and "Traceback" not in err, err
    store = open_store(pg_url)
    try:
        with TestClient(create_app(store, Config()), base_url="http://127.0.0.1:8000") as client:
            page = client.get("/search", params={"q": "模型"})
            assert page.status_code == 200 and "not yet" not in page.text
    finally:
        store.close()


def test_values_sqlite_takes_are_taken_on_postgresql_too(db_url: str) -> None:
    """SQLite never enforced the models' string lengths; PostgreSQL text cannot hold NUL."""
    from tidings import pipeline
    from tidings.records import ItemRecord

    long_url = "https://example.org/" + "路径-segment/" * 200  # ~2,600 characters, past varchar(2048)
    store = open_store(db_url)
    try:
        report = pipeline.ingest(store, [ItemRecord(url=long_url, title="t" * 5000, author="作者" * 400,
                                                    text="before\x00after", language="zh-Hans-CN-x-private")],
                                 source_kind="test", locator="lengths")
        [item_id] = report.item_ids
        with store.session() as session:
            item = session.get(Item, item_id)
            assert item is not None and item.author == "作者" * 400 and len(item.title or "") == 5000
            assert len(item.url) > 2048  # canonical (percent-encoded), whole
            nul_kept = "before\x00after" if db_url.endswith(".db") else "before\ufffdafter"
            assert item.text == nul_kept
    finally:
        store.close()


def test_an_unreachable_or_malformed_database_url_is_a_clear_error_without_the_password(
    capsys: pytest.CaptureFixture[str], pg_server  # noqa: ANN001
) -> None:
    missing = pg_server.url("no_such_database").replace("tidings@", "tidings:s3cret@")
    for url in (missing, "postgresql://tidings:s3cret@127.0.0.1:notaport/x", "mysql://tidings:s3cret@h/x"):
        assert run_cli(["--db", url, "items"]) == 1, url
        err = capsys.readouterr().err
        assert err.startswith("error: cannot open the store") and "s3cret" not in err, err
