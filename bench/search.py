"""Benchmark: search index build and query latency at 10k and 100k items, tidings vs. a baseline.

The store holds the whole shared corpus (imported as a user would) plus synthetic filler items
assembled from the corpus's own text: titles spliced from two real titles, bodies of 1-3 real
sentences, dates spread over 2022-2024. The real items stay, so the labelled queries of
evals/queries.jsonl still have their answers, now among 10k or 100k distractors.

- tidings: ``search.index.rebuild_index`` (jieba segmentation, FTS5 with porter, the engine's
  segments merged into one base) and ``search.rank.search`` (query parsing, synonyms, BM25 with field
  weights from the engine's impacts, coordination, filters, the hits' views and snippets);
- baseline: SQLite FTS5 with its default tokenizer (unicode61) over the same raw text, the query
  words as typed OR-ed together, the same bm25 weights, phrases, exclusions and filters;
- tantivy and bm25s: in-process engines over the *same segmented text* tidings stored (read back
  from its FTS5 table, so their build time leaves segmentation out): tantivy with the eight fields,
  its ``whitespace`` tokenizer and tidings' field weights as boosts; bm25s with the fields as one
  bag of words. Both get the query as plain jieba tokens (stop words dropped, no synonyms) and the
  top 10 (the top 200 cut by the filters, when a query has filters; the allowed ids are computed
  before the clock starts, so this favours them).

tidings' ``p50_ms``/``p95_ms`` time ``search.rank.search`` whole (query parsing, ranking, filters,
the items' views and snippets: what a user waits for); ``rank_p50_ms``/``rank_p95_ms`` time
``search.rank.rank`` (the ranking alone, as the engines are timed). Every latency also comes as
process CPU time (``cpu_p50_ms``, ``cpu_p95_ms``, ``rank_cpu_…``), steadier than the wall clock when
other processes share the cores, and so does the build (``build_cpu_items_per_s``: the process's CPU,
all its threads: tantivy indexes in its own); the JSON also gives the load average at the start and the end.

It reports index build items/s, query latency p50 / p95 (ms) and recall@10 on the labelled
queries (both halves of evals/queries.jsonl and evals/natural.jsonl) for each, in the same run.
The last line printed is one JSON object.

    python bench/search.py                      # 10k and 100k
    python bench/search.py --sizes 5000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings import collect
from tidings.config import Config
from tidings.search import evaluate as searcheval
from tidings.search.index import rebuild_index
from tidings.search.query import Filters, filter_sql, parse_query
from tidings.search.rank import rank, search
from tidings.search.terms import FIELDS, field_weights
from tidings.store import Store, open_store

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
QUERIES = [REPO / "evals" / "queries.jsonl", REPO / "evals" / "natural.jsonl"]
BASELINE_SCHEMA = (
    "CREATE VIRTUAL TABLE baseline_fts USING fts5(title, summary, text, note, tags, author, section, kind)"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def import_corpus(db: Path, config: Config) -> Store:
    store = open_store(db)
    for paths, fmt in (
        ([str(CORPUS / "digests")], "digest"), ([str(CORPUS / "social")], "auto"),
        ([str(CORPUS / "notes")], "auto"), ([str(CORPUS / "blog")], "blog"),
    ):
        collect.import_paths(store, paths, fmt, config)
    return store


_SENTENCE_RE = re.compile(r"[^。！？!?\n]{12,160}[。！？!?]")


def text_pool(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
    titles, sentences = [], []
    for title, summary, body in conn.execute("SELECT title, summary, substr(text, 1, 4000) FROM items"):
        if title and len(title) >= 6:
            titles.append(title.strip())
        for part in (summary, body):
            if part:
                sentences.extend(m.group().strip() for m in _SENTENCE_RE.finditer(part))
    return titles, sentences


def add_filler(db: Path, n: int, seed: int = 11) -> int:
    """Insert synthetic items until the store holds ``n``; returns how many were added."""
    rng = random.Random(seed)
    with sqlite3.connect(db) as conn:
        have = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        titles, sentences = text_pool(conn)
        rows = []
        for number in range(max(0, n - have)):
            a, b = rng.choice(titles), rng.choice(titles)
            title = a[: max(3, len(a) // 2)] + b[len(b) // 2 :]
            summary = "".join(rng.choice(sentences) for _ in range(rng.randint(1, 3)))
            day = f"{rng.randint(2022, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 00:00:00.000000"
            rows.append((f"https://bench.invalid/{number}", "article", title, summary, day, day, "extracted",
                         0, "{}", day, day))
        conn.executemany(
            "INSERT INTO items (url, kind, title, summary, published_at, seen_at, status, error_transient, extra,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    return len(rows)


# --- the baseline: FTS5 with its default tokenizer --------------------------------------------


def build_baseline(db: Path) -> tuple[float, float]:
    """Index the raw text with FTS5's default tokenizer; returns items/s by the wall clock and by CPU time."""
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS baseline_fts")
        conn.execute(BASELINE_SCHEMA)
        started, started_cpu = time.perf_counter(), time.process_time()
        tags: dict[int, list[str]] = {}
        for item_id, tag in conn.execute("SELECT item_id, tag FROM item_tags"):
            tags.setdefault(item_id, []).append(tag)
        rows = conn.execute(
            "SELECT id, title, summary, text, note, coalesce(author, '') || ' ' || coalesce(author_handle, ''),"
            " section, kind FROM items WHERE duplicate_of_id IS NULL"
        ).fetchall()
        conn.executemany(
            "INSERT INTO baseline_fts (rowid, title, summary, text, note, tags, author, section, kind)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            [(r[0], r[1], r[2], r[3], r[4], " ".join(tags.get(r[0], [])), r[5], r[6], r[7]) for r in rows],
        )
        conn.commit()
        return len(rows) / (time.perf_counter() - started), len(rows) / (time.process_time() - started_cpu)


