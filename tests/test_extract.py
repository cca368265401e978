"""Decoding and extraction, on every saved page of the corpus (one test case per file) and on small
made-up inputs for the edge cases."""

from __future__ import annotations

import csv
import functools
import importlib.util
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trafilatura

from tidings.errors import ExtractError
from tidings.stages.extract import (
    Extracted,
    NoArticleError,
    _choose,
    _doubtful,
    _parse,
    decode_html,
    detect_language,
    extract,
)

CORPUS_HTML = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "html"


def _rows() -> list[dict[str, str]]:
    sources = CORPUS_HTML / "SOURCES.tsv"
    if not sources.is_file():
        return []
    with sources.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = _rows()
# Pages SOURCES.tsv describes as having no article: an error page and two mostly-navigation home pages.
NO_ARTICLE = {
    "wechat_error-page_link-expired_no-body.html",
    "gb2312_baidu-home_2010_mostly-navigation.html",
    "juejin_homepage_mostly-navigation.html",
}
ENGLISH_SITES = {"github.com", "go.dev", "blog.golang.org"}
# Words the body must contain: proof that the text is the article, not the page's chrome.
BODY_SAYS = {
    "wechat_static_suide-veterans_2022.html": "最美退役军人",
    "wechat_rendered-dom_galaxy-s20_2020.html": "骁龙 865",
    "wechat_static-2018_video-iframe.html": "石榴籽",
    "wechat_fragment_js-content-inner_mdnice.html": "DOM",
    "gbk-bytes_declared-utf8_alipay-blog.html": "孤独",
    "gb2312_kuqin_sun-oracle_2009.html": "甲骨文",
    "utf8-bytes_declared-gb2312_qq-tech.html": "DeepMind",
    "csdn_blog_noip2013-truck_title-mismatch.html": "Kruskal",
    "cnblogs_post_xu-tao-week13.html": "registerForm",
    "juejin_post_vue3-effect-computed.html": "effect",
    "zhihu_zhuanlan_rl-ppo-basics.html": "李宏毅",
    "en-blog_dropbox_atf.html": "async task framework",
    "en-news_scmp_alibaba-luxury_huge-next-data-script.html": "luxury",
    "godev-blog_defer-panic-and-recover_from-gz.html": "recover",
}
AUTHORS = {
    "wechat_static_suide-veterans_2022.html": "掌上绥德",
    "wechat_rendered-dom_galaxy-s20_2020.html": "爱否科技",
    "wechat_rendered-dom_python-defer_2020.html": "未闻Code",
    "wechat_rendered-dom_csdn-hongmeng_2024_huge-inline-scripts.html": "CSDN",
    "wechat_static-2018_news-brief.html": "华商报",
    "wechat_static-2018_video-iframe.html": "共产党员",
    "csdn_blog_js-tips_2020.html": "前端小智",
    "cnblogs_post_good-looking-hk.html": "好看的hk",
}


@functools.cache
def extract_file(name: str) -> Extracted | NoArticleError:
    """Extract a corpus page as a local file would be (no URL host); once per test run."""
    try:
        return extract((CORPUS_HTML / name).read_bytes(), name)
    except NoArticleError as err:
        return err


def norm(text: str | None) -> str:
    return "".join(unicodedata.normalize("NFKC", text or "").split()).lower()


def title_matches(got: str | None, want: str) -> bool:
    """The acceptance check's rule: equal, or one contains the other (the shorter at least 4 chars)."""
    g, w = norm(got), norm(want)
    return bool(g) and (g == w or (len(g) >= 4 and g in w) or w in g)


