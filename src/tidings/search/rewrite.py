"""Query rewriting through the model gateway (issue 16.2): with a model configured and
``[search] rewrite = true``, a query's free words go to the model once for a few alternative
phrasings (the technical terms a colloquial question means, in Chinese and English); the query and
each phrasing are searched alike and their rankings fused by reciprocal rank (:func:`.hits.rrf`), the
query's own ranking counted twice (:data:`ORIGINAL_WEIGHT`, :data:`FUSION_K`).

The question is data, never instructions: it sits in a fenced ``<question>`` block under the data
rule, the reply must be one JSON object of a fixed schema (validated with pydantic, retried with the
problem fed back), and a phrasing can only add free words: quotes, ``key:`` filters and leading
``-`` are stripped from it, and the query's own filters, phrases and exclusions bind every
phrasing's search. Answers are cached in the store's ``llm_calls`` (the gateway's cache), so a
repeated query costs no tokens. Any model failure (none configured, unreachable, budget spent,
output never valid) searches without rewriting and logs one warning line.

:func:`.rank.search` calls :func:`search_rewritten` and hands it the plain search to run for the
query and each phrasing, so this module sits beside the ranking, not above it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ValidationError

from ..config import Config
from ..errors import LLMBadOutput, TidingsError
from ..llm.gateway import LLM, Message
from ..llm.tasks import _json_text, data_rule, fence
from ..store import Store
from .hits import Embedder, SearchHit, SearchResult, embedder_from_config, rrf
from .query import CompiledQuery, EmptyQuery, Filters

log = logging.getLogger(__name__)

REWRITE_PROMPT = "rewrite-1"
"""Bumped whenever the prompt or schema changes, so cached phrasings of the old one are not reused."""
PHRASINGS = 3
"""Alternative phrasings asked for, and at most used."""
_MAX_PHRASING_CHARS = 80
_MAX_QUESTION_CHARS = 300
ORIGINAL_WEIGHT = 2
"""How many times the query's own ranking counts in the fusion, against once per phrasing."""
FUSION_K = 1
"""The reciprocal rank constant of this fusion (hybrid search keeps ``search.rrf_k``). With the usual 60,
ranks hardly matter and an item merely present in two lists outranks the query's best hit: SmolLM2's
phrasings, which repeat words of the question, pushed a calibration question's answer out of the
top 10. Chosen with the weight on the calibration half of evals/natural.jsonl (k 60, 10, 1 ×
weight 1, 2, 3, 5): k 1 and weight 2 is the smallest setting that keeps the query's own top hits
(r@5 0.974, MRR 0.844, as without rewriting; k 60 and weight 2 gave 0.947 and 0.774). No better
model was at hand to tune on: with one whose phrasings help, a larger k may be right."""
_RANKING_DEPTH = 20
"""Hits each search contributes to the fusion (at least the requested limit)."""


class RewriteReply(BaseModel):
    phrasings: list[str]


def rewrite_schema() -> dict[str, Any]:
    """The reply's shape for the server's JSON grammar (bounds are checked by :func:`parse_reply`:
    llama.cpp's server fails to turn ``maxItems``/``maxLength`` into a grammar)."""
    return {
        "type": "object",
        "properties": {"phrasings": {"type": "array", "items": {"type": "string"}}},
        "required": ["phrasings"],
    }


def rewrite_messages(question: str) -> list[Message]:
    system = (
        "You turn a reader's search question about their archive of technical reading (Chinese and "
        f"English) into {PHRASINGS} short alternative search queries: keywords only, the technical terms "
        "the question means (a colloquial description replaced by its usual name, in Chinese and in "
        "English), no explanations. "
        + data_rule("<question>", "</question>")
        + " Answer with one JSON object and nothing else."
    )
    user = (
        fence(question[:_MAX_QUESTION_CHARS], "question")
        + '\n\nReply with JSON only, like {"phrasings": ['
        + ", ".join(['"…"'] * PHRASINGS)
        + "]}."
    )
    return [{"role": "system", "content": system}, *_EXAMPLE, {"role": "user", "content": user}]


_EXAMPLE_PHRASINGS = ["代码可读性", "code readability", "代码规范 命名"]
_EXAMPLE: list[Message] = [
    {"role": "user", "content": fence("写的代码同事老说看不懂咋办", "question")},
    {"role": "assistant", "content": json.dumps({"phrasings": _EXAMPLE_PHRASINGS}, ensure_ascii=False)},
]
"""One worked example (not a question of the evaluation sets): small models copy a shown answer's
shape far more reliably than they follow a description of it. They also copy its words, so a
phrasing taken from the example is dropped (:func:`parse_reply`)."""

_QUOTES_RE = re.compile(r"[\"“”「」]")
_FILTER_KEY_RE = re.compile(r"\b[A-Za-z]+:")
_NUMBERING_RE = re.compile(r"^\s*(?:\d{1,2}[.)](?!\d)|\d{1,2}、|[*•]|-(?=\s))\s*")
_WORD_RE = re.compile(r"[^\W_]")


def clean_phrasing(text: str) -> str:
    """A phrasing as free words only: no quotes (phrases), ``key:`` (filters) or leading ``-``
    (exclusions), so a reply can never narrow or widen what the query itself allows; no list
    numbering; empty when nothing in it is a word ("…")."""
    text = _FILTER_KEY_RE.sub(" ", _QUOTES_RE.sub(" ", _NUMBERING_RE.sub("", text)))
    words = [w.lstrip("-") for w in text.split()]
    clean = " ".join(w for w in words if w)[:_MAX_PHRASING_CHARS].strip()
    return clean if _WORD_RE.search(clean) else ""


