"""The index build's segmentation and compound finding: their fast paths (normalization skipped where
NFKC changes nothing, one split into CJK runs and gaps, gap words looked up, compounds found from a
per-word classification) give exactly what the plain definitions give, on tricky text, on random
text and on every file and item of the shared corpus."""

from __future__ import annotations

import random
import sqlite3
import unicodedata
from pathlib import Path

import pytest

from tidings.config import Config
from tidings.search import segment as segment_module
from tidings.search.compounds import CompoundFinder
from tidings.search.index import compound_forms
from tidings.search.segment import MAX_INDEXED_CHARS, normalize, prepare, segment, segmented_words
from tidings.search.storage import field_words, load_docs
from tidings.search.terms import FIELDS, WORD_FIELDS, compound_term, stem
from tidings.textutil import CJK_RUN_RE, _get_fast_segmenter

CONFIG = Config()
# The word pattern is the segmenter's own: what is checked is how it is applied.
WORD_RE = segment_module._WORD_RE

TRICKY = [
    "",
    "plain ASCII: Node.js, C++ and C# on k8s (v1.2.3) -- gpt-4o's",
    "用Rust写操作系统，Node.js 与 ＧＰＴ-4o 的 𝐦𝐚𝐜𝐡𝐢𝐧𝐞 C++",
    "大模型（LLM）：检索增强生成？！；５０％～｜\u3000全文搜索",
    "ΟΔΟΣ… ΟΔΟΣ",  # an ellipsis changes the length: folded per character, the final sigma stays σ
    "cafe\u0301 and ﬁle…",  # a combining accent and a ligature, per character too
    "ｶﾞｲﾄﾞ と かな、한국어 텍스트、豈 更",  # half-width kana, hangul, compatibility ideographs
    "中文\x00英文\ue000私用\udcd7坏字节",  # NUL, private use and a lone surrogate between runs
    "①②③ ½ ㍿ 𠀀𠀁 ﹏ 。、",
    "大" + "，" * 3 + "模型" + " ai " * 2 + "agent",
    "a" * 10 + "中" + "b.c" + "文",
]


def normalized_as_defined(text: str) -> str:
    """NFKC and lower case of the whole text; a text whose length that changes, character by character."""
    lowered = unicodedata.normalize("NFKC", text).lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(unicodedata.normalize("NFKC", ch).lower() for ch in text)


def words_as_defined(text: str | None) -> list[str]:
    """jieba-rs on each run of CJK characters, the word pattern on the text between runs."""
    if not text:
        return []
    norm = normalized_as_defined(text[:MAX_INDEXED_CHARS])
    cut = _get_fast_segmenter().cut
    words: list[str] = []
    pos = 0
    for run in CJK_RUN_RE.finditer(norm):
        words += WORD_RE.findall(norm, pos, run.start())
        words += cut(run.group(), True)
        pos = run.end()
    return words + WORD_RE.findall(norm, pos)


def assert_segmented_as_defined(text: str) -> None:
    words = segmented_words(text)
    assert words == words_as_defined(text), text[:200]
    if len(text) <= MAX_INDEXED_CHARS:  # segment() has no length bound
        assert words == [w for w, _s, _e in segment(text)], text[:200]
    assert normalize(text)[0] == normalized_as_defined(text)