def test_the_corpus_is_there() -> None:
    assert len(ROWS) == 30, f"expected the 30 saved pages of {CORPUS_HTML}"
    assert NO_ARTICLE <= {r["file"] for r in ROWS}


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_page(row: dict[str, str]) -> None:
    name, want = row["file"], row["expected_title"]
    page = extract_file(name)
    if name in NO_ARTICLE:
        assert isinstance(page, NoArticleError), f"got an article: {page}"
        err = page
        assert err.reason == "no_article"
        assert "article" in str(err)
        if want:
            # The page has no article, but the record still knows what the page is called.
            assert title_matches(err.title, want), f"title {err.title!r}, want {want!r}"
        return
    assert isinstance(page, Extracted), f"no article: {page}"
    if want:
        assert title_matches(page.title, want), f"title {page.title!r}, want {want!r}"
        assert not page.title_derived
    else:
        # A fragment names no title: it gets its first sentence, marked as derived, never its path.
        assert page.title and page.title_derived
        assert name not in page.title and "/" not in page.title and "html" not in page.title
        assert norm(page.title) in norm(page.text)
    assert len(page.text) >= 80
    language = "en" if name.startswith("en-") or row["site"] in ENGLISH_SITES else "zh"
    assert page.language == language
    if name in BODY_SAYS:
        assert BODY_SAYS[name] in page.text
    if name in AUTHORS:
        assert AUTHORS[name] in (page.author or "")
    assert "\ufffd" not in page.title if page.title else True  # no mojibake from a wrong charset


def test_corpus_title_score() -> None:
    """The acceptance figure: titled pages (26) that get the title a reader sees; the bar is 90%."""
    ok = tried = 0
    for row in ROWS:
        if not row["expected_title"]:
            continue
        tried += 1
        page = extract_file(row["file"])
        ok += title_matches(page.title, row["expected_title"])
    assert tried == 26
    assert ok >= 0.9 * tried, f"{ok}/{tried}"


def test_site_adapters_work_with_a_url_too() -> None:
    content = (CORPUS_HTML / "wechat_static_suide-veterans_2022.html").read_bytes()
    page = extract(content, "https://mp.weixin.qq.com/s/abcdef")
    assert page.title == "绥德：33名退役军人被表彰"
    assert page.author == "掌上绥德"
    assert page.site_name == "微信公众平台"
    assert page.published_at == datetime.fromtimestamp(1659274471, tz=UTC)


def test_wechat_error_page_says_what_wechat_said() -> None:
    content = (CORPUS_HTML / "wechat_error-page_link-expired_no-body.html").read_bytes()
    with pytest.raises(NoArticleError) as info:
        extract(content, "https://mp.weixin.qq.com/s/expired")
    assert "链接已过期" in str(info.value)


def test_navigation_text_is_never_returned_as_an_article() -> None:
    content = (CORPUS_HTML / "juejin_homepage_mostly-navigation.html").read_bytes()
    with pytest.raises(NoArticleError) as info:
        extract(content, "https://juejin.cn/")
    assert info.value.title == "稀土掘金"
    assert "links" in str(info.value)


# --- decoding ------------------------------------------------------------------------------------


def test_valid_utf8_beats_a_wrong_gb2312_declaration() -> None:
    content = (CORPUS_HTML / "utf8-bytes_declared-gb2312_qq-tech.html").read_bytes()
    assert b"charset=gb2312" in content.lower()
    assert "DeepMind新电脑已可利用记忆自学" in decode_html(content, "text/html; charset=gb2312")


def test_gbk_bytes_declared_utf8_are_decoded_as_gbk() -> None:
    content = (CORPUS_HTML / "gbk-bytes_declared-utf8_alipay-blog.html").read_bytes()
    assert "阿里巴巴：制造孤独的CEO" in decode_html(content)
    assert "阿里巴巴：制造孤独的CEO" in decode_html(content, "text/html; charset=UTF-8")


@pytest.mark.parametrize("name", ["gb2312_kuqin_sun-oracle_2009.html", "gb2312_baidu-home_2010_mostly-navigation.html"])
def test_raw_gb2312_pages(name: str) -> None:
    text = decode_html((CORPUS_HTML / name).read_bytes())
    assert "\ufffd" not in text
    assert ("甲骨文" in text) or ("百度一下" in text)


def test_a_gb2312_label_is_read_as_gb18030() -> None:
    # 镕 is a GBK character outside GB2312: a strict GB2312 decoder fails on it, browsers do not.
    body = '<meta charset="gb2312"><title>朱镕基</title><p>喆</p>'.encode("gbk")
    assert "朱镕基" in decode_html(body)
    assert "喆" in decode_html(body, "text/html; charset=GB2312")


