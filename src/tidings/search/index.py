"""The FTS5 index in the store file, and the change queue that keeps it current.

FTS5 lives in the store file itself, so the index is backed up, copied and locked with the data,
and needs no extra service. Each item's fields are stored segmented (:mod:`.segment`).

Consistency: SQLite triggers (migration 0002) queue the id of every item whose indexed fields
change, in the writer's own transaction, whoever the writer is (the ORM, raw SQL, a second
process, the web server). Segmentation needs Python, so the queue is drained lazily:
:func:`refresh_index` runs at the start of every search and ask and after pipeline stages. We chose
triggers over comparing ``items.updated_at`` with an indexed-at marker because ``updated_at`` is
only bumped by ORM updates of the items row itself: a tag added in ``item_tags``, a digest entry
pointing at the item, or a raw ``UPDATE`` would all be missed. Session events would miss the same
raw writes and writes from other processes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..config import Config
from ..errors import TidingsError
from ..store import Store
from .segment import prepare, segment, segmented, segmenter_signature

log = logging.getLogger(__name__)

FIELDS = ("title", "summary", "text", "note", "tags", "author", "section", "kind")
"""The FTS5 columns, in table order (bm25() weights and highlight() columns follow it)."""


class SearchError(TidingsError):
    exit_code = 2


# The live definitions of the queue triggers. Migration 0002 holds a frozen copy; a later
# migration that rebuilds ``items`` in batch mode drops its triggers, so ensure_schema puts them
# back (and re-queues everything) whenever one is missing. A test keeps both copies identical.
_ITEM_COLUMNS = (
    "title, summary, text, note, author, author_handle, section, kind, published_at, duplicate_of_id, url"
)
TRIGGERS: dict[str, str] = {
    "search_items_ai": "CREATE TRIGGER search_items_ai AFTER INSERT ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.id); END",
    "search_items_au": f"CREATE TRIGGER search_items_au AFTER UPDATE OF {_ITEM_COLUMNS} ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.id); END",
    "search_items_ad": "CREATE TRIGGER search_items_ad AFTER DELETE ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.id); END",
    "search_tags_ai": "CREATE TRIGGER search_tags_ai AFTER INSERT ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "search_tags_au": "CREATE TRIGGER search_tags_au AFTER UPDATE ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.item_id); "
    "INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "search_tags_ad": "CREATE TRIGGER search_tags_ad AFTER DELETE ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.item_id); END",
    "search_entries_ai": "CREATE TRIGGER search_entries_ai AFTER INSERT ON digest_entries "
    "WHEN new.item_id IS NOT NULL BEGIN INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "search_entries_au": "CREATE TRIGGER search_entries_au AFTER UPDATE OF item_id ON digest_entries BEGIN "
    "INSERT INTO search_dirty (item_id) SELECT old.item_id WHERE old.item_id IS NOT NULL; "
    "INSERT INTO search_dirty (item_id) SELECT new.item_id WHERE new.item_id IS NOT NULL; END",
}
_BATCH = 100


@contextmanager
def connect(store: Store) -> Iterator[sqlite3.Connection]:
    """The store's own DB-API connection (from its pool): FTS5 SQL is raw SQL anyway."""
    if store.engine.dialect.name != "sqlite":
        raise SearchError("search needs a SQLite store (FTS5); this store is " + store.engine.dialect.name)
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


