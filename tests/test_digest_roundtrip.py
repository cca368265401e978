"""The digest parser against the real 内容汇总 posts: lossless round trip, entries, quirks, errors."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.errors import ImportFormatError
from tidings.publish.docusaurus import render_docusaurus
from tidings.records import DigestDoc, DigestEntry, RawBlock
from tidings.sources.digest import REASONS, infer_week, is_digest, parse_digest, parse_link

CORPUS_BLOG = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "digests" / "blog"
DIGEST_FILES = sorted(CORPUS_BLOG.glob("*/index.md"))
SECTIONS = ["🌟 AI 相关", "⭐️ Go & 云原生 & Rust 相关", "📒 后端相关", "📒 前端相关"]


def read(corpus_dir: Path, day: str) -> tuple[str, str]:
    path = corpus_dir / "digests" / "blog" / day / "index.md"
    return path.read_text(encoding="utf-8"), str(path)


def load(corpus_dir: Path, day: str) -> DigestDoc:
    text, path = read(corpus_dir, day)
    return parse_digest(text, path=path)


def entry_with(doc: DigestDoc, needle: str) -> DigestEntry:
    found = [e for e in doc.entries if needle in (e.verbatim or "")]
    assert len(found) == 1, f"{len(found)} entries contain {needle!r}"
    return found[0]


def block_with(doc: DigestDoc, needle: str) -> RawBlock | DigestEntry:
    for block in doc.blocks:
        if needle in (block.text if isinstance(block, RawBlock) else block.verbatim or ""):
            return block
    raise AssertionError(f"no block contains {needle!r}")


def test_corpus_is_complete(corpus_dir: Path) -> None:
    assert len(DIGEST_FILES) == 87


@pytest.mark.parametrize("path", DIGEST_FILES, ids=lambda p: p.parent.name)
def test_round_trip_is_byte_exact(path: Path, corpus_dir: Path) -> None:
    text = path.read_text(encoding="utf-8")
    doc = parse_digest(text, path=str(path))
    assert doc.front_matter_raw is not None
    body = "".join(b.text if isinstance(b, RawBlock) else b.verbatim or "" for b in doc.blocks)
    assert doc.front_matter_raw + body == text
    assert render_docusaurus(doc) == text
    assert doc.week == date.fromisoformat(path.parent.name) and not doc.week_guessed
    assert doc.meta["slug"] == doc.meta["title"] and "内容汇总" in doc.meta["title"]


def test_entry_counts(corpus_dir: Path) -> None:
    counts: Counter[str] = Counter()
    for path in DIGEST_FILES:
        doc = parse_digest(path.read_text(encoding="utf-8"), path=str(path))
        for entry in doc.entries:
            first = (entry.verbatim or "").split("\n", 1)[0]
            if entry.section is not None:
                kind = "bullet" if first.startswith("- ") else "marker" if entry.marker else "line"
                counts[f"sectioned_{kind}"] += 1
            else:
                counts[f"marker_{entry.marker}"] += 1
                counts["marker_with_url" if entry.url else "marker_without_url"] += 1
                counts["marker_link_on_line"] += first.count("](") > 0
    # The README's 762 section-labelled link lines, plus 2024-07-21's tip bullets and marker lines.
    assert counts["sectioned_line"] == 762
    assert counts["sectioned_bullet"] == 47
    assert counts["sectioned_marker"] == 8
    # 972 📒 lines start a line, one of them inside an HTML comment: not an item.
    assert counts["marker_📒"] == 971
    assert counts["marker_⭐️"] == 245
    assert counts["marker_🌛"] == 3
    assert counts["marker_🌟"] == 1
    assert counts["marker_link_on_line"] == 905
    assert counts["marker_with_url"] + counts["marker_without_url"] == 1220
    assert counts["marker_with_url"] == 905 + 174  # 174 take a `> https://…` or bare-URL line


def test_sections_in_order_and_renamed(corpus_dir: Path) -> None:
    assert load(corpus_dir, "2023-07-30").sections == ["🌟 AI 相关", "⭐️ Golang 相关", "📒 前端相关"]
    doc = load(corpus_dir, "2024-06-09")
    assert doc.sections == SECTIONS
    assert {e.section for e in doc.entries} == set(SECTIONS)
    heading = next(b for b in doc.blocks if isinstance(b, RawBlock) and b.role == "heading")
    assert heading.text == "## 🌟 AI 相关\n\n" and heading.section == "🌟 AI 相关"


def test_summary_line_and_bare_line(corpus_dir: Path) -> None:
    doc = load(corpus_dir, "2024-06-09")
    first = doc.entries[0]
    assert first.title_raw == "《开源百B大语言模型哪家强?》"
    assert first.title == "开源百B大语言模型哪家强?"
    assert first.url == first.url_raw == "https://mp.weixin.qq.com/s/Jgf9akHdgxEokrlMPmGgQQ"
    assert first.separator == "。"
    assert first.summary is not None and first.summary.startswith("本文作者爱因总结了")
    assert first.verbatim is not None and first.verbatim.endswith("参考。\n\n")  # owns its blank line
    bare = entry_with(doc, "[Rust tips #41 ~ #60]")
    assert (bare.title, bare.separator, bare.summary) == ("Rust tips #41 ~ #60", None, None)
    assert bare.section == "⭐️ Go & 云原生 & Rust 相关"


def test_escaped_brackets_in_titles(corpus_dir: Path) -> None:
    entry = entry_with(load(corpus_dir, "2023-07-30"), "go-optioner")
    assert entry.title_raw == r"\[Go开源工具\] go-optioner：轻松生成函数选项模式代码"
    assert entry.title == "[Go开源工具] go-optioner：轻松生成函数选项模式代码"
    entry = entry_with(load(corpus_dir, "2024-03-31"), "byte与string的两种转换方式")
    assert entry.title == "[]byte与string的两种转换方式和底层实现"
    # Unescaped but balanced brackets nest inside the link text.
    entry = entry_with(load(corpus_dir, "2024-06-16"), "图解 Transformer")
    assert entry.title == "图解 Transformer [译]"


def test_double_bracket_typo(corpus_dir: Path) -> None:
    entry = entry_with(load(corpus_dir, "2024-06-16"), "Karpathy最新四小时视频教程")
    assert entry.verbatim is not None and entry.verbatim.startswith("[[《")
    assert entry.title == "Karpathy最新四小时视频教程:从零复现GPT-2，通宵运行即搞定"
    assert entry.url == "https://mp.weixin.qq.com/s/BI8EdDyTEk8meL_FhX-ftw"
    assert entry.separator == "。"


def test_hash_title(corpus_dir: Path) -> None:
    # In the corpus `[# title](url)` links sit inside marker notes; as an item line they parse too.
    note = entry_with(load(corpus_dir, "2023-07-16"), "[# 跟着 Go 作者学泛型]")
    assert note.marker == "⭐️" and note.title == "Go 语言泛型"
    doc = parse_digest("---\ntitle: x\n---\n\n## A\n\n[# 跟着 Go 作者学泛型](https://polarisxu.studygolang.com/)\n")
    (entry,) = doc.entries
    assert entry.title_raw == "# 跟着 Go 作者学泛型" and entry.title == "跟着 Go 作者学泛型"


def test_space_before_full_stop(corpus_dir: Path) -> None:
    entry = entry_with(load(corpus_dir, "2024-06-23"), "魔搭社区GGUF模型怎么玩")
    assert entry.separator == " 。"
    assert entry.summary is not None and entry.summary.startswith("本文作者魔搭社区")
    spaced = entry_with(load(corpus_dir, "2023-12-24"), "用 Rust 编写操作系统")
    assert spaced.separator == "。 " and spaced.summary is not None and spaced.summary.startswith("这份博客")


@pytest.mark.parametrize(
    ("line", "separator", "summary"),
    [
        ("[《T》](https://a.example/x) 。总结", " 。", "总结"),
        ("[《T》](https://a.example/x)---总结", "---", "总结"),
        ("[《T》](https://a.example/x) --- 总结", " --- ", "总结"),
        ("[《T》](https://a.example/x)。", "。", None),
        ("[T](https://a.example/x)", None, None),
    ],
)
def test_separators(line: str, separator: str | None, summary: str | None) -> None:
    text = f"---\ntitle: t\n---\n\n## S\n\n{line}\n"
    doc = parse_digest(text)
    (entry,) = doc.entries
    assert (entry.separator, entry.summary, entry.title) == (separator, summary, "T")
    assert render_docusaurus(doc) == text


def test_title_attribute(corpus_dir: Path) -> None:
    text = '---\ntitle: t\n---\n\n## S\n\n[Create T3 App](https://create.t3.gg/ "Create T3 App")\n'
    (entry,) = parse_digest(text).entries
    assert entry.url_raw == 'https://create.t3.gg/ "Create T3 App"'
    assert entry.url == "https://create.t3.gg/"
    # 2023-04-16 has such links inside a marker note; they stay in its text verbatim.
    note = entry_with(load(corpus_dir, "2023-04-16"), '(https://create.t3.gg/ "Create T3 App")')
    assert note.summary is not None and '[Create T3 App](https://create.t3.gg/ "Create T3 App")' in note.summary
    line = '[Railway](https://railway.app/ "Railway")'
    assert parse_link(line, 0) == ("Railway", 'https://railway.app/ "Railway"', len(line))


def test_fragments_and_trailing_slashes(corpus_dir: Path) -> None:
    entry = entry_with(load(corpus_dir, "2022-01-02"), "盘点那些让开发效率翻倍的React Hook")
    assert entry.url == "https://juejin.cn/post/7046566841522585636#heading-3"
    bullet = entry_with(load(corpus_dir, "2024-07-21"), "GPT-4o mini: advancing cost-efficient")
    assert bullet.url == "https://openai.com/index/gpt-4o-mini-advancing-cost-efficient-intelligence/"
    parens = parse_link("[a](https://en.example/wiki/Go_(language)#x)", 0)
    assert parens is not None and parens[1] == "https://en.example/wiki/Go_(language)#x"


def test_same_url_twice(corpus_dir: Path) -> None:
    doc = load(corpus_dir, "2024-03-10")
    url = "https://mp.weixin.qq.com/s/1d2_kHEQnug9iR0cU_0nAA"
    twins = [e for e in doc.entries if e.url == url]
    assert len(twins) == 2 and twins[0] is not twins[1]
    assert twins[0].title_raw != twins[1].title_raw  # one 《》-wrapped with a summary, one bare


def test_no_final_newline(corpus_dir: Path) -> None:
    text, path = read(corpus_dir, "2024-06-23")
    assert not text.endswith("\n")
    doc = parse_digest(text, path=path)
    assert not any(isinstance(b, RawBlock) and b.role == "eof" for b in doc.blocks)
    assert doc.blocks[-1] is doc.entries[-1] and render_docusaurus(doc) == text


@pytest.mark.parametrize("day", ["2022-05-08", "2022-08-28"])
def test_extra_blank_line_at_end(day: str, corpus_dir: Path) -> None:
    text, path = read(corpus_dir, day)
    assert text.endswith("\n\n")
    doc = parse_digest(text, path=path)
    last = doc.blocks[-1]
    assert isinstance(last, RawBlock) and last.role == "eof" and last.text == "\n\n"
    assert render_docusaurus(doc) == text


def test_characters_outside_the_basic_plane(corpus_dir: Path) -> None:
    doc = load(corpus_dir, "2024-07-21")
    bold = entry_with(doc, "Can 𝐦𝐚𝐜𝐡𝐢𝐧𝐞")
    assert bold.title is not None and bold.title.startswith("Can 𝐦𝐚𝐜𝐡𝐢𝐧𝐞 𝐮𝐧𝐥𝐞𝐚𝐫𝐧𝐢𝐧𝐠")
    flag = entry_with(doc, "Look forward to attending @icmlconf")
    assert flag.title is not None and "🇦🇹" in flag.title


def test_non_breaking_hyphen_and_tab(corpus_dir: Path) -> None:
    note = entry_with(load(corpus_dir, "2022-02-13"), "\u2011")
    assert note.title == "Node.js 新增 Fetch API" and "\u2011" in (note.summary or "")
    text, path = read(corpus_dir, "2022-02-06")
    assert "\t" in text
    doc = parse_digest(text, path=path)
    assert "\t" in (entry_with(doc, "\t").summary or "")
    assert render_docusaurus(doc) == text


def test_tip_bullets_are_items(corpus_dir: Path) -> None:
    doc = load(corpus_dir, "2024-07-21")
    bullets = [e for e in doc.entries if (e.verbatim or "").startswith("- ")]
    assert len(bullets) == 47
    assert Counter(e.section for e in bullets) == {"🌟 AI 相关": 36, "⭐️ Go & 云原生 & Rust 相关": 9, "📒 前端相关": 2}
    tips = [b for b in doc.blocks if isinstance(b, RawBlock) and b.role == "admonition"]
    assert [t.text for t in tips[:2]] == [":::tip 技术资讯\n\n", ":::\n\n"]
    nested = entry_with(doc, "Outperforming MobileLLM")
    assert nested.separator == "\n" and nested.summary is not None
    assert nested.summary.startswith("  - Outperforming") and nested.title is not None
    # A bullet without a link is not an item; its block is kept verbatim with its sub-bullets.
    plain = block_with(doc, "- 最具成本效益的智能")
    assert isinstance(plain, RawBlock) and "  - 延迟：183 tok/s（最快）\n" in plain.text
    # Marker-prefixed link lines under a section are items with both marker and section.
    star = entry_with(doc, "阿里云服务领域Agent智能体")
    assert star.marker == "🌟" and star.section == "🌟 AI 相关"


def test_marker_notes(corpus_dir: Path) -> None:
    doc = load(corpus_dir, "2022-01-02")
    first = doc.entries[0]
    assert (first.marker, first.title, first.url) == ("📒", "clsx：classnames 的替代方案", "https://github.com/lukeed/clsx")
    assert first.section is None and first.summary is None
    note = entry_with(doc, "📒 浏览器渲染中的合成层与")
    assert note.url is None and note.separator == "\n\n"
    assert note.summary is not None and note.summary.startswith("合成就是")
    assert ":::tip" in note.summary and "<Illustration" in note.summary  # the whole note, as written
    assert note.prose is not None and ":::" not in note.prose and "<Illustration" not in note.prose
    bare = entry_with(doc, "📒 Vue SFC playground")
    assert bare.url_raw == "https://sfc.vuejs.org/" and bare.title == "Vue SFC playground"
    imports = doc.blocks[1]
    assert isinstance(imports, RawBlock) and imports.text.startswith("import Illustration")
    quoted = entry_with(load(corpus_dir, "2022-08-14"), "📒 React 性能优化")
    assert quoted.url == "https://orizens.com/blog/500ms-to-1-7ms-in-react-a-journey-and-a%20checklist/"
    double = entry_with(load(corpus_dir, "2022-03-06"), "⭐️ ⭐️ [")
    assert double.marker == "⭐️" and double.title is not None and double.title.startswith("「React进阶」")


@pytest.mark.parametrize(("day", "needle"), [("2022-06-05", "<!-- 📒 [动态表单"), ("2022-08-14", "📒 React Native")])
def test_commented_markers_are_not_items(day: str, needle: str, corpus_dir: Path) -> None:
    doc = load(corpus_dir, day)
    block = block_with(doc, needle)
    assert isinstance(block, RawBlock) and block.role == "comment"


def test_markers_in_code_are_not_items() -> None:
    text = "---\ntitle: 1月1日内容汇总\n---\n\n📒 real\n\n```md\n📒 not an item\n```\n\n📒 [next](https://n.example/)\n"
    doc = parse_digest(text)
    assert [e.title for e in doc.entries] == ["real", "next"]
    assert "📒 not an item" in (doc.entries[0].summary or "")
    assert render_docusaurus(doc) == text


@pytest.mark.parametrize(
    ("day", "cover"),
    [
        ("2024-06-09", ("image.png", "alt text", "封面图", "Go 1.22.4 is Released!")),
        ("2023-01-29", ("image.png", "image", "题图", "擅用工具的兔子工程师。")),
        ("2024-06-23", ("image-1.png", "alt text", "封面图", '"Heartfelt Doodlings" — The Web Event for '
                        "Genshin Impact's new character: Sigewinne is now available.")),
    ],
)
def test_cover(day: str, cover: tuple[str, str, str, str], corpus_dir: Path) -> None:
    doc = load(corpus_dir, day)
    assert doc.cover is not None
    assert (doc.cover.image, doc.cover.alt, doc.cover.label, doc.cover.caption) == cover
    assert any(isinstance(b, RawBlock) and b.role == "cover" for b in doc.blocks)


def test_no_cover(corpus_dir: Path) -> None:
    assert load(corpus_dir, "2022-09-11").cover is None


def test_front_matter_parsed(corpus_dir: Path) -> None:
    doc = load(corpus_dir, "2022-01-02")
    assert doc.meta["authors"] == ["garfield"]
    assert doc.meta["tags"][:3] == ["Next.js", "ESNext", "React"]
    assert doc.front_matter_raw is not None and doc.front_matter_raw.endswith("Code Review]\n---\n")


def test_malformed_yaml_is_kept() -> None:
    text = "---\nslug: 6月9日内容汇总\ntitle: [unclosed\ndate: 2024-13-45\n---\n\n## 🌟 AI 相关\n\n[a](https://a.example/)\n"
    doc = parse_digest(text)
    assert doc.meta["slug"] == "6月9日内容汇总" and doc.meta["title"] == "[unclosed"
    assert render_docusaurus(doc) == text
    assert parse_digest("---\n- just\n- a list\n---\n\n## S\n\n[a](https://a.example/)\n").meta == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  \n\n", "empty"),
        ("---\nslug: x\n\n## S\n", "unclosed_front_matter"),
        ("just some prose\n\nand more\n", "not_a_digest"),
        ("\x00\x01binary", "binary"),
    ],
)
def test_not_a_digest(text: str, reason: str) -> None:
    with pytest.raises(ImportFormatError) as info:
        parse_digest(text, path="x.md")
    assert info.value.reason == reason and info.value.file == "x.md"


def test_infer_week() -> None:
    assert infer_week("blog/2024-06-09/index.md", {}) == (date(2024, 6, 9), False)
    assert infer_week("blog/2024-06-09/index.md", {}, date(2024, 6, 2)) == (date(2024, 6, 2), False)
    assert infer_week("post.md", {"date": date(2023, 1, 8)}) == (date(2023, 1, 8), False)
    assert infer_week("post.md", {"date": "2023-01-08T10:00:00+08:00"}) == (date(2023, 1, 8), False)
    assert infer_week(None, {"slug": "6月9日内容汇总"}, today=date(2025, 3, 1)) == (date(2024, 6, 9), True)
    assert infer_week(None, {"slug": "6月9日内容汇总"}, today=date(2025, 6, 9)) == (date(2025, 6, 9), True)
    assert infer_week(None, {"title": "2月29日内容汇总"}, today=date(2027, 5, 1)) == (date(2024, 2, 29), True)
    assert infer_week("notes.md", {"slug": "hello"}) == (None, False)


def test_week_guessed_from_slug() -> None:
    doc = parse_digest("---\nslug: 1月2日内容汇总\ntitle: 1月2日内容汇总\n---\n\n📒 [a](https://a.example/)\n")
    assert doc.week is not None and (doc.week.month, doc.week.day) == (1, 2) and doc.week_guessed


def test_is_digest(corpus_dir: Path) -> None:
    text, _ = read(corpus_dir, "2022-01-02")
    ok, why = is_digest(text, SECTIONS)
    assert ok and "内容汇总" in why
    ok, why = is_digest("---\ntitle: Week\n---\n\n## 🌟 AI 相关\n\n[a](https://a.example/)\n", SECTIONS)
    assert ok and "🌟 AI 相关" in why
    ok, why = is_digest("---\ntitle: Week\n---\n\n## Notes\n", SECTIONS)
    assert not ok and why
    for junk in ["", "---\nunclosed", "\x00", "---\n: : :\n---\n"]:
        assert is_digest(junk, SECTIONS)[0] is False


# --- arbitrary input: refused cleanly or rendered back exactly ----------------------------------

FRAGMENTS = [
    "\n", "\n\n", " ", "\t", "\r\n", "---\n", "---", "## ", "## 🌟 AI 相关\n", "# ", "[", "]", "(", ")", "\\",
    "《", "》", "。", " 。", "---", "[《T》](https://a.example/x)", "[t](u)", "[[《t》](u)", "- ", "  - ",
    "📒 ", "⭐️ ", "🌟", "🌛 ", "> https://q.example/", "https://b.example/", "```", "```js\n", "~~~",
    "<!--", "-->", ":::tip\n", ":::\n", "![alt](i.png)", "封面图：", "题图：", "title: 内容汇总\n",
    "slug: 6月9日内容汇总\n", "tags: [a, b\n", "text", "𝐚", "\u2011", "\ufeff", "<details>", "| a |",
]
SAMPLES = [p.read_text(encoding="utf-8") for p in DIGEST_FILES[::9]]

pieces = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=40).map("".join)
documents = st.one_of(pieces, st.tuples(st.sampled_from(["---\ntitle: t\n---\n", "---\n---\n"]), pieces).map("".join))
truncated = st.tuples(st.sampled_from(SAMPLES), st.integers(0, 10**6), st.integers(0, 10**6)).map(
    lambda t: t[0][min(t[1], t[2]) % (len(t[0]) + 1) : max(t[1], t[2]) % (len(t[0]) + 1)]
    if t[1] % 3 == 0
    else t[0][: t[1] % (len(t[0]) + 1)]
)


def check_total(text: str) -> None:
    try:
        doc = parse_digest(text)
    except ImportFormatError as exc:
        assert exc.reason in REASONS and exc.reason != "internal_error", exc.__cause__
        return
    assert render_docusaurus(doc) == text
    # Dropping or editing any entry must render (never raise) and leave no stray triple newline.
    for entry in doc.entries:
        entry.kept = False
        dropped = render_docusaurus(doc)
        entry.kept = True
        if "\n\n\n" not in text:
            assert "\n\n\n" not in dropped
        entry.edited = True
        render_docusaurus(doc)
        entry.edited = False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_arbitrary_text_is_refused_or_round_trips(text: str) -> None:
    check_total(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(truncated)
def test_truncated_digests_are_refused_or_round_trip(text: str) -> None:
    check_total(text)