def test_header_charset_comes_before_meta() -> None:
    body = '<meta charset="iso-8859-1"><p>Grüße, “quoted”</p>'.encode("cp1252")
    assert "Grüße, “quoted”" in decode_html(body)  # Latin-1 labels are windows-1252
    koi8 = '<meta charset="utf-8"><p>Привет</p>'.encode("koi8-r")
    assert "Привет" in decode_html(koi8, "text/html; charset=koi8-r")


def test_undeclared_gbk_is_detected() -> None:
    body = ("<html><body><p>" + "这是一个没有声明编码的中文网页，内容是关于网络爬虫和字符编码的讨论。" * 5 + "</p></body></html>").encode("gbk")
    assert "没有声明编码" in decode_html(body)


def test_boms_and_truncated_utf8() -> None:
    assert decode_html(b"\xef\xbb\xbf<p>\xe4\xb8\xad</p>") == "<p>中</p>"
    assert decode_html("<p>中</p>".encode("utf-16")) == "<p>中</p>"
    truncated = "<p>中文".encode()[:-1]  # cut inside the last character
    assert decode_html(truncated) == "<p>中"


# --- edge cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"   \n\t ", ""], ids=["bytes", "whitespace", "str"])
def test_empty(content: bytes | str) -> None:
    with pytest.raises(ExtractError) as info:
        extract(content, "http://example.org/e")
    assert info.value.reason == "empty"


@pytest.mark.parametrize(("content", "content_type"), [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", None),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", None),
    (b"<html>\x00\x00\x00 binary junk", None),
    (b"<html><body>looks like html</body></html>", "image/png"),
    (b"GIF89a....", "image/gif"),
], ids=["pdf", "png", "jpeg", "nul-bytes", "image-type", "gif"])
def test_binary(content: bytes, content_type: str | None) -> None:
    with pytest.raises(ExtractError) as info:
        extract(content, "http://example.org/b", content_type)
    assert info.value.reason == "binary"


def test_a_page_of_links_is_no_article() -> None:
    links = "".join(f'<li><a href="/p/{i}">Some post title number {i}</a></li>' for i in range(40))
    html = f"<html><head><title>My Site</title></head><body><ul>{links}</ul></body></html>"
    with pytest.raises(NoArticleError) as info:
        extract(html, "https://example.org/")
    assert info.value.title == "My Site"


def test_an_article_inside_heavy_navigation_is_still_an_article() -> None:
    nav = "".join(f'<li><a href="/c/{i}">Category link number {i:03d}</a></li>' for i in range(300))
    prose = "".join(f"<p>Sentence {i} of a long article that explains one thing at length and in order.</p>"
                    for i in range(30))
    html = (f"<html><head><title>Long Read - Portal</title></head><body><nav><ul>{nav}</ul></nav>"
            f"<article><h1>Long Read</h1>{prose}</article></body></html>")
    page = extract(html, "https://portal.example.org/long-read")
    assert page.title == "Long Read"
    assert "Sentence 17 of a long article" in page.text
    assert "Category link number" not in page.text


def test_an_error_page_is_no_article() -> None:
    with pytest.raises(NoArticleError):
        extract(b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1>"
                b"<hr><center>nginx</center></body></html>", "https://example.org/x")


def test_a_plain_article() -> None:
    body = "".join(f"<p>Paragraph {i} of the story, with enough words in it to count as prose.</p>" for i in range(8))
    html = (f"<html><head><title>The Story - Example Blog</title><meta property='og:site_name' content='Example Blog'>"
            f"</head><body><nav><a href='/'>Home</a></nav><article><h1>The Story</h1>{body}</article></body></html>")
    page = extract(html.encode(), "https://blog.example.org/story", "text/html; charset=utf-8")
    assert page.title == "The Story"
    assert "Paragraph 3 of the story" in page.text
    assert page.language == "en"


def test_plain_text_content() -> None:
    page = extract(b"# Notes on Go\n\nGoroutines are cheap and the scheduler is clever.\n", "https://x.org/a.md",
                   "text/markdown; charset=utf-8")
    assert page.title == "Notes on Go"
    assert "Goroutines" in page.text


