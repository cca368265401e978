"""Benchmark: jieba against jieba-rs (``rjieba``) on the shared corpus, and the cost of each TextRank step.

Texts: the notes, the social posts, the blog posts (each parsed by tidings' own importer) and the
saved HTML pages (extracted by tidings). For each segmenter: the time to segment every sentence
(``tokenize`` and ``fast_tokenize``, the same rules around the two segmenters), and the agreement of
the two token streams: per text, the multiset overlap ``|A ∩ B| / max(|A|, |B|)``, summed over the
corpus. Then the time of each summarizer step over the same texts, and how many summaries change
when the summarizer segments with jieba-rs instead of jieba. The last line printed is JSON.

    python bench/segmenters.py
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from tidings.errors import ExtractError
from tidings.sources.blog import parse_blog_post
from tidings.sources.notes import parse_notes
from tidings.sources.social import parse_social
from tidings.stages import extract, summarize
from tidings.textutil import fast_tokenize, tokenize

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def corpus_texts() -> dict[str, list[tuple[str | None, str]]]:
    """``kind -> [(title, text)]`` for every text in the shared corpus that has one."""
    out: dict[str, list[tuple[str | None, str]]] = {"notes": [], "social": [], "blog": [], "html": []}
    notes = parse_notes((CORPUS / "notes" / "ainotes-part1.md").read_text(encoding="utf-8"))
    out["notes"] = [(r.title, r.text) for r in notes.items if r.text]
    social = parse_social((CORPUS / "social" / "posts-2023-12-part1.md").read_text(encoding="utf-8"))
    out["social"] = [(r.title, r.text) for r in social.items if r.text]
    for path in sorted((CORPUS / "blog").rglob("*.md*")):
        parsed = parse_blog_post(path.read_text(encoding="utf-8"), file=str(path))
        out["blog"].extend((r.title, r.text) for r in parsed.items if r.text)
    for path in sorted((CORPUS / "html").glob("*.html")):
        try:
            page = extract.extract(path.read_bytes(), url=f"https://corpus.example/{path.name}")
        except ExtractError:
            continue  # a page with no article has nothing to segment
        out["html"].append((page.title, page.text))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def segmenters(texts: dict[str, list[tuple[str | None, str]]]) -> dict[str, Any]:
    """Speed and token agreement of jieba and jieba-rs, per kind of text."""
    result: dict[str, Any] = {}
    for kind, items in texts.items():
        sentences = [s for _, text in items for s in summarize.split_sentences(text)]
        chars = sum(len(s) for s in sentences)
        jieba_s, slow = _timed(lambda sentences=sentences: [tokenize(s) for s in sentences])
        rs_s, fast = _timed(lambda sentences=sentences: [fast_tokenize(s) for s in sentences])
        same = total = identical = 0
        for a, b in zip(slow, fast, strict=True):
            overlap = sum((Counter(a) & Counter(b)).values())
            same += overlap
            total += max(len(a), len(b))
            identical += a == b
        result[kind] = {
            "texts": len(items), "sentences": len(sentences), "chars": chars,
            "jieba_s": round(jieba_s, 3), "rjieba_s": round(rs_s, 3),
            "speedup": round(jieba_s / rs_s, 1) if rs_s else None,
            "token_agreement": round(same / total, 4) if total else 1.0,
            "identical_sentences": round(identical / len(sentences), 4) if sentences else 1.0,
        }
    return result


def textrank_steps(texts: list[tuple[str | None, str]]) -> dict[str, float]:
    """Seconds spent in each summarizer step over ``texts``, measured by wrapping the step functions."""
    spent: Counter[str] = Counter()
    steps = {
        "split": "split_sentences", "prose_filter": "_prose_of", "junk_filter": "_is_junk",
        "tokenize": "fast_tokenize", "similarity": "_similarity_matrix", "pagerank": "_pagerank",
        "rank_bonuses": "_rank", "redundancy": "_cosine",
    }
    patches = []
    for step, name in steps.items():
        original = getattr(summarize, name)

        def wrapper(*args: Any, _original: Callable[..., Any] = original, _step: str = step, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                spent[_step] += time.perf_counter() - start

        patches.append(mock.patch.object(summarize, name, wrapper))
    for patch in patches:
        patch.start()
    try:
        total, _ = _timed(lambda: [summarize.summarize(text, title=title) for title, text in texts])
    finally:
        for patch in patches:
            patch.stop()
    # _rank's own time includes the similarity matrix, pagerank and the title cosines inside it.
    spent["rank_bonuses"] -= spent["similarity"] + spent["pagerank"]
    out = {step: round(seconds, 3) for step, seconds in spent.items()}
    out["total"] = round(total, 3)
    return out


def summaries_changed(texts: list[tuple[str | None, str]]) -> dict[str, Any]:
    """How many summaries differ when the summarizer segments with jieba instead of jieba-rs."""
    fast = [summarize.summarize(text, title=title) for title, text in texts]
    with mock.patch.object(summarize, "fast_tokenize", tokenize):
        slow = [summarize.summarize(text, title=title) for title, text in texts]
    changed = [i for i, (a, b) in enumerate(zip(slow, fast, strict=True)) if a != b]
    return {"summaries": len(texts), "changed": len(changed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    texts = corpus_texts()
    tokenize("预热"), fast_tokenize("预热")  # dictionary loads are one-off start-up costs
    seg = segmenters(texts)
    for kind, row in seg.items():
        print(f"{kind:7} {row}")
    everything = [pair for items in texts.values() for pair in items]
    steps = textrank_steps(everything)
    print(f"summarizer steps over {len(everything)} texts (s): {steps}")
    changed = summaries_changed(everything)
    print(f"summaries with jieba vs jieba-rs: {changed}")
    all_same = sum(r["token_agreement"] * max(1, r["chars"]) for r in seg.values())
    weight = sum(max(1, r["chars"]) for r in seg.values())
    print(json.dumps({
        "jieba_s": round(sum(r["jieba_s"] for r in seg.values()), 3),
        "rjieba_s": round(sum(r["rjieba_s"] for r in seg.values()), 3),
        "token_agreement": round(all_same / weight, 4),
        "by_kind": seg,
        "textrank_steps_s": steps,
        "summaries_changed": changed,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
