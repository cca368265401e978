"""The learned section classifier, on the real past digests: training, prediction, the fallback to
the keyword rules, corrections, the time-split evaluation, sections learned from the digests, tags
from the user's own vocabulary, the LLM hook and the CLI.

Importing the 87 digests takes about half a minute, so one store is imported per module and each
test that writes works on its own copy of it."""

from __future__ import annotations

import json
import logging
import pickle
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from tidings import pipeline
from tidings.cli import run_cli
from tidings.collect import import_paths
from tidings.config import DEFAULT_SECTIONS, Config, SectionConfig
from tidings.curate import move_entry
from tidings.stages.classify import (
    SECTION_MODEL,
    Classifier,
    Doc,
    Example,
    KeywordClassifier,
    LearnedClassifier,
    ModelParams,
    Prediction,
    SoftVote,
    TagSuggester,
    current_sections,
    fit_section_model,
    load_section_model,
    section_classifier,
    section_layout,
    split_heading,
    suggest_item_tags,
    suggest_tags,
    tag_suggester,
    train_section_model,
    training_examples,
    with_llm,
)
from tidings.stages.classify import _balanced as balanced_class_weights
from tidings.stages.classify_eval import DEFAULT_CUTOFF, evaluate_classifier, split_examples
from tidings.store import ClassifierModel, Digest, DigestEntryRow, Item, Store, open_store

AI = "🌟 AI 相关"
GO = "⭐️ Go & 云原生 & Rust 相关"
BACKEND = "📒 后端相关"
FRONTEND = "📒 前端相关"
LEARNED = [AI, GO, BACKEND, FRONTEND]  # the latest digest's order


