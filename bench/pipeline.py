"""Benchmark: extract + dedupe + summarize + classify over N synthetic article pages.

Pages are assembled from the human summaries in the shared digests (real Chinese tech prose),
with 5% re-posted near-duplicates. The baseline is bare ``trafilatura.extract`` on the same pages
in the same run; ``ratio`` = our items/s over the baseline's. The last line printed is JSON.

The stages run as the pipeline runs them: pages are extracted and fingerprinted in the worker pool
(``tidings.stages.work``, ``--workers``, default ``Config.workers``: one per core), the parent checks
fingerprints against the near-duplicate index, and the pages kept are summarized and classified in
the pool, a chunk per task. Starting the workers is a one-off cost, like loading the dictionaries,
and is left out of the timing (``pool_start_s`` reports it).

    python bench/pipeline.py --n 2000
    python bench/pipeline.py --workers 1   # everything in this process, as before the pool
    python bench/pipeline.py --steps       # CPU ms per item of each step, in this process
"""

from __future__ import annotations

import argparse
import html
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import trafilatura

from tidings.config import Config
from tidings.stages import dedupe
from tidings.stages import work as stagework
from tidings.stages.classify import Doc, KeywordClassifier

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
LINK = re.compile(r"^\[《?(?P<title>[^\]]+?)》?\]\((?P<url>[^)\s]+)\)[。 ]+(?P<summary>.{40,})$", re.M)


def corpus_snippets() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted((CORPUS / "digests").rglob("index.md")):
        for match in LINK.finditer(path.read_text(encoding="utf-8")):
            found.append((match["title"], match["summary"]))
    return found


def make_pages(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    snippets = corpus_snippets()
    pages: list[str] = []
    for number in range(n):
        if pages and rng.random() < 0.05:
            original = rng.choice(pages)
            pages.append(original.replace("<nav>", "<nav><a href='/repost'>转载</a> "))
            continue
        title, _ = rng.choice(snippets)
        paragraphs = "".join(f"<p>{html.escape(rng.choice(snippets)[1])}</p>\n" for _ in range(rng.randint(4, 9)))
        pages.append(
            f"<!DOCTYPE html><html lang='zh'><head><meta charset='utf-8'><title>{html.escape(title)} {number}</title>"
            f"</head><body><header><nav><a href='/'>首页</a> <a href='/about'>关于</a></nav></header>"
            f"<article><h1>{html.escape(title)} {number}</h1>{paragraphs}</article>"
            f"<footer>© bench</footer></body></html>"
        )
    return pages


def run_tidings(pages: list[str], workers: int) -> tuple[float, float]:
    """Seconds for the stages over ``pages``, and the CPU seconds this (the parent) process spent:
    with a pool the parent's own work (fingerprint index, sending pages, receiving results) competes
    with the workers for the cores."""
    config = Config()
    classifier = KeywordClassifier(config.sections, config.fallback_section)
    index = dedupe.NearDuplicateIndex(0.8)
    pool = stagework.get_pool(workers)
    cfg = config.summarize
    start = time.perf_counter()
    cpu = time.process_time()
    duplicates = 0
    urls = [f"https://bench.example/{number}" for number in range(len(pages))]
    jobs = ((number, (page.encode("utf-8"), None, urls[number]))
            for number, page in enumerate(pages))
    kept: list[tuple[int, stagework.Extraction]] = []
    for number, found in sorted(stagework.run_jobs(stagework.extract_page, jobs, pool), key=lambda r: r[0]):
        assert found is not None
        if found.error_reason is not None:
            continue
        if found.fingerprint is not None:
            fp = dedupe.minhash_from_bytes(found.fingerprint)
            if index.query(fp):
                duplicates += 1
                continue
            index.add(number, fp)
        kept.append((number, found))
    summary_jobs = (
        (n, ([(f.text or "", f.title) for _, f in part], cfg.min_chars, cfg.max_chars, cfg.english_sentences))
        for n, part in enumerate(stagework.chunks(kept))
    )
    summaries = dict(stagework.run_jobs(stagework.summarize_texts, summary_jobs, pool))
    docs = [Doc(f.title, text, f.text, urls[number])
            for n, part in enumerate(stagework.chunks(kept)) for (number, f), text in zip(part, summaries[n] or [], strict=True)]
    classify_jobs = ((n, (classifier, part)) for n, part in enumerate(stagework.chunks(docs, 64)))
    predictions = sum(len(p or []) for _, p in stagework.run_jobs(stagework.classify_docs, classify_jobs, pool))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    assert predictions == len(kept)
    print(f"tidings ({workers} worker(s)): {len(pages)} pages in {elapsed:.1f}s, {duplicates} near-duplicates")
    return elapsed, cpu


def run_baseline(pages: list[str]) -> tuple[float, float]:
    """Seconds for bare ``trafilatura.extract`` over ``pages``, and the CPU seconds it spent."""
    start = time.perf_counter()
    cpu = time.process_time()
    for page in pages:
        trafilatura.extract(page)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    print(f"trafilatura.extract: {len(pages)} pages in {elapsed:.1f}s")
    return elapsed, cpu


def workers_cpu(pool: Any) -> float | None:
    """CPU seconds the pool's worker processes have spent so far (from /proc; None elsewhere)."""
    if pool is None:
        return 0.0
    total = 0.0
    try:
        for pid in list(pool._processes):  # noqa: SLF001 - the executor names its workers nowhere else
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, ValueError, IndexError):
        return None
    return total


