"""Natural questions (evals/natural.jsonl): typed as people type them, over the social and notes
corpora, among the whole shared corpus. ``tidings eval search --json`` reports tidings beside plain
BM25 on both halves; on the held-out half (never used for tuning) tidings must beat plain BM25."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from corpusdb import copy_store, run_cli

from tidings.search import evaluate as searcheval
from tidings.store import open_store

NATURAL = Path(__file__).resolve().parents[1] / "evals" / "natural.jsonl"


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, indexed_corpus_db: Path) -> Path:
    return copy_store(indexed_corpus_db, tmp_path_factory.mktemp("natural") / "corpus.db")


def test_the_set_is_large_split_in_halves_and_every_label_resolves(corpus_db: Path) -> None:
    queries = searcheval.load_queries(NATURAL)
    assert len(queries) >= 60
    halves = Counter(q.split for q in queries)
    assert halves["calibration"] >= 30 and halves["heldout"] >= 30
    # Typed as people type Chinese: no space next to a Chinese character (an English name may keep its own).
    assert not [q.id for q in queries if re.search(r"[\u4e00-\u9fff] | [\u4e00-\u9fff]", q.query)]
    store = open_store(corpus_db)
    try:
        for q in queries:
            assert len(searcheval.resolve_expected(store, q.expect)) == 1, (q.id, q.expect)
    finally:
        store.close()


def test_eval_search_reports_both_engines_on_both_halves(corpus_db: Path) -> None:
    report = json.loads(run_cli(corpus_db, "eval", "search", "--queries", str(NATURAL), "--json"))
    assert report["split"] == "heldout" and not report["unresolved"]
    for half in searcheval.SPLITS:
        for engine in ("tidings", "bm25"):
            figures = report["halves"][half][engine]
            assert figures["queries"] >= 30 and not figures["unresolved"]
            assert 0 <= figures["recall@5"] <= figures["recall@10"] <= 1 and 0 <= figures["mrr"] <= 1
    held = report["halves"]["heldout"]
    assert report["recall@10"] == held["tidings"]["recall@10"] and report["bm25"] == held["bm25"]
    # The held-out half beats plain BM25 over the same jieba tokens (0.84 against 0.76 at r@5 when
    # this was written); a change that loses that fails here.
    assert held["tidings"]["recall@5"] > held["bm25"]["recall@5"]
    assert held["tidings"]["mrr"] > held["bm25"]["mrr"]
    text = run_cli(corpus_db, "eval", "search", "--queries", str(NATURAL))
    assert "plain BM25" in text and "heldout" in text and "calibration" in text