@dataclass
class BaselineItem:
    id: int


@dataclass
class Hit:
    item: BaselineItem
    """Shaped like tidings' SearchHit.item, the one field evaluate_search reads."""


@dataclass
class Result:
    hits: list[Hit]


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def baseline_search(conn: sqlite3.Connection, query: str, filters: Filters | None, limit: int) -> Result:
    parsed = parse_query(query)
    if filters is not None:
        parsed.filters = filters.merge(parsed.filters)
    words = [w for w in re.split(r"[\s，。？！?!,]+", parsed.text) if re.search(r"\w", w)]
    positive = []
    if words:
        positive.append("(" + " OR ".join(_quote(w) for w in words) + ")")
    positive += [_quote(p) for p in parsed.phrases]
    if not positive:
        return Result([])
    match = " AND ".join(positive)
    if parsed.excludes:
        match = f"({match}) NOT ({' OR '.join(_quote(e) for e in parsed.excludes)})"
    clauses, params = filter_sql(parsed.filters, None)
    weights = ", ".join(str(w) for w in field_weights(None))
    sql = (
        "SELECT baseline_fts.rowid FROM baseline_fts JOIN items ON items.id = baseline_fts.rowid "
        "JOIN search_docs ON search_docs.item_id = baseline_fts.rowid WHERE baseline_fts MATCH ? "
        + "".join(f" AND {c}" for c in clauses)
        + f" ORDER BY bm25(baseline_fts, {weights}) LIMIT ?"
    )
    try:
        rows = conn.execute(sql, [match, *params, limit]).fetchall()
    except sqlite3.OperationalError:
        rows = []
    return Result([Hit(BaselineItem(r[0])) for r in rows])


# --- in-process engines over tidings' segmented text ---------------------------------------------


def segmented_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT rowid, {', '.join(FIELDS)} FROM search_fts ORDER BY rowid").fetchall()


def allowed_ids(db: Path, queries: list[searcheval.LabelledQuery]) -> dict[str, set[int] | None]:
    """Per query, the ids its filters allow (None: no filter), the same SQL tidings uses."""
    out: dict[str, set[int] | None] = {}
    with sqlite3.connect(db) as conn:
        for q in queries:
            parsed = parse_query(q.query)
            parsed.filters = q.filters.merge(parsed.filters)
            if parsed.filters.empty():
                out[q.query] = None
                continue
            clauses, params = filter_sql(parsed.filters, None)
            out[q.query] = {r[0] for r in conn.execute(
                "SELECT search_docs.item_id FROM search_docs JOIN items ON items.id = search_docs.item_id WHERE "
                + " AND ".join(clauses), params)}
    return out


