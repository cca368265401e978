"""What both stores' searches share: the hits (:class:`SearchHit`, :class:`SearchResult`) and the
items' views they carry, IDF, the blend of BM25 with embeddings by
reciprocal rank, the recency re-weighting, and the embeddings themselves (the ``embed`` route of
the model gateway, cached per item and model).

Below the engines: :mod:`.rank` (SQLite, :mod:`.engine`) and :mod:`.pg` (PostgreSQL) both rank with
these and build their hits with :func:`_load_items`."""

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
from .query import CompiledQuery
from .snippets import SNIPPET_COLUMNS
from .storage import SearchError, connect, meta, write

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Anything that turns texts into vectors. ``model`` keys the cache."""

    model: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass
class LLMEmbedder:
    """The ``embed`` route of the model gateway (``tidings.llm.gateway``): an OpenAI-compatible endpoint
    (OpenAI, llama.cpp server, Ollama, vLLM …) or an in-process GGUF model. A query goes through
    ``query_task`` (``embed_query`` when configured: an e5 model embeds queries unlike passages)."""

    llm: Any
    model: str
    query_task: str = "embed"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._embed(texts, "embed")

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], self.query_task)[0]

    def _embed(self, texts: Sequence[str], task: str) -> list[list[float]]:
        try:
            return [_pool(v) for v in self.llm.embed(list(texts), task=task)]
        except TidingsError as exc:
            raise SearchError(f"embedding with {self.model} failed: {exc}") from exc

    def close(self) -> None:
        self.llm.close()


def query_vector(embedder: Embedder, text: str) -> list[float]:
    """The query's vector: the embedder's query side when it has one, else as a document."""
    embed_query = getattr(embedder, "embed_query", None)
    return embed_query(text) if embed_query is not None else embedder.embed([text])[0]


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
    query_route = config.routes.embed_query
    query_task = "embed_query" if query_route and query_route in config.models else "embed"
    return LLMEmbedder(LLM(config, store), model_id(config.models[name]), query_task)


def embed_text(title: str | None, summary: str | None, note: str | None, text: str | None, limit: int) -> str:
    parts = [p.strip() for p in (title, summary, note, text) if p and p.strip()]
    return "\n".join(parts)[:limit]


def _unit(vector: Sequence[float]) -> bytes:
    import numpy as np

    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return (v / norm if norm else v).tobytes()


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
    query_vec = np.frombuffer(_unit(query_vector(embedder, query_text)), dtype=np.float32)
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


def idf_weight(total: int, df: int) -> float:
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


PRESENCE_BONUS = 3.0
"""Coordination: each concept an item holds adds this times the concept's IDF to its score."""


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


@dataclass
class SearchHit:
    """One result: the item as every interface shows it, plus what this search found out about it."""

    item: ItemView
    """Made by ``Item.view(with_text=False)``: a hit never carries the full text (see :func:`.rank._hits`)."""
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


def embed_indexed(store: Store, embedder: Embedder, config: Config | None = None) -> int:
    """Embed indexed items that have no vector for this model, or whose text changed since.

    Vectors are keyed by a hash of the embedded text, so each item is embedded once per model and
    again only when its title, summary, note or text changes. Returns how many were computed.
    What is embedded is what is indexed: :func:`.rank.update_embeddings` brings the index up to date
    first; a search, which has just done so, calls this directly."""
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

