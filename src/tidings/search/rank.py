"""Ranking and the search itself: BM25 with field weights, re-weighted by how many of the query's
concepts an item holds (coordination); optionally fused by reciprocal rank with cosine similarity
of cached embeddings (hybrid); optionally boosted by recency. :func:`search` runs it all and
builds the hits, each the item's one view (:class:`tidings.records.ItemView`) plus what the search
found out about it."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from ..config import Config
from ..errors import TidingsError
from ..records import ItemView
from ..store import Item, Store
from .colloquial import with_colloquial
from .engine import WORD_FIELDS, EngineIndex
from .index import FIELDS, SearchError, connect, current_engine, meta, refresh_index, write
from .query import CompiledQuery, Filters, Group, compile_query, filter_sql
from .segment import segment
from .snippets import SNIPPET_COLUMNS, build_snippet, highlights

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------
# Embeddings (hybrid search)
# ------------------------------------------------------------------------------------------


class Embedder(Protocol):
    """Anything that turns texts into vectors. ``model`` keys the cache."""

    model: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass
class LLMEmbedder:
    """The ``embed`` route of the model gateway (``tidings.llm.gateway``): an OpenAI-compatible endpoint
    (OpenAI, llama.cpp server, Ollama, vLLM …) or an in-process GGUF model."""

    llm: Any
    model: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            return [_pool(v) for v in self.llm.embed(list(texts))]
        except TidingsError as exc:
            raise SearchError(f"embedding with {self.model} failed: {exc}") from exc

    def close(self) -> None:
        self.llm.close()


def _pool(vector: Any) -> list[float]:
    """One vector per text. llama.cpp's server returns one vector per *token* for a model without
    a pooling head (a chat model such as SmolLM2); their mean is the usual sentence embedding."""
    if vector and isinstance(vector[0], list | tuple):
        import numpy as np

        return [float(x) for x in np.asarray(vector, dtype=np.float32).mean(axis=0)]
    return [float(x) for x in vector]


def embedder_from_config(config: Config | None, store: Store | None = None) -> Embedder | None:
    """The embedder ``routes.embed`` names, or None (BM25 alone) when none is configured.

    Only an explicit ``embed`` route counts: the gateway's fallback to the default model would
    send embedding requests to a chat-only model."""
    name = getattr(config.routes, "embed", None) if config is not None else None
    if not name or name not in config.models:  # type: ignore[union-attr]
        return None
    from ..llm.gateway import LLM, model_id

    assert config is not None
    return LLMEmbedder(LLM(config, store), model_id(config.models[name]))


def embed_text(title: str | None, summary: str | None, note: str | None, text: str | None, limit: int) -> str:
    parts = [p.strip() for p in (title, summary, note, text) if p and p.strip()]
    return "\n".join(parts)[:limit]


def _unit(vector: Sequence[float]) -> bytes:
    import numpy as np

    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return (v / norm if norm else v).tobytes()


def update_embeddings(store: Store, embedder: Embedder, config: Config | None = None) -> int:
    """Embed indexed items that have no vector for this model, or whose text changed since.

    Vectors are keyed by a hash of the embedded text, so each item is embedded once per model and
    again only when its title, summary, note or text changes. Returns how many were computed."""
    refresh_index(store, config)  # what is embedded is what is indexed, as of now
    limit = config.search.embed_max_chars if config else 512
    with connect(store) as conn:
        marker_key = f"embed_checked:{embedder.model}"
        checked = meta(conn, marker_key) or ""
        rows = conn.execute(
            "SELECT i.id, i.title, i.summary, i.note, substr(i.text, 1, ?), e.content_hash, d.indexed_at "
            "FROM search_docs d JOIN items i ON i.id = d.item_id "
            "LEFT JOIN embeddings e ON e.item_id = i.id AND e.model = ? "
            "WHERE e.id IS NULL OR d.indexed_at > ?",
            (limit, embedder.model, checked),
        ).fetchall()
        todo: list[tuple[int, str, str]] = []
        newest = checked
        for item_id, title, summary, note, text, old_hash, indexed_at in rows:
            newest = max(newest, indexed_at)
            content = embed_text(title, summary, note, text, limit)
            digest = hashlib.sha256(f"{limit}\n{content}".encode()).hexdigest()
            if content and digest != old_hash:
                todo.append((item_id, digest, content))
        for start in range(0, len(todo), 16):  # small requests: a local CPU server is slow per call
            batch = todo[start : start + 16]
            vectors = embedder.embed([c for _i, _h, c in batch])
            with write(conn):
                conn.executemany(
                    "INSERT INTO embeddings (item_id, model, content_hash, vector) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(item_id, model) DO UPDATE SET content_hash = excluded.content_hash, "
                    "vector = excluded.vector",
                    [(i, embedder.model, h, _unit(v)) for (i, h, _c), v in zip(batch, vectors, strict=True)],
                )
        with write(conn):
            conn.execute(
                "INSERT INTO search_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (marker_key, newest),
            )
    if todo:
        log.info("search: embedded %d item(s) with %s", len(todo), embedder.model)
    return len(todo)


def vector_ranking(
    conn: sqlite3.Connection, embedder: Embedder, query_text: str, allowed: set[int] | None, limit: int
) -> list[tuple[int, float]]:
    """Items by cosine similarity to the query (brute force: a personal archive is small)."""
    import numpy as np

    rows = conn.execute(
        "SELECT e.item_id, e.vector FROM embeddings e JOIN search_docs d ON d.item_id = e.item_id "
        "WHERE e.model = ?",
        (embedder.model,),
    ).fetchall()
    if allowed is not None:
        rows = [r for r in rows if r[0] in allowed]
    if not rows:
        return []
    query_vec = np.frombuffer(_unit(embedder.embed([query_text])[0]), dtype=np.float32)
    ids = [r[0] for r in rows]
    matrix = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    if matrix.shape[1] != query_vec.shape[0]:
        raise SearchError("cached embeddings have another dimension than the model's; run tidings index --rebuild")
    sims = matrix @ query_vec
    order = np.argsort(-sims)[:limit]
    return [(ids[i], float(sims[i])) for i in order]


def rrf(rankings: Sequence[Sequence[int]], k: int = 60) -> dict[int, float]:
    """Reciprocal rank fusion: score(d) = Σ 1 / (k + rank(d)), ranks from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item_id in enumerate(ranking, start=1):
            scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (k + rank)
    return scores


