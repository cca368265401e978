"""Evaluation of search and ask on a labelled query set (``evals/queries.jsonl``).

One JSON object per line::

    {"id": "q01", "split": "calibration", "kind": "known-item",
     "query": "Mixtral 路由",                       # what `tidings search` gets (inline filters allowed)
     "question": "Mixtral 的路由网络怎么选专家？",      # what `tidings ask` gets (default: query)
     "filters": {"author": ["dotey"], "since": "2023-12-01"},   # optional, like the CLI options
     "expect": [{"url": "post:…"}, {"title": "substring"}, {"url_contains": "mp.weixin"}],
     "answerable": true}

Expected items are identified robustly: by canonical or original URL, URL substring, or title
substring (case-insensitive), resolved against the store at evaluation time. Unanswerable
questions have ``"answerable": false`` and no ``expect``; they count for ask only.
``"answer_contains": [...]`` lists what an answer's text must say to count as a hit (a list's
items, the "免费" of a yes/no question). ``eval ask`` reads ``evals/queries.jsonl`` and the
ask-only set ``evals/ask.jsonl`` (unanswerable near-misses, list and yes/no questions).

The set is split in two: the refusal threshold is calibrated on ``calibration`` and every figure
is reported on ``heldout``, so the threshold is never judged on the data that chose it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from ..config import Config
from ..errors import UsageError
from ..llm.gateway import LLM, usage_rows
from ..store import Item, ItemUrl, Store
from ..textutil import STOPWORDS
from .ask import Answer, ask
from .hits import embedder_from_config
from .index import refresh_index
from .query import Filters, date_bound, filter_sql, parse_query
from .rank import search
from .rewrite import can_rewrite
from .segment import segment
from .storage import connect

SPLITS = ("calibration", "heldout")


@dataclass
class LabelledQuery:
    id: str
    query: str
    question: str
    split: str
    kind: str
    answerable: bool
    expect: list[dict[str, str]]
    filters: Filters = field(default_factory=Filters)
    answer_contains: list[str] = field(default_factory=list)


def load_queries(path: Path) -> list[LabelledQuery]:
    if not path.is_file():
        raise UsageError(f"no such query file: {path}")
    queries: list[LabelledQuery] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not JSON: {exc}") from exc
        try:
            f = data.get("filters") or {}
            filters = Filters(
                authors=list(f.get("author", [])), tags=list(f.get("tag", [])),
                sections=list(f.get("section", [])), kinds=list(f.get("kind", [])),
                since=date_bound(f["since"], end=False) if f.get("since") else None,
                until=date_bound(f["until"], end=True) if f.get("until") else None,
            )
            split = data.get("split", "heldout")
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}")
            answerable = bool(data.get("answerable", True))
            expect = list(data.get("expect", []))
            if answerable and not expect:
                raise ValueError("an answerable query needs 'expect'")
            queries.append(
                LabelledQuery(
                    id=str(data.get("id", number)), query=data["query"],
                    question=data.get("question") or data["query"], split=split,
                    kind=data.get("kind", "known-item"), answerable=answerable, expect=expect,
                    filters=filters, answer_contains=list(data.get("answer_contains", [])),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}:{number}: {exc}") from exc
    return queries


def load_query_files(paths: Sequence[Path]) -> list[LabelledQuery]:
    """The labelled queries of several files as one set (``eval ask`` reads the search set and the
    ask-only set, ``evals/ask.jsonl``); an id used twice is an error, not a silent overwrite."""
    queries: list[LabelledQuery] = []
    seen: dict[str, Path] = {}
    for path in paths:
        for q in load_queries(path):
            if q.id in seen:
                raise UsageError(f"{path}: query id {q.id!r} is also in {seen[q.id]}")
            seen[q.id] = path
            queries.append(q)
    return queries


_EXPECT_KEYS = ("url", "url_contains", "title", "title_is", "kind")


def resolve_expected(store: Store, spec: Sequence[dict[str, str]]) -> set[int]:
    """Item ids an ``expect`` list stands for. Each entry's keys must all hold: ``url`` (canonical
    or any original URL), ``url_contains``, ``title`` (substring) or ``title_is`` (whole title),
    both case-insensitive, and ``kind``. Duplicates resolve to the item they were merged into."""
    ids: set[int] = set()
    with store.session() as session:
        for entry in spec:
            unknown = set(entry) - set(_EXPECT_KEYS)
            if unknown or not entry:
                raise UsageError(f"an expect entry takes {', '.join(_EXPECT_KEYS)}: {entry}")
            query = select(Item.id, Item.duplicate_of_id)
            if "url" in entry:
                url = entry["url"]
                query = query.where(
                    or_(Item.url == url, Item.id.in_(select(ItemUrl.item_id).where(ItemUrl.url == url)))
                )
            if "url_contains" in entry:
                part = entry["url_contains"]
                query = query.where(
                    or_(Item.url.contains(part), Item.id.in_(select(ItemUrl.item_id).where(ItemUrl.url.contains(part))))
                )
            if "title" in entry:
                query = query.where(func.lower(Item.title).contains(entry["title"].lower()))
            if "title_is" in entry:
                query = query.where(func.lower(Item.title) == entry["title_is"].lower())
            if "kind" in entry:
                query = query.where(Item.kind == entry["kind"])
            for item_id, duplicate_of in session.execute(query):
                ids.add(duplicate_of or item_id)
    return ids


CORPUS_IMPORT = (
    "tidings import --format digest ../shared/corpus/digests && tidings import ../shared/corpus/social "
    "../shared/corpus/notes && tidings import --format blog ../shared/corpus/blog"
)


def require_labelled_items(store: Store, queries: Sequence[LabelledQuery]) -> None:
    """A usage error when the store holds none of the items the queries expect: the labelled sets
    name items of the shared corpus, and figures over a store without them (every answer "missed",
    every refusal "right") would read as results."""
    expecting = [q for q in queries if q.expect]
    if not expecting or any(resolve_expected(store, q.expect) for q in expecting):
        return
    raise UsageError(
        f"nothing to evaluate: this store holds none of the items the {len(expecting)} labelled questions "
        f"expect (they are labelled on the shared corpus; import it into this store first: {CORPUS_IMPORT})"
    )


@dataclass
class SearchOutcome:
    id: str
    query: str
    expected: list[int]
    ranks: list[int]
    """1-based ranks of the expected items found in the top results."""


def _split_filter(queries: list[LabelledQuery], split: str) -> list[LabelledQuery]:
    return queries if split == "all" else [q for q in queries if q.split == split]


def evaluate_search(
    store: Store, queries: list[LabelledQuery], *, config: Config | None = None, split: str = "heldout",
    k: int = 10, search_fn: Callable[..., Any] = search, hybrid: bool = True, rewrite: bool | None = None,
) -> dict[str, Any]:
    """recall@5, recall@10 and MRR over the answerable queries of ``split``, and the wall-clock
    seconds per query. With rewriting on (``rewrite``, default ``search.rewrite``), also what the
    model cost in this evaluation: ``model_calls`` made, ``cache_hits`` and ``tokens`` spent."""
    rewriting = search_fn is search and config is not None and (config.search.rewrite if rewrite is None else rewrite)
    before = _rewrite_usage(store, config) if rewriting else None
    outcomes: list[SearchOutcome] = []
    seconds = 0.0
    for q in _split_filter(queries, split):
        if not q.answerable:
            continue
        expected = resolve_expected(store, q.expect)
        started = time.perf_counter()
        result = search_fn(store, q.query, config=config, filters=q.filters, limit=k, hybrid=hybrid, rewrite=rewrite)
        seconds += time.perf_counter() - started
        ids = [h.item.id for h in result.hits]
        ranks = [ids.index(e) + 1 for e in expected if e in ids]
        outcomes.append(SearchOutcome(q.id, q.query, sorted(expected), sorted(ranks)))
    report = {"split": split, "queries": len(outcomes), **search_metrics(outcomes),
              "seconds_per_query": round(seconds / len(outcomes), 4) if outcomes else 0.0,
              "misses": [o.id for o in outcomes if not o.ranks],
              "unresolved": [o.id for o in outcomes if not o.expected]}
    if before is not None:
        after = _rewrite_usage(store, config)
        report.update({name: after[name] - before[name] for name in ("model_calls", "cache_hits", "tokens")})
    return report


def _rewrite_usage(store: Store, config: Config | None) -> dict[str, int]:
    """What the ``rewrite`` task has cost so far, from the gateway's ledger in the store."""
    rows = [r for r in usage_rows(store, config or Config()) if r.task == "rewrite"]
    return {"model_calls": sum(r.calls for r in rows), "cache_hits": sum(r.hits for r in rows),
            "tokens": sum(r.tokens_in + r.tokens_out for r in rows)}


