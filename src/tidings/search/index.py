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

import functools
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ..config import Config
from ..store import Store
from .colloquial import with_colloquial
from .compounds import CompoundFinder
from .engine import EngineIndex, engine_for, fresh_engine, new_index_id
from .query import synonym_sets, synonyms_key
from .segment import prepare, segmenter_signature
from .segments import EngineDoc, SegmentBuilder
from .storage import SearchError, connect, field_words, item_date, load_docs, meta, set_meta, write
from .terms import FIELDS, field_weights, stem

log = logging.getLogger(__name__)

__all__ = ["FIELDS", "SearchError", "connect", "current_engine", "ensure_schema", "index_stats", "meta", "rebuild_index",
           "refresh_index", "write"]


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
_STATE_SQL = (
    "SELECT (SELECT value FROM search_meta WHERE key = 'segmenter'),"
    " (SELECT value FROM search_meta WHERE key = 'engine_id'),"
    " (SELECT value FROM search_meta WHERE key = 'generation'),"
    " (SELECT count(*) FROM sqlite_master WHERE name IN ('search_fts', "
    + ", ".join(f"'{name}'" for name in TRIGGERS) + "))"
)


def ensure_schema(conn: sqlite3.Connection, signature: str, weights: Sequence[float]) -> EngineIndex:
    """Check the search tables and triggers exist, the index was built by this segmenter (and these
    field ``weights``: they are in the engine's scores), and the engine index beside the store matches
    it (else everything is queued again); returns the engine index, its reader current."""
    engine = engine_for(conn, weights)
    # One statement for what every search checks first (seven took a fifth of a search at 100k items).
    segmenter, index_id, generation, present = conn.execute(_STATE_SQL).fetchone()
    if present == len(TRIGGERS) + 1 and segmenter == signature and engine.matches(index_id, generation):
        _follow(engine, generation)
        return engine
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'search_%'")}
    if "search_fts" not in names:
        raise SearchError("the store has no search index (migration 0002 did not run)")
    missing = [name for name in TRIGGERS if name not in names]
    stale = segmenter != signature
    with write(conn):
        lost = not engine.matches(meta(conn, "engine_id"), meta(conn, "generation"))
        if lost:  # checked again under the write lock: another process may have just committed
            log.info("search: the engine index does not match the store; it is built again")
            engine = fresh_engine(conn, weights)
            index_id = new_index_id()
            set_meta(conn, "engine_id", index_id)
            engine.write_marker(index_id, meta(conn, "generation") or "0")
        for name in missing:
            log.warning("search: trigger %s was missing (a table was rebuilt?); re-creating it", name)
            conn.execute(TRIGGERS[name])
        if stale:
            log.info("search: segmenter changed; the index will be rebuilt")
        if lost or missing or stale:
            conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
        set_meta(conn, "segmenter", signature)
    _follow(engine, meta(conn, "generation"))
    return engine


def current_engine(conn: sqlite3.Connection, config: Config | None, *, refresh: bool = False) -> EngineIndex:
    """The store's engine index as of the last committed index change, its queue drained first with
    ``refresh`` (:func:`refresh_connection`)."""
    if refresh:
        return refresh_connection(conn, config)[1]
    engine = engine_for(conn, field_weights(config))
    _follow(engine, meta(conn, "generation"))
    return engine


def _follow(engine: EngineIndex, generation: str | None) -> None:
    """Reload the engine's reader when another process (or connection) changed the index."""
    if generation != engine.seen_generation:
        engine.reload()
        engine.seen_generation = generation


_compound_cache: dict[str, tuple[tuple[tuple[str, ...], ...], frozenset[tuple[str, ...]]]] = {}


def compound_forms(config: Config | None) -> tuple[tuple[str, ...], ...]:
    """The multi-word forms of the query's synonym sets (built in, colloquial and configured), stemmed
    word by word: the engine also indexes each occurrence as one word (:func:`.terms.compound_term`).

    A question about 大模型 expands to 大 模型, 大 语言 模型 and large language model(s): as phrase
    queries in six fields, each scored and then checked again for the presence bonus, they read the
    positions of some of the archive's commonest words (p95 5 ms of ranking at 100k items)."""
    return _compounds(config)[0]


