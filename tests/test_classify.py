"""The keyword classifier: unit rules, and accuracy on the real sectioned digests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tidings.config import DEFAULT_SECTIONS, FALLBACK_SECTION, Config, SectionConfig
from tidings.stages.classify import Classifier, KeywordClassifier, Prediction

AI, GO, BACKEND, FRONTEND = (s["name"] for s in DEFAULT_SECTIONS)


@pytest.fixture(scope="module")
def clf() -> KeywordClassifier:
    return KeywordClassifier([SectionConfig(**s) for s in DEFAULT_SECTIONS], FALLBACK_SECTION)


def _section(clf: KeywordClassifier, title: str | None, summary: str | None = None, url: str | None = None) -> str:
    return clf.predict(title, summary, None, url).section


# --- unit rules ----------------------------------------------------------------------------


def test_is_a_classifier(clf: KeywordClassifier) -> None:
    assert isinstance(clf, Classifier)
    p = clf.predict("Go 泛型实践", None, None, None)
    assert p == Prediction(GO, p.confidence, "rules")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Google 发布新的搜索界面", FALLBACK_SECTION),  # "Go" is not in "Google"
        ("GCC 14 的新优化", FALLBACK_SECTION),  # "GC" is not in "GCC"
        ("Mongo 入门", FALLBACK_SECTION),  # "Go" does not match inside "Mongo"
        ("JavaScript 闭包", FRONTEND),  # "Java" is not in "JavaScript"
        ("Go1.22 新特性：range over int", GO),  # digits may follow a keyword
        ("如何优雅地处理 Goroutines 中的错误", GO),  # plural
        ("深入理解 Go 的 GC", GO),
        ("golang 调度器", GO),  # case-insensitive
        ("AI大模型落地实践", AI),  # ASCII keyword touching CJK text
        ("微软 GraphRAG 开源", AI),  # camel-case boundary: RAG in GraphRAG
        ("vLLM 推理加速", AI),
        ("k8s 集群升级踩坑", GO),
        ("Cloud  Native 的十年", GO),  # multi-word keyword, any white space
        ("MySQL 索引下推", BACKEND),
        ("Vue3 响应式原理", FRONTEND),
        ("神经网络入门", AI),  # longest match: "神经网络" is AI, its "网络" isn't back-end
    ],
)
def test_keyword_matching(clf: KeywordClassifier, title: str, expected: str) -> None:
    assert _section(clf, title) == expected


def test_fallback_has_zero_confidence(clf: KeywordClassifier) -> None:
    for p in (
        clf.predict(None, None, None, None),
        clf.predict("", "", "", ""),
        clf.predict("依枫在蚂蚁的四周年", "回顾这四年的成长。", None, None),
    ):
        assert p.section == FALLBACK_SECTION and p.confidence == 0.0 and p.method == "rules"


def test_min_score(clf: KeywordClassifier) -> None:
    sections = [SectionConfig(**s) for s in DEFAULT_SECTIONS]
    text_only = ("周末随笔", None, "顺便提一句 Redis。", None)
    assert KeywordClassifier(sections, FALLBACK_SECTION, min_score=0.5).predict(*text_only).section == BACKEND
    assert clf.predict(*text_only).section == FALLBACK_SECTION  # one mention deep in the text isn't enough


def test_title_outweighs_summary_outweighs_text(clf: KeywordClassifier) -> None:
    assert clf.predict("Redis 持久化", "顺带介绍了 React 的用法", None, None).section == BACKEND
    assert clf.predict("一篇周报", "介绍 Kubernetes 调度", "正文反复提到 React React", None).section == GO
    scores = clf.scores("Redis", "Redis", "Redis", None)
    assert scores[BACKEND] == pytest.approx(3.0 + 1.5 + 0.5)


def test_confidence(clf: KeywordClassifier) -> None:
    clear = clf.predict("LLM 大模型微调与 RAG", "用 LoRA 微调 Llama", None, None)
    mixed = clf.predict("用 Go 写一个 LLM 网关", None, None, None)
    weak = clf.predict("一篇随笔", "提到了 Redis", None, None)
    for p in (clear, mixed, weak):
        assert 0.0 <= p.confidence <= 1.0
    assert clear.section == AI
    assert clear.confidence > mixed.confidence > 0
    assert clear.confidence > weak.confidence > 0


def test_ties_go_to_the_first_configured_section(clf: KeywordClassifier) -> None:
    assert clf.predict("Redis 与 React", None, None, None).section == BACKEND  # back-end is listed first


def test_domain_hints(clf: KeywordClassifier) -> None:
    assert _section(clf, "Defer, Panic, and Recover", url="https://go.dev/blog/defer-panic-and-recover") == GO
    assert _section(clf, "Godoc: documenting code", url="https://blog.golang.org/godoc") == GO  # parent domain
    assert _section(clf, "Some paper", url="https://arxiv.org/abs/2303.08774") == AI
    assert _section(clf, "Some post", url="https://notgo.dev/x") == FALLBACK_SECTION
    assert _section(clf, "Some post", url="not a url [") == FALLBACK_SECTION
    # a strong title beats a hint
    assert _section(clf, "React Server Components 与 Vue 对比", url="https://go.dev/x") == FRONTEND


def test_custom_sections_and_hints() -> None:
    sections = [SectionConfig(name="DB", keywords=["Postgres", "索引"]), SectionConfig(name="Web", keywords=["CSS"])]
    clf = KeywordClassifier(sections, "Misc")  # default hints name sections that don't exist: ignored
    assert clf.predict("Postgres 索引", None, None, "https://go.dev/x").section == "DB"
    assert clf.predict("随便", None, None, "https://go.dev/x").section == "Misc"
    hinted = KeywordClassifier(sections, "Misc", domain_hints={"web.dev": "Web"})
    assert hinted.predict("随便", None, None, "https://web.dev/articles/x").section == "Web"
    assert KeywordClassifier([], "Misc").predict("Go", None, None, None) == Prediction("Misc", 0.0, "rules")


# --- accuracy on the real sectioned digests --------------------------------------------------

# `[《title》](url)。summary` or bare `[title](url)`; tolerates the `[[《…》](…)` typo and `[# title](url)`.
ITEM_RE = re.compile(r"^\[{1,2}(?P<title>.+?)\]\((?P<url>https?://[^)\s]+)\)\s*(?:。\s*(?P<summary>.*))?$")


def _labelled_items(corpus_dir: Path, since: str) -> list[tuple[str, str, str, str]]:
    aliases = Config().classify.aliases
    items = []
    for md in sorted((corpus_dir / "digests" / "blog").glob("*/index.md")):
        if md.parent.name < since:
            continue
        section, fenced = None, False
        for line in md.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                fenced = not fenced
            elif fenced:
                continue
            elif line.startswith("## "):
                name = line[3:].strip()
                section = aliases.get(name, name)
            elif section and (m := ITEM_RE.match(line.strip())):
                title = m["title"].strip().strip("#").strip().strip("《》")
                items.append((section, title, m["summary"] or "", m["url"]))
    return items


def _accuracy(clf: KeywordClassifier, items: list[tuple[str, str, str, str]]) -> tuple[float, float]:
    preds = [clf.predict(title, summary, None, url) for _, title, summary, url in items]
    correct = [p.section == item[0] for p, item in zip(preds, items, strict=True)]
    confident = [ok for ok, p in zip(correct, preds, strict=True) if p.confidence >= 0.5]
    return sum(correct) / len(items), sum(confident) / len(confident)


def test_accuracy_on_four_section_digests(corpus_dir: Path, clf: KeywordClassifier) -> None:
    items = _labelled_items(corpus_dir, "2023-12-24")
    assert len(items) == 613
    assert {s for s, *_ in items} == {AI, GO, BACKEND, FRONTEND}
    accuracy, confident_accuracy = _accuracy(clf, items)
    # Measured with the default keyword lists: 0.752 overall, 0.962 where confidence >= 0.5.
    assert accuracy >= 0.72
    assert confident_accuracy >= 0.92


def test_accuracy_on_all_sectioned_digests(corpus_dir: Path, clf: KeywordClassifier) -> None:
    # 2023-07-30 … 2023-11-12 used "⭐️ Golang 相关" and had no back-end section; the alias maps it.
    items = _labelled_items(corpus_dir, "2023-07-30")
    assert len(items) == 762  # the README's count of section-labelled link items
    accuracy, confident_accuracy = _accuracy(clf, items)
    # Measured: 0.714 overall, 0.948 where confidence >= 0.5.
    assert accuracy >= 0.68
    assert confident_accuracy >= 0.9


# --- the anchored keyword search finds what a scan of every pattern found ------------------------


class _ScanningClassifier(KeywordClassifier):
    """The keyword rules as they matched before: every pattern scans the whole field, and each
    match is checked against every claimed span."""

    def _field_scores(self, value: str, weight: float, scores: list[float]) -> None:
        import math

        from tidings.stages.classify import _MAX_HITS, _fold

        folded = _fold(value)
        lowered = folded.lower()
        matches: list[tuple[int, int, int]] = []
        for rule in self._rules:
            if rule.needle not in lowered:
                continue
            matches.extend((m.start(), m.end(), rule.section) for m in rule.pattern.finditer(folded))
        matches.sort(key=lambda m: (-(m[1] - m[0]), m[0], m[2]))
        claimed: list[tuple[int, int]] = []
        hits: dict[int, int] = {}
        for start, end, section in matches:
            if any(start >= a and end <= b for a, b in claimed):
                continue
            claimed.append((start, end))
            hits[section] = hits.get(section, 0) + 1
        for section, n in hits.items():
            scores[section] += weight * (1 + math.log(min(n, _MAX_HITS)))


def test_scores_equal_the_scanning_rules_on_the_corpus(corpus_dir: Path, clf: KeywordClassifier) -> None:
    scanning = _ScanningClassifier([SectionConfig(**s) for s in DEFAULT_SECTIONS], FALLBACK_SECTION)
    items = _labelled_items(corpus_dir, "2023-07-30")
    texts = [path.read_text(encoding="utf-8") for path in sorted(corpus_dir.rglob("*.md"))]
    # Letters that case-fold outside ASCII (the Kelvin sign, long s, dotted I), keywords glued to
    # each other, camel case, plurals and overlapping matches.
    tricky = ["\u212a8s ſpring İnfra GOLANG", "GraphRAGvLLMs LLMs大模型", "Go语言Goroutines go1.22 Google Mongo",
              "神经网络网络 Cloud   Native cloud native", "JavaScriptJava Vue3 vue", "ΣΟΦΙΑ Rust rustc rusts"]
    for _, title, summary, url in items:
        assert clf.scores(title, summary, None, url) == scanning.scores(title, summary, None, url), title
    for text in texts + tricky:
        for field in (text, text[:300]):
            assert clf.scores(field, field, field, None) == scanning.scores(field, field, field, None), field[:80]


def test_a_lexers_tokens_are_not_an_ai_article(clf: KeywordClassifier) -> None:
    """The Rust Reference's "Procedural macros" page (new-user walk) says "token" thirty times, as a
    lexer does, and was filed under AI: "token" alone names lexer, auth and LLM tokens alike, and is not
    an AI keyword; the page's Rust is what files it."""
    text = ("Procedural macros allow creating syntax extensions as execution of a function. A procedural macro "
            "in Rust operates on a TokenStream: the token trees of its input. Each token is an identifier, a "
            "literal or a punctuation token, and the macro returns a new stream of token trees. ") * 6
    prediction = clf.predict("Procedural macros", text[:200], text, None)
    assert prediction.section == "⭐️ Go & 云原生 & Rust 相关", prediction
    # An article about an LLM's tokens still is one: its other words say so.
    llm = "大模型推理的 token 成本越来越低，长上下文和 KV cache 让每个 token 更便宜。"
    assert clf.predict("大模型的 token 成本", llm, llm, None).section == "🌟 AI 相关"


def test_rust_tooling_words_file_a_clippy_page_under_rust(clf: KeywordClassifier) -> None:
    """Clippy's book (new-user walk, local pages without a host to hint at Rust) was filed under 其他
    for seven of twelve pages: they say rustc, Clippy and crate, none of them a keyword then."""
    text = ("EarlyLintPass works only on the Abstract Syntax Tree level, while LateLintPass has type information "
            "from rustc. Clippy provides attributes that can be applied to items in a 3rd party crate. ")
    prediction = clf.predict("Lint passes", text, text, None)
    assert prediction.section == "⭐️ Go & 云原生 & Rust 相关", prediction