@dataclass
class _ItemRef:
    id: int


@dataclass
class _BaselineHit:
    item: _ItemRef
    """Shaped like a SearchHit's ``item``: the one field the evaluation reads."""


@dataclass
class _BaselineResult:
    hits: list[_BaselineHit]


BASELINE_FIELDS = ("title", "summary", "text", "note", "tags", "author")
"""What the plain-BM25 baseline indexes: every field of the item that holds words, as one bag."""


class PlainBM25:
    """The baseline tidings must beat: plain BM25 (bm25s, k1 1.2, b 0.75) over the same jieba tokens
    the index holds, one bag of words per item, common stop words dropped, no synonyms, no field
    weights, no coordination. Filters are applied after ranking, by the same SQL as tidings'."""

    def __init__(self, store: Store, config: Config | None = None) -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        refresh_index(store, config)
        with connect(store) as conn:
            rows = conn.execute(
                f"SELECT rowid, {', '.join(BASELINE_FIELDS)} FROM search_fts ORDER BY rowid"
            ).fetchall()
        self.ids = [r[0] for r in rows]
        corpus = [[w for part in r[1:] if part for w in part.split(" ") if w and w not in STOPWORDS] or [""]
                  for r in rows]
        self.retriever = bm25s.BM25(k1=1.2, b=0.75)
        self.retriever.index(corpus, show_progress=False)

    @staticmethod
    def query_tokens(text: str) -> list[str]:
        return [w for w, _s, _e in segment(text) if w not in STOPWORDS]

    def __call__(
        self, store: Store, query: str, *, config: Config | None = None, filters: Filters | None = None,
        limit: int = 10, **_options: Any,
    ) -> _BaselineResult:
        import numpy as np

        parsed = parse_query(query)
        if filters is not None:
            parsed.filters = filters.merge(parsed.filters)
        tokens = self.query_tokens(" ".join([parsed.text, *parsed.phrases]))
        if not tokens or not self.ids:
            return _BaselineResult([])
        scores = self.retriever.get_scores(tokens)
        allowed = None if parsed.filters.empty() else _filtered(store, parsed.filters, config)
        hits: list[_BaselineHit] = []
        for index in np.argsort(-scores, kind="stable"):
            if scores[index] <= 0 or len(hits) >= limit:
                break
            item_id = self.ids[int(index)]
            if allowed is None or item_id in allowed:
                hits.append(_BaselineHit(_ItemRef(item_id)))
        return _BaselineResult(hits)