def compound_set(config: Config | None) -> frozenset[tuple[str, ...]]:
    """:func:`compound_forms` as a set (every search looks forms up in it)."""
    return _compounds(config)[1]


def _compounds(config: Config | None) -> tuple[tuple[tuple[str, ...], ...], frozenset[tuple[str, ...]]]:
    key = synonyms_key(config)
    if key not in _compound_cache:
        sets = synonym_sets(with_colloquial(config))
        forms = tuple(sorted({tuple(stem(w) for w in form) for forms in sets for form in forms if len(form) > 1}))
        _compound_cache[key] = (forms, frozenset(forms))
    return _compound_cache[key]


@functools.cache
def _forms_signature(forms: tuple[tuple[str, ...], ...]) -> str:
    return hashlib.sha1(json.dumps(forms, ensure_ascii=False).encode()).hexdigest()[:8]


def index_signature(config: Config | None) -> str:
    """What the index depends on: the segmenter, the compound words (a configured synonym set with
    a multi-word form changes what the engine indexes) and the field weights (the engine's scores
    hold them); a change re-indexes everything."""
    return f"{segmenter_signature(config)}+{_forms_signature(compound_forms(config))}+{_weights_signature(tuple(field_weights(config)))}"


@functools.cache
def _weights_signature(weights: tuple[float, ...]) -> str:
    return ",".join(f"{w:g}" for w in weights)


Progress = Callable[[int, int, str], None]
_BULK_FROM = 2000
"""Queued items from which batches grow to :data:`_BULK_BATCH`: fewer commits for a (re)build."""
_BULK_BATCH = 5000


