"""URL canonicalisation, content hashes and MinHash near-duplicates, on real corpus pages."""

from __future__ import annotations

from pathlib import Path

import pytest
import trafilatura

from tidings.stages.dedupe import (
    MIN_FINGERPRINT_CHARS,
    NearDuplicateIndex,
    canonicalize_url,
    content_hash,
    estimated_similarity,
    find_near_duplicates,
    find_near_duplicates_in_fingerprints,
    fingerprint,
    is_current,
    minhash_from_bytes,
    minhash_to_bytes,
    poly_hash32,
    shingles,
)

WX = "https://mp.weixin.qq.com"

URL_CASES: list[tuple[str, str]] = [
    # scheme/host case, default ports, root path
    ("HTTPS://Go.Dev/blog/defer-panic-and-recover", "https://go.dev/blog/defer-panic-and-recover"),
    ("https://go.dev:443/learn/", "https://go.dev/learn"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("https://a.com", "https://a.com/"),
    ("https://a.com/", "https://a.com/"),
    ("https://example.com./x", "https://example.com/x"),
    # trailing slashes and fragments, as found in the digests
    ("https://go.dev/learn/", "https://go.dev/learn"),
    ("https://github.com/gajus/turbowatch/", "https://github.com/gajus/turbowatch"),
    ("https://juejin.cn/post/7046566841522585636#heading-3", "https://juejin.cn/post/7046566841522585636"),
    ("https://go.dev/talks/2012/concurrency.slide#1", "https://go.dev/talks/2012/concurrency.slide"),
    (
        "https://devblogs.microsoft.com/typescript/announcing-typescript-4-9-beta/#the-satisfies-operator",
        "https://devblogs.microsoft.com/typescript/announcing-typescript-4-9-beta",
    ),
    (
        "https://github.com/facebook/react/issues/14981#issuecomment-468460187",
        "https://github.com/facebook/react/issues/14981",
    ),
    # hash-routed single-page apps keep their route
    ("https://example.com/#/docs/intro", "https://example.com/#/docs/intro"),
    ("https://example.com/#!/page", "https://example.com/#!/page"),
    # query: trackers dropped, the rest sorted
    ("https://a.com/x?utm_source=wechat&utm_medium=social&id=3", "https://a.com/x?id=3"),
    ("https://a.com/x?b=2&a=1&fbclid=IwAR0abc&gclid=xyz", "https://a.com/x?a=1&b=2"),
    ("https://item.taobao.com/item.htm?spm=a230r.1.14.1&id=42", "https://item.taobao.com/item.htm?id=42"),
    ("https://a.com/x?from=timeline&isappinstalled=0", "https://a.com/x"),
    ("https://a.com/x?share_token=abc&page=2", "https://a.com/x?page=2"),
    (
        "https://betterprogramming.pub/working-with-three-js-the-popular-3d-javascript-library-bd2e9b03c95a?gi=8c31e429644f",
        "https://betterprogramming.pub/working-with-three-js-the-popular-3d-javascript-library-bd2e9b03c95a",
    ),
    ("https://twitter.com/Tisoga/status/1731478506465636749?s=20", "https://twitter.com/Tisoga/status/1731478506465636749"),
    ("https://www.youtube.com/watch?v=59IXY5IDrBA&feature=share&si=abc", "https://www.youtube.com/watch?v=59IXY5IDrBA"),
    ("https://github.com/a/b/tree/x?ref=main", "https://github.com/a/b/tree/x?ref=main"),
    # encoded query values come back in one spelling
    (
        "https://trendingpapers.com/papers?o=pagerank_growth&pd=Since%20beginning&cc=Cited%20and%20uncited%20papers",
        "https://trendingpapers.com/papers?cc=Cited%20and%20uncited%20papers&o=pagerank_growth&pd=Since%20beginning",
    ),
    ("https://a.com/s?q=a+b", "https://a.com/s?q=a%20b"),
    # WeChat: the old /s?__biz form keeps exactly its four identifying parameters …
    (
        f"{WX}/s?__biz=MzU4NDE3MTEyMA==&mid=2247492602&idx=1&sn=135fd5b530189f13e0395414a6b47893",
        f"{WX}/s?__biz=MzU4NDE3MTEyMA==&idx=1&mid=2247492602&sn=135fd5b530189f13e0395414a6b47893",
    ),
    (
        f"{WX}/s?__biz=MzU4NDE3MTEyMA==&mid=2247492602&idx=1&sn=135fd5b530189f13e0395414a6b47893"
        "&chksm=fd9b2e6ecaeca778&scene=21&sharer_sharetime=1700000000&sharer_shareid=abc&key=k&ascene=1"
        "&uin=MTIz&devicetype=iOS17&version=18002a2b&lang=zh_CN&pass_ticket=p&exportkey=e#wechat_redirect",
        f"{WX}/s?__biz=MzU4NDE3MTEyMA==&idx=1&mid=2247492602&sn=135fd5b530189f13e0395414a6b47893",
    ),
    # … and the /s/<id> form needs no query at all
    (f"{WX}/s/uJ1t0B8WBBryzvbLWDfl5A", f"{WX}/s/uJ1t0B8WBBryzvbLWDfl5A"),
    (
        f"{WX}/s/uJ1t0B8WBBryzvbLWDfl5A?scene=21&clicktime=1700000000&enterid=1700000000&mpshare=1#rd",
        f"{WX}/s/uJ1t0B8WBBryzvbLWDfl5A",
    ),
    # other WeChat pages only lose the volatile parameters
    (
        f"{WX}/mp/appmsgalbum?__biz=MzA&action=getalbum&album_id=123&scene=173&nettype=WIFI",
        f"{WX}/mp/appmsgalbum?__biz=MzA&action=getalbum&album_id=123",
    ),
    # path spelling
    ("https://a.com/%7euser/%e4%b8%ad", "https://a.com/~user/%E4%B8%AD"),
    ("https://zh.wikipedia.org/wiki/中文", "https://zh.wikipedia.org/wiki/%E4%B8%AD%E6%96%87"),
    ("https://a.com/a/./b/../c/", "https://a.com/a/c"),
    ("https://a.com/CaseMatters", "https://a.com/CaseMatters"),
    # IDN hosts → punycode; www. is kept
    ("https://例子.中国/", "https://xn--fsqu00a.xn--fiqs8s/"),
    ("https://www.example.com/", "https://www.example.com/"),
    # not http(s): passed through, stripped
    ("post:dotey/2023-12-06/1", "post:dotey/2023-12-06/1"),
    ("note:ainotes/12", "note:ainotes/12"),
    ("  file:///home/u/a.md  ", "file:///home/u/a.md"),
    # junk never raises
    ("", ""),
    ("   ", ""),
    ("not a url", "not a url"),
    ("http://a.com:notaport/x", "http://a.com:notaport/x"),
    ("https://", "https://"),
    ("http://[::1", "http://[::1"),
]


@pytest.mark.parametrize(("raw", "expected"), URL_CASES)
def test_canonicalize_url(raw: str, expected: str) -> None:
    assert canonicalize_url(raw) == expected


def test_canonicalize_url_is_idempotent() -> None:
    for raw, _ in URL_CASES:
        once = canonicalize_url(raw)
        assert canonicalize_url(once) == once


def test_canonical_equivalents() -> None:
    assert canonicalize_url("https://a.com") == canonicalize_url("https://A.COM:443/")
    assert canonicalize_url("https://go.dev/learn/#top") == canonicalize_url("https://go.dev/learn")
    # different articles stay different
    assert canonicalize_url(f"{WX}/s/AAA") != canonicalize_url(f"{WX}/s/aaa")
    assert canonicalize_url("https://a.com/x?id=1") != canonicalize_url("https://a.com/x?id=2")


def test_digest_urls_never_raise_and_are_stable(corpus_dir: Path) -> None:
    import re

    urls: set[str] = set()
    for md in sorted((corpus_dir / "digests" / "blog").glob("*/index.md")):
        urls.update(re.findall(r"https?://[^\s)>\"\]]+", md.read_text(encoding="utf-8")))
    assert len(urls) > 500
    for url in urls:
        out = canonicalize_url(url)
        assert out.startswith(("http://", "https://"))
        assert "#" not in out or out.split("#", 1)[1].startswith(("/", "!"))
        assert "utm_" not in out
        assert canonicalize_url(out) == out


# --- content hash ------------------------------------------------------------------------


def test_content_hash_normalises_whitespace_and_width() -> None:
    a = content_hash("Go 1.22 发布了\n\n新的 for 循环语义")
    assert a.startswith("sha256:") and len(a) == len("sha256:") + 64
    assert content_hash("  Go 1.22  发布了 新的\tfor 循环语义 ") == a
    assert content_hash("Ｇｏ　１.２２ 发布了 新的 for 循环语义") == a  # full-width letters, ideographic space
    assert content_hash("Go 1.21 发布了 新的 for 循环语义") != a


# --- near duplicates on real pages ---------------------------------------------------------


def _page_text(corpus_dir: Path, name: str) -> str:
    text = trafilatura.extract((corpus_dir / "html" / name).read_bytes())
    assert text, name
    return text


@pytest.fixture(scope="module")
def mdnice(corpus_dir: Path) -> dict[str, str]:
    """SOURCES.tsv says the juejin and zhihu fragments are one article (by 灵魂画师牧码, about Markdown
    Nice) published on two sites; the WeChat fragment is a different mdnice article (on browser
    rendering)."""
    return {
        site: _page_text(corpus_dir, f"{site}_{kind}_mdnice.html")
        for site, kind in [
            ("juejin", "fragment_article-content"),
            ("zhihu", "fragment_post-richtext"),
            ("wechat", "fragment_js-content-inner"),
        ]
    }


def test_same_article_on_two_sites_is_a_near_duplicate(mdnice: dict[str, str]) -> None:
    assert mdnice["juejin"] != mdnice["zhihu"]  # the two sites' markup gives different text
    a, b = fingerprint(mdnice["juejin"]), fingerprint(mdnice["zhihu"])
    assert a is not None and b is not None
    assert estimated_similarity(a, b) >= 0.9
    assert find_near_duplicates([(7, mdnice["zhihu"]), (3, mdnice["juejin"])]) == [(7, 3)]


def test_different_articles_are_not_near_duplicates(mdnice: dict[str, str], corpus_dir: Path) -> None:
    docs = [
        (1, mdnice["juejin"]),
        (2, mdnice["wechat"]),
        (3, _page_text(corpus_dir, "wechat_rendered-dom_python-defer_2020.html")),
        (4, _page_text(corpus_dir, "juejin_post_vue3-effect-computed.html")),
        (5, _page_text(corpus_dir, "godev-blog_defer-panic-and-recover_from-gz.html")),
        (6, _page_text(corpus_dir, "golang-blog_godoc-documenting-go-code.html")),
        (7, _page_text(corpus_dir, "en-blog_stackoverflow_rust.html")),
    ]
    assert find_near_duplicates(docs) == []
    a, b = fingerprint(mdnice["juejin"]), fingerprint(mdnice["wechat"])
    assert a is not None and b is not None
    assert estimated_similarity(a, b) < 0.1


def test_rewrapped_article_with_other_chrome_is_detected(corpus_dir: Path) -> None:
    body = _page_text(corpus_dir, "wechat_rendered-dom_python-defer_2020.html")
    # The same article as a re-poster's page: its own header and footer, and re-wrapped lines.
    header = "转载自公众号「未闻Code」，作者：kingname。点击上方蓝字关注我们，设为星标，第一时间获取推送。\n"
    footer = "\n—— END ——\n推荐阅读：一日一技系列合集\n觉得文章不错，请点个「在看」并分享给朋友。长按二维码关注。"
    variant = header + body.replace("\n", " ").replace("。", "。\n") + footer
    other = _page_text(corpus_dir, "juejin_post_vue3-effect-computed.html")
    pairs = find_near_duplicates([(10, body), (11, other), (12, variant)])
    assert pairs == [(12, 10)]


def test_english_article_with_other_chrome_is_detected(corpus_dir: Path) -> None:
    body = _page_text(corpus_dir, "godev-blog_defer-panic-and-recover_from-gz.html")
    variant = (
        "Weekly Go digest — issue 42. Subscribe to our newsletter!\n"
        + body.upper()
        + "\nShare this post on Twitter. Comments are closed. © 2024 Some Aggregator"
    )
    assert find_near_duplicates([(1, body), (2, variant)]) == [(2, 1)]


def test_short_texts_never_match() -> None:
    short = "Go 1.22 发布：for 循环变量每次迭代都是新的，range 支持整数。" * 3
    assert len(short) < MIN_FINGERPRINT_CHARS
    assert fingerprint(short) is None
    assert fingerprint("") is None and fingerprint(None) is None
    assert fingerprint("，。！" * 100) is None  # long enough but no words
    assert find_near_duplicates([(1, short), (2, short), (3, None)]) == []


def test_threshold_boundary() -> None:
    text = "".join(f"第{i}段：这是关于分布式系统一致性协议的第{i}个论点，讨论了复制与容错。" for i in range(40))
    assert fingerprint(text) is not None
    assert find_near_duplicates([(1, text), (2, text)]) == [(2, 1)]
    half = text[: len(text) // 2] + "".join(f"另一篇文章的第{i}句话谈论前端框架的渲染。" for i in range(40))
    assert find_near_duplicates([(1, text), (2, half)], threshold=0.8) == []
    assert find_near_duplicates([(1, text), (2, half)], threshold=0.2) == [(2, 1)]


def test_groups_keep_the_lowest_id_and_respect_never_merge(mdnice: dict[str, str]) -> None:
    a = mdnice["juejin"]
    docs = [(5, a), (2, mdnice["zhihu"]), (9, a + " 补充一句。")]
    assert find_near_duplicates(docs) == [(5, 2), (9, 2)]
    # The user said 2 and 9 are different: 9 can't join 2's group, even through 5.
    pairs = find_near_duplicates(docs, never_merge={frozenset({2, 9})})
    assert (9, 2) not in pairs and len(pairs) == 1
    groups = {keep for _, keep in pairs} | {dup for dup, _ in pairs}
    assert not {2, 9} <= groups


def test_fingerprint_round_trip_and_index(mdnice: dict[str, str]) -> None:
    m = fingerprint(mdnice["juejin"])
    assert m is not None
    blob = minhash_to_bytes(m)
    assert isinstance(blob, bytes) and len(blob) < 600
    back = minhash_from_bytes(blob)
    assert estimated_similarity(m, back) == 1.0
    assert minhash_to_bytes(back) == blob
    with pytest.raises(ValueError):
        minhash_from_bytes(b"junk")
    with pytest.raises(ValueError):
        minhash_from_bytes(blob[:-3])

    index = NearDuplicateIndex(0.8)
    index.add(1, back)
    z = fingerprint(mdnice["zhihu"])
    w = fingerprint(mdnice["wechat"])
    assert z is not None and w is not None
    assert [i for i, _ in index.query(z)] == [1]
    assert index.query(w) == []
    stored = [(1, minhash_from_bytes(minhash_to_bytes(z))), (2, back), (3, None)]
    assert find_near_duplicates_in_fingerprints(stored) == [(2, 1)]


def test_shingles_ignore_punctuation_and_spacing() -> None:
    assert shingles("微服务，架构！") == shingles("微 服 务 架 构")
    assert shingles("Hello, World of Go") == shingles("hello world  of go")
    assert shingles("") == set()


# --- the fingerprint computed in numpy equals datasketch's, byte for byte --------------------------


def _datasketch_fingerprint(text: str | None, *, sha1: bool = False) -> bytes | None:
    """The fingerprint as datasketch computes it: its MinHash (affine32 permutations) over the sorted
    shingles, hashed with the scalar reference :func:`poly_hash32` (the poly32 scheme), or with
    datasketch's own SHA-1 (``sha1``: the affine32 fingerprints stored before poly32)."""
    from datasketch import LeanMinHash, MinHash

    from tidings.textutil import normalize_text

    if not text or len(normalize_text(text)) < MIN_FINGERPRINT_CHARS:
        return None
    sh = shingles(text)
    if not sh:
        return None
    if sha1:
        m = MinHash(num_perm=128, seed=1, scheme="affine32")
    else:
        m = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=poly_hash32)
    m.update_batch([s.encode("utf-8") for s in sorted(sh)])
    blob = minhash_to_bytes(LeanMinHash(m))
    # datasketch's MinHash knows only its own scheme names: the header of a poly32 one says poly32.
    return blob if sha1 else blob[:4] + bytes((3,)) + blob[5:]


def _corpus_texts(corpus_dir: Path) -> list[str]:
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in sorted(corpus_dir.rglob("*.md"))]
    # Each digest item on its own too: many short texts near the 200-character threshold.
    texts += [para for text in texts[:20] for para in text.split("\n\n")]
    for path in sorted((corpus_dir / "html").glob("*.html")):
        texts.append(trafilatura.extract(path.read_bytes()) or "")
    return texts


