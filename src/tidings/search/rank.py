"""Ranking and the search itself: BM25 with field weights, re-weighted by how many of the query's
concepts an item holds (coordination); optionally fused by reciprocal rank with cosine similarity
of cached embeddings (hybrid); optionally boosted by recency. :func:`search` runs it all and
builds the hits, each the item's one view (:class:`tidings.records.ItemView`) plus what the search
found out about it."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Collection, Sequence
from datetime import date
from typing import Any

import numpy as np

from ..config import Config
from ..store import Store
from .colloquial import with_colloquial
from .engine import Condition, EngineIndex, Reader
from .hits import (
    PRESENCE_BONUS,
    Embedder,
    SearchHit,
    SearchResult,
    _load_items,
    blend,
    by_recency,
    embed_indexed,
    embedder_from_config,
    idf_weight,
    vector_ranking,
)
from .index import compound_set, current_engine, refresh_index
from .query import CompiledQuery, Filters, Group, compile_query, filter_sql
from .segment import segment
from .snippets import build_snippet, highlights
from .storage import SearchError, connect, meta
from .terms import ascii_lower, compound_term, date_number, stem

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------
# Embeddings (hybrid search)
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# BM25, coordination, recency
# ------------------------------------------------------------------------------------------

_df_cache: dict[tuple[str, str], int] = {}


def update_embeddings(store: Store, embedder: Embedder, config: Config | None = None) -> int:
    """Bring the index up to date, then embed the indexed items that have no vector for this model,
    or whose text changed since (:func:`.hits.embed_indexed`). Returns how many were computed."""
    refresh_index(store, config)
    return embed_indexed(store, embedder, config)


def doc_frequency(conn: sqlite3.Connection, group: Group) -> int:
    """Items containing the group, cached until the index changes (counting walks posting lists)."""
    if not isinstance(conn, sqlite3.Connection):  # a PostgreSQL store's connection (storage.connect)
        from . import pg

        return pg.doc_frequency(conn, group)
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (f"{path}:{meta(conn, 'generation')}", group.fts())
    if key not in _df_cache:
        if len(_df_cache) > 4096:
            _df_cache.clear()
        _df_cache[key] = conn.execute(
            "SELECT count(*) FROM search_fts WHERE search_fts MATCH ?", (group.fts(),)
        ).fetchone()[0]
    return _df_cache[key]


_FLOOR_ITEMS = 32
"""A concept held by fewer items gives no floor for a top k (their k-th best score is zero)."""


def _floor_preference(frequency: int) -> tuple[bool, int]:
    return (frequency < _FLOOR_ITEMS, frequency if frequency >= _FLOOR_ITEMS else -frequency)


def concept_scores(reader: Reader, groups: Sequence[Group], presence_bonus: float = PRESENCE_BONUS,
                   compounds: Collection[tuple[str, ...]] = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """Every document's score for the query's concepts (a vector over :attr:`.engine.Reader.ids`),
    and the positions of the documents holding the rarest concept that some :data:`_FLOOR_ITEMS` items
    hold (:meth:`.engine.Reader.top`'s hint).

    A concept scores its forms' impacts (the fields' BM25 summed with their weights, :mod:`.engine`),
    summed over the distinct forms (``model`` and ``models`` stem alike: once), plus a constant
    ``presence_bonus × IDF`` for holding the concept at all, once. The concepts' scores add up.
    Summing the forms, rather than taking the best one, credits an item that names the concept in
    two ways (embedding in its title, 嵌入 in its text) as tantivy's per-field best form did: on the
    calibration halves, MRR 0.967 and 0.851 against 0.933 and 0.833 for the best form alone.

    The bonus is the coordination: BM25 alone lets a common word that fills a short field (a
    title) outweigh the rare word the user was after ("Mixtral 路由": titles about routing beat
    the post about Mixtral's router). The FTS5 ranking re-weighed its top 100 by the IDF-weighted
    share of concepts present, one query per concept (Lucene's classic factor); the constant bonus
    ranks the calibration questions as well in one pass, and here it costs one addition to the
    entries the concept already touched.

    A multi-word form among ``compounds`` (:func:`.index.compound_forms`, indexed as one word each)
    is the compound word's postings; any other (a quoted phrase) scores the documents holding all
    its words with the sum of their impacts, and the phrase itself is checked by FTS5
    (:func:`_filtered_ids`)."""
    total = max(reader.num_docs(), 1)
    scores = np.zeros(reader.size, dtype=np.float32)
    rarest: tuple[int, list[np.ndarray]] | None = None
    for group in groups:
        stemmed = dict.fromkeys(tuple(stem(w) for w in form) for form in group.forms if form)  # model, models: once
        forms = [found for found in (_form_postings(reader, form, compounds) for form in stemmed) if found[0]]
        if not forms:
            continue
        frequency = max(frequency for _p, frequency in forms)
        # The rarest concept that some _FLOOR_ITEMS items hold (else the commonest): its items' k-th best
        # score is a high floor. Any concept's items give a true floor; this only makes it higher.
        if rarest is None or _floor_preference(frequency) < _floor_preference(rarest[0]):
            # The documents of the concept's commonest form: distinct, and most of the concept's.
            widest = max(forms, key=lambda found: found[1])[0]
            rarest = (frequency, [positions for positions, _i in widest])
        bonus = np.float32(presence_bonus * idf_weight(total, frequency))
        if len(forms) == 1:
            for positions, impacts in forms[0][0]:  # one slice per segment: disjoint positions
                gathered = scores[positions]
                gathered += impacts
                gathered += bonus
                scores[positions] = gathered
            continue
        for postings, _frequency in forms:
            for positions, impacts in postings:
                gathered = scores[positions]
                gathered += impacts
                scores[positions] = gathered
        # The bonus once per document: one that several forms hold is listed once per form, and every
        # copy reads the same old score and writes the same new one.
        held = np.concatenate([positions for postings, _f in forms for positions, _i in postings])
        gathered = scores[held]
        gathered += bonus
        scores[held] = gathered
    if rarest is None:
        return scores, None
    parts = rarest[1]
    return scores, np.concatenate(parts) if len(parts) > 1 else parts[0]


def _form_postings(reader: Reader, terms: Sequence[str], compounds: Collection[tuple[str, ...]]
                   ) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """One form's postings (per segment) and how many documents hold it; ``terms``: its words stemmed.
    A compound no document holds holds nothing: its words apart are not the phrase (向 and 量化 are in
    88 items, 向量化 in none), and the index signature re-indexes when the compounds change."""
    if len(terms) == 1:
        return reader.postings(terms[0]), reader.frequency(terms[0])
    if tuple(terms) in compounds:
        compound = stem(compound_term(terms))  # indexed as a word, so stemmed as one ("ai_agent" -> "ai_ag")
        return reader.postings(compound), reader.frequency(compound)
    return reader.conjunction(terms)  # a quoted phrase: the items holding every word (FTS5 checks the phrase)


_MAX_CONCEPTS = 64
"""A pasted page as a query ranks by its first 64 concepts: the ranking stays bounded."""
_OVERFETCH = 10
"""A filtered search checks the filters on this many times ``limit`` of the engine's best hits
(one SQL query by primary key), then on this factor more; only when too few pass is the engine
restricted to the filtered items themselves (a scan of the items the filters select)."""


def _engine_ranking(
    conn: sqlite3.Connection, engine: EngineIndex, compiled: CompiledQuery, config: Config | None, limit: int,
) -> list[tuple[int, float]]:
    reader = engine.reader
    phrases = [Group(p, [[w for w, _s, _e in segment(p)]]) for p in compiled.parsed.phrases]
    groups = [*compiled.groups, *phrases][:_MAX_CONCEPTS]
    if not groups:
        return []
    scores, likely = concept_scores(reader, groups, compounds=compound_set(config))
    filters = compiled.parsed.filters
    conditions = _engine_filter(reader, filters)
    # The rest of the filters (tags and sections match parts of names, phrases and exclusions FTS5) are SQL.
    clauses, params = filter_sql(Filters(tags=filters.tags, sections=filters.sections), config)
    if not (clauses or compiled.constraint or compiled.exclude):
        return reader.top(scores, limit, conditions, likely)
    passing: set[int] = set()
    checked: set[int] = set()  # a wider pass checks only the hits the narrower one did not
    for width in (limit * _OVERFETCH, limit * _OVERFETCH**2, limit * _OVERFETCH**3):
        wide = reader.top(scores, width, conditions, likely)
        unchecked = [i for i, _ in wide if i not in checked]
        passing.update(_filtered_ids(conn, compiled, clauses, params, None, among=unchecked, ordered=False))
        checked.update(unchecked)
        kept = [(i, s) for i, s in wide if i in passing]
        if len(kept) >= limit or len(wide) < width:
            return kept[:limit]
    # A narrow filter (a tag, a section) over a common query: restrict the engine to its items.
    allowed = _filtered_ids(conn, compiled, clauses, params, None, ordered=False)
    return reader.top(scores, limit, [*conditions, reader.among(allowed)], likely) if allowed else []


def _engine_filter(reader: Reader, filters: Filters) -> list[Condition]:
    """The filters the engine itself checks: ``kind:`` (the whole value), ``since:``/``until:`` (the
    item's date) and ``author:``, exactly as :func:`.query.filter_sql` selects them (a test compares
    the two); none when the query has no such filter.

    ``author:`` is the handle equal, or the name ``LIKE`` the value (SQLite lower-cases and ignores
    case in ASCII only, ``%`` and ``_`` are wildcards), the names matched among the index's author
    names (a person's archive has a few hundred). Checking these in SQL on the engine's hits, as
    before, had to widen to tens of thousands of hits for an author of a few items or a month of
    three years (30-50 ms a query at 100k items)."""
    if not (filters.kinds or filters.since or filters.until or filters.authors):
        return []
    names = handles = None
    if filters.authors:
        patterns = [
            re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in a.lower()),
                       re.IGNORECASE | re.ASCII | re.DOTALL)
            for a in filters.authors
        ]
        handles = [a.lstrip("@").lower() for a in filters.authors]
        names = [name for name in reader.author_names() if any(p.search(ascii_lower(name)) for p in patterns)]
    return [reader.condition(filters.kinds, date_number(filters.since), date_number(filters.until), names, handles)]


def _filtered_ids(
    conn: sqlite3.Connection, compiled: CompiledQuery, clauses: list[str], params: list[Any], limit: int | None,
    among: Sequence[int] | None = None, ordered: bool = True,
) -> list[int]:
    """Items passing the filters, the required phrases and the exclusions, newest first (only
    those ``among`` the given ids, when given; in no order unless ``ordered``: without the order
    SQLite scans the items the filters test once, instead of looking each one up by date)."""
    where = list(clauses)
    args = list(params)
    if among is not None:
        if not among:
            return []
        where.append(f"search_docs.item_id IN ({','.join('?' * len(among))})")
        args.extend(among)
    if compiled.constraint:
        where.append("search_docs.item_id IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)")
        args.append(compiled.constraint)
    if compiled.exclude:
        where.append("search_docs.item_id NOT IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)")
        args.append(compiled.exclude)
    sql = (
        "SELECT search_docs.item_id FROM search_docs JOIN items ON items.id = search_docs.item_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + (" ORDER BY search_docs.item_date DESC, search_docs.item_id DESC" if ordered else "")
        + (" LIMIT ?" if limit else "")
    )
    return [r[0] for r in conn.execute(sql, args + ([limit] if limit else []))]


# ------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------


def search(
    store: Store,
    query: str,
    *,
    config: Config | None = None,
    filters: Filters | None = None,
    limit: int = 10,
    recent: bool = False,
    embedder: Embedder | None = None,
    hybrid: bool = True,
    refresh: bool = True,
    rewrite: bool | None = None,
) -> SearchResult:
    """Search the archive. ``embedder`` (or the one configured) turns on hybrid ranking; without
    one, or when it fails, the ranking is BM25 alone. ``rewrite`` (default ``search.rewrite``) fuses
    in the rankings of the model's phrasings of the query (``search/rewrite.py``)."""
    compiled = compile_query(query, with_colloquial(config), filters)
    rewriting = config is not None and (config.search.rewrite if rewrite is None else rewrite)
    rewriting = rewriting and bool(compiled.parsed.text.strip())
    postgres = store.engine.dialect.name == "postgresql"
    if refresh and (rewriting or postgres):
        refresh_index(store, config)  # SQLite's own search refreshes on the connection it ranks with
    if rewriting:
        from .rewrite import search_rewritten  # the gateway loads only when rewriting is asked for

        return search_rewritten(store, query, compiled, config=config, filters=filters, limit=limit, recent=recent,
                                embedder=embedder, hybrid=hybrid, search=search)
    own_embedder = None
    if hybrid and embedder is None:
        embedder = own_embedder = embedder_from_config(config, store)
    if not hybrid:
        embedder = None
    try:
        if postgres:  # tsvector ranking (search/pg.py)
            from . import pg

            return pg.search(store, compiled, config, limit, recent, embedder)
        return _search(store, compiled, config, embedder, limit, recent, refresh)
    finally:
        close = getattr(own_embedder, "close", None)
        if close is not None:
            close()


def rank(
    store: Store, query: str, *, config: Config | None = None, filters: Filters | None = None, limit: int = 10,
    refresh: bool = True,
) -> list[tuple[int, float]]:
    """The engine's ranking alone, ``(item id, score)`` best first: what :func:`search` ranks by
    without embeddings, before it builds views and snippets (``bench/search.py`` times both)."""
    compiled = compile_query(query, with_colloquial(config), filters)
    if store.engine.dialect.name == "postgresql":
        from . import pg

        if refresh:
            refresh_index(store, config)
        return pg.rank(store, compiled, config, limit) if compiled.match else []
    with connect(store) as conn:
        engine = current_engine(conn, config, refresh=refresh)
        return _engine_ranking(conn, engine, compiled, config, limit) if compiled.match else []


def _search(
    store: Store, compiled: CompiledQuery, config: Config | None, embedder: Embedder | None, limit: int,
    recent: bool, refresh: bool,
) -> SearchResult:
    # Fused with embeddings or re-weighted by recency, hits from below the top ``limit`` can rise;
    # ranked by BM25 alone, the engine's top ``limit`` is the answer.
    depth = max(limit * 4, 50) if embedder is not None or recent else limit
    with connect(store) as conn:
        engine = current_engine(conn, config, refresh=refresh)
        clauses, params = filter_sql(compiled.parsed.filters, config)
        bm25: list[tuple[int, float]] = []
        if compiled.match:
            bm25 = _engine_ranking(conn, engine, compiled, config, depth)
        vector: list[tuple[int, float]] = []
        if embedder is not None and compiled.parsed.text.strip():
            try:
                embed_indexed(store, embedder, config)
                allowed = None
                if clauses or compiled.constraint or compiled.exclude:
                    allowed = set(_filtered_ids(conn, compiled, clauses, params, None))
                vector = vector_ranking(conn, embedder, compiled.parsed.text, allowed, depth)
            except SearchError as exc:
                log.warning("search: %s; ranking by BM25 alone", exc)
                vector = []
        mode, scored = blend(compiled, bm25, vector, lambda: _filtered_ids(conn, compiled, clauses, params, depth),
                             config)
        dates = _dates(conn, [i for i, _ in (scored if recent else scored[:limit])])
        if recent and scored:
            known = [date.fromisoformat(d[:10]) for d in dates.values() if d]
            scored = by_recency(scored, dates, _newest_date(conn) or (max(known) if known else None), config)
        top = scored[:limit]
        bm25_rank = {i: r for r, (i, _) in enumerate(bm25, start=1)}
        vector_rank = {i: r for r, (i, _) in enumerate(vector, start=1)}
        hits = _hits(conn, store, top, compiled, config, bm25_rank, vector_rank, dates)
    return SearchResult(hits, mode, compiled)


def _dates(conn: sqlite3.Connection, ids: list[int]) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for item_id, d in conn.execute(
            f"SELECT item_id, item_date FROM search_docs WHERE item_id IN ({','.join('?' * len(chunk))})", chunk
        ):
            out[item_id] = d
    return out


def _newest_date(conn: sqlite3.Connection) -> date | None:
    value = conn.execute("SELECT max(item_date) FROM search_docs").fetchone()[0]
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def _hits(
    conn: sqlite3.Connection, store: Store, top: list[tuple[int, float]], compiled: CompiledQuery,
    config: Config | None, bm25_rank: dict[int, int], vector_rank: dict[int, int], dates: dict[int, str | None],
) -> list[SearchHit]:
    """The one place hits are built: the items' views and snippet fields (loaded together, not per
    hit), their FTS5 highlights, and the ranks and dates the search computed.

    The views come from ``Item.view()`` rather than from the raw rows the ranking read, so there is
    one mapping from a stored item to what interfaces show; that costs about 2 ms a search (four
    small queries), against a few ms for the ranking itself."""
    if not top:
        return []
    ids = [i for i, _ in top]
    loaded = _load_items(store, ids)
    marked = highlights(conn, ids, compiled)
    width = config.search.snippet_chars if config else 160
    hits = []
    for item_id, score in top:
        if item_id not in loaded:  # deleted since it was ranked
            continue
        view, originals = loaded[item_id]
        hits.append(
            SearchHit(
                item=view, score=round(score, 6),
                snippet=build_snippet(originals, marked.get(item_id), width, compiled),
                date=dates.get(item_id), bm25_rank=bm25_rank.get(item_id), vector_rank=vector_rank.get(item_id),
            )
        )
    return hits