def query_tokens(query: str) -> list[str]:
    parsed = parse_query(query)
    return searcheval.PlainBM25.query_tokens(" ".join([parsed.text, *parsed.phrases]))


class TantivyEngine:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("id", stored=False, indexed=True, fast=True)
        for name in FIELDS:
            builder.add_text_field(name, stored=False, tokenizer_name="whitespace")
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema)
        writer = self.index.writer(heap_size=256_000_000, num_threads=1)
        for row in rows:
            doc = tantivy.Document()
            doc.add_integer("id", row[0])
            for name, value in zip(FIELDS, row[1:], strict=True):
                if value:
                    doc.add_text(name, value)
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()
        self.weights = dict(zip(FIELDS, field_weights(None), strict=True))

    def search(self, tokens: list[str], allowed: set[int] | None, limit: int) -> list[int]:
        import tantivy

        Q = tantivy.Query
        clauses = [(tantivy.Occur.Should, Q.boost_query(Q.term_query(self.schema, name, token), weight))
                   for token in dict.fromkeys(tokens) for name, weight in self.weights.items()]
        if not clauses:
            return []
        hits = self.searcher.search(Q.boolean_query(clauses), limit if allowed is None else 200, count=False).hits
        ids = self.searcher.fast_field_values("id", [address for _score, address in hits])
        return [i for i in ids if allowed is None or i in allowed][:limit]


class Bm25sEngine:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        import bm25s

        self.ids = [r[0] for r in rows]
        corpus = [[w for part in r[1:7] if part for w in part.split(" ") if w] or [""] for r in rows]
        self.retriever = bm25s.BM25(k1=1.2, b=0.75)
        self.retriever.index(corpus, show_progress=False)

    def search(self, tokens: list[str], allowed: set[int] | None, limit: int) -> list[int]:
        import numpy as np

        if not tokens:
            return []
        scores = self.retriever.get_scores(tokens)
        want = limit if allowed is None else 200
        top = np.argpartition(-scores, min(want, len(scores) - 1))[:want]
        top = top[np.argsort(-scores[top])]
        ids = [self.ids[int(i)] for i in top if scores[i] > 0]
        return [i for i in ids if allowed is None or i in allowed][:limit]


def measure_engine(name: str, make: Any, rows: list[tuple[Any, ...]], db: Path, store: Store,
                   queries: list[searcheval.LabelledQuery], repeat: int) -> dict[str, Any]:
    import logging

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    started, started_cpu = time.perf_counter(), time.process_time()
    engine = make(rows)
    build = len(rows) / (time.perf_counter() - started)
    build_cpu = len(rows) / (time.process_time() - started_cpu)
    allowed = allowed_ids(db, queries)
    tokens = {q.query: query_tokens(q.query) for q in queries}

    def run(q: searcheval.LabelledQuery) -> list[int]:
        return engine.search(tokens[q.query], allowed[q.query], 10)

    def as_result(_st: Store, query: str, filters: Filters | None = None, limit: int = 10, **_kw: Any) -> Result:
        ids = engine.search(tokens[query], allowed[query], limit)
        return Result([Hit(BaselineItem(i)) for i in ids])

    return {
        "items": len(rows), "build_items_per_s": round(build, 1), "build_cpu_items_per_s": round(build_cpu, 1),
        **latencies(run, queries, repeat),
        "recall@10": searcheval.evaluate_search(store, queries, split="all", search_fn=as_result)["recall@10"],
    }


# --- measuring -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def latencies(run: Any, queries: list[searcheval.LabelledQuery], repeat: int) -> dict[str, float]:
    """Wall-clock p50/p95, and the same of the process's CPU time (``cpu_p50_ms``/``cpu_p95_ms``):
    on a shared machine the wall clock also counts the time other processes held the cores."""
    times, cpu = [], []
    for _ in range(repeat):
        for q in queries:
            started, started_cpu = time.perf_counter(), time.process_time()
            run(q)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(percentile(times, 0.95), 2),
            "cpu_p50_ms": round(statistics.median(cpu), 2), "cpu_p95_ms": round(percentile(cpu, 0.95), 2)}