# Case folding outside ASCII (İ lower-cases to two characters, final sigma), full-width forms,
# combining marks, kana and hangul, connectors of compound words, and the 4-unit boundary.
_EDGE_TEXTS = [
    "İSTANBUL İzmir ΣΟΦΙΑ σοφίας " * 20,
    "ＡＢＣ１２３ 全角字符，标点！" * 20,
    "Cafe\u0301 de\u0301ja\u0300 vu " * 30,
    "ひらがなカタカナ한국어 テスト" * 20,
    "Node.js C++ gpt-4o k8s v1.2.3 __biz " * 20,
    "一二三四" + " " * 300,
    "a b c d " * 50,
    "ﬁ ﬂ ½ ² ㈱ … " * 40,
]


def test_fingerprint_bytes_equal_datasketch_on_the_corpus(corpus_dir: Path) -> None:
    from tidings.stages.dedupe import fingerprint_bytes

    texts = _corpus_texts(corpus_dir) + _EDGE_TEXTS + ["", "，。！" * 100, "短文本"]
    made = 0
    for text in texts:
        expected = _datasketch_fingerprint(text)
        assert fingerprint_bytes(text) == expected, text[:80]
        fp = fingerprint(text)
        assert (fp is None) == (expected is None)
        if fp is not None:
            assert minhash_to_bytes(fp) == expected
            made += 1
    assert made > 100  # the comparison covered real fingerprints, not just Nones


