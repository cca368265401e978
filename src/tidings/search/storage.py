"""The search tables' storage, shared by both stores: the DB-API connection (SQLite's own, or
PostgreSQL's behind the same ``execute`` with ``?`` placeholders), write transactions, the
``search_meta`` values, and the documents an index is built from (an item's fields, tags, sections
and first digest week, segmented).

The lowest floor of ``search/``: both engines (:mod:`.index` with its numpy engine on SQLite, :mod:`.pg`)
and the ranking above them import from here, never the other way round."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import TidingsError
from ..store import Store
from .segment import segmented_words


class SearchError(TidingsError):
    exit_code = 2


def _dialect_title(store: Store) -> str:
    return {"postgresql": "PostgreSQL"}.get(store.engine.dialect.name, store.engine.dialect.name)


@contextmanager
def connect(store: Store) -> Iterator[sqlite3.Connection]:
    """The store's own DB-API connection (from its pool): FTS5 SQL is raw SQL anyway. On PostgreSQL, a
    :class:`PgConnection` over the store's psycopg connection."""
    if store.engine.dialect.name == "postgresql":  # the SQL both stores share, with ``?`` placeholders
        raw = store.engine.raw_connection()
        try:
            yield PgConnection(raw.driver_connection)  # type: ignore[misc]
        finally:
            raw.close()  # the pool rolls back whatever was left open
        return
    if store.engine.dialect.name != "sqlite":
        raise SearchError(f"search on {_dialect_title(store)}: not yet (search needs a SQLite store, with FTS5, for now)")
    raw = store.engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert isinstance(conn, sqlite3.Connection)
        yield conn
    finally:
        raw.close()


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken up front (BEGIN IMMEDIATE) so that what we read in it is what
    we write back: no other writer can slip in between. busy_timeout makes us wait our turn."""
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        if own:
            conn.commit()
    except BaseException:
        if own:
            conn.rollback()
        raise


def meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM search_meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO search_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def item_date(published: str | None, first_week: str | None, seen: str | None) -> str | None:
    """The date --since/--until compare: published, else the week of the first digest listing the
    item (what a curator remembers), else when tidings first saw it."""
    for value in (published, first_week, seen):
        if value:
            return str(value)[:10]
    return None


def load_docs(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        "SELECT id, kind, title, summary, text, note, author, author_handle, section, published_at, seen_at "
        f"FROM items WHERE id IN ({marks}) AND duplicate_of_id IS NULL",
        list(ids),
    ).fetchall()
    docs: dict[int, dict[str, Any]] = {}
    for r in rows:
        docs[r[0]] = {
            "kind": r[1], "title": r[2], "summary": r[3], "text": r[4], "note": r[5],
            "author": " ".join(x for x in (r[6], r[7]) if x), "author_name": r[6], "author_handle": r[7],
            "sections": [r[8]] if r[8] else [],
            "published": r[9], "seen": r[10], "tags": [], "week": None,
        }
    for item_id, tag in conn.execute(f"SELECT item_id, tag FROM item_tags WHERE item_id IN ({marks})", list(ids)):
        if item_id in docs:
            docs[item_id]["tags"].append(tag)
    for item_id, week, section in conn.execute(
        "SELECT e.item_id, d.week, e.section FROM digest_entries e JOIN digests d ON d.id = e.digest_id "
        f"WHERE e.item_id IN ({marks}) ORDER BY d.week",
        list(ids),
    ):
        doc = docs.get(item_id)
        if doc is None:
            continue
        doc["week"] = doc["week"] or week
        if section and section not in doc["sections"]:
            doc["sections"].append(section)
    return docs


def fts_row(doc: dict[str, Any]) -> list[str]:
    """The item's fields as the index stores them (words joined by spaces), in FTS5's column order."""
    return [" ".join(words) for words in field_words(doc)]


def field_words(doc: dict[str, Any]) -> list[list[str]]:
    """The item's fields as lists of segmented words, in FTS5's column order (:func:`fts_row`)."""
    return [
        segmented_words(doc["title"]),
        segmented_words(doc["summary"]),
        segmented_words(doc["text"]),
        segmented_words(doc["note"]),
        segmented_words(" ; ".join(doc["tags"])),
        segmented_words(doc["author"]),
        segmented_words(" ; ".join(doc["sections"])),
        segmented_words(doc["kind"]),
    ]


class PgConnection:
    """The store's psycopg connection behind the SQLite connection's ``execute(sql, params)`` with
    ``?`` placeholders, so the plain SQL that both stores share (the items, ``search_docs``)
    runs unchanged. A plain read of FTS5's segmented columns by rowid reads the same columns of
    ``search_docs`` (the evaluation's plain-BM25 baseline does that); FTS5 queries (MATCH) have no
    PostgreSQL meaning and are refused with a clear error."""

    _SQLITE_ONLY = re.compile(r"\b(sqlite_master|PRAGMA|MATCH)\b", re.IGNORECASE)

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._writing = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._SQLITE_ONLY.search(sql):
            raise SearchError("this search feature needs a SQLite store (FTS5); on PostgreSQL it is not available yet")
        if sql.strip().upper() == "BEGIN IMMEDIATE":  # write(): psycopg begins on the first statement
            self._writing = True
            return self.raw.cursor()
        if "search_fts" in sql:
            sql = re.sub(r"\browid\b", "item_id", sql.replace("search_fts", "search_docs"))
        cursor = self.raw.cursor()
        cursor.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.raw.cursor().executemany(sql.replace("%", "%%").replace("?", "%s"), [list(r) for r in rows])

    @property
    def in_transaction(self) -> bool:
        """Whether :func:`write` has begun a transaction (psycopg is always in one after a
        read; what matters to ``write`` is whether an outer ``write`` will commit)."""
        return self._writing

    def commit(self) -> None:
        self._writing = False
        self.raw.commit()

    def rollback(self) -> None:
        self._writing = False
        self.raw.rollback()