# ------------------------------------------------------------------------------------------
# BM25, coordination, recency
# ------------------------------------------------------------------------------------------

_df_cache: dict[tuple[str, str], int] = {}


def doc_frequency(conn: sqlite3.Connection, group: Group) -> int:
    """Items containing the group, cached until the index changes (counting walks posting lists)."""
    if not isinstance(conn, sqlite3.Connection):  # a PostgreSQL store's connection (index.connect)
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


def idf_weight(total: int, df: int) -> float:
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


def field_weights(config: Config | None) -> list[float]:
    configured = config.search.weights if config else {}
    # Tuned on the calibration halves of evals/queries.jsonl and evals/natural.jsonl (issue 16): with
    # coordination doing the balancing, a heavy title weight (it was 10) let a title holding one
    # common word outrank the item that answers a question in its body (natural r@5 0.66 -> 0.89).
    defaults = {"title": 1.0, "summary": 1.0, "text": 1.0, "note": 1.0, "tags": 1.0, "author": 1.0,
                "section": 0.3, "kind": 0.3}
    return [float(configured.get(f, defaults[f])) for f in FIELDS]


PRESENCE_BONUS = 3.0
"""Coordination: each concept an item holds adds this times the concept's IDF to its score."""


def engine_query(engine: EngineIndex, groups: Sequence[Group], weights: Sequence[float],
                 presence_bonus: float = PRESENCE_BONUS) -> Any | None:
    """The tantivy query for the query's concepts, scored in one pass.

    A concept scores, in each field, the best of its forms (a synonym set counts once, not once per
    form that matches: ``disjunction_max``), times the field's weight, summed over the fields; plus
    a constant ``presence_bonus × IDF`` for holding it at all. The concepts' scores add up.

    The bonus is the coordination: BM25 alone lets a common word that fills a short field (a
    title) outweigh the rare word the user was after ("Mixtral 路由": titles about routing beat
    the post about Mixtral's router). The FTS5 ranking re-weighed its top 100 by the IDF-weighted
    share of concepts present, one query per concept (Lucene's classic factor); the constant
    bonus ranks the calibration questions as well (natural r@5 0.89 both, old set 1.00 both; MRR
    0.75 against 0.78 and 0.95 both) in one query instead of one per concept."""
    import tantivy

    Query, Occur = tantivy.Query, tantivy.Occur
    total = max(engine.num_docs(), 1)
    concepts = []
    for group in groups:
        per_field = []
        for name, weight in zip(FIELDS, weights, strict=True):
            if weight <= 0 or name not in WORD_FIELDS:
                continue
            forms = [
                Query.term_query(engine.schema, name, engine.term(form[0])) if len(form) == 1
                else Query.phrase_query(engine.schema, name, [engine.term(w) for w in form])
                for form in group.forms if form
            ]
            if not forms:
                continue
            best = forms[0] if len(forms) == 1 else Query.disjunction_max_query(forms)
            per_field.append((Occur.Should, Query.boost_query(best, weight)))
        if per_field:
            concept = Query.boolean_query(per_field)
            if presence_bonus:
                idf = idf_weight(total, engine.doc_frequency(group.forms))
                concept = Query.boolean_query([(Occur.Should, concept),
                                               (Occur.Should, Query.const_score_query(concept, presence_bonus * idf))])
            concepts.append((Occur.Should, concept))
    return Query.boolean_query(concepts) if concepts else None