def test_poly_hash_is_a_hash() -> None:
    # Position matters, and lengths differ: no two of these collide (a plain byte sum would).
    pieces = [b"ab", b"ba", b"a", b"aa", b"\xe4\xb8\x80 \xe4\xba\x8c", "一 二 三 四".encode(), "二 一 三 四".encode()]
    assert len({poly_hash32(p) for p in pieces}) == len(pieces)
    assert all(0 <= poly_hash32(p) < 2**32 for p in pieces)


def test_fingerprints_of_two_schemes_are_never_compared(mdnice: dict[str, str]) -> None:
    old_blob = _datasketch_fingerprint(mdnice["juejin"], sha1=True)
    assert old_blob is not None
    old, new = minhash_from_bytes(old_blob), fingerprint(mdnice["juejin"])
    assert new is not None
    assert not is_current(old_blob) and is_current(minhash_to_bytes(new)) and not is_current(None)
    assert minhash_to_bytes(old) == old_blob  # an old fingerprint still reads and writes back as it was
    with pytest.raises(ValueError, match="schemes"):
        old.jaccard(new)
    with pytest.raises(ValueError, match="schemes"):
        new.jaccard(old)
    index = NearDuplicateIndex(0.8)
    index.add(1, new)
    with pytest.raises(ValueError, match="schemes"):
        index.query(old)
    with pytest.raises(ValueError, match="schemes"):
        index.add(2, old)