def test_tricky_text_is_segmented_as_defined() -> None:
    prepare(CONFIG)
    for text in TRICKY:
        assert_segmented_as_defined(text)
    assert segmented_words(None) == []
    assert segmented_words("ΟΔΟΣ… ΟΔΟΣ") == ["οδοσ", "οδοσ"]  # per character: no final ς
    assert segmented_words("ΟΔΟΣ ΟΔΟΣ") == ["οδος", "οδος"]  # the whole text lower-cased
    long_cjk = "向量数据库，" * (MAX_INDEXED_CHARS // 6 + 10)
    assert_segmented_as_defined(long_cjk)
    assert_segmented_as_defined("word " * (MAX_INDEXED_CHARS // 5 + 10))


def test_random_text_is_segmented_as_defined() -> None:
    prepare(CONFIG)
    alphabet = list(
        "abcXYZ019 .,+#'-_，：（）？！；％～｜\u3000…ﬁΣσςé\u0301\u3099ｶﾞ가ᄀ\u1161かカ\uf900中文模型大语言的\x00\ue000\n"
    )
    rng = random.Random(16)
    for _ in range(20_000):
        assert_segmented_as_defined("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))))


def test_every_corpus_file_is_segmented_as_defined(corpus_dir: Path) -> None:
    prepare(CONFIG)
    files = sorted(p for p in corpus_dir.rglob("*") if p.is_file())
    assert len(files) > 100
    for path in files:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        assert_segmented_as_defined(text)
        for paragraph in text.split("\n\n"):
            assert segmented_words(paragraph) == words_as_defined(paragraph)


def test_field_words_of_sparse_and_joined_fields() -> None:
    doc = {
        "kind": "post",
        "title": "大模型 Agent",
        "summary": None,
        "text": "",
        "note": None,
        "author": "张三 zhang",
        "tags": ["AI", "向量 数据库"],
        "sections": [],
    }
    assert field_words(doc) == [
        ["大", "模型", "agent"],
        [],
        [],
        [],
        ["ai", "向量", "数据库"],
        ["张三", "zhang"],
        [],
        ["post"],
    ]


@pytest.fixture(scope="module")
def corpus_docs(indexed_corpus_db: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{indexed_corpus_db}?mode=ro", uri=True)
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM items ORDER BY id")]
        return [
            doc
            for start in range(0, len(ids), 500)
            for doc in load_docs(conn, ids[start : start + 500]).values()
        ]
    finally:
        conn.close()


def test_every_corpus_item_is_segmented_as_defined(corpus_docs: list[dict]) -> None:
    prepare(CONFIG)
    assert len(corpus_docs) > 1000
    for doc in corpus_docs:
        assert field_words(doc) == [
            words_as_defined(doc[name]) for name in ("title", "summary", "text", "note")
        ] + [
            words_as_defined(" ; ".join(doc["tags"])),
            words_as_defined(doc["author"]),
            words_as_defined(" ; ".join(doc["sections"])),
            words_as_defined(doc["kind"]),
        ]


def compounds_as_defined(forms: tuple[tuple[str, ...], ...], fields: list[list[str]]) -> list[str]:
    """Per word field, a walk over every word: a word starts the forms whose first word it is, else,
    if it is English (ASCII), those whose first word it stems to; the next words must equal or stem
    to the form's next ones (what index.CompoundFinder did before compounds.py)."""
    row = []
    for name, words in zip(FIELDS, fields, strict=True):
        found = []
        for i, word in enumerate(words if name in WORD_FIELDS else []):
            starting = [form for form in forms if form[0] == word]
            if not starting and word.isascii():
                starting = [form for form in forms if form[0] == stem(word)]
            for form in starting:
                following = words[i + 1 : i + len(form)]
                if len(following) == len(form) - 1 and all(
                    w == f or stem(w) == f for w, f in zip(following, form[1:], strict=True)
                ):
                    found.append(compound_term(form))
        row.append(" ".join(found))
    return row


def test_compounds_are_those_the_walk_finds(corpus_docs: list[dict]) -> None:
    """The finder against the walk over every word, on every corpus item."""
    prepare(CONFIG)
    forms = compound_forms(CONFIG)
    finder = CompoundFinder(forms)
    with_compounds = 0
    for doc in corpus_docs:
        fields = field_words(doc)
        row = finder.row(fields)
        assert row == compounds_as_defined(forms, fields), doc["title"]
        with_compounds += any(row)
    assert with_compounds > 100


def test_compounds_of_inflected_overlapping_and_cut_short_forms() -> None:
    forms = compound_forms(CONFIG)
    finder = CompoundFinder(forms)
    fields = [
        ["large", "language", "models", "leak", "memory", "memories", "leaks", "大"],
        ["提示", "词", "工程", "和", "大", "语言", "模型", "大", "模型"],
        [],
        ["retrieval", "augmented"],
        ["ai", "agents"],
        ["语言"],
        ["大", "模型"],
        ["大", "模型"],
    ]
    row = finder.row(fields)
    assert row == compounds_as_defined(forms, fields)
    assert row == [
        "larg_languag_model languag_model memori_leak",
        "提示_词 提示_词_工程 大_语言_模型 语言_模型 大_模型",
        "",
        "",
        "ai_agent",
        "",
        "",
        "",  # the last two fields hold no compounds (section, kind)
    ]
    for _ in range(2):  # words classified once are looked up, and give the same
        assert finder.row(fields) == row