_MAX_CONCEPTS = 64
"""A pasted page as a query ranks by its first 64 concepts: the engine query stays bounded."""
_OVERFETCH = 10
"""A filtered search checks the filters on this many times ``limit`` of the engine's best hits
(one SQL query by primary key), then on this factor more; only when too few pass is the engine
restricted to the filtered items themselves (a scan of the items the filters select)."""


def _engine_ranking(
    conn: sqlite3.Connection, engine: EngineIndex, compiled: CompiledQuery, clauses: list[str],
    params: list[Any], weights: list[float], limit: int,
) -> list[tuple[int, float]]:
    phrases = [Group(p, [[w for w, _s, _e in segment(p)]]) for p in compiled.parsed.phrases]
    query = engine_query(engine, [*compiled.groups, *phrases][:_MAX_CONCEPTS], weights)
    if query is None:
        return []
    if not (clauses or compiled.constraint or compiled.exclude):
        return _indexed(conn, engine.search(query, limit))
    passing: set[int] = set()
    checked: set[int] = set()  # a wider pass checks only the hits the narrower one did not
    for width in (limit * _OVERFETCH, limit * _OVERFETCH**2, limit * _OVERFETCH**3):
        wide = engine.search(query, width)
        unchecked = [i for i, _ in wide if i not in checked]
        passing.update(_filtered_ids(conn, compiled, clauses, params, None, among=unchecked, ordered=False))
        checked.update(unchecked)
        kept = [(i, s) for i, s in wide if i in passing]
        if len(kept) >= limit or len(wide) < width:
            return kept[:limit]
    # A narrow filter (an author, a kind) over a common query: restrict the engine to its items.
    allowed = _filtered_ids(conn, compiled, clauses, params, None, ordered=False)
    return engine.search(_restricted(query, engine, allowed), limit) if allowed else []


def _restricted(query: Any, engine: EngineIndex, ids: Sequence[int]) -> Any:
    import tantivy

    only = tantivy.Query.term_set_query(engine.schema, "id", list(ids))
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, only)])


