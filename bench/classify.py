"""Benchmark: classify N synthetic items with the learned section model, and with the keyword rules.

The model is trained on the shared digests' sectioned entries (parsed directly, no store), as
``tidings classify --train`` would. Items are assembled from the digests' real titles and human
summaries: a title (with a number, so no two are identical), a summary half the time, and a URL
from the corpus. The rules classifier runs over the same items in the same run as the baseline.
The last line printed is JSON.

    python bench/classify.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from tidings.config import Config
from tidings.records import DigestEntry
from tidings.sources.digest import infer_week, parse_digest
from tidings.stages.classify import Doc, Example, KeywordClassifier, fit_section_model

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def corpus_examples(config: Config) -> list[Example]:
    """Every sectioned entry of the shared digests, as training examples (aliases applied)."""
    found: list[Example] = []
    for path in sorted((CORPUS / "digests").rglob("index.md")):
        doc = parse_digest(path.read_text(encoding="utf-8"), path=str(path))
        week, _ = infer_week(str(path), doc.meta, None)
        if week is None:
            continue
        for block in doc.blocks:
            if isinstance(block, DigestEntry) and block.section and block.title:
                section = config.classify.aliases.get(block.section, block.section)
                found.append(Example(Doc(block.title, block.summary, None, block.url), section, week))
    return found


def make_items(examples: list[Example], n: int, seed: int = 7) -> list[Doc]:
    rng = random.Random(seed)
    titles = [e.doc.title for e in examples if e.doc.title]
    summaries = [e.doc.summary for e in examples if e.doc.summary]
    urls = [e.doc.url for e in examples if e.doc.url]
    return [
        Doc(f"{rng.choice(titles)} {number}", rng.choice(summaries) if rng.random() < 0.5 else None, None,
            rng.choice(urls))
        for number in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    config = Config()
    examples = corpus_examples(config)
    start = time.perf_counter()
    model, _ = fit_section_model(examples, config)
    train_s = time.perf_counter() - start
    print(f"trained on {len(examples)} sectioned entries in {train_s:.1f}s")
    items = make_items(examples, args.n)
    model.predict_many(items[:10])  # jieba's dictionary loads once, outside the timed part

    rules = KeywordClassifier(config.sections, config.fallback_section)
    start = time.perf_counter()
    for d in items:
        rules.predict(d.title, d.summary, d.text, d.url)
    rules_s = time.perf_counter() - start
    print(f"keyword rules: {len(items)} items in {rules_s:.2f}s")

    start = time.perf_counter()
    predictions = model.predict_many(items)
    model_s = time.perf_counter() - start
    print(f"section model (batch): {len(items)} items in {model_s:.2f}s")

    sample = items[:500]  # one call per item, as the per-item pipeline stage does
    start = time.perf_counter()
    for d in sample:
        model.predict(d.title, d.summary, d.text, d.url)
    single_s = time.perf_counter() - start
    print(f"section model (one by one): {len(sample)} items in {single_s:.2f}s")

    low = sum(1 for p in predictions if p.confidence < config.llm.classify_below)
    result = {
        "items": len(items),
        "seconds": round(model_s, 3),
        "items_per_s": round(len(items) / model_s, 1),
        "one_by_one_items_per_s": round(len(sample) / single_s, 1),
        "rules_items_per_s": round(len(items) / rules_s, 1),
        "train_examples": len(examples),
        "train_seconds": round(train_s, 2),
        "low_confidence_share": round(low / len(items), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