def clone(src: Path, dst: Path) -> Store:
    """A private copy of a store (SQLite's backup API: the WAL is carried over too)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    return open_store(dst)


@pytest.fixture(scope="module")
def digests_db(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("digests") / "t.db"
    store = open_store(path)
    report, _ = import_paths(store, [str(corpus_dir / "digests")], "digest", Config())
    assert report.failed == 0 and report.done == 87
    store.close()
    return path


@pytest.fixture(scope="module")
def trained_db(tmp_path_factory: pytest.TempPathFactory, digests_db: Path) -> Path:
    path = tmp_path_factory.mktemp("trained") / "t.db"
    store = clone(digests_db, path)
    report = train_section_model(store, Config())
    assert report.trained, report.message
    store.close()
    return path


@pytest.fixture
def store(tmp_path: Path, digests_db: Path) -> Store:
    return clone(digests_db, tmp_path / "store.db")


@pytest.fixture
def trained(tmp_path: Path, trained_db: Path) -> Store:
    return clone(trained_db, tmp_path / "trained.db")


# --- training -----------------------------------------------------------------------------------


def test_training_examples_come_from_sectioned_entries(store: Store) -> None:
    examples = training_examples(store, Config())
    with store.session() as session:
        sectioned = session.scalars(
            select(DigestEntryRow).where(DigestEntryRow.section.is_not(None), DigestEntryRow.item_id.is_not(None))
        ).all()
        pairs = {(e.item_id, e.digest.week) for e in sectioned}
    # One example per item and week (2024-03-10 lists one URL twice).
    assert len(examples) == len(pairs) >= 800
    assert {e.section for e in examples} == set(LEARNED)  # "⭐️ Golang 相关" went through the alias
    old_go = [e for e in examples if e.raw_section == "⭐️ Golang 相关"]
    assert len(old_go) >= 100 and all(e.section == GO for e in old_go)
    # Digests from before 2023-12-24 had no back-end section: their labels are partial.
    assert all(e.candidates == (GO, BACKEND) for e in old_go)
    assert not any(e.candidates for e in examples if e.week.isoformat() >= "2023-12-24")
    assert all(e.doc.title for e in examples)


def test_train_stores_versioned_models_and_loading_picks_the_newest(store: Store) -> None:
    config = Config()
    first = train_section_model(store, config)
    assert first.trained and first.version == 1
    assert set(first.sections) == set(LEARNED)
    assert first.examples >= 800 and first.relabelled > 0
    assert "trained section model v1" in first.message
    second = train_section_model(store, config)
    assert second.version == 2
    with store.session() as session:
        rows = session.scalars(select(ClassifierModel).where(ClassifierModel.kind == SECTION_MODEL)).all()
        assert [r.version for r in rows] == [1, 2]
        assert rows[-1].metrics["examples"] == second.examples
        assert rows[-1].metrics["newest_week"] == "2024-07-21"
        assert "sklearn" in rows[-1].metrics
    model = load_section_model(store, config)
    assert isinstance(model, LearnedClassifier) and model.version == 2


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Go 1.23 的迭代器函数详解", GO),
        ("Kubernetes 调度器源码分析", GO),
        ("大模型 RAG 检索增强生成实践", AI),
        ("微调 Llama 3 的完整流程", AI),
        ("MySQL 索引下推与回表原理", BACKEND),
        ("Spring Boot 中的事务传播机制", BACKEND),
        ("React Server Components 深入解析", FRONTEND),
        ("CSS 容器查询实战", FRONTEND),
    ],
)
def test_prediction(trained: Store, title: str, expected: str) -> None:
    model = load_section_model(trained, Config())
    assert model is not None
    prediction = model.predict(title, None, None, "https://mp.weixin.qq.com/s/abc")
    assert prediction.section == expected
    assert prediction.method == "model" and 0.4 <= prediction.confidence <= 1.0


def test_learned_classifier_is_a_classifier_and_batches_agree(trained: Store) -> None:
    model = load_section_model(trained, Config())
    assert isinstance(model, Classifier)
    docs = [Doc("Rust 所有权与借用"), Doc("Vue 3 响应式原理", "本文讲解 Proxy 实现"), Doc(None, None, None, None)]
    batch = model.predict_many(docs)
    assert batch == [model.predict(d.title, d.summary, d.text, d.url) for d in docs]
    # Nothing to go on: the fallback section, with the (low) confidence the model had.
    assert batch[2].section in {*LEARNED, "📒 其他"}


def test_low_confidence_falls_back_to_the_fallback_section(trained: Store) -> None:
    model = load_section_model(trained, Config(fallback_section="📒 其他"))
    assert model is not None
    sure = model.predict("Go 泛型", None, None, None)
    assert sure.section == GO
    model.min_confidence = 1.01  # nothing is that sure
    assert model.predict("Go 泛型", None, None, None) == Prediction("📒 其他", sure.confidence, "model")


def test_explicit_config_sections_limit_the_predictions(trained: Store) -> None:
    # The user dropped the back-end section: the model never files anything there.
    sections = [SectionConfig(**s) for s in DEFAULT_SECTIONS if s["name"] != BACKEND]
    model = load_section_model(trained, Config(sections=sections))
    assert model is not None and model.allowed == {AI, GO, FRONTEND}
    assert model.predict("MySQL 索引下推与回表原理", None, None, None).section != BACKEND


def test_default_classifier_uses_the_stored_model(trained: Store, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(pipeline.default_classifier(trained, Config()), LearnedClassifier)
    with caplog.at_level(logging.INFO, logger="tidings"):
        rules = pipeline.default_classifier(store, Config())
    assert isinstance(rules, KeywordClassifier)
    assert "keyword rules" in caplog.text


def test_classify_items_files_with_the_model(trained: Store) -> None:
    with trained.session() as session:
        new = Item(url="https://mp.weixin.qq.com/s/new-go", title="Go 1.23 的迭代器函数详解", status="pending", extra={})
        session.add(new)
        session.flush()
        item_id = new.id
    report = pipeline.classify_items(trained, Config(), item_ids=[item_id])
    assert report.done == 1 and report.item_ids == [item_id]
    with trained.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        assert (item.section, item.section_origin) == (GO, "model")
        assert item.section_confidence is not None and item.section_confidence > 0.5


def test_classify_items_works_in_batches_and_never_overwrites_a_hand_filed_section(
    trained: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model files one batch per pass; an item the curator filed by hand while the run was going
    (here: between two batches, from another session, as the web UI would) keeps its section."""
    titles = ["Go 1.23 的迭代器函数详解", "React 19 的新 Hook：use", "GPT-4o 的多模态推理能力评测"]
    with trained.session() as session:
        rows = [Item(url=f"https://mp.weixin.qq.com/s/batch-{n}", title=t, status="pending", extra={})
                for n, t in enumerate(titles)]
        session.add_all(rows)
        session.flush()
        ids = [r.id for r in rows]
    monkeypatch.setattr(pipeline, "CLASSIFY_BATCH", 1)
    batches: list[int] = []

    def curator_files_the_last_one(done: int, total: int, _label: str) -> None:
        batches.append(done)
        if done == 1:
            with trained.session() as session:
                item = session.get(Item, ids[-1])
                assert item is not None and item.section is None
                item.section, item.section_origin, item.section_confidence = BACKEND, "human", 1.0

    report = pipeline.classify_items(trained, Config(), item_ids=ids, progress=curator_files_the_last_one)
    assert batches == [1, 2, 3]
    assert report.done == 2 and report.item_ids == ids[:2]
    with trained.session() as session:
        filed = {i.id: (i.section, i.section_origin) for i in session.scalars(select(Item).where(Item.id.in_(ids)))}
    assert filed[ids[0]] == (GO, "model")
    assert filed[ids[1]][1] == "model"
    assert filed[ids[2]] == (BACKEND, "human")