def ensure_schema(conn: sqlite3.Connection, signature: str) -> None:
    """Check the search tables and triggers exist and the index was built by this segmenter."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'search_%'")}
    if "search_fts" not in names:
        raise SearchError("the store has no search index (migration 0002 did not run)")
    missing = [name for name in TRIGGERS if name not in names]
    stale = meta(conn, "segmenter") != signature
    if not missing and not stale:
        return
    with write(conn):
        for name in missing:
            log.warning("search: trigger %s was missing (a table was rebuilt?); re-creating it", name)
            conn.execute(TRIGGERS[name])
        if stale:
            log.info("search: segmenter changed; the index will be rebuilt")
        conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
        conn.execute(
            "INSERT INTO search_meta (key, value) VALUES ('segmenter', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (signature,),
        )


def _item_date(published: str | None, first_week: str | None, seen: str | None) -> str | None:
    """The date --since/--until compare: published, else the week of the first digest listing the
    item (what a curator remembers), else when tidings first saw it."""
    for value in (published, first_week, seen):
        if value:
            return str(value)[:10]
    return None


def _load_docs(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
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
            "author": " ".join(x for x in (r[6], r[7]) if x), "sections": [r[8]] if r[8] else [],
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


def _fts_row(doc: dict[str, Any]) -> list[str]:
    return [
        segmented(doc["title"]),
        segmented(doc["summary"]),
        segmented(doc["text"]),
        segmented(doc["note"]),
        segmented(" ; ".join(doc["tags"])),
        segmented(doc["author"]),
        segmented(" ; ".join(doc["sections"])),
        segmented(doc["kind"]),
    ]


Progress = Callable[[int, int, str], None]
_PARALLEL_FROM = 2000
"""Queued items from which segmentation is spread over processes (jieba is pure Python)."""


def _init_worker(user_words: list[str]) -> None:
    prepare(Config.model_validate({"user_dictionary": user_words}))


@contextmanager
def _segmenter_pool(total: int, config: Config | None) -> Iterator[Any]:
    """A process pool for a bulk (re)index on a multi-core machine, else None. Forked workers
    inherit the loaded dictionary; spawned ones (macOS, Windows) load it with the user words."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(os.cpu_count() or 1, 8)
    if total < _PARALLEL_FROM or workers < 2:
        yield None
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "fork":
        segment("预热")  # load jieba once, before forking, so no worker pays for it
    words = list(config.user_dictionary) if config else []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                             initializer=_init_worker, initargs=(words,)) as pool:
        yield pool


def refresh_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Index every queued item (new, changed or deleted since last time); returns how many.

    Each batch is one BEGIN IMMEDIATE transaction that reads the queue and the items, writes the
    index rows and clears exactly those queue entries, so a concurrent writer's change is either
    in this batch or queued for the next refresh; nothing falls between."""
    prepare(config)
    done = 0
    with connect(store) as conn:
        ensure_schema(conn, segmenter_signature(config))
        total = conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0]
        if not total:
            return 0
        now = datetime.now(UTC).isoformat()
        with _segmenter_pool(total, config) as pool:
            batch = _BATCH if pool is None else _BATCH * 10
            while True:
                with write(conn):
                    ids = [r[0] for r in conn.execute(
                        "SELECT DISTINCT item_id FROM search_dirty ORDER BY item_id LIMIT ?", (batch,)
                    )]
                    if not ids:
                        break
                    docs = _load_docs(conn, ids)
                    if pool is None:
                        rows = [_fts_row(doc) for doc in docs.values()]
                    else:
                        rows = list(pool.map(_fts_row, docs.values(), chunksize=25))
                    marks = ",".join("?" * len(ids))
                    conn.execute(f"DELETE FROM search_fts WHERE rowid IN ({marks})", ids)
                    conn.execute(f"DELETE FROM search_docs WHERE item_id IN ({marks})", ids)
                    conn.executemany(
                        f"INSERT INTO search_fts (rowid, {', '.join(FIELDS)}) VALUES (?{', ?' * len(FIELDS)})",
                        [[item_id, *row] for item_id, row in zip(docs, rows, strict=True)],
                    )
                    conn.executemany(
                        "INSERT INTO search_docs (item_id, indexed_at, item_date) VALUES (?, ?, ?)",
                        [(item_id, now, _item_date(d["published"], d["week"], d["seen"])) for item_id, d in docs.items()],
                    )
                    conn.execute(f"DELETE FROM search_dirty WHERE item_id IN ({marks})", ids)
                    # Any change of the index bumps the generation: cached counts are keyed by it.
                    conn.execute(
                        "INSERT INTO search_meta (key, value) VALUES ('generation', '1') "
                        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                    )
                done += len(ids)
                if progress:
                    progress(min(done, total), total, "index")
    return done


def rebuild_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Drop every index row and index all items again (``tidings index --rebuild``)."""
    prepare(config)
    with connect(store) as conn:
        ensure_schema(conn, segmenter_signature(config))
        with write(conn):
            conn.execute("DELETE FROM search_fts")
            conn.execute("DELETE FROM search_docs")
            conn.execute("DELETE FROM search_meta WHERE key = 'generation' OR key LIKE 'embed_checked:%'")
            conn.execute("DELETE FROM search_dirty")
            conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
    refresh_index(store, config, progress=progress)
    with connect(store) as conn:
        with write(conn):
            conn.execute("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
        return conn.execute("SELECT count(*) FROM search_docs").fetchone()[0]


def index_stats(store: Store) -> dict[str, int]:
    with connect(store) as conn:
        return {
            "indexed": conn.execute("SELECT count(*) FROM search_docs").fetchone()[0],
            "queued": conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0],
            "embeddings": conn.execute("SELECT count(*) FROM embeddings").fetchone()[0],
        }


# ------------------------------------------------------------------------------------------
# Query parsing
