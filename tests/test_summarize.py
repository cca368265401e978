"""Sentence splitting and extractive summaries, on real Chinese and English corpus articles."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import trafilatura

from tidings.stages.summarize import split_sentences, summarize

CHINESE_PAGES = [
    "wechat_fragment_js-content-inner_mdnice.html",
    "wechat_rendered-dom_python-defer_2020.html",
    "wechat_rendered-dom_csdn-hongmeng_2024_huge-inline-scripts.html",
    "juejin_fragment_article-content_mdnice.html",
    "juejin_post_vue3-effect-computed.html",
    "zhihu_fragment_post-richtext_mdnice.html",
    "zhihu_zhuanlan_rl-ppo-basics.html",
    "cnblogs_post_good-looking-hk.html",
    "csdn_blog_js-tips_2020.html",
    "gbk-bytes_declared-utf8_alipay-blog.html",
]
ENGLISH_PAGES = [
    "godev-blog_defer-panic-and-recover_from-gz.html",
    "golang-blog_godoc-documenting-go-code.html",
    "en-blog_stackoverflow_rust.html",
    "en-blog_dropbox_atf.html",
    "en-blog_lemire_simdjson-vs-json.html",
]


@pytest.fixture(scope="module")
def pages(corpus_dir: Path) -> dict[str, str]:
    out = {}
    for name in CHINESE_PAGES + ENGLISH_PAGES:
        text = trafilatura.extract((corpus_dir / "html" / name).read_bytes())
        assert text, name
        out[name] = text
    return out


def _from_text(summary: str, text: str) -> bool:
    """Whether the summary is a run of the text's own sentences, in the text's order, joined by
    nothing or a space (list markers such as "- " may be dropped from a sentence's start)."""
    rest = summary
    for sentence in split_sentences(text):
        for form in (sentence, re.sub(r"^(?:[-*+•·>]|\d{1,2}[.)、])\s+", "", sentence)):
            if rest.startswith(form):
                rest = rest[len(form) :].lstrip(" ")
                break
        if not rest:
            return True
    return False


# --- split_sentences -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("第一句。第二句！第三句？", ["第一句。", "第二句！", "第三句？"]),
        ("他说：“好的。”然后走了。", ["他说：“好的。”", "然后走了。"]),
        ("先这样；再那样。", ["先这样；", "再那样。"]),
        ("真的吗？！当然。", ["真的吗？！", "当然。"]),
        ("然后……就没有然后了。好吧", ["然后……", "就没有然后了。", "好吧"]),
        ("标题一行\n正文第一句。正文第二句。", ["标题一行", "正文第一句。", "正文第二句。"]),
        ("（见附录。）下一句。", ["（见附录。）", "下一句。"]),
        ("Go 1.22 发布了!新特性很多。", ["Go 1.22 发布了!", "新特性很多。"]),
        ("使用 Node.js 和 Vue.js 开发。版本是 v3.4.1。", ["使用 Node.js 和 Vue.js 开发。", "版本是 v3.4.1。"]),
        ("It costs 3.14 dollars. That is cheap.", ["It costs 3.14 dollars.", "That is cheap."]),
        ("See https://go.dev/blog/intro. It explains a lot.", ["See https://go.dev/blog/intro.", "It explains a lot."]),
        ("Use tools, e.g. Go and Rust. They work.", ["Use tools, e.g. Go and Rust.", "They work."]),
        ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
        ("Written by J. R. R. Tolkien. A classic.", ["Written by J. R. R. Tolkien.", "A classic."]),
        ("Is it? Yes! It is.", ["Is it?", "Yes!", "It is."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("if (!done && x != y) return", ["if (!done && x != y) return"]),
        ("Wait... What happened?", ["Wait...", "What happened?"]),
        ("lowercase after dot. continues here", ["lowercase after dot. continues here"]),
        ("", []),
        ("  \n\n  ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_keeps_all_text(pages: dict[str, str]) -> None:
    for name, text in pages.items():
        sentences = split_sentences(text)
        assert sentences, name
        joined = "".join("".join(s.split()) for s in sentences)
        assert joined == "".join(text.split()), name


# --- summarize: real articles ----------------------------------------------------------------


@pytest.mark.parametrize("name", CHINESE_PAGES)
def test_chinese_summary_length_and_verbatim(pages: dict[str, str], name: str) -> None:
    text = pages[name]
    summary = summarize(text)
    assert 80 <= len(summary) <= 200, (name, len(summary), summary)
    assert _from_text(summary, text), (name, summary)


@pytest.mark.parametrize("name", ENGLISH_PAGES)
def test_english_summary_has_three_sentences_from_the_text(pages: dict[str, str], name: str) -> None:
    text = pages[name]
    summary = summarize(text)
    assert 1 <= len(split_sentences(summary)) <= 3, (name, summary)
    assert _from_text(summary, text), (name, summary)  # verbatim, and in the text's order


def test_english_sentence_count_follows_the_option(pages: dict[str, str]) -> None:
    text = pages["en-blog_stackoverflow_rust.html"]
    assert len(split_sentences(summarize(text, english_sentences=1))) == 1
    assert len(split_sentences(summarize(text, english_sentences=5))) == 5


def test_summaries_are_deterministic(pages: dict[str, str]) -> None:
    for text in pages.values():
        assert summarize(text) == summarize(text)


def test_custom_budget(pages: dict[str, str]) -> None:
    text = pages["zhihu_zhuanlan_rl-ppo-basics.html"]
    summary = summarize(text, min_chars=30, max_chars=60)
    assert 0 < len(summary) <= 60
    long = summarize(text, min_chars=250, max_chars=400)
    assert 250 <= len(long) <= 400


def test_title_sentence_is_not_repeated(pages: dict[str, str]) -> None:
    title = "一日一技：在 Python 中实现延迟调用"
    text = title + "\n" + pages["wechat_rendered-dom_python-defer_2020.html"]
    assert title not in summarize(text, title=title)


def test_code_and_urls_are_skipped(pages: dict[str, str]) -> None:
    summary = summarize(pages["cnblogs_post_good-looking-hk.html"])  # a post full of docker commands
    assert "docker run" not in summary and "&&" not in summary
    text = (
        "https://example.com/a/b/c/d/e/f/g/h/i/j/k/l/m/n\n"
        "$ go tool pprof -seconds 30 https://example.com/debug/pprof/profile\n"
        "func main() { fmt.Println(\"hello\") }\n"
        "性能分析是后端工程师的基本功，pprof 能告诉我们 CPU 时间花在了哪里。"
        "火焰图把调用栈按耗时展开，宽度越大的函数越值得优化。"
        "内存分配过多会让垃圾回收占用大量 CPU，这时应该先减少临时对象。"
        "最后，每次优化之后都要重新压测，用数据确认改进确实有效，而不是凭感觉判断。"
    )
    summary = summarize(text)
    assert "pprof -seconds" not in summary and "func main" not in summary and "https://" not in summary
    assert 80 <= len(summary) <= 200


# --- summarize: constructed cases ------------------------------------------------------------


def test_repeated_sentence_appears_once() -> None:
    repeated = "微服务拆分的关键是按业务边界划分，而不是按技术分层。"
    text = "\n".join(
        [
            repeated,
            "很多团队在拆分时只看代码结构，结果服务之间调用链过长，一次请求要经过十几个服务。",
            repeated,
            "数据库也应该随服务拆分，共享数据库会让服务重新耦合在一起。",
            repeated,
            "监控和链路追踪是微服务的基础设施，没有它们就无法定位跨服务的问题。",
            repeated,
        ]
    )
    summary = summarize(text, min_chars=120, max_chars=200)
    assert summary.count(repeated) == 1
    assert len(summary) <= 200


def test_near_repeat_is_skipped() -> None:
    text = (
        "Rust guarantees memory safety without a garbage collector through its ownership model. "
        "Rust guarantees memory safety without any garbage collector thanks to its ownership model. "
        "Cargo makes building, testing and publishing crates simple for every Rust developer. "
        "The borrow checker rejects programs with data races at compile time, not at run time. "
        "Many companies now use Rust for infrastructure where performance and safety both matter."
    )
    summary = summarize(text, english_sentences=3)
    assert not ("without a garbage" in summary and "without any garbage" in summary)
    assert len(split_sentences(summary)) == 3


def test_single_long_sentence_is_cut_at_a_clause() -> None:
    sentence = (
        "这是一个非常长的句子，它描述了分布式系统中的一致性问题，包括副本之间如何同步数据，"
        "网络分区发生时系统应该如何取舍，领导者选举需要多少轮投票，日志复制如何保证顺序，"
        "快照如何压缩历史，成员变更如何安全进行，读请求如何避免读到旧数据，客户端如何重试，"
        "以及在实践中工程师如何通过测试和形式化验证来确认这些性质都真的成立，"
        "还包括时钟漂移、消息乱序、磁盘故障和慢节点这些在生产环境里每天都会遇到的麻烦事，"
        "所以这类系统的设计文档往往比代码本身还要长。"
    )
    assert len(sentence) > 200
    text = sentence + "\n" + sentence  # too long for the budget, so not "short input"
    summary = summarize(text)
    assert len(summary) <= 200
    assert summary.endswith("…")
    assert summary[:-1] in sentence
    assert summary[-2] not in "，、"


def test_sentences_that_overflow_are_passed_over() -> None:
    long = "长句" * 100 + "。"
    shorts = [
        "缓存穿透是指查询根本不存在的数据，请求每次都落到数据库上。",
        "布隆过滤器可以在访问存储之前挡住大部分不存在的键。",
        "缓存击穿发生在热点键过期的瞬间，大量并发请求同时重建缓存。",
        "互斥锁或者逻辑过期能让只有一个请求去回源加载数据。",
        "雪崩则是大量键同时失效，给过期时间加上随机抖动就能缓解。",
    ]
    text = long + "".join(shorts)
    summary = summarize(text, min_chars=80, max_chars=200)
    assert long not in summary
    assert 80 <= len(summary) <= 200


def test_empty_and_short_input() -> None:
    assert summarize("") == ""
    assert summarize("   \n ") == ""
    assert summarize("  Go 1.22 发布了。\n 新增 range over int。 ") == "Go 1.22 发布了。 新增 range over int。"
    assert summarize("Just one sentence here.") == "Just one sentence here."


# --- the shared text helpers summaries are built on ---------------------------------------------


def test_tokenize_mixed_text() -> None:
    from tidings.textutil import tokenize

    tokens = tokenize("使用Go1.22的新特性，Node.js 和 C++ 以及 gpt-4o！")
    assert {"go1.22", "node.js", "c++", "gpt-4o", "使用", "特性"} <= set(tokens)
    assert "，" not in tokens and "！" not in tokens
    assert tokenize("The quick fox, and the dog.", drop_stopwords=True) == ["quick", "fox", "dog"]
    assert tokenize("") == []


def test_user_words_stay_whole() -> None:
    from tidings.textutil import add_user_words, tokenize

    assert "鸿蒙next" not in tokenize("我们在鸿蒙NEXT上开发")
    add_user_words(["鸿蒙NEXT", "  "])
    assert "鸿蒙next" in tokenize("我们在鸿蒙NEXT上开发")


def test_language_detection() -> None:
    from tidings.textutil import is_chinese

    assert is_chinese("本文作者介绍了如何使用LLaMA Factory的Agent Tuning功能训练一个定制的LLM Agent。")
    assert not is_chinese("Rust has been the most loved language for four years in a row.")
    assert not is_chinese("")


def test_jieba_loads_quietly() -> None:
    import subprocess
    import sys

    code = "from tidings.textutil import tokenize; assert tokenize('结巴分词不应该打印日志')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr == "" and result.stdout == ""


# --- faster steps, same results -----------------------------------------------------------------


def _old_similarity_matrix(token_lists: list[list[str]]) -> Any:
    import numpy as np

    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, toks in enumerate(token_lists):
        for t in toks:
            rows.append(i)
            cols.append(vocab.setdefault(t, len(vocab)))
    n = len(token_lists)
    if not vocab:
        return np.zeros((n, n))
    tf = np.zeros((n, len(vocab)))
    np.add.at(tf, (np.asarray(rows), np.asarray(cols)), 1.0)
    tf = np.log1p(tf)
    norms = np.linalg.norm(tf, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit = tf / norms
    sim = unit @ unit.T
    np.fill_diagonal(sim, 0.0)
    return np.clip(sim, 0.0, 1.0)


def _old_pagerank(weights: Any, personalization: Any, iterations: int = 100) -> Any:
    import numpy as np

    n = weights.shape[0]
    p = personalization / personalization.sum()
    out = weights.sum(axis=1)
    dangling = out == 0
    transition = np.divide(weights, out[:, None], out=np.zeros_like(weights), where=~dangling[:, None])
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        new = 0.85 * (rank @ transition + rank[dangling].sum() * p) + (1 - 0.85) * p
        if np.abs(new - rank).sum() < 1e-9:
            return new
        rank = new
    return rank


def _old_fast_tokenize(text: str, drop_stopwords: bool) -> list[str]:
    from tidings.textutil import (
        _COMPOUND_RE,
        _WORD_CHAR_RE,
        LATIN_WORD_RE,
        STOPWORDS,
        _get_fast_segmenter,
        has_cjk,
    )

    if not text:
        return []
    text = unicodedata.normalize("NFKC", text)
    tokens: list[str] = []
    if has_cjk(text):
        cut = _get_fast_segmenter().cut
        pos = 0
        for m in LATIN_WORD_RE.finditer(text):
            if not _COMPOUND_RE.search(m.group()):
                continue
            tokens.extend(w for w in cut(text[pos : m.start()]) if _WORD_CHAR_RE.search(w))
            tokens.append(m.group())
            pos = m.end()
        tokens.extend(w for w in cut(text[pos:]) if _WORD_CHAR_RE.search(w))
    else:
        tokens = LATIN_WORD_RE.findall(text)
    tokens = [t.lower() for t in tokens]
    return [t for t in tokens if t.lower() not in STOPWORDS] if drop_stopwords else tokens


def test_faster_steps_give_the_old_results(pages: dict[str, str]) -> None:
    """The steps made cheaper (counting, tokens, the similarity matrix) give bit-for-bit what they
    gave before, on every sentence of the corpus pages; PageRank, now solved rather than iterated,
    gives the fixed point the iteration stopped near (within its stopping tolerance)."""
    from collections import Counter

    import numpy as np

    from tidings.stages.summarize import _pagerank, _similarity_matrix
    from tidings.textutil import _WORD_CHAR_RE, CJK_CHAR_RE, cjk_ratio, count_word_chars, fast_tokenize

    for text in pages.values():
        sentences = split_sentences(text)[:600] + ["Node.js 和 C++ 的 gpt-4o！", "İstanbul ΣΟΦΙΑ ＡＢＣ…", "，。"]
        for s in sentences:
            assert count_word_chars(s) == len(_WORD_CHAR_RE.findall(s))
            assert fast_tokenize(s, drop_stopwords=True) == _old_fast_tokenize(s, True)
            assert fast_tokenize(s) == _old_fast_tokenize(s, False)
        cjk = len(CJK_CHAR_RE.findall(text))
        latin = len(re.findall(r"[A-Za-z\u00c0-\u024f]", text))
        assert cjk_ratio(text) == (cjk / (cjk + latin) if cjk + latin else 0.0)
        tokens = [fast_tokenize(s, drop_stopwords=True) for s in sentences]
        tokens = [t for t in tokens if t]
        old = _old_similarity_matrix(tokens)
        new = _similarity_matrix([Counter(t) for t in tokens])
        assert np.array_equal(old, new)
        personalization = np.ones(len(tokens))
        _assert_same_rank(_pagerank(new, personalization), _old_pagerank(old, personalization))
    # A sentence sharing no word with any other is a dangling node of the graph.
    sim = _similarity_matrix([Counter(["a", "b"]), Counter(["b"]), Counter(["c"])])
    _assert_same_rank(_pagerank(sim, np.ones(3)), _old_pagerank(sim, np.ones(3)))


def _assert_same_rank(solved: Any, iterated: Any) -> None:
    import numpy as np

    # The power method stops once a step moves the ranks by < 1e-9 in all: it is that close to the fixed point.
    np.testing.assert_allclose(solved, iterated, rtol=0, atol=1e-8)
    assert abs(solved.sum() - 1) < 1e-12
    # and wherever the iteration told two sentences apart by more than its tolerance, the order is the same
    for i in range(len(solved)):
        for j in range(len(solved)):
            if iterated[i] - iterated[j] > 1e-8:
                assert solved[i] > solved[j]


def test_has_prose_stopping_early_judges_as_the_whole_count(pages: dict[str, str], corpus_dir: Path) -> None:
    """has_prose stops at the first paragraph of prose; it must judge every text as counting all of its
    prose sentences does, the code-only corpus page included (no prose: the pipeline sets it aside)."""
    from tidings.stages.extract import extract
    from tidings.stages.summarize import has_prose, prose_sentences

    def whole_count(text: str) -> bool:
        prose = sum(len(s) for s in prose_sentences(text))
        return prose >= 60 or prose >= 0.1 * len(text.strip())

    code_only = extract((corpus_dir / "html" / "cnblogs_post_xu-tao-week13.html").read_bytes(), None).text
    texts = [*pages.values(), code_only, "}\n};\n", "", "短句。\n" * 3, "x = 1;\n" * 50 + "一句话说明这段代码做什么。"]
    texts += [path.read_text(encoding="utf-8") for path in sorted((corpus_dir / "digests").rglob("*.md"))[:40]]
    for text in texts:
        assert has_prose(text) == whole_count(text), text[:80]
    assert not has_prose(code_only) and all(has_prose(text) for text in pages.values())


def test_a_sentence_that_announces_what_follows_is_not_a_summary() -> None:
    """"…calls out to rustdoc like this:" was picked while the command after it was not (Rust docs, new-user
    walk): a sentence ending in a colon says nothing without what it introduces."""
    text = ("Cargo also has integration with rustdoc to make it easier to generate docs for a whole crate. "
            "Internally, cargo doc calls out to rustdoc like this:\n\n"
            "The tool reads the crate's source and writes one HTML page per item, with search built in. "
            "Its output can be tested too, because code examples in the docs are compiled and run. "
            "Documentation tests keep examples and code from drifting apart over the years.")
    assert not summarize(text, english_sentences=3).rstrip().endswith(":")


def test_a_rust_macro_mid_sentence_does_not_end_it() -> None:
    """Rust names macros with a "!" ("macro_rules!", "println!"); in the new-user walk "Macros are created
    using the macro_rules! macro." became the fragment "Macros are created using the macro_rules!" in a
    summary. An English sentence after "!" or "?" starts with a capital; one that does still splits."""
    assert split_sentences("Macros are created using the macro_rules! macro. So why are macros useful?") == [
        "Macros are created using the macro_rules! macro.",
        "So why are macros useful?",
    ]
    assert split_sentences("It works! Does it? Yes!") == ["It works!", "Does it?", "Yes!"]
    assert split_sentences("真的吗？是的！") == ["真的吗？", "是的！"]


def test_a_condition_opening_a_block_is_code_not_a_summary_sentence() -> None:
    """Rust by Example's panic page: 'if beverage == "lemonade" { panic!' ended a summary in the walk."""
    from tidings.stages.summarize import _looks_like_code

    # The sentence splitter cuts the line after "panic!": the piece before it must read as code.
    assert split_sentences('if beverage == "lemonade" { panic!("AAAaaaaa!!!!"); }')[0] == 'if beverage == "lemonade" { panic!'
    assert _looks_like_code('if beverage == "lemonade" { panic!')
    assert _looks_like_code("while n != 0 { n -= 1")
    assert not _looks_like_code("The operator == compares two values, and != is its negation.")
    text = (
        "The simplest error handling mechanism we will see is panic. It prints an error message, starts "
        "unwinding the stack, and usually exits the program.\n"
        'if beverage == "lemonade" { panic!("AAAaaaaa!!!!"); }\n'
        "The first call to drink works. The second call panics, and the program ends there.\n"
    )
    assert "lemonade" not in summarize(text, title="panic")


def test_an_english_summary_does_not_open_mid_argument() -> None:
    """A sentence that leans on the one before it ("However, …", "This will …") ranks below one that stands
    alone: Rust by Example's macros page was summarized "However, unlike macros in C …" in the walk.
    The text's first sentence may lean on nothing, so it keeps its weight."""
    text = (
        "Welcome to the tour of this chapter of the book. "
        "However, Rust macros are expanded into abstract syntax trees, so Rust macros avoid the precedence bugs "
        "of C macros. "
        "Rust macros are written with macro_rules, and Rust macros expand into abstract syntax trees at compile "
        "time. "
        "They give Rust macros hygiene, so Rust macros never capture the names of the code around them."
    )
    summary = summarize(text, title="Rust macros", english_sentences=2)
    assert summary.startswith("Rust macros are written"), summary


def test_an_english_line_ending_in_a_call_or_a_bracket_label_is_not_a_sentence() -> None:
    from tidings.stages.summarize import _is_junk

    assert _is_junk("Ignore the failed items with filter_map()", False, 600)
    assert _is_junk("Python 3.6.5 (default, May 11 2018, 13:30:17)", False, 600)
    # A sentence closed inside its brackets is a sentence.
    assert not _is_junk("Dagger can run in any CI environment (as long as that CI can run a container.)", False, 600)
    assert not _is_junk("It wraps your pipeline steps and actions into a container (see the guide!)", False, 600)


def test_a_short_chapter_is_summarized_by_what_follows_its_title() -> None:
    """The embedded Rust book's "Design Patterns" page is its heading and one sentence; the summary read
    "Design Patterns This chapter aims …", repeating the title the digest prints beside it."""
    text = "Design Patterns\n\nThis chapter aims to collect various useful design patterns for embedded Rust."
    assert summarize(text, title="Design Patterns") == (
        "This chapter aims to collect various useful design patterns for embedded Rust."
    )
    assert summarize("Design Patterns", title="Design Patterns") == "Design Patterns"  # nothing else to say
    # Where nothing ranks (labels only), the fallback leaves the title out too.
    assert summarize("Rust 2024\nInfo\nRFC #3501\nRelease version 1.85.0", title="Rust 2024") == (
        "Info RFC #3501 Release version 1.85.0"
    )


def test_a_line_ending_in_an_article_goes_on_into_a_capitalised_word() -> None:
    """Cargo's book wraps "If the [workspace] section is added to a" / "Cargo.toml that already defines
    a [package], …": the new-user walk's summary began "Cargo.toml that already defines …". A line
    that ends in an article, preposition or conjunction is never a sentence's end, so it joins the next
    line whatever its case; a line ending in any other word before a capital stays apart (a heading)."""
    text = ("A workspace is a collection of one or more packages, called workspace members, that are managed "
            "together.\nRoot package\nIf the [workspace] section is added to a\nCargo.toml that already defines a "
            "[package], the package is the root package of the workspace. The workspace root is the directory "
            "where the workspace's Cargo.toml is located.")
    summary = summarize(text, title="Workspaces")
    assert "If the [workspace] section is added to a Cargo.toml that already defines a [package]" in summary
    assert not summary.startswith("Cargo.toml")
    assert "Root package If" not in summary


def test_a_quoted_exclamation_followed_by_a_comma_does_not_end_the_sentence() -> None:
    """The Rust Reference's method-call page: 'The below code will print “In trait impl!”, because
    &self methods are looked up first, …' was cut after the quote, and the new-user walk's summary
    held the fragment ', because &self methods …'. No sentence starts with a comma."""
    text = "The below code will print “In trait impl!”, because &self methods are looked up first. Next one."
    assert split_sentences(text) == [
        "The below code will print “In trait impl!”, because &self methods are looked up first.", "Next one."]
    assert split_sentences("He said “Stop!” Then he left.") == ["He said “Stop!”", "Then he left."]