def measure(base_db: Path, size: int, workdir: Path, config: Config, queries: list[searcheval.LabelledQuery],
            repeat: int) -> dict[str, Any]:
    db = workdir / f"bench-{size}.db"
    shutil.copy(base_db, db)
    added = add_filler(db, size)
    log(f"[{size}] {added} synthetic items added")
    store = open_store(db)
    try:
        started, started_cpu = time.perf_counter(), time.process_time()
        indexed = rebuild_index(store, config)
        build = indexed / (time.perf_counter() - started)
        build_cpu = indexed / (time.process_time() - started_cpu)
        log(f"[{size}] tidings index: {indexed} items, {build:.0f} items/s")
        ranking = latencies(lambda q: rank(store, q.query, config=config, filters=q.filters, limit=10), queries, repeat)
        ours = {
            "items": indexed,
            "build_items_per_s": round(build, 1),
            "build_cpu_items_per_s": round(build_cpu, 1),
            **latencies(lambda q: search(store, q.query, config=config, filters=q.filters, limit=10), queries, repeat),
            "rank_p50_ms": ranking["p50_ms"], "rank_p95_ms": ranking["p95_ms"],
            "rank_cpu_p50_ms": ranking["cpu_p50_ms"], "rank_cpu_p95_ms": ranking["cpu_p95_ms"],
            "recall@10": searcheval.evaluate_search(store, queries, config=config, split="all")["recall@10"],
        }
        rows = segmented_rows(db)
        engines = {name: measure_engine(name, make, rows, db, store, queries, repeat)
                   for name, make in (("tantivy", TantivyEngine), ("bm25s", Bm25sEngine))}
        for name, figures in engines.items():
            log(f"[{size}] {name} {figures}")
        baseline_build, baseline_build_cpu = build_baseline(db)
        log(f"[{size}] baseline index: {baseline_build:.0f} items/s")
        with sqlite3.connect(db) as conn:
            def base(q: searcheval.LabelledQuery) -> Result:
                return baseline_search(conn, q.query, q.filters, 10)

            baseline = {
                "items": indexed,
                "build_items_per_s": round(baseline_build, 1),
                "build_cpu_items_per_s": round(baseline_build_cpu, 1),
                **latencies(base, queries, repeat),
                "recall@10": searcheval.evaluate_search(
                    store, queries, split="all",
                    search_fn=lambda _st, query, filters=None, limit=10, **_kw: baseline_search(conn, query, filters, limit),
                )["recall@10"],
            }
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    log(f"[{size}] tidings {ours}")
    log(f"[{size}] baseline {baseline}")
    return {"tidings": ours, "baseline": baseline, **engines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="Passes over the query set for latency.")
    parser.add_argument("--queries", type=Path, nargs="+", default=QUERIES)
    args = parser.parse_args()
    config = Config()
    queries = [q for path in args.queries for q in searcheval.load_queries(path)]
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        workdir = Path(tmp)
        base_db = workdir / "corpus.db"
        store = import_corpus(base_db, config)
        store.close()
        with sqlite3.connect(base_db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            real = conn.execute("SELECT count(*) FROM items WHERE duplicate_of_id IS NULL").fetchone()[0]
        log(f"corpus imported: {real} real items ({time.perf_counter() - started:.0f} s)")
        results = {str(size): measure(base_db, size, workdir, config, queries, args.repeat) for size in args.sizes}
    answerable = sum(q.answerable for q in queries)
    for size, r in results.items():
        for name in ("tidings", "baseline", "tantivy", "bm25s"):
            m = r[name]
            ranking = f"  (ranking p95 {m['rank_p95_ms']:.2f} ms)" if "rank_p95_ms" in m else ""
            print(f"{size:>7} {name:<9} build {m['build_items_per_s']:>9.1f} items/s  p50 {m['p50_ms']:>7.2f} ms  "
                  f"p95 {m['p95_ms']:>7.2f} ms  (CPU {m['cpu_p50_ms']:.2f} / {m['cpu_p95_ms']:.2f} ms)  "
                  f"recall@10 {m['recall@10']:.3f}{ranking}")
    print(json.dumps({
        "bench": "search", "real_items": real, "queries": len(queries), "answerable": answerable,
        "cpus": os.cpu_count(), "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - started, 1), "sizes": results,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