def test_line_number_gutters_are_dropped() -> None:
    rows = "".join(f'<div class="line">{n}</div>' for n in range(1, 30))
    code = "".join(f'<div class="line">print("line {n}")</div>' for n in range(1, 30))
    html = ('<html><head><title>代码 - 博客园</title></head><body><h1>代码</h1><div id="cnblogs_post_body">'
            f'<p>下面是一段很长的示例代码，用来说明问题。</p><table><tr><td class="gutter">{rows}</td>'
            f'<td class="code">{code}</td></tr></table></div></body></html>')
    page = extract(html, None)
    assert "1 2 3 4" not in page.text
    assert 'print("line 7")' in page.text


# --- language ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "language"), [
    ("今天我们来聊一聊大模型的推理优化，以及它在生产环境中的部署经验。", "zh"),
    ("The quick brown fox jumps over the lazy dog, and then it is gone for the day.", "en"),
    ("Die Katze sitzt auf der Matte und das ist nicht so schlimm, wie es sich anhört.", "de"),
    ("日本語のテキストです。ひらがなとカタカナが含まれています。", "ja"),
    ("한국어 텍스트입니다. 이것은 테스트입니다.", "ko"),
    ("Это русский текст для проверки.", "ru"),
    ("用 Go 写一个 HTTP server：func main() { http.HandleFunc(\"/\", handler); http.ListenAndServe(\":8080\", nil) }"
     " 然后 go run main.go 即可。", "zh"),
    ("", "und"),
    ("12345 !!! ???", "und"),
])
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


# --- titles for pages that name none (synthetic pages) -------------------------------------------


def test_an_untitled_page_takes_its_first_heading() -> None:
    prose = "".join(f"<p>Paragraph {i} explains the point in plain words, at some length.</p>" for i in range(6))
    page = extract(f"<div><h2>1. Introduction</h2><h2>Why caches go stale</h2>{prose}</div>", "file:///tmp/x.html")
    assert page.title == "Why caches go stale"  # the numbered section heading is skipped
    assert not page.title_derived


def test_an_untitled_page_without_headings_takes_its_first_sentence() -> None:
    words = "Caches go stale when the data behind them changes and nobody tells them about it at all"
    page = extract(f"<div><p>{words}. Then more.</p>" + "<p>Another paragraph of plain prose here.</p>" * 5
                   + "</div>", "file:///tmp/page.html")
    assert page.title_derived
    assert page.title == " ".join(words.split()[:12]) + "…"  # ~12 words at a word boundary
    cjk = "今天我们来聊一聊大模型的推理优化以及它在生产环境中的部署经验，包括量化、批处理、缓存和调度等方面的许多细节，还有一些踩过的坑。"
    page = extract(f"<div><p>作者：某人</p><p>{cjk}</p>" + "<p>正文的其他段落，内容很长很长。</p>" * 5 + "</div>", None)
    assert page.title_derived and page.title.endswith("…") and len(page.title) <= 61
    assert page.title.rstrip("…") in cjk and "作者" not in page.title


def test_a_title_that_is_an_address_is_not_a_title() -> None:
    body = "".join(f"<p>Sentence {i} of a real article about compilers and their many passes.</p>" for i in range(8))
    page = extract(f"<html><head><title>https://example.org/a/b.html</title></head><body>{body}</body></html>",
                   "https://example.org/a/b.html")
    assert page.title and "example.org" not in page.title
    assert page.title_derived and page.title.startswith("Sentence 0 of a real article")


# --- choosing between trafilatura and readability (synthetic pages written to tmp_path) ----------


def _synthetic_tree(tmp_path: Path, html: str):  # noqa: ANN202 - an lxml tree
    path = tmp_path / "synthetic.html"
    path.write_text(html, encoding="utf-8")
    return _parse(path.read_text(encoding="utf-8"))


