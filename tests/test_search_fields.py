"""Issue 16.3, fields: a section name is a filter, not text free words match; an empty query is a
usage error in the library, the CLI and the web. On the real digests, imported through the CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tidings.cli import app, run_cli
from tidings.config import Config
from tidings.errors import UsageError
from tidings.search.index import FIELDS
from tidings.search.query import FILTER_ONLY_COLUMNS, EmptyQuery, compile_query
from tidings.search.rank import search
from tidings.store import Item, Store, open_store
from tidings.web import create_app

CONFIG = Config()


@pytest.fixture(scope="module")
def digests_db(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    db = tmp_path_factory.mktemp("fields") / "digests.db"
    for args in (("import", "--format", "digest", str(corpus_dir / "digests")), ("index",)):
        result = CliRunner().invoke(app, ["--db", str(db), *args])
        assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


@pytest.fixture(scope="module")
def store(digests_db: Path) -> Iterator[Store]:
    st = open_store(digests_db)
    yield st
    st.close()


def own_words(store: Store, item_id: int) -> str:
    """Everything free words may match: the item's own text, never its section or kind."""
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        parts = (item.title, item.summary, item.text, item.note, item.author, item.author_handle, *item.tags)
        return " ".join(p for p in parts if p).lower()


def test_filter_only_columns_are_index_columns() -> None:
    assert set(FILTER_ONLY_COLUMNS) <= set(FIELDS)


def test_section_alone_does_not_match_free_words(store: Store, digests_db: Path) -> None:
    # The archive holds hundreds of Go articles whose only "Rust" is the section name.
    with sqlite3.connect(digests_db) as conn:
        section_only = conn.execute(
            "SELECT count(*) FROM search_fts WHERE search_fts MATCH 'section : rust' AND rowid NOT IN "
            "(SELECT rowid FROM search_fts WHERE search_fts MATCH '{title summary text note tags author} : rust')"
        ).fetchone()[0]
    assert section_only > 100
    hits = search(store, "Rust", config=CONFIG, limit=400, hybrid=False).hits
    assert len(hits) >= 20
    assert [h.item.title for h in hits if "rust" not in own_words(store, h.item.id)] == []
    # Exclusions ignore the section too: "-Rust" keeps the Go articles filed under "…Rust 相关".
    go = search(store, "Go 并发 -Rust", config=CONFIG, limit=50, hybrid=False).hits
    assert any("rust" in (h.item.section or "").lower() for h in go)
    assert all("rust" not in own_words(store, h.item.id) for h in go)


def test_section_filter_still_works(store: Store, digests_db: Path) -> None:
    for query in ("section:Rust", "并发 section:后端"):
        hits = search(store, query, config=CONFIG, limit=30, hybrid=False).hits
        assert hits, query
        wanted = query.split("section:")[1].lower()
        assert all(wanted in (h.item.section or "").lower() for h in hits), (query, [h.item.section for h in hits])
    result = CliRunner().invoke(app, ["--db", str(digests_db), "search", "并发", "--section", "Rust", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") >= 1 and all("Rust" in line for line in result.stdout.splitlines())


@pytest.mark.parametrize("query", ["", "   ", "\t\n", "-Rust", '""'])
def test_empty_query_is_a_usage_error(store: Store, query: str) -> None:
    with pytest.raises(EmptyQuery) as caught:
        search(store, query, config=CONFIG, hybrid=False)
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, ValueError)
    assert "type a query" in str(caught.value)
    compile_query("author:dotey", CONFIG)  # a filter alone is a query: the filter's items, newest first


@pytest.mark.parametrize("command", ["search", "ask"])
def test_cli_empty_query_exits_2_with_a_message(
    digests_db: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for query in ("", "  "):
        capsys.readouterr()
        code = run_cli(["--db", str(digests_db), command, query])
        out, err = capsys.readouterr()
        assert code == 2, (command, query, out, err)
        assert "type a query" in err and out.strip() == ""
        assert "Traceback" not in err


def test_web_blank_query_is_400_and_no_query_is_the_form(store: Store) -> None:
    client = TestClient(create_app(store, CONFIG), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)
    with client:
        assert client.get("/search").status_code == 200
        assert client.get("/ask").status_code == 200
        for url in ("/search?q=", "/search?q=%20%20", "/ask?q=", "/ask?q=%20"):
            response = client.get(url)
            assert response.status_code == 400, url
            assert "type a query" in response.text and "/item/" not in response.text
        ok = client.get("/search?q=section:Rust")
        assert ok.status_code == 200 and "/item/" in ok.text