def _indexed(conn: sqlite3.Connection, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The engine's hits that ``search_docs`` lists: the store's index is the truth, so an item
    whose index rows were dropped (a damaged or rebuilding index) is not shown from the engine."""
    if not ranked:
        return ranked
    ids = [i for i, _ in ranked]
    present = {r[0] for r in conn.execute(
        f"SELECT item_id FROM search_docs WHERE item_id IN ({','.join('?' * len(ids))})", ids
    )}
    return [(i, s) for i, s in ranked if i in present]


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


def _recency_factor(item_date: str | None, newest: date | None, config: Config | None) -> float:
    if not item_date or newest is None:
        return 1.0
    weight = config.search.recency_weight if config else 0.3
    half_life = config.search.recency_half_life_days if config else 180.0
    try:
        age = max(0, (newest - date.fromisoformat(item_date[:10])).days)
    except ValueError:
        return 1.0
    return 1.0 + weight * 0.5 ** (age / half_life)


# ------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------


@dataclass
class SearchHit:
    """One result: the item as every interface shows it, plus what this search found out about it."""

    item: ItemView
    """Made by ``Item.view(with_text=False)``: a hit never carries the full text (see :func:`_hits`)."""
    score: float
    snippet: str
    """A window of the best-matching field, matched words between MARK_OPEN and MARK_CLOSE."""
    date: str | None
    """The date ``since:``/``until:`` compare (published, else first digest week, else first seen)."""
    bm25_rank: int | None = None
    vector_rank: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``search --json`` object. Its keys and their order are a published interface (scripts
        pipe it to jq), so they stay as they were before hits carried an ItemView."""
        item = self.item
        return {
            "id": item.id, "url": item.url, "title": item.title, "score": self.score, "snippet": self.snippet,
            "section": item.section, "tags": list(item.tags), "author": item.byline,
            "author_handle": item.author_handle, "published_at": _stored_iso(item.published_at),
            "date": self.date, "kind": item.kind, "bm25_rank": self.bm25_rank, "vector_rank": self.vector_rank,
        }


def _stored_iso(moment: datetime | None) -> str | None:
    """ISO 8601 with microseconds, as SQLite stores the column (``2023-12-11T00:00:00.000000``):
    what ``search --json`` has always printed, unlike ``items --json``'s shorter form."""
    return moment.isoformat(timespec="microseconds") if moment else None


@dataclass
class SearchResult:
    hits: list[SearchHit]
    mode: str
    """``bm25``, ``hybrid`` or ``filter`` (no words: filtered items, newest first)."""
    compiled: CompiledQuery


def blend(
    compiled: CompiledQuery, bm25: list[tuple[int, float]], vector: list[tuple[int, float]],
    filtered: Callable[[], list[int]], config: Config | None,
) -> tuple[str, list[tuple[int, float]]]:
    """The ranking mode and the scored ids, the same on both stores: BM25 fused with the embeddings by
    reciprocal rank when there are any, BM25 alone for words, and for filters alone the matching items
    (``filtered``, asked only then) unscored."""
    if vector:
        fused = rrf([[i for i, _ in bm25], [i for i, _ in vector]], k=config.search.rrf_k if config else 60)
        return "hybrid", sorted(fused.items(), key=lambda kv: -kv[1])
    if compiled.match:
        return "bm25", bm25
    ids = filtered() if not compiled.parsed.text.strip() else []
    return "filter", [(i, 0.0) for i in ids]


def by_recency(scored: list[tuple[int, float]], dates: dict[int, str | None], newest: date | None,
               config: Config | None) -> list[tuple[int, float]]:
    """``scored`` re-weighted by how recent each item is (``--recent``), best first."""
    return sorted(((i, s * _recency_factor(dates.get(i), newest, config)) for i, s in scored), key=lambda kv: -kv[1])


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
    if refresh:
        refresh_index(store, config)
    compiled = compile_query(query, with_colloquial(config), filters)
    if config is not None and (config.search.rewrite if rewrite is None else rewrite) and compiled.parsed.text.strip():
        from .rewrite import search_rewritten  # it imports this module, so only when asked for, as pg

        return search_rewritten(store, query, compiled, config=config, filters=filters, limit=limit, recent=recent,
                                embedder=embedder, hybrid=hybrid)
    own_embedder = None
    if hybrid and embedder is None:
        embedder = own_embedder = embedder_from_config(config, store)
    if not hybrid:
        embedder = None
    try:
        if store.engine.dialect.name == "postgresql":  # tsvector ranking (search/pg.py)
            from . import pg

            return pg.search(store, compiled, config, limit, recent, embedder)
        return _search(store, compiled, config, embedder, limit, recent)
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
    if refresh:
        refresh_index(store, config)
    compiled = compile_query(query, with_colloquial(config), filters)
    if not compiled.match:
        return []
    if store.engine.dialect.name == "postgresql":
        from . import pg

        return pg.rank(store, compiled, config, limit)
    with connect(store) as conn:
        clauses, params = filter_sql(compiled.parsed.filters, config)
        return _engine_ranking(conn, current_engine(conn), compiled, clauses, params, field_weights(config), limit)


def _search(
    store: Store, compiled: CompiledQuery, config: Config | None, embedder: Embedder | None, limit: int,
    recent: bool,
) -> SearchResult:
    depth = max(limit * 4, 50)
    with connect(store) as conn:
        engine = current_engine(conn)
        clauses, params = filter_sql(compiled.parsed.filters, config)
        bm25: list[tuple[int, float]] = []
        if compiled.match:
            bm25 = _engine_ranking(conn, engine, compiled, clauses, params, field_weights(config), depth)
        vector: list[tuple[int, float]] = []
        if embedder is not None and compiled.parsed.text.strip():
            try:
                update_embeddings(store, embedder, config)
                allowed = None
                if clauses or compiled.constraint or compiled.exclude:
                    allowed = set(_filtered_ids(conn, compiled, clauses, params, None))
                vector = vector_ranking(conn, embedder, compiled.parsed.text, allowed, depth)
            except SearchError as exc:
                log.warning("search: %s; ranking by BM25 alone", exc)
                vector = []
        mode, scored = blend(compiled, bm25, vector, lambda: _filtered_ids(conn, compiled, clauses, params, depth),
                             config)
        dates = _dates(conn, [i for i, _ in scored])
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


_VIEW_COLUMNS = (
    "id", "url", "title", "extra", "summary", "summary_origin", "section", "section_confidence", "section_origin",
    "kind", "author", "author_handle", "category", "note", "language", "published_at", "seen_at", "status", "error",
    "error_reason",
)
"""The ``items`` columns an :class:`ItemView` is made of (with its URLs, tags and links): what
:func:`_load_items` reads, besides the snippet fields."""


def _load_items(store: Store, ids: list[int]) -> dict[int, tuple[ItemView, tuple[str | None, ...]]]:
    """Each item's view (as ``Item.view(with_text=False)`` makes it), and its snippet fields
    (:data:`SNIPPET_COLUMNS`, the text among them).

    Two plain queries on the store's DB-API connection, whatever the number of hits: the columns,
    then the URLs, tags and links in one ``UNION ALL`` (each in its relationship's order, by row
    id). Loading ``Item`` objects through the ORM cost about half of a whole search, and SQLAlchemy
    Core still most of a millisecond; each value goes through its column type's own result
    processor (dates, JSON), so the views equal the ORM's. ``tests/test_search_engine.py`` checks
    every hit's view against ``Item.view()``."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    with connect(store) as conn:
        cursor = conn.execute(f"SELECT {', '.join(_VIEW_READ)} FROM items WHERE id IN ({marks})", ids)
        processors = _processors(store.engine.dialect, tuple(d[1] for d in cursor.description))
        rows = [
            dict(zip(_VIEW_READ, (convert(v) if convert else v for convert, v in zip(processors, row, strict=True)),
                     strict=True))
            for row in cursor.fetchall()
        ]
        related: dict[int, dict[str, list[str]]] = {row["id"]: {"urls": [], "tags": [], "links": []} for row in rows}
        for item_id, kind, value, _row_id in conn.execute(
            f"SELECT item_id, 'urls', url, id FROM item_urls WHERE item_id IN ({marks}) UNION ALL "
            f"SELECT item_id, 'tags', tag, id FROM item_tags WHERE item_id IN ({marks}) UNION ALL "
            f"SELECT item_id, 'links', url, id FROM item_links WHERE item_id IN ({marks}) ORDER BY 4",
            [*ids, *ids, *ids],
        ).fetchall():
            if item_id in related:
                related[item_id][kind].append(value)
    loaded = {}
    for row in rows:
        lists = related[row["id"]]
        view = ItemView(
            id=row["id"], url=row["url"], link=lists["urls"][0] if lists["urls"] else row["url"], urls=lists["urls"],
            title=row["title"], title_derived=bool((row["extra"] or {}).get("title_derived")),
            summary=row["summary"], summary_origin=row["summary_origin"], section=row["section"],
            section_confidence=row["section_confidence"], section_origin=row["section_origin"], tags=lists["tags"],
            kind=row["kind"], author=row["author"], author_handle=row["author_handle"], category=row["category"],
            note=row["note"], links=lists["links"], language=row["language"], published_at=row["published_at"],
            seen_at=row["seen_at"], status=row["status"], error=row["error"], error_reason=row["error_reason"],
            text=None,
        )
        loaded[row["id"]] = (view, tuple(row[name] for name in SNIPPET_COLUMNS))
    return loaded


_VIEW_READ = tuple(dict.fromkeys((*_VIEW_COLUMNS, *SNIPPET_COLUMNS)))


@functools.cache
def _processors(dialect: Any, type_codes: tuple[Any, ...]) -> tuple[Callable[[Any], Any] | None, ...]:
    """For each column of :data:`_VIEW_READ`, its type's result processor on this dialect and driver
    type: what SQLAlchemy applies to the same raw value (a SQLite date string becomes a
    ``datetime``, JSON text a dict, PostgreSQL's offset is dropped)."""
    columns = Item.__table__.c
    return tuple(
        columns[name].type.dialect_impl(dialect).result_processor(dialect, code)
        for name, code in zip(_VIEW_READ, type_codes, strict=True)
    )