def test_a_stored_model_that_no_longer_loads_falls_back_to_the_rules(trained: Store) -> None:
    with trained.session() as session:
        session.add(ClassifierModel(kind=SECTION_MODEL, version=99, blob=b"not a pickle", metrics={}))
    assert isinstance(section_classifier(trained, Config()), KeywordClassifier)


# --- fallback below the minimum --------------------------------------------------------------------


def test_below_the_minimum_the_rules_stay(tmp_path: Path, corpus_dir: Path) -> None:
    store = open_store(tmp_path / "small.db")
    one = corpus_dir / "digests" / "blog" / "2023-07-30" / "index.md"  # 24 sectioned entries
    import_paths(store, [str(one)], "digest", Config())
    report = train_section_model(store, Config())  # min_training_items = 50
    assert not report.trained and report.version is None
    assert report.examples == 24
    assert "not enough training data" in report.message and "keyword rules" in report.message
    assert "min_training_items = 50" in report.message
    with store.session() as session:
        assert session.scalars(select(ClassifierModel)).all() == []
    assert isinstance(section_classifier(store, Config()), KeywordClassifier)


def test_the_minimum_comes_from_the_config(store: Store) -> None:
    config = Config.model_validate({"classify": {"min_training_items": 5000}})
    report = train_section_model(store, config)
    assert not report.trained and "5000" in report.message


# --- corrections -----------------------------------------------------------------------------------