def parse_reply(raw: str, question: str) -> list[str]:
    """The distinct usable phrasings (not the question itself), at most :data:`PHRASINGS`;
    ValueError (worded for the model) when the reply is not the schema."""
    try:
        reply = RewriteReply.model_validate_json(_json_text(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"the answer is not the JSON object asked for ({problems})") from exc
    seen = {" ".join(question.split()).casefold(), *(p.casefold() for p in _EXAMPLE_PHRASINGS)}
    out: list[str] = []
    for phrasing in reply.phrasings:
        clean = clean_phrasing(phrasing)
        if clean and clean.casefold() not in seen:
            seen.add(clean.casefold())
            out.append(clean)
    return out[:PHRASINGS]


def phrasings(llm: LLM, question: str, config: Config) -> list[str]:
    """The model's alternative phrasings of ``question`` (one call, cached by the gateway). Raises
    LLMError (LLMBadOutput when the reply never fits the schema)."""
    route = llm.route("rewrite")
    max_tokens = min(200, route.config.max_tokens) if route is not None else 200
    messages = rewrite_messages(question)
    problem = ""
    raw = ""
    for _attempt in range(1 + config.llm.json_retries):
        raw = llm.call(
            "rewrite",
            messages,
            prompt_version=REWRITE_PROMPT,
            json_schema=rewrite_schema(),
            max_tokens=max_tokens,
            temperature=0.0,
        ).text
        try:
            return parse_reply(raw, question)
        except ValueError as exc:
            problem = str(exc)
            messages = [
                *messages,
                {"role": "assistant", "content": raw},
                {
                    "role": "user",
                    "content": f"That answer is invalid: {problem}. Reply again with the JSON object only.",
                },
            ]
    raise LLMBadOutput(raw, problem)


def can_rewrite(llm: LLM, config: Config) -> bool:
    """Whether a chat model serves the ``rewrite`` task: ``routes.default`` or the only model, but not
    a model configured only as the ``embed`` route (an embedding server answers no chat)."""
    route = llm.route("rewrite")
    return route is not None and (config.routes.default is not None or route.name != config.routes.embed)


def rewrite_query(store: Store | None, question: str, config: Config) -> list[str]:
    """Phrasings from the configured model, or [] when there is none or it fails (logged, once)."""
    llm = LLM(config, store)
    try:
        if not can_rewrite(llm, config):
            return []
        return phrasings(llm, question, config)
    except TidingsError as exc:
        log.warning("search: rewriting the query with the model failed (%s); searching without it", exc)
        return []
    finally:
        llm.close()


def _as_query(phrasing: str, compiled: CompiledQuery) -> str:
    """The phrasing with the query's own phrases and exclusions (its filters are passed apart)."""
    parsed = compiled.parsed
    return " ".join([phrasing, *(f'"{p}"' for p in parsed.phrases), *(f'-"{e}"' for e in parsed.excludes)])


def fuse(
    results: Sequence[SearchResult], limit: int, k: int, original_weight: int = ORIGINAL_WEIGHT
) -> list[SearchHit]:
    """The hits of several searches (the query's own first) fused by reciprocal rank, the query's own
    ranking counted ``original_weight`` times. A hit found by several keeps the first search's view
    of it (its snippet marks the words as typed)."""
    rankings = [[h.item.id for h in r.hits] for r in results]
    fused = rrf([*[rankings[0]] * original_weight, *rankings[1:]], k)
    first: dict[int, SearchHit] = {}
    for result in results:
        for hit in result.hits:
            first.setdefault(hit.item.id, hit)
    best = sorted(fused, key=lambda i: -fused[i])[:limit]  # stable: ties keep the query's own order
    return [replace(first[i], score=round(fused[i], 6)) for i in best]


def search_rewritten(
    store: Store,
    query: str,
    compiled: CompiledQuery,
    *,
    config: Config,
    filters: Filters | None,
    limit: int,
    recent: bool,
    embedder: Embedder | None,
    hybrid: bool,
    search: Callable[..., SearchResult],
) -> SearchResult:
    """The query and its phrasings searched alike by ``search`` (:func:`.rank.search`: same filters,
    phrases, exclusions, recency and embeddings) and fused; the plain search when the model gives
    no phrasing."""
    alternatives = rewrite_query(store, compiled.parsed.text, config)
    own_embedder = None
    if hybrid and embedder is None:  # one embedder for all the searches, not one each
        embedder = own_embedder = embedder_from_config(config, store)
    options: dict[str, Any] = {
        "config": config,
        "filters": compiled.parsed.filters,
        "recent": recent,
        "embedder": embedder,
        "hybrid": hybrid,
        "rewrite": False,
        "refresh": False,
    }
    try:
        if not alternatives:
            return search(store, query, limit=limit, **{**options, "filters": filters})
        depth = max(limit, _RANKING_DEPTH)
        results = [search(store, query, limit=depth, **{**options, "filters": filters})]
        for phrasing in alternatives:
            try:
                results.append(search(store, _as_query(phrasing, compiled), limit=depth, **options))
            except EmptyQuery:  # only stop words: nothing to rank by
                continue
        hits = fuse(results, limit, FUSION_K)
        return SearchResult(hits, f"{results[0].mode}+rewrite", results[0].compiled)
    finally:
        close = getattr(own_embedder, "close", None)
        if close is not None:
            close()