def test_the_dedupe_stage_recomputes_old_fingerprints_from_the_text(tmp_path: Path, mdnice: dict[str, str]) -> None:
    """A store made before poly32: its SHA-1 fingerprints are recomputed from the stored text, and the
    juejin copy of the article is still found to be a duplicate of the zhihu one fetched later."""
    from sqlalchemy import select

    from tidings import pipeline
    from tidings.records import ItemRecord
    from tidings.stages.dedupe import fingerprint_bytes
    from tidings.store import Item, open_store

    store = open_store(tmp_path / "old.db")
    pipeline.ingest(store, [ItemRecord(url=f"https://example.com/{site}", title=site, text=mdnice[site])
                            for site in ("juejin", "wechat", "zhihu")], source_kind="links", locator="test")
    with store.session() as session:
        items = {i.title: i for i in session.scalars(select(Item))}
        items["juejin"].fingerprint = _datasketch_fingerprint(mdnice["juejin"], sha1=True)
        items["wechat"].fingerprint = _datasketch_fingerprint(mdnice["wechat"], sha1=True)
        items["zhihu"].fingerprint = fingerprint_bytes(mdnice["zhihu"])
        ids = {title: item.id for title, item in items.items()}
    pipeline.dedupe_items(store, workers=1)
    with store.session() as session:
        items = {i.title: i for i in session.scalars(select(Item))}
        assert all(is_current(i.fingerprint) for i in items.values())
        assert items["juejin"].fingerprint == fingerprint_bytes(mdnice["juejin"])
        assert items["zhihu"].duplicate_of_id == ids["juejin"]
        assert items["juejin"].duplicate_of_id is None and items["wechat"].duplicate_of_id is None