def test_corrections_change_the_next_training(trained: Store) -> None:
    config = Config()
    probes = [Doc("Rust 异步编程入门"), Doc("用 Rust 写一个命令行工具")]
    before = load_section_model(trained, config)
    assert before is not None
    assert [p.section for p in before.predict_many(probes)] == [GO, GO]
    # The curator decides Rust belongs with the back end and moves every Rust entry there.
    with trained.session() as session:
        entries = session.scalars(
            select(DigestEntryRow).join(Digest).where(Digest.status != "draft", DigestEntryRow.section.is_not(None))
        ).all()
        rust = [e for e in entries if e.item and "rust" in (e.item.title or "").lower()
                and config.classify.aliases.get(e.section or "", e.section) == GO]
        assert len(rust) >= 20
        for entry in rust:
            move_entry(session, entry, BACKEND)
    examples = training_examples(trained, config)
    corrected = [e for e in examples if e.origin == "correction"]
    assert len(corrected) == len({e.item_id for e in rust})
    assert all(e.section == BACKEND and not e.candidates for e in corrected)
    report = train_section_model(trained, config)
    assert report.trained and report.version == 2 and report.corrections == len(corrected)
    after = load_section_model(trained, config)
    assert after is not None and after.version == 2
    assert [p.section for p in after.predict_many(probes)] == [BACKEND, BACKEND]


# --- the time-split evaluation ---------------------------------------------------------------------


def test_time_split_is_by_week(store: Store) -> None:
    train, test = split_examples(store, Config(), DEFAULT_CUTOFF)
    assert max(e.week for e in train) <= DEFAULT_CUTOFF < min(e.week for e in test)
    assert len({e.week for e in train}) == 11 and len({e.week for e in test}) == 6
    assert 300 <= len(test) <= 400


