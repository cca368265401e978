"""Search on a PostgreSQL store: segmented words in a weighted ``tsvector`` under a GIN index.

Tables (migration 0006): ``search_docs`` (one row per indexed item: the date filters compare, the
segmented fields the snippets mark, and ``words``), ``search_dirty`` (the change queue, filled by
triggers in the writer's own transaction, as on SQLite) and ``search_meta``.

Words: the same segmenter as on SQLite (:mod:`.segment`) cuts every field; each word becomes one
lexeme, English words stemmed by the same Snowball stemmer the SQLite engine uses
(:func:`.terms.stem`), anything else as it is. The ``tsvector`` is written as a literal of
those lexemes with their positions and weights (title A, summary and note B, text C, tags and
author D) rather than by ``to_tsvector('simple', …)``: the default parser would cut the
segmenter's words again ("gpt-4o", "fine-tuning", URLs, and CJK by the database's locale), so
queries and index would no longer hold the same words as on SQLite. What is left of ``simple``
(lower-casing, no stop words, no stemming) the segmenter has already done. English words are
stemmed, as on SQLite, so both stores find "embedding" for "embeddings" and give the same answers.

Ranking: one SQL query finds the candidates, with a GIN lookup and an ``ORDER BY … LIMIT``: every
concept of the query (a word or a synonym set, as :func:`.query.query_groups` makes them) scores
``IDF × (presence bonus + 2.2 × r / (r + 1))``, where ``r`` is ``ts_rank_cd`` of the concept with the
configured field weights, normalized by the document's length. Its best :data:`_CANDIDATES` are then
scored field by field with BM25 and the same coordination as the SQLite engine (:mod:`.pgrescore`):
``ts_rank_cd`` alone scores a whole document, so a word in a short title weighs what it weighs in a
long text, and the two stores ranked a few questions differently (natural questions, calibration
r@5 0.947 against 0.974).

Consistency: :func:`refresh_index` drains the queue in batches; each batch reads the queued
entries, the items and writes their rows in one transaction under an advisory lock, and deletes
exactly the queue entries it read (by ``seq``), so a change committed meanwhile stays queued.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from ..config import Config
from ..store import Store
from . import pgrescore
from .hits import (
    PRESENCE_BONUS,
    Embedder,
    SearchHit,
    SearchResult,
    _load_items,
    blend,
    by_recency,
    embed_indexed,
    idf_weight,
    vector_ranking,
)
from .pgrescore import lexeme
from .pgrescore import quoted as _quoted
from .query import CompiledQuery, Group, filter_sql
from .segment import prepare, segment, segmenter_signature
from .snippets import SNIPPET_COLUMNS, _wanted_forms, build_snippet, mark_words
from .storage import PgConnection, SearchError, connect, fts_row, item_date, load_docs, meta, set_meta
from .terms import FIELDS, field_weights

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

_LOCK_KEY = 0x7469_6469  # "tidi": the advisory lock that serializes index refreshes
_BATCH = 100
_BULK_FROM, _BULK_BATCH = 2000, 2000
_MAX_POSITION = 16383
"""PostgreSQL's largest tsvector position; later words keep this one (as ``to_tsvector`` does)."""
_MAX_POSITIONS = 255
_MAX_LEXEME_BYTES = 2047
_MAX_VECTOR_BYTES = 900_000
"""A tsvector holds at most 1 MB of lexemes; an item's distinct words never come near it, but a
hostile page must get a shorter index entry, not a failed batch."""
_CANDIDATES = 200
"""How many of the tsvector ranking's best items :mod:`.pgrescore` scores field by field."""
RESCORE = True
SHORTLIST = 2000
"""How many items :func:`ranking` scores with ``ts_rank_cd``: those holding the most of the query's
concepts (weighted by IDF), found from the GIN index alone (see :func:`_shortlist`)."""
_SATURATION = 2.2
"""BM25's ceiling for a word's own weight, ``k1 + 1`` (k1 = 1.2), as tantivy scores it."""
_RANK_NORMALIZATION = 1 | 32
"""``ts_rank_cd`` divided by 1 + log(document length), then mapped to r / (r + 1)."""