def _filtered(store: Store, filters: Filters, config: Config | None) -> set[int]:
    clauses, params = filter_sql(filters, config)
    with connect(store) as conn:
        return {r[0] for r in conn.execute(
            "SELECT search_docs.item_id FROM search_docs JOIN items ON items.id = search_docs.item_id WHERE "
            + " AND ".join(clauses), params,
        )}


@dataclass(frozen=True)
class ModelVariant:
    """One way of searching with the configured models, a row of ``eval search``."""

    name: str
    rewrite: bool
    hybrid: bool


def model_variants(config: Config | None, store: Store | None = None, hybrid: bool = True) -> list[ModelVariant]:
    """With a model configured, the rows that show what it adds: no model at all, query rewriting
    (a model the ``rewrite`` task can reach), embeddings (``routes.embed``, unless ``hybrid`` is off)
    and both. Without one, none."""
    if config is None or not config.models:
        return []
    llm = LLM(config, store)
    rewrites = can_rewrite(llm, config)
    llm.close()
    embedder = embedder_from_config(config, store) if hybrid else None
    if embedder is not None:
        getattr(embedder, "close", lambda: None)()
    variants = [ModelVariant("tidings, no model", False, False)]
    if rewrites:
        variants.append(ModelVariant("tidings + rewrite", True, False))
    if embedder is not None:
        variants.append(ModelVariant("tidings + embeddings", False, True))
    if rewrites and embedder is not None:
        variants.append(ModelVariant("tidings + rewrite + embeddings", True, True))
    return variants