def test_evaluation_meets_its_figures_and_beats_the_rules(store: Store, capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    # Through the CLI, as a user runs it; the library call gives the same object.
    db = tmp_path / "store.db"  # the store fixture's copy
    code = run_cli(["--db", str(db), "eval", "classify", "--cutoff", "2024-03-31", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    model, rules = result["model"], result["rules"]
    assert result["test_items"] == 356 and result["train_items"] == 460
    # Achieved on the shared digests: model 0.862 / 0.771, rules 0.834 / 0.777 (accuracy / macro-F1).
    assert model["accuracy"] >= 0.85
    assert model["accuracy"] > rules["accuracy"] + 0.015
    assert model["macro_f1"] >= 0.75
    assert rules["fallback"] > 0 and model["fallback"] < rules["fallback"]
    assert sum(map(sum, model["confusion"])) == result["test_items"]
    assert model["labels"] == LEARNED
    again = evaluate_classifier(store, Config())
    assert again.model.accuracy == model["accuracy"]
    # Confidence bands: all items at 0, fewer but more often right as the threshold rises.
    bands = result["confidence"]
    assert bands[0] == {"threshold": 0.0, "coverage": 1.0, "accuracy": model["accuracy"]}
    coverage = [b["coverage"] for b in bands]
    assert coverage == sorted(coverage, reverse=True) and coverage[-1] < 1.0
    assert bands[-1]["accuracy"] > model["accuracy"]


def test_evaluation_report_text(store: Store) -> None:
    from tidings.stages.classify_eval import format_eval

    text = format_eval(evaluate_classifier(store, Config()))
    assert "time split at 2024-03-31" in text
    assert "confusion matrix, model" in text and "confusion matrix, rules" in text
    assert "predicted only: [4] 📒 其他" in text  # the rules' fallback column
    assert "model accuracy on the items it is at least this sure of" in text


def test_confidence_bands_count_exactly() -> None:
    from tidings.stages.classify import Prediction
    from tidings.stages.classify_eval import confidence_bands

    truth = ["a", "a", "b", "b"]
    predictions = [Prediction("a", 0.95, "model"), Prediction("b", 0.55, "model"),
                   Prediction("b", 0.75, "model"), Prediction("a", 0.3, "model")]
    bands = {b["threshold"]: (b["coverage"], b["accuracy"]) for b in confidence_bands(truth, predictions)}
    assert bands[0.0] == (1.0, 0.5)
    assert bands[0.5] == (0.75, round(2 / 3, 4))
    assert bands[0.7] == (0.5, 1.0)
    assert bands[0.9] == (0.25, 1.0)


# --- sections follow the data ----------------------------------------------------------------------


def test_sections_are_learned_from_the_latest_digest(store: Store) -> None:
    layout = section_layout(store, Config())
    assert [s.name for s in layout] == LEARNED
    assert {s.source for s in layout} == {"digests"}
    assert [(s.emoji, s.label) for s in layout][:2] == [("🌟", "AI 相关"), ("⭐️", "Go & 云原生 & Rust 相关")]
    counts = {s.name: s.items for s in layout}
    assert counts[GO] >= 350  # the old "Golang 相关" entries counted under their new name
    assert current_sections(store, Config(), until=DEFAULT_CUTOFF) == LEARNED


def test_config_sections_override_the_learned_ones(store: Store, tmp_path: Path) -> None:
    config = Config.model_validate({"sections": [{"name": "🦀 Rust"}, {"name": "📒 其他"}]})
    assert [s.name for s in section_layout(store, config)] == ["🦀 Rust", "📒 其他"]
    assert {s.source for s in section_layout(store, config)} == {"config"}
    # The defaults are not an override: they give way to what the digests say.
    assert [s.name for s in section_layout(store, Config())] == LEARNED
    empty = open_store(tmp_path / "empty.db")
    assert [s.source for s in section_layout(empty, Config())] == ["defaults"] * len(DEFAULT_SECTIONS)


def test_split_heading() -> None:
    assert split_heading("⭐️ Go & 云原生 & Rust 相关") == ("⭐️", "Go & 云原生 & Rust 相关")
    assert split_heading("📒 后端相关") == ("📒", "后端相关")
    assert split_heading("Misc") == ("", "Misc")


# --- tags ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagged_db(tmp_path_factory: pytest.TempPathFactory, digests_db: Path, corpus_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("tagged") / "t.db"
    store = clone(digests_db, path)
    import_paths(store, [str(corpus_dir / "blog")], "blog", Config())
    import_paths(store, [str(corpus_dir / "social")], "social", Config())
    store.close()
    return path


def _own_tags(store: Store) -> set[str]:
    with store.session() as session:
        items = session.scalars(select(Item).where(Item.kind.in_(["blog", "post"]))).all()
        return {t for i in items for t in i.tags}


def test_tag_vocabulary_is_the_users_own(tmp_path: Path, tagged_db: Path) -> None:
    store = clone(tagged_db, tmp_path / "t.db")
    suggester = tag_suggester(store)
    assert isinstance(suggester, TagSuggester)
    own = _own_tags(store)
    assert len(suggester.vocabulary) >= 50
    assert set(suggester.vocabulary) <= own
    # "Kubernetes" and "kubernetes" are one tag.
    assert sum(1 for t in suggester.vocabulary if t.casefold() == "kubernetes") == 1
    # Digest front-matter tags describe the digest, not its items.
    with store.session() as session:
        digest_tags = {t for d in session.scalars(select(Digest)) for t in d.tags}
    assert "React" in digest_tags and "React" not in own
    assert not (digest_tags - own) & set(suggester.vocabulary)


def test_tags_are_capped_and_never_invented(tmp_path: Path, tagged_db: Path) -> None:
    store = clone(tagged_db, tmp_path / "t.db")
    suggester = tag_suggester(store)
    assert suggester is not None
    kube = Doc("Kubernetes 调度器源码分析：从 Pod 到 Node", "本文分析 kube-scheduler 的调度流程", None, None)
    tags = suggest_tags(suggester, kube, Config())
    assert "Kubernetes" in tags
    assert suggest_tags(suggester, Doc("React 18 新特性解读"), Config()) == []  # "React" is no item's tag
    titles = ["Go 高性能 - singleflight 防止缓存击穿", "Linux 下的 Docker 网络", "AI Agent 与 LLM 应用开发",
              "JavaScript 闭包详解", "Node.js 性能调优", "前端工程化实践"]
    for title in titles:
        for limit in (1, 2, 3):
            config = Config.model_validate({"classify": {"max_tags": limit}})
            tags = suggest_tags(suggester, Doc(title), config)
            assert len(tags) <= limit and set(tags) <= set(suggester.vocabulary)
    capped = Config.model_validate({"classify": {"max_tags": 2}})
    assert len(suggest_tags(suggester, Doc("AI Agent 与 LLM、GPT 应用开发"), capped)) == 2


def test_new_tags_only_when_allowed_and_proposed(tmp_path: Path, tagged_db: Path) -> None:
    store = clone(tagged_db, tmp_path / "t.db")
    suggester = tag_suggester(store)
    doc = Doc("Kubernetes 调度器源码分析")

    def propose(_doc: Doc, vocabulary: list[str], limit: int) -> list[str]:
        assert "Kubernetes" in vocabulary and limit >= 1
        return ["调度器"]

    assert "调度器" not in suggest_tags(suggester, doc, Config(), propose=propose)
    allowed = Config.model_validate({"tags": {"allow_new": True}, "classify": {"max_tags": 2}})
    tags = suggest_tags(suggester, doc, allowed, propose=propose)
    assert tags[0] == "Kubernetes" and "调度器" in tags and len(tags) <= 2


def test_suggested_tags_are_kept_apart_from_the_items_tags(tmp_path: Path, tagged_db: Path) -> None:
    store = clone(tagged_db, tmp_path / "t.db")
    with store.session() as session:
        item = Item(url="https://example.com/k8s", title="Kubernetes 调度器源码分析", status="pending", extra={})
        session.add(item)
        session.flush()
        item_id = item.id
    before = set(tag_suggester(store).vocabulary)
    assert suggest_item_tags(store, Config(), [item_id]) == 1
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None and item.tags == []
        assert "Kubernetes" in item.extra["suggested_tags"]
    assert set(tag_suggester(store).vocabulary) == before


# --- the LLM hook ----------------------------------------------------------------------------------


def test_llm_only_for_low_confidence(trained: Store) -> None:
    model = load_section_model(trained, Config())
    assert model is not None
    asked: list[str | None] = []

    def llm(doc: Doc, sections: list[str]) -> Prediction:
        asked.append(doc.title)
        assert sections == LEARNED
        return Prediction(FRONTEND, 0.9, "llm:test")

    confident = model.predict("Go 1.23 的迭代器函数详解", None, None, None)
    routed = with_llm(model, llm, LEARNED, threshold=confident.confidence - 0.01)
    assert routed.predict("Go 1.23 的迭代器函数详解", None, None, None) == confident
    assert asked == []
    unsure = with_llm(model, llm, LEARNED, threshold=1.01)
    assert unsure.predict("周末随想", None, None, None).section == FRONTEND
    assert asked == ["周末随想"]
    assert with_llm(model, None, LEARNED, threshold=1.0) is model

    def off_list(_doc: Doc, _sections: list[str]) -> Prediction:
        return Prediction("🎮 游戏", 0.9, "llm:test")

    # An answer naming no known section is ignored: the model's own pick stands.
    assert with_llm(model, off_list, LEARNED, threshold=1.01).predict("周末随想", None, None, None).method == "model"


# --- the CLI ---------------------------------------------------------------------------------------


def test_cli_classify_train_then_classify(tmp_path: Path, digests_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "t.db"
    store = clone(digests_db, db)
    with store.session() as session:
        session.add(Item(url="https://mp.weixin.qq.com/s/new-ai", title="大模型 RAG 检索增强生成实践",
                         status="pending", extra={}))
    store.close()
    code = run_cli(["--db", str(db), "classify", "--help"])
    assert code == 0 and "tidings classify --train" in capsys.readouterr().out
    code = run_cli(["--db", str(db), "classify", "--train"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "trained section model v1" in err and "classifying with the section model v1" in err
    code = run_cli(["--db", str(db), "classify"])
    err = capsys.readouterr().err
    assert code == 0 and "classifying with the section model v1" in err
    store = open_store(db)
    with store.session() as session:
        item = session.scalar(select(Item).where(Item.url == "https://mp.weixin.qq.com/s/new-ai"))
        assert item is not None and (item.section, item.section_origin) == (AI, "model")


def test_model_blob_is_a_pickle_of_the_classifier(trained: Store) -> None:
    with trained.session() as session:
        row = session.scalar(select(ClassifierModel).where(ClassifierModel.kind == SECTION_MODEL))
        assert row is not None
        model = pickle.loads(row.blob)
    assert isinstance(model, LearnedClassifier) and model.classes


# --- the model's parts ----------------------------------------------------------------------------


def _toy_examples() -> list[Example]:
    from datetime import date, timedelta

    topics = {
        GO: ["Go 泛型", "goroutine 调度", "Kubernetes 调度", "Rust 所有权", "Go 内存模型"],
        AI: ["大模型 微调", "RAG 检索", "LLM 推理", "Transformer 注意力", "Agent 工具调用"],
        FRONTEND: ["React Hooks", "CSS 布局", "Vue 响应式", "TypeScript 类型", "浏览器渲染"],
    }
    start = date(2024, 1, 7)
    return [
        Example(Doc(f"{title} 第{week}篇"), section, start + timedelta(weeks=week))
        for week in range(3)
        for section, titles in topics.items()
        for title in titles
    ]


def test_balanced_class_weights_are_scikit_learns() -> None:
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = [GO] * 6 + [AI] * 3 + [FRONTEND]
    weights = [1.0, 0.5, 1.0, 0.25, 1.0, 1.0, 0.5, 1.0, 1.0, 2.0]
    ours = balanced_class_weights(labels, weights)
    classes = np.array(sorted(set(labels)))
    theirs = compute_class_weight("balanced", classes=classes, y=np.array(labels), sample_weight=np.array(weights))
    assert ours == pytest.approx(dict(zip(classes.tolist(), theirs.tolist(), strict=True)))


def test_soft_vote_mixes_the_two_models_probabilities() -> None:
    import numpy as np

    class Fixed:
        def __init__(self, classes: list[str], probs: list[list[float]]) -> None:
            self.classes_ = np.array(classes)
            self.probs = np.array(probs)

        def predict_proba(self, matrix: object) -> object:
            return self.probs

    vote = SoftVote(Fixed([AI, GO], [[0.9, 0.1]]), Fixed([AI, GO], [[0.1, 0.9]]), 0.25)
    assert np.allclose(vote.predict_proba(None), [[0.7, 0.3]])
    assert list(vote.classes_) == [AI, GO]
    with pytest.raises(ValueError, match="share their classes"):
        SoftVote(Fixed([AI, GO], [[1, 0]]), Fixed([GO, AI], [[1, 0]]), 0.5)


def test_naive_bayes_share_is_part_of_the_model_and_pickles() -> None:
    from sklearn.linear_model import LogisticRegression

    examples = _toy_examples()
    config = Config()
    plain, _ = fit_section_model(examples, config, ModelParams(nb_weight=0.0))
    mixed, _ = fit_section_model(examples, config, ModelParams())
    assert isinstance(plain.model, LogisticRegression)
    assert isinstance(mixed.model, SoftVote) and mixed.model.share == ModelParams().nb_weight > 0
    docs = [Doc("Go 调度器"), Doc("React 组件"), Doc("大模型 推理")]
    assert [p.section for p in mixed.predict_many(docs)] == [GO, FRONTEND, AI]
    probs = mixed.probabilities(docs)
    assert probs.sum(axis=1).tolist() == pytest.approx([1.0] * 3)
    assert abs(probs - plain.probabilities(docs)).max() > 1e-3  # the NB's share changes the figures
    again = pickle.loads(pickle.dumps(mixed))
    assert abs(again.probabilities(docs) - probs).max() < 1e-12