# The free-word fields, in position order (short fields first, so the text is the one a cap
# reaches), with their tsvector weight. Section and kind are filters only, as on SQLite.
_WEIGHTED = (("title", "A"), ("summary", "B"), ("note", "B"), ("tags", "D"), ("author", "D"), ("text", "C"))
_FIELD_ORDER = ("title", "summary", "text", "note", "tags", "author", "section", "kind")
"""The order of :func:`.storage.fts_row`'s fields (and of ``search_docs``' text columns)."""


def is_postgres(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


@contextmanager
def _transaction(conn: PgConnection) -> Iterator[None]:
    try:
        yield
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _ensure_schema(conn: PgConnection, signature: str) -> None:
    """The tables exist, and the index was built by this segmenter (else everything is queued again)."""
    found = conn.execute("SELECT to_regclass('search_docs') IS NOT NULL").fetchone()[0]
    conn.rollback()
    if not found:
        raise SearchError("the store has no search index (migration 0006 did not run)")
    if meta(conn, "segmenter") == signature:
        conn.rollback()
        return
    with _transaction(conn):
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
        if meta(conn, "segmenter") != signature:
            log.info("search: segmenter changed; the index will be rebuilt")
            conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
            set_meta(conn, "segmenter", signature)


# ------------------------------------------------------------------------------------------
# Lexemes, tsvector and tsquery literals
# ------------------------------------------------------------------------------------------


def tsvector_literal(fields: dict[str, str]) -> str:
    """The ``tsvector`` of an item's segmented free-word fields: every word a lexeme at its
    position, with its field's weight. A gap between fields keeps a phrase inside one field."""
    return _literal(_positions(fields)[0])


def _literal(positions: dict[str, list[str]]) -> str:
    return " ".join(f"{_quoted(token)}:{','.join(at)}" for token, at in positions.items())


def _positions(fields: dict[str, str]) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Each lexeme of the fields with its positions and weights (``12A``), as the tsvector holds
    them; and per weight, the lexemes holding it there (what ``search_terms`` counts)."""
    positions: dict[str, list[str]] = {}
    held: dict[str, set[str]] = {weight: set() for _name, weight in _WEIGHTED}
    size = 0
    position = 1
    for name, weight in _WEIGHTED:
        for word in (fields.get(name) or "").split(" "):
            if not word:
                continue
            token = lexeme(word)
            at = positions.get(token)
            if at is None:
                cost = len(token.encode()) + 8
                if len(token.encode()) > _MAX_LEXEME_BYTES or size + cost > _MAX_VECTOR_BYTES:
                    continue
                size += cost
                at = positions[token] = []
            if len(at) < _MAX_POSITIONS:
                at.append(f"{min(position, _MAX_POSITION)}{weight}")
                held[weight].add(token)
            position += 1
        position += 1
    return positions, held


def _form_query(form: Sequence[str], joined: str = " <-> ") -> str | None:
    tokens = [_quoted(lexeme(w)) for w in form if w]
    if not tokens:
        return None
    return tokens[0] if len(tokens) == 1 else "(" + joined.join(tokens) + ")"


def group_query(group: Group, *, phrases: bool = True) -> str | None:
    """A concept as a ``tsquery`` literal: any of its forms, a multi-word form as a phrase (or,
    with ``phrases=False``, as all of its words anywhere: a match the GIN index answers without
    reading the row's positions)."""
    forms = [q for q in (_form_query(f, " <-> " if phrases else " & ") for f in group.forms) if q]
    return "(" + " | ".join(forms) + ")" if forms else None


def _phrase_query(text: str) -> str | None:
    return _form_query([w for w, _s, _e in segment(text)])


# ------------------------------------------------------------------------------------------
# The index
# ------------------------------------------------------------------------------------------


def refresh_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Index every queued item (new, changed or deleted since last time); returns how many."""
    prepare(config)
    done = 0
    with connect(store) as conn:
        _ensure_schema(conn, segmenter_signature(config))
        total = conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0]
        conn.rollback()
        if not total:
            return 0
        batch = _BULK_BATCH if total >= _BULK_FROM else _BATCH
        while True:
            with _transaction(conn):
                conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
                queued = conn.execute(
                    "SELECT item_id, array_agg(seq) FROM search_dirty GROUP BY item_id ORDER BY item_id LIMIT ?",
                    (batch,),
                ).fetchall()
                if not queued:
                    break
                _write_batch(conn, [r[0] for r in queued], [s for r in queued for s in r[1]])
            done += len(queued)
            if progress:
                progress(min(done, total), total, "index")
    return done


def _write_batch(conn: PgConnection, ids: list[int], seqs: list[int]) -> None:
    docs = load_docs(conn, ids)  # type: ignore[arg-type]  # the same SQL on both stores
    now = datetime.now(UTC).isoformat()
    removed = conn.execute(pgrescore.length_sums_sql() + " WHERE item_id = ANY(?)", (ids,)).fetchone()
    conn.execute(f"{_TERMS_UPSERT} SELECT lexeme, weight, -count FROM ({TERM_COUNTS} "
                 f"WHERE d.item_id = ANY(?) GROUP BY 1, 2) removed {_TERMS_ADD}", (ids,))
    conn.execute("DELETE FROM search_docs WHERE item_id = ANY(?)", (ids,))
    rows = []
    lengths = {name: -int(n) for name, n in zip(pgrescore.FIELD_CLASS, removed, strict=True)}
    terms: dict[str, Counter[str]] = {weight: Counter() for weight in ("*", *pgrescore.FIELD_CLASS.values())}
    for item_id, doc in docs.items():
        fields = dict(zip(_FIELD_ORDER, fts_row(doc), strict=True))
        positions, held = _positions(fields)
        rows.append((item_id, now, item_date(doc["published"], doc["week"], doc["seen"]),
                     *(fields[name] for name in _FIELD_ORDER), _literal(positions)))
        for name in lengths:
            lengths[name] += pgrescore.word_count(fields[name])
        terms["*"].update(positions.keys())  # the keys: a mapping would add its values
        for weight, tokens in held.items():
            terms[weight].update(tokens)
    _add_lengths(conn, lengths)
    for weight, counts in terms.items():  # as JSON: psycopg builds a large array param in Python
        if counts:
            conn.execute(f"{_TERMS_UPSERT} SELECT key, ?, value::int FROM json_each_text(?::json) {_TERMS_ADD}",
                         (weight, json.dumps(counts, ensure_ascii=False)))
    if rows:
        conn.raw.cursor().executemany(
            "INSERT INTO search_docs (item_id, indexed_at, item_date, title, summary, text, note, tags, author, "
            "section, kind, words) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector)",
            rows,
        )
    conn.execute("DELETE FROM search_dirty WHERE seq = ANY(?)", (seqs,))
    conn.execute("INSERT INTO search_meta (key, value) VALUES ('generation', '1') "
                 "ON CONFLICT (key) DO UPDATE SET value = (search_meta.value::bigint + 1)::text")


TERM_COUNTS = """SELECT t.lexeme, w.weight, count(*) FROM search_docs d, unnest(d.words) t,
    LATERAL (SELECT DISTINCT unnest(t.weights)::text AS weight UNION ALL SELECT '*') w"""
"""Each lexeme's items per weight (``*``: any) over ``search_docs`` rows, as migration 0009 fills
``search_terms`` (``WHERE`` and ``GROUP BY 1, 2`` follow)."""
_TERMS_UPSERT = "INSERT INTO search_terms (lexeme, weight, docs)"
_TERMS_ADD = "ON CONFLICT (lexeme, weight) DO UPDATE SET docs = search_terms.docs + excluded.docs"


def _add_lengths(conn: PgConnection, change: dict[str, int]) -> None:
    """Keep the per-field word totals (BM25's average lengths) in step with ``search_docs``."""
    sums = json.loads(meta(conn, pgrescore.LENGTHS_KEY) or "{}")
    set_meta(conn, pgrescore.LENGTHS_KEY, json.dumps({name: int(sums.get(name, 0)) + n for name, n in change.items()}))


def rebuild_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Drop every index row and index all items again (``tidings index --rebuild``)."""
    prepare(config)
    with connect(store) as conn:
        _ensure_schema(conn, segmenter_signature(config))
        with _transaction(conn):
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
            conn.execute("DELETE FROM search_docs")
            conn.execute("DELETE FROM search_terms")
            conn.execute("DELETE FROM search_dirty")
            conn.execute("DELETE FROM search_meta WHERE key IN ('generation', ?) OR key LIKE 'embed_checked:%'",
                         (pgrescore.LENGTHS_KEY,))
            conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
    refresh_index(store, config, progress=progress)
    with connect(store) as conn:
        return conn.execute("SELECT count(*) FROM search_docs").fetchone()[0]


def index_stats(store: Store) -> dict[str, int]:
    with connect(store) as conn:
        return {
            "indexed": conn.execute("SELECT count(*) FROM search_docs").fetchone()[0],
            "queued": conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0],
            "embeddings": conn.execute("SELECT count(*) FROM embeddings").fetchone()[0],
        }


# ------------------------------------------------------------------------------------------
# Ranking
# ------------------------------------------------------------------------------------------

_df_cache: dict[tuple[str, str, str], int] = {}


def _state(conn: PgConnection) -> tuple[str, str]:
    """The index's identity for caching: the database and its generation (bumped by every index write)."""
    return (str(conn.raw.info.dsn), meta(conn, "generation") or "0")


def indexed_count(conn: PgConnection, state: tuple[str, str]) -> int:
    """Rows of ``search_docs``, counted once per index state (a count is a scan of the table)."""
    key = (*state, "")
    if key not in _df_cache:
        _df_cache[key] = conn.execute("SELECT count(*) FROM search_docs").fetchone()[0]
    return _df_cache[key]


def doc_frequencies(conn: PgConnection, state: tuple[str, str], groups: Sequence[Group]) -> list[int]:
    """Items holding each concept, cached until the index changes: a one-word concept's count is
    in ``search_terms``; the others (synonyms, phrases) are counted by the GIN index, all in one
    statement."""
    if len(_df_cache) > 4096:
        _df_cache.clear()
    queries = [group_query(g) or "" for g in groups]
    words = [_lone_word(g) for g in groups]
    single = pgrescore.field_frequencies(conn, state, [w for w in words if w])
    for query, word in zip(queries, words, strict=True):
        if word:
            _df_cache[(*state, query)] = single[word]["*"]
    missing = sorted({q for q in queries if q and (*state, q) not in _df_cache})
    if missing:
        sql = " UNION ALL ".join(
            "SELECT ?::int, count(*) FROM search_docs WHERE words @@ ?::tsquery" for _ in missing
        )
        params = [value for at, query in enumerate(missing) for value in (at, query)]
        for at, count in conn.execute(sql, params).fetchall():
            _df_cache[(*state, missing[at])] = int(count)
    return [_df_cache[(*state, q)] if q else 0 for q in queries]


def _lone_word(group: Group) -> str | None:
    """The concept's lexeme when it is one word of one form, else None."""
    forms = {tuple(lexeme(w) for w in form if w) for form in group.forms}
    forms.discard(())
    return next(iter(forms))[0] if len(forms) == 1 and len(next(iter(forms))) == 1 else None


def doc_frequency(conn: PgConnection, group: Group) -> int:
    """Items holding the concept, cached until the index changes."""
    return doc_frequencies(conn, _state(conn), [group])[0]


def _rank_weights(config: Config | None) -> list[float]:
    """``ts_rank_cd``'s weights, {D, C, B, A}: tags/author, text, summary/note, title."""
    weight = dict(zip(_FIELD_ORDER, field_weights(config), strict=True))
    return [max(weight["tags"], weight["author"]), weight["text"], max(weight["summary"], weight["note"]),
            weight["title"]]


def _constraints(compiled: CompiledQuery) -> tuple[list[str], list[Any]]:
    """Required phrases and exclusions as WHERE clauses over ``search_docs.words``."""
    clauses: list[str] = []
    params: list[Any] = []
    for phrase in compiled.parsed.phrases:
        query = _phrase_query(phrase)
        if query:
            clauses.append("search_docs.words @@ ?::tsquery")
            params.append(query)
    excluded = [q for q in (_phrase_query(x) for x in compiled.parsed.excludes) if q]
    if excluded:
        clauses.append("NOT (search_docs.words @@ ?::tsquery)")
        params.append(" | ".join(excluded))
    return clauses, params


def _concept_score(idf: float, query: str, weights: list[float]) -> tuple[str, list[Any]]:
    """One concept's share of an item's score, as SQL over ``search_docs.words`` (see the module's doc)."""
    return (
        f"? * (CASE WHEN search_docs.words @@ ?::tsquery THEN ? ELSE 0 END"
        f" + ? * ts_rank_cd(?::float4[], search_docs.words, ?::tsquery, {_RANK_NORMALIZATION}))",
        [idf, query, PRESENCE_BONUS, _SATURATION, weights, query],
    )


def ranking(conn: PgConnection, compiled: CompiledQuery, config: Config | None, limit: int) -> list[tuple[int, float]]:
    """The best ``limit`` items for the query's words and phrases, filters and exclusions applied."""
    phrases = [Group(p, [[w for w, _s, _e in segment(p)]]) for p in compiled.parsed.phrases]
    concepts = [(g, q) for g in [*compiled.groups, *phrases] if (q := group_query(g))]
    if not concepts:
        return []
    state = _state(conn)
    total = max(indexed_count(conn, state), 1)
    weights = _rank_weights(config)
    idfs = [idf_weight(total, df) for df in doc_frequencies(conn, state, [g for g, _q in concepts])]
    terms: list[str] = []
    term_params: list[Any] = []
    for idf, (_group, query) in zip(idfs, concepts, strict=True):
        sql, params = _concept_score(idf, query, weights)
        terms.append(sql)
        term_params += params
    loose = [(idf, group_query(g, phrases=False) or q) for idf, (g, q) in zip(idfs, concepts, strict=True)]
    shortlist, shortlist_params = _shortlist(compiled, config, loose)
    sql = (
        f"SELECT search_docs.item_id, {' + '.join(terms)} AS score "
        "FROM search_docs JOIN items ON items.id = search_docs.item_id "
        f"WHERE search_docs.item_id IN ({shortlist}) AND search_docs.words @@ ?::tsquery"
        " ORDER BY score DESC, search_docs.item_id LIMIT ?"
    )
    depth = max(limit, _CANDIDATES) if RESCORE else limit
    any_concept = " | ".join(q for _g, q in concepts)  # a phrase's words apart are not the phrase
    rows = conn.execute(sql, [*term_params, *shortlist_params, any_concept, depth]).fetchall()
    ranked = [(int(item_id), float(score)) for item_id, score in rows]
    if not RESCORE:
        return ranked
    return pgrescore.rescore(conn, state, total, [g for g, _q in concepts], [i for i, _ in ranked],
                             dict(zip(FIELDS, field_weights(config), strict=True)), PRESENCE_BONUS, limit)


def _shortlist(
    compiled: CompiledQuery, config: Config | None, concepts: list[tuple[float, str]]
) -> tuple[str, list[Any]]:
    """SQL for the :data:`SHORTLIST` items holding the most of the query's concepts (each counted
    by its IDF; a phrase's words anywhere count as the phrase), filters, phrases and exclusions
    applied: the rows :func:`ranking` scores.

    Which rows hold a concept's words the GIN index answers alone; ``ts_rank_cd`` has to read each
    row's positions, and a question of common words matches a quarter of a large store, so scoring every
    match cost most of a search (1.2 s for one question at 100,000 items)."""
    held = " UNION ALL ".join(
        "SELECT item_id, ?::float8 AS idf FROM search_docs WHERE words @@ ?::tsquery" for _ in concepts
    )
    params: list[Any] = [v for idf, query in concepts for v in (idf, query)]
    clauses, filter_params = filter_sql(compiled.parsed.filters, config)
    required, required_params = _constraints(compiled)
    where = [*clauses, *required]
    joins = ""
    if where:
        joins = (" JOIN search_docs ON search_docs.item_id = held.item_id"
                 " JOIN items ON items.id = held.item_id WHERE " + " AND ".join(where))
        params += [*filter_params, *required_params]
    sql = (f"SELECT held.item_id FROM ({held}) AS held{joins}"
           " GROUP BY held.item_id ORDER BY sum(held.idf) DESC, held.item_id LIMIT ?")
    return sql, [*params, SHORTLIST]


def filtered_ids(conn: PgConnection, compiled: CompiledQuery, config: Config | None, limit: int | None) -> list[int]:
    """Items passing the filters, phrases and exclusions, newest first (a query of filters only)."""
    clauses, params = filter_sql(compiled.parsed.filters, config)
    required, required_params = _constraints(compiled)
    where = [*clauses, *required]
    sql = (
        "SELECT search_docs.item_id FROM search_docs JOIN items ON items.id = search_docs.item_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY search_docs.item_date DESC NULLS LAST, search_docs.item_id DESC"
        + (" LIMIT ?" if limit else "")
    )
    return [r[0] for r in conn.execute(sql, [*params, *required_params, *([limit] if limit else [])])]


# ------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------


def search(
    store: Store, compiled: CompiledQuery, config: Config | None, limit: int, recent: bool,
    embedder: Embedder | None = None,
) -> SearchResult:
    """:func:`.rank.search` on a PostgreSQL store: the tsvector ranking, fused with the embeddings'
    by reciprocal rank when an embedder is given (the same vectors and fusion as on SQLite)."""
    depth = max(limit * 4, 50)
    with connect(store) as conn:
        bm25 = ranking(conn, compiled, config, depth) if compiled.match else []
        vector = _vector(store, conn, compiled, config, embedder, depth)
        mode, scored = blend(compiled, bm25, vector, lambda: filtered_ids(conn, compiled, config, depth), config)
        dates = _dates(conn, [i for i, _ in scored])
        if recent and scored:
            scored = by_recency(scored, dates, _newest_date(conn), config)
        top = scored[:limit]
        marked = highlights(conn, [i for i, _ in top], compiled)
    bm25_rank = {i: r for r, (i, _) in enumerate(bm25, start=1)}
    vector_rank = {i: r for r, (i, _) in enumerate(vector, start=1)}
    loaded = _load_items(store, [i for i, _ in top])
    width = config.search.snippet_chars if config else 160
    hits = [
        SearchHit(item=loaded[i][0], score=round(s, 6),
                  snippet=build_snippet(loaded[i][1], marked.get(i), width, compiled),
                  date=dates.get(i), bm25_rank=bm25_rank.get(i), vector_rank=vector_rank.get(i))
        for i, s in top if i in loaded
    ]
    return SearchResult(hits, mode, compiled)


def _vector(
    store: Store, conn: PgConnection, compiled: CompiledQuery, config: Config | None, embedder: Embedder | None,
    depth: int,
) -> list[tuple[int, float]]:
    """Items by cosine similarity to the query's free words, filters applied; [] without an
    embedder or when it fails (the ranking is then the tsvector's alone, as on SQLite)."""
    if embedder is None or not compiled.parsed.text.strip():
        return []
    try:
        embed_indexed(store, embedder, config)
        allowed = None
        if not compiled.parsed.filters.empty() or compiled.parsed.phrases or compiled.parsed.excludes:
            allowed = set(filtered_ids(conn, compiled, config, None))
        return vector_ranking(conn, embedder, compiled.parsed.text, allowed, depth)  # type: ignore[arg-type]
    except SearchError as exc:
        log.warning("search: %s; ranking by the tsvector alone", exc)
        return []


def rank(store: Store, compiled: CompiledQuery, config: Config | None, limit: int) -> list[tuple[int, float]]:
    """:func:`.rank.rank` on a PostgreSQL store."""
    with connect(store) as conn:
        return ranking(conn, compiled, config, limit)


def highlights(conn: PgConnection, ids: list[int], compiled: CompiledQuery) -> dict[int, tuple[str, ...]]:
    """The snippet fields' segmented text, the query's positive words marked (as on SQLite)."""
    forms = _wanted_forms(compiled)
    if not forms or not ids:
        return {}
    rows = conn.execute(f"SELECT item_id, {', '.join(SNIPPET_COLUMNS)} FROM search_docs WHERE item_id = ANY(?)",
                        (ids,))
    return {row[0]: tuple(mark_words(col or "", forms) for col in row[1:]) for row in rows}


def _dates(conn: PgConnection, ids: list[int]) -> dict[int, str | None]:
    if not ids:
        return {}
    return dict(conn.execute("SELECT item_id, item_date FROM search_docs WHERE item_id = ANY(?)", (ids,)).fetchall())


def _newest_date(conn: PgConnection) -> date | None:
    value = conn.execute("SELECT max(item_date) FROM search_docs").fetchone()[0]
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None