def test_choose_prefers_the_longer_prose_and_refuses_link_blocks(tmp_path: Path) -> None:
    nav = "".join(f'<li><a href="/t/{i}">Topic number {i} of the site menu</a></li>' for i in range(30))
    prose = [f"Sentence {i} of the synthetic article, long enough to be prose and not a label." for i in range(20)]
    tree = _synthetic_tree(tmp_path, f"<html><body><ul>{nav}</ul>{''.join(f'<p>{p}</p>' for p in prose)}</body></html>")
    half, full = "\n".join(prose[:8]), "\n".join(prose)
    assert _choose(half, full, tree) == full  # trafilatura lost part of the article
    assert _choose(full, half, tree) == full  # readability is shorter: keep trafilatura
    links = "\n".join(f"Topic number {i} of the site menu" for i in range(30))
    assert _choose(half, links + "\n" + half, tree) == half  # readability took the menu
    assert _choose(links + "\n" + full, full, tree) == full  # trafilatura kept the menu, readability did not
    assert _choose(half, "", tree) == half  # readability found nothing


def test_doubtful_only_when_text_is_lost_or_link_heavy(tmp_path: Path) -> None:
    prose = [f"Sentence {i} of the synthetic article, long enough to be prose and not a label." for i in range(20)]
    tree = _synthetic_tree(tmp_path, f"<html><body>{''.join(f'<p>{p}</p>' for p in prose)}</body></html>")
    assert not _doubtful("\n".join(prose), tree)  # kept it all: readability is not run
    assert _doubtful("\n".join(prose[:10]), tree)


def test_readability_recovers_lines_trafilatura_drops(tmp_path: Path) -> None:
    """Synthetic: a bare article fragment whose short lines trafilatura drops."""
    short = "".join(f"<p>Step {i}: do it.</p>" for i in range(25))
    prose = "".join(f"<p>Sentence {i} of the synthetic article explains the steps below in detail.</p>"
                    for i in range(6))
    html = f"<section>{prose}{short}</section>"
    (tmp_path / "fragment.html").write_text(html, encoding="utf-8")
    content = (tmp_path / "fragment.html").read_bytes()
    before = extract(content, None, use_readability=False).text
    after = extract(content, None).text
    assert len(after) >= len(before)
    assert "Sentence 3 of the synthetic article" in after


# --- the labelled evaluation (evals/extraction.py) on the shared pages -----------------------------