def compare_search(
    store: Store, queries: list[LabelledQuery], *, config: Config | None = None, split: str = "heldout",
    k: int = 10, hybrid: bool = True,
) -> dict[str, Any]:
    """tidings' figures on ``split`` (the keys of :func:`evaluate_search`) plus, under ``halves``,
    tidings beside plain BM25 (:class:`PlainBM25`) on the calibration and the held-out half. With a
    model configured, each half also has a row per :func:`model_variants` (the configured one is
    ``tidings``)."""
    require_labelled_items(store, queries)
    variants = model_variants(config, store, hybrid)
    embeds = any(v.hybrid for v in variants)
    rewrite_on = bool(config and config.search.rewrite)
    configured = next((v for v in variants if (v.rewrite, v.hybrid) == (rewrite_on, embeds)), None)
    done: dict[tuple[str, str], dict[str, Any]] = {}

    def figures(half: str, variant: ModelVariant | None) -> dict[str, Any]:
        # Each (half, way of searching) runs once: the configured way is both "tidings" and its variant
        # row, and a second run would show the model's cost as cache hits.
        key = (half, variant.name if variant else "tidings")
        if key not in done:
            done[key] = evaluate_search(
                store, queries, config=config, split=half, k=k, hybrid=variant.hybrid if variant else hybrid,
                rewrite=variant.rewrite if variant else None,
            )
        return done[key]

    report = dict(figures(split, configured))
    baseline = PlainBM25(store, config)
    halves: dict[str, dict[str, Any]] = {}
    for half in SPLITS:
        halves[half] = {"tidings": figures(half, configured), **{v.name: figures(half, v) for v in variants}}
        halves[half]["bm25"] = evaluate_search(store, queries, config=config, split=half, k=k, search_fn=baseline)
    report["bm25"] = halves[split]["bm25"] if split in halves else evaluate_search(
        store, queries, config=config, split=split, k=k, search_fn=baseline)
    report["halves"] = halves
    return report


def search_metrics(outcomes: Sequence[SearchOutcome]) -> dict[str, float]:
    """recall@k = share of the expected items found in the top k (averaged over queries);
    MRR = mean of 1 / rank of the first expected item found (0 when none is)."""
    if not outcomes:
        return {"recall@5": 0.0, "recall@10": 0.0, "mrr": 0.0}

    def recall(o: SearchOutcome, k: int) -> float:
        return len([r for r in o.ranks if r <= k]) / len(o.expected) if o.expected else 0.0

    n = len(outcomes)
    return {
        "recall@5": round(sum(recall(o, 5) for o in outcomes) / n, 4),
        "recall@10": round(sum(recall(o, 10) for o in outcomes) / n, 4),
        "mrr": round(sum(1.0 / o.ranks[0] if o.ranks else 0.0 for o in outcomes) / n, 4),
    }


@dataclass
class AskOutcome:
    id: str
    answerable: bool
    expected: set[int]
    answer: Answer
    answer_contains: tuple[str, ...] = ()
    """What the answer text must say (a list's items, the "免费" of a yes/no question)."""

    def hit_at(self, threshold: float) -> bool:
        """Whether the answer, with refusal applied at ``threshold``, cites an expected item and
        says what the label says it must."""
        return (
            not _refuses(self, threshold)
            and any(c.item_id in self.expected for c in self.answer.evidence)
            and all(part.lower() in self.answer.answer.lower() for part in self.answer_contains)
        )