def refresh_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Index every queued item (new, changed or deleted since last time); returns how many.

    Each batch is one BEGIN IMMEDIATE transaction that reads the queue and the items, writes the
    FTS5 rows and the engine's documents, and clears exactly those queue entries, so a concurrent
    writer's change is either in this batch or queued for the next refresh; nothing falls between.
    The engine commits its part before SQLite commits (see :mod:`.engine`). Segmentation is
    jieba-rs in this process: at about 10 MB of text a second it needs no process pool."""
    if store.engine.dialect.name == "postgresql":
        from . import pg

        return pg.refresh_index(store, config, progress=progress)
    with connect(store) as conn:
        return refresh_connection(conn, config, progress=progress)[0]


def refresh_connection(conn: sqlite3.Connection, config: Config | None, *, progress: Progress | None = None,
                       bulk: bool | None = None) -> tuple[int, EngineIndex]:
    """:func:`refresh_index` on a SQLite connection the caller goes on to search with; returns how
    many items were indexed and the engine index, its reader current. A bulk refresh (``bulk``, by
    default :data:`_BULK_FROM` queued items or more) goes in large batches whose segments are merged
    once, at the end, instead of by the merge policy after each batch."""
    prepare(config)
    engine = ensure_schema(conn, index_signature(config), field_weights(config))
    total = conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0]
    if not total:
        return 0, engine
    finder = CompoundFinder(compound_forms(config))
    now = datetime.now(UTC).isoformat()
    bulk = total >= _BULK_FROM if bulk is None else bulk
    done = _drain(conn, engine, finder, _BULK_BATCH if bulk else _BATCH, total, now, progress, merge=not bulk)
    if bulk:
        with write(conn):
            if engine.matches(meta(conn, "engine_id"), meta(conn, "generation")):
                engine.optimize()
    return done, engine


def _drain(conn: sqlite3.Connection, engine: EngineIndex, finder: CompoundFinder, batch: int, total: int,
           now: str, progress: Progress | None, *, merge: bool) -> int:
    """Index the queued items in batches of ``batch``; returns how many."""
    done = 0
    while True:
        with write(conn):
            ids = [r[0] for r in conn.execute(
                "SELECT DISTINCT item_id FROM search_dirty ORDER BY item_id LIMIT ?", (batch,)
            )]
            if not ids:
                break
            docs = load_docs(conn, ids)
            dates = {item_id: item_date(d["published"], d["week"], d["seen"]) for item_id, d in docs.items()}
            rows, engine_docs = {}, SegmentBuilder()
            for item_id in sorted(docs):
                doc = docs[item_id]
                fields = field_words(doc)  # dropped at once: a batch of word lists alive slows the GC
                rows[item_id] = [" ".join(words) for words in fields]
                engine_docs.add(item_id, EngineDoc(fields, finder.row(fields), dates[item_id], doc["author_name"],
                                                   doc["author_handle"]))
            with engine.replacing(ids, engine_docs, merge=merge) as commit_engine:
                _write_batch(conn, ids, rows, dates, now)
                generation = meta(conn, "generation") or "0"
                commit_engine()
            engine.write_marker(meta(conn, "engine_id") or "", generation)
        engine.seen_generation = generation
        done += len(ids)
        if progress:
            progress(min(done, total), total, "index")
    return done


def _write_batch(
    conn: sqlite3.Connection, ids: list[int], rows: dict[int, list[str]], dates: dict[int, str | None], now: str
) -> None:
    """The SQLite side of one batch: FTS5 rows, index dates, the queue entries, the generation."""
    marks = ",".join("?" * len(ids))
    conn.execute(f"DELETE FROM search_fts WHERE rowid IN ({marks})", ids)
    conn.execute(f"DELETE FROM search_docs WHERE item_id IN ({marks})", ids)
    conn.executemany(
        f"INSERT INTO search_fts (rowid, {', '.join(FIELDS)}) VALUES (?{', ?' * len(FIELDS)})",
        [[item_id, *row] for item_id, row in rows.items()],
    )
    conn.executemany(
        "INSERT INTO search_docs (item_id, indexed_at, item_date) VALUES (?, ?, ?)",
        [(item_id, now, day) for item_id, day in dates.items()],
    )
    conn.execute(f"DELETE FROM search_dirty WHERE item_id IN ({marks})", ids)
    # Any change of the index bumps the generation: cached counts and the engine's marker follow it.
    conn.execute(
        "INSERT INTO search_meta (key, value) VALUES ('generation', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def rebuild_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Drop every index row and index all items again (``tidings index --rebuild``)."""
    if store.engine.dialect.name == "postgresql":
        from . import pg

        return pg.rebuild_index(store, config, progress=progress)
    prepare(config)
    weights = field_weights(config)
    with connect(store) as conn:
        ensure_schema(conn, index_signature(config), weights)
        with write(conn):
            # Dropped and made again from its own stored definition: deleting a regular FTS5
            # table's rows un-indexes them one by one (about a second per 10k items).
            definition = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'search_fts'").fetchone()[0]
            conn.execute("DROP TABLE search_fts")
            conn.execute(definition)
            conn.execute("DELETE FROM search_docs")
            conn.execute("DELETE FROM search_meta WHERE key = 'generation' OR key LIKE 'embed_checked:%'")
            conn.execute("DELETE FROM search_dirty")
            conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
            engine = fresh_engine(conn, weights)
            index_id = new_index_id()
            set_meta(conn, "engine_id", index_id)
            engine.write_marker(index_id, "0")
        refresh_connection(conn, config, progress=progress, bulk=True)  # its segments merged once, at the end
        with write(conn):
            conn.execute("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
        return conn.execute("SELECT count(*) FROM search_docs").fetchone()[0]


def index_stats(store: Store) -> dict[str, int]:
    if store.engine.dialect.name == "postgresql":
        from . import pg

        return pg.index_stats(store)
    with connect(store) as conn:
        return {
            "indexed": conn.execute("SELECT count(*) FROM search_docs").fetchone()[0],
            "queued": conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0],
            "embeddings": conn.execute("SELECT count(*) FROM embeddings").fetchone()[0],
        }


# ------------------------------------------------------------------------------------------
# Query parsing