@functools.cache
def _evaluation() -> dict:
    path = Path(__file__).resolve().parents[1] / "evals" / "extraction.py"
    spec = importlib.util.spec_from_file_location("extraction_eval", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.evaluate(module.load_truth(), ("before", "after"))


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_readability_makes_no_language_worse(lang: str) -> None:
    if not ROWS:
        pytest.skip("no shared corpus")
    summary = _evaluation()["summary"][lang]
    assert summary["pages"] >= 8
    before, after = summary["before"], summary["after"]
    assert after["f1"] >= before["f1"] - 1e-9
    assert after["key_recall"] >= before["key_recall"] - 1e-9
    assert after["clean"] >= before["clean"] - 1e-9
    for row in _evaluation()["pages"]:  # and no single page gets much worse
        if row["lang"] == lang and "f1" in row["before"]:
            assert row["after"]["f1"] >= row["before"]["f1"] - 0.01, row["file"]


def test_readability_helps_on_the_chinese_fragments() -> None:
    """The gain on this sample: bare fragments, where trafilatura drops short lines and headings."""
    if not ROWS:
        pytest.skip("no shared corpus")
    summary = _evaluation()["summary"]["zh"]
    assert summary["after"]["f1"] > summary["before"]["f1"] + 0.005


# --- the page measures computed once equal the measures computed each time ----------------------


def _old_link_density(tree: Any) -> tuple[float, int]:
    import copy

    from tidings.stages.extract import _NOISE_XPATH, _norm

    body = tree.find(".//body")
    body = copy.deepcopy(body if body is not None else tree)
    for noise in body.xpath("." + _NOISE_XPATH.replace("|//", "|.//")):
        noise.drop_tree()
    total = len(_norm(body.text_content()))
    linked = sum(len(_norm(a.text_content())) for a in body.iter("a"))
    return (linked / total if total else 0.0), total


def _old_linked_share(text: str, tree: Any) -> float:
    from tidings.stages.extract import _norm

    links = {_norm(a.text_content()) for a in tree.iter("a")}
    lines = [n for n in (_norm(line).lstrip("-*") for line in text.splitlines()) if n]
    total = sum(len(n) for n in lines)
    return sum(len(n) for n in lines if n in links) / total if total else 0.0


# Marks that compose with what comes before them, right after a block boundary: there the block
# text and the plain text of a page measure differently, and the block text must be measured.
_COMBINING_PAGE = ("<html><body><div><p>Cafe</p><p>\u0301 au lait, e</p><p>\u0301t\u00e9 "
                   "<a href='/x'>lien</a></p><p>\u1100</p><p>\u1161\u11a8 ｶ</p><p>ﾞ</p>"
                   "<p>" + "texte visible " * 10 + "</p></div></body></html>")


def test_page_measures_equal_the_old_ones(corpus_dir: Path) -> None:
    from tidings.stages.extract import _block_text, _norm, _Page

    pages = [path.read_bytes().decode("utf-8", "replace") for path in sorted((corpus_dir / "html").glob("*.html"))]
    for html in [*pages, _COMBINING_PAGE]:
        tree = _parse(html)
        if tree is None:
            continue
        page = _Page(tree)
        body = tree.find(".//body")
        assert page.density() == _old_link_density(tree)
        assert page.block_visible() == len(_norm(_block_text(body if body is not None else tree)))
        text = (trafilatura.extract(html) or "") + "\n\u0301- lien\n* " + "\u0301" * 3
        assert page.lines(text)[0] == len(_norm(text))
        assert page.linked_share(text) == _old_linked_share(text, tree)
    # The page with marks after block boundaries really takes the slow path.
    tree = _parse(_COMBINING_PAGE)
    assert _Page(tree).block_visible() != _Page(tree).density()[1]


def test_language_counts_by_runs_equal_counts_by_character() -> None:
    from tidings.stages.extract import _HAN, _HAN_RUN, _KANA, _KANA_RUN, _count

    text = "中文テキスト混合 text 한국어 ひらがな" * 3
    assert _count(_HAN_RUN, text) == len(_HAN.findall(text))
    assert _count(_KANA_RUN, text) == len(_KANA.findall(text))


def test_safe_characters_normalise_one_at_a_time() -> None:
    """What makes the quick length exact: no safe character is the second half of a canonical
    composition (Hangul jamo are outside the ranges), nor decomposes to something starting with a
    combining mark; so NFKC of a text of safe characters is NFKC of each in turn."""
    import random
    import sys

    from tidings.stages.extract import _SAFE_RANGES, _norm, _norm_len

    seconds = set()
    for code in range(sys.maxunicode + 1):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(int(parts[1], 16))
    safe = [chr(c) for first, last in _SAFE_RANGES for c in range(first, last + 1)]
    for char in safe:
        head = unicodedata.normalize("NFKD", char)[:1]
        assert ord(char) not in seconds and (not head or unicodedata.combining(head) == 0), hex(ord(char))
    rng = random.Random(5)
    odd = [c for c in safe if len(_norm(c)) != (0 if c.isspace() else 1)]
    for _ in range(300):
        text = "".join(rng.choice(odd if rng.random() < 0.3 else safe) for _ in range(rng.randint(0, 60)))
        assert _norm_len(text) == len(_norm(text)) == sum(len(_norm(c)) for c in text), text
    for text in ("Cafe\u0301", "e\n\u0301", "ｶﾞ", "\u1100\u1161", "ΣΑΣ σας", "", " \u3000\xa0\n"):
        assert _norm_len(text) == len(_norm(text))


def test_quick_nfkc_is_nfkc(corpus_dir: Path) -> None:
    """textutil.nfkc replaces only the safe characters NFKC changes (on the rest it calls NFKC): the
    same string as unicodedata's on random safe text, on every page of the corpus, and on text that
    composes across characters."""
    import random

    from tidings.textutil import NFKC_SAFE_RANGES, nfkc

    safe = [chr(c) for first, last in NFKC_SAFE_RANGES for c in range(first, last + 1)]
    changed = [c for c in safe if unicodedata.normalize("NFKC", c) != c]
    assert "，" in changed and "…" in changed and "ｶ" not in changed  # half-width kana is not "safe"
    rng = random.Random(11)
    for _ in range(500):
        text = "".join(rng.choice(changed if rng.random() < 0.4 else safe) for _ in range(rng.randint(0, 80)))
        assert nfkc(text) == unicodedata.normalize("NFKC", text), text
    pages = [path.read_bytes().decode("utf-8", "replace") for path in sorted((corpus_dir / "html").glob("*.html"))]
    texts = pages + [path.read_text(encoding="utf-8") for path in sorted(corpus_dir.rglob("*.md"))[:200]]
    assert len(texts) > 50
    for text in texts:
        assert nfkc(text) == unicodedata.normalize("NFKC", text)
    for text in ("Cafe\u0301，", "e\n\u0301", "ｶﾞ，", "\u1100\u1161", "ΣΑΣ σας", "", "ﬁ ½ ㈱ …", "Ａ\u0301"):
        assert nfkc(text) == unicodedata.normalize("NFKC", text)


# Synthetic, labelled as such: the shape of an mdBook page (the Rust book, the Cargo book), which the
# shared corpus lacks. Its menu bar's <h1> is the book's name and a hidden help dialog's <h2> comes first.
_MDBOOK = """<html><head><title>{title} - {book}</title></head><body>
<div id="help"><h2>Keyboard shortcuts</h2><p>Press left or right to navigate between chapters.</p></div>
<div class="menu-bar"><h1 class="menu-title">{book}</h1></div>
<main>{heading}<p>{body}</p><p>{body}</p><p>{body}</p></main></body></html>"""


@pytest.mark.parametrize("heading", ["<h2>Publishing a Crate to Crates.io</h2>", ""])
def test_a_book_page_is_titled_by_its_chapter_not_the_book_or_a_dialog(heading: str) -> None:
    body = ("Cargo and crates.io have features that make it easy to publish a package, so that "
            "other people can find it, download it and use it in their own projects. ")
    html = _MDBOOK.format(title="Publishing a Crate to Crates.io", book="The Rust Programming Language",
                          heading=heading, body=body)
    page = extract(html.encode("utf-8"), url="https://doc.rust-lang.org/book/ch14-02.html")
    assert page.title == "Publishing a Crate to Crates.io"


def test_a_redirect_stub_is_set_aside_and_a_refreshing_article_is_kept() -> None:
    """A moved chapter's stub ("Redirecting…", a meta refresh and a link) is no article (found on the Rust
    book's moved pages, where it became a digest entry titled "Redirecting..."); a long page that merely
    reloads itself still is one."""
    from tidings.stages.extract import NoArticleError, extract

    stub = ("<html><head><title>Redirecting...</title><meta http-equiv='Refresh' content='0; URL=ch21.html'>"
            "</head><body><p>Redirecting to... <a href='ch21.html'>ch21.html</a>.</p>"
            f"<script>{'var x = 1;' * 200}</script></body></html>")
    with pytest.raises(NoArticleError, match="redirect page: it sends the reader on to ch21.html") as caught:
        extract(stub.encode(), url="https://docs.example/book/ch20.html")
    assert caught.value.title == "Redirecting..."
    prose = "".join(f"<p>第{n}段：这是一篇会定时刷新的新闻正文，内容足够长，读者可以读完它并理解发生了什么事情。</p>"
                    for n in range(12))
    page = (f"<html><head><title>新闻</title><meta http-equiv='refresh' content='300'></head>"
            f"<body><article><h1>新闻</h1>{prose}</article></body></html>")
    assert "第3段" in extract(page.encode(), url="https://news.example/a").text


def test_hidden_dialogs_menus_and_popups_are_not_the_article() -> None:
    """A page built by mdBook carries a keyboard-shortcut help and a theme picker that its stylesheet
    hides; on a chapter index with little text of its own, the help ("Press ← or → to navigate
    between chapters …") became the digest summary. Dialogs, menus and pop-ups are chrome; the
    article around them keeps every paragraph."""
    from tidings.stages.extract import extract

    chrome = (
        "<div id='mdbook-help-container'><div id='mdbook-help-popup'><h2>Keyboard shortcuts</h2>"
        "<p>Press <kbd>←</kbd> or <kbd>→</kbd> to navigate between chapters</p>"
        "<p>Press <kbd>S</kbd> or <kbd>/</kbd> to search in the book</p></div></div>"
        "<ul id='theme-list' class='theme-popup' role='menu'><li>Light</li><li>Rust</li><li>Coal</li></ul>"
        "<dialog><p>Subscribe to our newsletter for weekly updates about everything we publish.</p></dialog>"
        "<div role='dialog' aria-modal='true'><p>Please log in to continue reading this article today.</p></div>"
    )
    prose = "".join(f"<p>Paragraph {n}: the 2024 edition changes how temporaries in tail expressions are dropped, "
                    "which fixes a class of borrow errors that surprised many users.</p>" for n in range(6))
    page = f"<html><head><title>Tail expressions</title></head><body>{chrome}<main><h1>Tail expressions</h1>{prose}</main></body></html>"
    text = extract(page.encode(), url="https://docs.example/edition/tail.html").text
    assert "Paragraph 5" in text and "Paragraph 0" in text
    for leaked in ("Press", "Coal", "newsletter", "log in"):
        assert leaked not in text
    # An article whose own container is named like a pop-up's is not a pop-up: only its chrome goes.
    gallery = f"<html><body><div class='no-popup'><h1>Tail expressions</h1>{prose}</div></body></html>"
    assert "Paragraph 5" in extract(gallery.encode(), url="https://docs.example/edition/g.html").text


def test_a_menu_bar_heading_does_not_lead_the_text() -> None:
    """mdBook's menu bar holds the book's name as an <h1>; on a chapter with a sentence of its own
    ("Design Patterns" of the embedded Rust book, in the new-user walk) the text, and so the summary,
    began "The Embedded Rust Book Design Patterns …". A menu bar or toolbar is chrome; a page whose
    article sits inside an element with such a class keeps it."""
    from tidings.stages.extract import extract

    said = "This chapter aims to collect various useful design patterns for embedded Rust."
    page = ("<html><head><title>Design Patterns - The Embedded Rust Book</title></head><body>"
            "<div id='mdbook-menu-bar' class='menu-bar sticky'><h1 class='menu-title'>The Embedded Rust Book</h1>"
            "<div role='toolbar'><button>Print this book</button></div></div>"
            f"<main><h1>Design Patterns</h1><p>{said}</p></main></body></html>")
    found = extract(page.encode(), url="https://docs.example/embedded/design-patterns/")
    assert found.title == "Design Patterns"
    assert "The Embedded Rust Book" not in found.text and "Print" not in found.text
    assert said in found.text
    wrapped = f"<html><body><div class='menubar'><main><h1>Design Patterns</h1><p>{said}</p><p>{said}</p></main></div></body></html>"
    assert said in extract(wrapped.encode(), url="https://docs.example/embedded/w.html").text


def test_an_underscore_inside_an_identifier_does_not_split_the_title(corpus_dir: Path) -> None:
    """"_" separates a Chinese site's <title> parts ("…新台阶_科技_腾讯网"), but "no_std" is one word: the
    embedded Rust book's page came out titled "no - std" in the new-user walk."""
    from tidings.stages.extract import extract

    prose = "".join(f"<p>Paragraph {n}: a no_std crate links against core only, so it runs on bare metal.</p>"
                    for n in range(6))
    page = (f"<html><head><title>no_std - The Embedded Rust Book</title></head><body><main>{prose}</main>"
            "</body></html>")
    assert extract(page.encode(), url="https://docs.example/no-std.html").title == "no_std"
    qq = corpus_dir / "html" / "utf8-bytes_declared-gb2312_qq-tech.html"
    assert extract(qq.read_bytes(), url="https://tech.qq.com/a").title == "DeepMind新电脑已可利用记忆自学 人工智能迈上新台阶"