def run_steps(pages: list[str]) -> dict[str, float]:
    """CPU milliseconds per page of each step, run one after the other in this process: where the
    time of :func:`run_tidings` goes (process time, so other load on the machine barely shows)."""
    from threadpoolctl import threadpool_limits

    from tidings.stages import extract, summarize
    from tidings.textutil import nfkc

    threadpool_limits(1)  # as in the pool's workers: BLAS threads made TextRank's matrices slower
    config = Config()
    classifier = KeywordClassifier(config.sections, config.fallback_section)
    cfg = config.summarize
    urls = [f"https://bench.example/{number}" for number in range(len(pages))]
    found: list[extract.Extracted] = []
    costs: dict[str, float] = {}

    def timed(name: str, step: Any) -> list[Any]:
        start = time.process_time()
        out = [step(number) for number in range(len(pages))]
        costs[name] = round((time.process_time() - start) * 1000 / len(pages), 3)
        return out

    timed("baseline_trafilatura", lambda n: trafilatura.extract(pages[n]))
    found = timed("extract", lambda n: extract.extract(pages[n].encode("utf-8"), url=urls[n]))
    timed("has_prose", lambda n: summarize.has_prose(found[n].text))
    # As stagework.extract_page does: one NFKC form serves the hash and the fingerprint.
    normal = timed("nfkc", lambda n: nfkc(found[n].text))
    timed("content_hash", lambda n: dedupe.content_hash(normal[n]))
    timed("fingerprint", lambda n: dedupe.fingerprint_bytes(normal[n], nfkc=True))
    summaries = timed("summarize", lambda n: summarize.summarize(
        found[n].text, title=found[n].title, min_chars=cfg.min_chars, max_chars=cfg.max_chars,
        english_sentences=cfg.english_sentences))
    timed("classify", lambda n: classifier.predict(found[n].title, summaries[n], found[n].text, urls[n]))
    ours = sum(v for k, v in costs.items() if k != "baseline_trafilatura")
    costs["tidings_total"] = round(ours, 3)
    costs["ideal_ratio_2_cores"] = round(2 * costs["baseline_trafilatura"] / ours, 3)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=Config().workers, help="processes (1: no pool)")
    parser.add_argument("--steps", action="store_true", help="CPU ms per item of each step, in this process")
    args = parser.parse_args()
    pages = make_pages(args.n)
    # Load the dictionaries and datasketch (scipy) outside the timed part: one-off start-up costs.
    from tidings.textutil import fast_tokenize, tokenize

    tokenize("预热一下分词词典")
    fast_tokenize("预热一下分词词典")
    dedupe.NearDuplicateIndex(0.8)
    if args.steps:
        print(json.dumps(run_steps(pages)))
        return
    started = time.perf_counter()
    pool = stagework.get_pool(args.workers)
    if pool is not None:  # start every worker now, each with its dictionaries loaded
        list(pool.map(stagework.summarize_texts, [[("预热一下分词词典。" * 30, None)]] * args.workers, [80] * args.workers,
                      [200] * args.workers, [3] * args.workers))
        # and with extraction's lazily built parts made (trafilatura's and htmldate's first call, compiled
        # XPaths, the NFKC tables): some 0.1 s per process, once, not per page.
        warm = make_pages(1, seed=1)[0].encode("utf-8")
        list(pool.map(stagework.extract_page, [warm] * args.workers, [None] * args.workers,
                      ["https://bench.example/warm"] * args.workers))
    pool_start = time.perf_counter() - started
    baseline, baseline_cpu = run_baseline(pages)
    before = workers_cpu(pool)
    ours, parent_cpu = run_tidings(pages, args.workers)
    after = workers_cpu(pool)
    result = {
        "items": len(pages),
        "items_per_s": round(len(pages) / ours, 1),
        "baseline_items_per_s": round(len(pages) / baseline, 1),
        "ratio": round(baseline / ours, 3),
        "workers": args.workers,
        "pool_start_s": round(pool_start, 2),
        "parent_cpu_ms_per_item": round(parent_cpu * 1000 / len(pages), 3),
    }
    if before is not None and after is not None:
        # What the wall-clock ratio would be on otherwise idle cores, if the work spread perfectly
        # over min(workers, cores) of them: a figure that another load on the machine barely moves.
        ours_cpu = parent_cpu + after - before
        result["ours_cpu_ms_per_item"] = round(ours_cpu * 1000 / len(pages), 3)
        result["baseline_cpu_ms_per_item"] = round(baseline_cpu * 1000 / len(pages), 3)
        result["cpu_ratio_ceiling"] = round(
            min(args.workers, os.cpu_count() or 1) * baseline_cpu / ours_cpu, 3) if ours_cpu else None
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