def run_ask(
    store: Store, queries: list[LabelledQuery], *, config: Config | None = None, threshold: float = 0.0,
    hybrid: bool = True,
) -> list[AskOutcome]:
    outcomes = []
    for q in queries:
        expected = resolve_expected(store, q.expect) if q.answerable else set()
        answer = ask(store, q.question, config=config, filters=q.filters, threshold=threshold, hybrid=hybrid)
        outcomes.append(AskOutcome(q.id, q.answerable, expected, answer, tuple(q.answer_contains)))
    return outcomes


def _refuses(o: AskOutcome, threshold: float) -> bool:
    return not o.answer.evidence or o.answer.confidence < threshold


def calibrate_threshold(outcomes: Sequence[AskOutcome]) -> float:
    """The refusal threshold that best separates answerable from unanswerable questions: the
    midpoint of the widest interval of thresholds with the highest balanced accuracy."""
    confidences = sorted({round(o.answer.confidence, 6) for o in outcomes} | {0.0, 1.0})
    candidates = [(a + b) / 2 for a, b in zip(confidences, confidences[1:], strict=False)] or [0.5]
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]

    def score(t: float) -> float:
        ok_answer = sum(o.hit_at(t) for o in answerable) / max(1, len(answerable))
        ok_refuse = sum(_refuses(o, t) for o in unanswerable) / max(1, len(unanswerable))
        return ok_answer + ok_refuse

    scored = [(score(t), t) for t in candidates]
    best = max(s for s, _ in scored)
    winners = [t for s, t in scored if s == best]
    return round((winners[0] + winners[-1]) / 2, 4)


def ask_metrics(outcomes: Sequence[AskOutcome], threshold: float) -> dict[str, Any]:
    """citation-verified rate (citations that passed the verbatim check / citations proposed),
    refusal rate on unanswerable questions, false refusals and answer hit rate on answerable ones."""
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    shown = [o for o in outcomes if not _refuses(o, threshold)]
    proposed = sum(o.answer.citations_proposed for o in shown)
    dropped = sum(o.answer.citations_dropped for o in shown)
    return {
        "threshold": threshold,
        "questions": len(outcomes),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "citations": proposed - dropped,
        "citation_verified_rate": round((proposed - dropped) / proposed, 4) if proposed else 1.0,
        "refusal_rate_unanswerable": round(
            sum(_refuses(o, threshold) for o in unanswerable) / len(unanswerable), 4
        ) if unanswerable else None,
        "false_refusal_rate": round(
            sum(_refuses(o, threshold) for o in answerable) / len(answerable), 4
        ) if answerable else None,
        "answer_hit_rate": round(
            sum(o.hit_at(threshold) for o in answerable) / len(answerable), 4
        ) if answerable else None,
        "not_refused_unanswerable": [o.id for o in unanswerable if not _refuses(o, threshold)],
        "missed_answerable": [o.id for o in answerable if not o.hit_at(threshold)],
    }


def evaluate_ask(
    store: Store, queries: list[LabelledQuery], *, config: Config | None = None,
    threshold: float | None = None, hybrid: bool = True,
) -> dict[str, Any]:
    """Calibrate the refusal threshold on the calibration half (unless given), report both halves.

    Each question is answered once with refusal off (threshold 0) and the threshold is applied
    afterwards: refusal is a pure function of the confidence, so this equals re-running ask."""
    require_labelled_items(store, queries)
    cal = run_ask(store, _split_filter(queries, "calibration"), config=config, hybrid=hybrid)
    held = run_ask(store, _split_filter(queries, "heldout"), config=config, hybrid=hybrid)
    calibrated = calibrate_threshold(cal) if cal else None
    used = threshold if threshold is not None else calibrated if calibrated is not None else 0.5
    return {
        "calibrated_threshold": calibrated,
        "threshold": used,
        "calibration": ask_metrics(cal, used),
        "heldout": ask_metrics(held, used),
    }
