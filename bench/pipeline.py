"""Benchmark: extract + dedupe + summarize + classify over N synthetic article pages.

Pages are assembled from the human summaries in the shared digests (real Chinese tech prose),
with 5% re-posted near-duplicates. The baseline is bare ``trafilatura.extract`` on the same pages
in the same run; ``ratio`` = our items/s over the baseline's. The last line printed is JSON.

    python bench/pipeline.py --n 2000
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import time
from pathlib import Path

import trafilatura

from tidings import dedupe, extract, summarize
from tidings.classify import KeywordClassifier
from tidings.config import Config

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


def run_tidings(pages: list[str]) -> float:
    config = Config()
    classifier = KeywordClassifier(config.sections, config.fallback_section)
    index = dedupe.NearDuplicateIndex(0.8)
    start = time.perf_counter()
    duplicates = 0
    for number, page in enumerate(pages):
        found = extract.extract(page.encode("utf-8"), url=f"https://bench.example/{number}")
        fp = dedupe.fingerprint(found.text)
        if fp is not None:
            if index.query(fp):
                duplicates += 1
                continue
            index.add(number, fp)
        text = summarize.summarize(found.text, title=found.title)
        classifier.predict(found.title, text, found.text, f"https://bench.example/{number}")
    elapsed = time.perf_counter() - start
    print(f"tidings: {len(pages)} pages in {elapsed:.1f}s, {duplicates} near-duplicates")
    return elapsed


def run_baseline(pages: list[str]) -> float:
    start = time.perf_counter()
    for page in pages:
        trafilatura.extract(page)
    elapsed = time.perf_counter() - start
    print(f"trafilatura.extract: {len(pages)} pages in {elapsed:.1f}s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    pages = make_pages(args.n)
    # Load jieba's dictionary and datasketch (scipy) outside the timed part: one-off start-up costs.
    from tidings.textutil import tokenize

    tokenize("预热一下分词词典")
    dedupe.NearDuplicateIndex(0.8)
    baseline = run_baseline(pages)
    ours = run_tidings(pages)
    result = {
        "items": len(pages),
        "items_per_s": round(len(pages) / ours, 1),
        "baseline_items_per_s": round(len(pages) / baseline, 1),
        "ratio": round(baseline / ours, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
