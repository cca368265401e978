"""Rendering: new digests through the template, imported ones after edits, drops and moves."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from tidings.config import DigestConfig
from tidings.errors import ConfigError
from tidings.publish.docusaurus import (
    entry_markdown,
    escape_markdown,
    link_destination,
    new_digest_doc,
    render_docusaurus,
    yaml_value,
)
from tidings.publish.formats import RENDERERS
from tidings.records import DigestDoc, DigestEntry, RawBlock
from tidings.sources.digest import parse_digest

SECTIONS = ["🌟 AI 相关", "⭐️ Go & 云原生 & Rust 相关", "📒 后端相关", "📒 前端相关"]


def read(corpus_dir: Path, day: str) -> str:
    return (corpus_dir / "digests" / "blog" / day / "index.md").read_text(encoding="utf-8")


def new(title: str, url: str | None, summary: str | None = None, section: str | None = SECTIONS[0]) -> DigestEntry:
    return DigestEntry(url_raw=url, title_raw=title, separator=None, summary=summary, section=section)


def rebuilt(doc: DigestDoc) -> DigestDoc:
    """The same week as a brand-new digest, from the entries' clean parts only."""
    cover = doc.cover
    cfg = DigestConfig(
        cover_image=cover.image if cover else None,
        cover_alt=cover.alt if cover else "alt text",
        cover_label=cover.label if cover else "封面图",
        cover_caption=cover.caption if cover else None,
    )
    entries = [new(e.title or "", e.url, e.summary, e.section) for e in doc.entries]
    assert doc.week is not None
    fresh = new_digest_doc(doc.week, entries, doc.sections, cfg)
    assert fresh.front_matter_raw is None
    fresh.meta = dict(doc.meta)
    return fresh


@pytest.mark.parametrize("day", ["2024-06-09", "2024-03-10", "2024-06-02"])
def test_new_digest_reproduces_a_real_week(day: str, corpus_dir: Path) -> None:
    """The template lays a week out as the curator does. A new entry's text is plain text and gets
    escaped, so where the curator's parts hold Markdown characters (``{prompt，response}``, a
    code span, a ``~``) the lines differ by backslashes only."""
    text = read(corpus_dir, day)
    out = render_docusaurus(rebuilt(parse_digest(text)))
    if day == "2024-06-02":
        assert out == text  # nothing in this week needs escaping
    lines, expected = out.split("\n"), text.split("\n")
    assert len(lines) == len(expected)
    for line, source in zip(lines, expected, strict=True):
        assert line == source or line.replace("\\", "") == source.replace("\\", ""), (line, source)
    assert sum(line != source for line, source in zip(lines, expected, strict=True)) <= 8


def test_new_digest_from_config() -> None:
    cfg = DigestConfig(cover_image="cover.jpg", cover_caption="Go 1.23 is released")
    entries = [
        new("一篇文章", "https://a.example/1", "本文介绍了一件事。"),
        new("Rust tips", "https://b.example/2", section=SECTIONS[1]),
        new("Another", "https://c.example/3", "Summary.", section=SECTIONS[0]),
    ]
    doc = new_digest_doc(date(2024, 5, 5), entries, SECTIONS, cfg)
    assert doc.meta == {"slug": "5月5日内容汇总", "title": "5月5日内容汇总", "authors": ["garfield"], "tags": []}
    assert render_docusaurus(doc) == (
        "---\nslug: 5月5日内容汇总\ntitle: 5月5日内容汇总\nauthors: [garfield]\ntags: []\n---\n\n"
        "![alt text](cover.jpg)\n\n封面图：Go 1.23 is released\n\n"
        "## 🌟 AI 相关\n\n"
        "[《一篇文章》](https://a.example/1)。本文介绍了一件事。\n\n"
        "[《Another》](https://c.example/3)。Summary.\n\n"
        "## ⭐️ Go & 云原生 & Rust 相关\n\n"
        "[Rust tips](https://b.example/2)\n"
    )


def test_empty_sections_and_no_cover_are_left_out() -> None:
    doc = new_digest_doc(date(2024, 12, 1), [new("X", "https://x.example/", section=SECTIONS[3])], SECTIONS, DigestConfig())
    text = render_docusaurus(doc)
    assert "## 🌟 AI 相关" not in text and "封面图" not in text and "![" not in text
    assert text.endswith("---\n\n## 📒 前端相关\n\n[X](https://x.example/)\n")
    assert render_docusaurus(new_digest_doc(date(2024, 12, 1), [], SECTIONS, DigestConfig())).endswith("---\n")


def test_new_digest_odd_entries() -> None:
    entries = [
        new("[Go开源工具] go-optioner", "https://a.example/x (1)"),
        new("Loose", "https://l.example/", section=None),
        new("Elsewhere", "https://e.example/", section="🧪 实验"),
        new("Dropped", "https://d.example/"),
    ]
    entries[3].kept = False
    text = render_docusaurus(new_digest_doc(date(2024, 1, 7), entries, SECTIONS, DigestConfig(tags=["Go", "a: b"])))
    assert r"[\[Go开源工具\] go-optioner](<https://a.example/x (1)>)" in text
    assert "tags: [Go, \"a: b\"]\n" in text
    assert text.index("[Loose]") < text.index("## 🌟 AI 相关") < text.index("## 🧪 实验")
    assert "Dropped" not in text
    reparsed = parse_digest(text)
    assert [e.title for e in reparsed.entries] == ["Loose", "[Go开源工具] go-optioner", "Elsewhere"]
    assert reparsed.entries[1].url == "https://a.example/x (1)"


def test_template_dir_override(tmp_path: Path) -> None:
    (tmp_path / "docusaurus.md.j2").write_text(
        "# {{ meta.title }}\n{% for s in sections %}{% for e in s.entries %}* {{ e.title }} <{{ e.url }}>\n"
        "{% endfor %}{% endfor %}",
        encoding="utf-8",
    )
    doc = new_digest_doc(date(2024, 6, 9), [new("A", "https://a.example/")], SECTIONS, DigestConfig())
    assert render_docusaurus(doc, template_dir=str(tmp_path)) == "# 6月9日内容汇总\n* A <https://a.example/>\n"
    with pytest.raises(ConfigError):
        render_docusaurus(doc, template_dir=str(tmp_path / "missing"))


def test_bad_slug_template() -> None:
    with pytest.raises(ConfigError):
        new_digest_doc(date(2024, 6, 9), [], SECTIONS, DigestConfig(slug="{week}"))


def test_registry() -> None:
    assert RENDERERS["docusaurus"] is render_docusaurus


def test_yaml_values() -> None:
    assert yaml_value("6月9日内容汇总") == "6月9日内容汇总"
    assert yaml_value("a: b") == '"a: b"'
    assert yaml_value("#hash") == '"#hash"'
    assert yaml_value(["Next.js", "JSON 序列化", "x, y"]) == '[Next.js, JSON 序列化, "x, y"]'
    assert yaml_value(True) == "true" and yaml_value(date(2024, 6, 9)) == "2024-06-09"


@pytest.mark.parametrize(
    "value",
    [
        "line\nbreak", "para\u2028sep", "nel\x85x", "bom\ufeff", "del\x7f", "tab\tx", "nul\x00", "'quoted'",
        '"double"', "{a: 1}", "[x]", "- item", "--- x", "1e3", "0o17", ".5", "yes", "~", "null", "@at", "`tick`",
        "a # not a comment", "<script>alert(1)</script>", "x: {y}", "& anchor", "*alias", "! tag", "% dir",
    ],
)
def test_yaml_values_read_back_as_written(value: str) -> None:
    """Front matter from any text reads back as that string, on one line."""
    text = yaml_value(value)
    assert "\n" not in text and "\u2028" not in text and "\x85" not in text
    assert yaml.safe_load(f"key: {text}\n") == {"key": value}
    assert yaml.safe_load(f"key: {yaml_value([value, 'b'])}\n") == {"key": [value, "b"]}


def test_yaml_12_numbers_are_quoted() -> None:
    # PyYAML reads these as strings, js-yaml (Docusaurus) as numbers.
    assert yaml_value("1e3") == '"1e3"' and yaml_value("0o17") == '"0o17"'
    assert yaml_value("6月9日内容汇总") == "6月9日内容汇总" and yaml_value("v1.2.3") == "v1.2.3"


# --- fetched text is escaped; the curator's is not ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("Box<dyn Trait>", r"Box\<dyn Trait>"),
        ("{prompt, response}", r"\{prompt, response\}"),
        ("<script>alert(1)</script>", r"\<script>alert(1)\</script>"),
        ("a_b*c*", r"a_b\*c\*"),
        ("snake_case _x_ __init__ a * b a _ b 中_文", r"snake_case \_x\_ \_\_init\_\_ a * b a _ b 中_文"),
        ("* x", r"\* x"),
        ("a -> b > c", "a -> b > c"),
        ("> quote", r"\> quote"),
        ("[x](javascript:alert(1))", r"\[x\](javascript:alert(1))"),
        ("`code`", r"\`code\`"),
        ("<!-- -->", r"\<!-- --\>"),
        ("<!--truncate--> <!--more-->", r"\<!--truncate--\> \<!--more--\>"),  # excerpt markers found in the raw file
        ("node:fs Re:invent", "node:fs Re:invent"),
        ("import x from 'y'", "&#105;mport x from 'y'"),
        ("export const a = 1", "&#101;xport const a = 1"),
        ("important news", "important news"),
        ("# heading", r"\# heading"),
        ("---", r"\---"),
        ("1. one", r"1\. one"),
        ("2024) year", r"2024\) year"),
        ("- item", r"\- item"),
        (":::tip", r"\:::tip"),
        ("a\\b \\d \\", r"a\b \d \\"),
        ("\\[x\\]", r"\\\[x\\\]"),
        ("~~x~~ | y ~ z", r"\~\~x\~\~ | y ~ z"),
        ("AT&T &amp; &#60; &x", r"AT&T \&amp; \&#60; &x"),
        ("  two\n\nparagraphs\n  # and a heading ", r"two paragraphs # and a heading"),
        ("你好，Qwen2! (MoE) C++ 3.5 a-b a:b #tag", "你好，Qwen2! (MoE) C++ 3.5 a-b a:b #tag"),
    ],
)
def test_escape_markdown(text: str, escaped: str) -> None:
    assert escape_markdown(text) == escaped


def _commonmark_text(markdown: str) -> str:
    """The text CommonMark shows for one paragraph, or fails if it is anything but plain text."""
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(markdown)
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"], markdown
    children = tokens[1].children or []
    assert {c.type for c in children} <= {"text", "softbreak"}, (markdown, children)
    return "".join(c.content for c in children)


def test_escaped_text_is_plain_text_to_commonmark() -> None:
    punctuation = "".join(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum())
    for sample in [punctuation, *punctuation, *(a + b for a in punctuation for b in punctuation)]:
        for text in (f"{sample} x", f"x {sample}", f"x{sample}y"):
            assert _commonmark_text(escape_markdown(text)) == text


def test_new_entries_escape_fetched_text() -> None:
    entry = new("Ten Go tips {console.log(process.env)} <img src=x onError={() => alert(1)} />", "https://a.example/",
                "Box<dyn Trait>\n\nimport x from 'y'\n# h")
    assert entry_markdown(entry) == (
        r"[《Ten Go tips \{console.log(process.env)\} \<img src=x onError=\{() => alert(1)\} />》](https://a.example/)"
        r"。Box\<dyn Trait> import x from 'y' # h"
    )
    # A fetched title is not Markdown: its backslashes are its own.
    assert entry_markdown(new(r"Regex \d and \.", "https://r.example/")) == r"[Regex \d and \\.](https://r.example/)"
    # A javascript: link from a feed is not made clickable.
    assert entry_markdown(new("[x](y)", "javascript:alert(1)")) == r"\[x\](y)"
    assert entry_markdown(new("# Title", None)) == r"\# Title"


def test_link_destination_keeps_a_link_one_link() -> None:
    assert link_destination("https://a.example/x") == "https://a.example/x"
    assert link_destination("https://a.example/a b") == "<https://a.example/a b>"
    assert link_destination("https://a.example/\n<x>") == "<https://a.example/%0A%3Cx%3E>"
    assert link_destination("https://a.example/\u2028") == "https://a.example/%E2%80%A8"


def test_edited_imported_entries_keep_the_curators_markdown(corpus_dir: Path) -> None:
    """An imported entry edited by hand is still the curator's text: only its brackets are escaped
    (so the link stays one link); summaries stay Markdown."""
    doc = parse_digest(read(corpus_dir, "2024-06-09"))
    entry = doc.entries[0]
    entry.title_raw, entry.summary, entry.edited = "**Go** `1.23` [beta]", "见 <kbd>Ctrl</kbd> 和 *重点*。", True
    assert entry_markdown(entry) == (
        r"[《**Go** `1.23` \[beta\]》](https://mp.weixin.qq.com/s/Jgf9akHdgxEokrlMPmGgQQ)。见 <kbd>Ctrl</kbd> 和 *重点*。"
    )


def test_template_md_filter(tmp_path: Path) -> None:
    (tmp_path / "docusaurus.md.j2").write_text(
        "{% for s in sections %}{% for e in s.entries %}* {{ e.title | md }}\n{% endfor %}{% endfor %}", encoding="utf-8"
    )
    doc = new_digest_doc(date(2024, 6, 9), [new("<b>{x}</b>", "https://a.example/")], SECTIONS, DigestConfig())
    assert render_docusaurus(doc, template_dir=str(tmp_path)) == "* \\<b>\\{x\\}\\</b>\n"


# --- imported digests: edits, drops, moves -------------------------------------------------------


def test_edited_entry_renders_from_parts(corpus_dir: Path) -> None:
    text = read(corpus_dir, "2024-06-09")
    doc = parse_digest(text)
    entry = doc.entries[0]
    original = entry.verbatim
    assert original is not None
    entry.title_raw, entry.summary, entry.edited = "新的标题 [v2]", "新的总结。", True
    out = render_docusaurus(doc)
    assert out == text.replace(original, r"[《新的标题 \[v2\]》](https://mp.weixin.qq.com/s/Jgf9akHdgxEokrlMPmGgQQ)。新的总结。" + "\n\n")
    # An untouched edit (edited but same parts) normalises nothing else.
    assert out.count("\n\n\n") == 0


def test_edited_quirky_entries(corpus_dir: Path) -> None:
    doc = parse_digest(read(corpus_dir, "2024-06-16"))
    typo = next(e for e in doc.entries if (e.verbatim or "").startswith("[[《"))
    typo.edited = True
    assert entry_markdown(typo).startswith("[《Karpathy最新四小时视频教程")
    doc = parse_digest(read(corpus_dir, "2024-06-23"))
    spaced = next(e for e in doc.entries if e.separator == " 。")
    assert ")。本文作者魔搭社区" in entry_markdown(spaced)


def test_edited_marker_and_bullet_entries_keep_their_prefix(corpus_dir: Path) -> None:
    doc = parse_digest(read(corpus_dir, "2022-01-02"))
    first = doc.entries[0]
    first.title_raw, first.edited = "clsx", True
    assert render_docusaurus(doc).count("📒 [clsx](https://github.com/lukeed/clsx)\n\n📒 [盘点") == 1
    note = next(e for e in doc.entries if e.title == "Vue SFC playground")
    note.summary, note.edited = "https://sfc.vuejs.org/\n\n> 研究下插槽", True
    assert "📒 Vue SFC playground\n\nhttps://sfc.vuejs.org/\n\n> 研究下插槽\n\n📒 写一个" in render_docusaurus(doc)
    doc = parse_digest(read(corpus_dir, "2024-07-21"))
    bullet = next(e for e in doc.entries if (e.verbatim or "").startswith("- [Look forward"))
    bullet.title_raw, bullet.edited = "Long-context workshop", True
    out = render_docusaurus(doc)
    assert "\n- [Long-context workshop](https://x.com/WeijiaShi2/status/1813679179017400582)\n- [继" in out
    nested = next(e for e in doc.entries if "Outperforming MobileLLM" in (e.summary or ""))
    nested.title_raw, nested.edited = "SmolLM", True
    assert "\n- [SmolLM](https://x.com/LoubnaBenAllal1/status/1813252390692303069)\n  - Outperforming" in render_docusaurus(doc)


def test_dropped_entry_disappears_cleanly(corpus_dir: Path) -> None:
    text = read(corpus_dir, "2024-06-09")
    doc = parse_digest(text)
    middle = doc.entries[3]
    middle.kept = False
    assert middle.verbatim is not None
    out = render_docusaurus(doc)
    assert out == text.replace(middle.verbatim, "", 1) and "\n\n\n" not in out
    last = doc.entries[-1]
    last.kept = False  # the last line of the file: the final newline stays single
    assert last.verbatim is not None and text.endswith("\n\n" + last.verbatim + "\n")
    expected = text.replace(middle.verbatim, "", 1)[: -len(last.verbatim) - 2]
    assert render_docusaurus(doc) == expected


def test_dropping_every_entry_of_a_section_drops_its_heading(corpus_dir: Path) -> None:
    doc = parse_digest(read(corpus_dir, "2024-06-09"))
    for entry in doc.entries:
        if entry.section == "📒 后端相关":
            entry.kept = False
    out = render_docusaurus(doc)
    assert "## 📒 后端相关" not in out and "## 📒 前端相关" in out and "\n\n\n" not in out
    for entry in doc.entries:
        entry.kept = False
    out = render_docusaurus(doc)
    assert "## " not in out and out == doc.front_matter_raw + "\n![alt text](image.png)\n\n封面图：Go 1.22.4 is Released!\n"


def test_dropped_tip_bullets(corpus_dir: Path) -> None:
    text = read(corpus_dir, "2024-07-21")
    doc = parse_digest(text)
    tip = [e for e in doc.entries if (e.verbatim or "").startswith("- ") and e.section == "📒 前端相关"]
    assert len(tip) == 2
    tip[1].kept = False  # the last bullet: its blank line before ":::" must survive
    out = render_docusaurus(doc)
    assert (tip[0].verbatim or "") + "\n:::\n" in out
    tip[0].kept = False
    out = render_docusaurus(doc)
    assert ":::tip 技术资讯\n\n:::\n" in out and "\n\n\n" not in out


def test_moved_entries_keep_blank_lines(corpus_dir: Path) -> None:
    text = read(corpus_dir, "2024-06-09")
    doc = parse_digest(text)
    last = doc.entries[-1]  # no blank line after it in the source: it ended the file
    doc.blocks.remove(last)
    doc.blocks.insert(doc.blocks.index(doc.entries[0]) + 1, last)
    out = render_docusaurus(doc)
    assert "\n\n\n" not in out and out.endswith("\n") and not out.endswith("\n\n")
    moved = parse_digest(out)
    assert Counter((e.title, e.url) for e in moved.entries) == Counter((e.title, e.url) for e in doc.entries)
    assert moved.entries[1].title == last.title


def test_moves_across_the_corpus(corpus_dir: Path) -> None:
    """Any entry moved after the first, middle or last entry re-parses to the same entries."""
    for path in sorted((corpus_dir / "digests" / "blog").glob("*/index.md"))[::4]:
        text = path.read_text(encoding="utf-8")
        base = parse_digest(text)
        count = len(base.entries)
        for k in range(0, count, 3):
            for target in (0, count // 2, count - 1):
                doc = copy.deepcopy(base)
                entry = doc.entries[k]
                doc.blocks.remove(entry)
                others = doc.entries
                if not others:
                    continue
                doc.blocks.insert(doc.blocks.index(others[min(target, len(others) - 1)]) + 1, entry)
                out = render_docusaurus(doc)
                assert "\n\n\n" not in out or "\n\n\n" in text
                again = parse_digest(out).entries
                assert Counter((e.title, e.url) for e in again) == Counter((e.title, e.url) for e in base.entries)


def test_new_entries_in_an_imported_digest(corpus_dir: Path) -> None:
    text = read(corpus_dir, "2024-06-23")  # no final newline
    doc = parse_digest(text)
    doc.blocks.append(new("Added", "https://added.example/", "补充。", SECTIONS[3]))
    out = render_docusaurus(doc)
    assert out.startswith(text) and out[len(text) :] == "\n\n[《Added》](https://added.example/)。补充。\n"
    assert parse_digest(out).entries[-1].title == "Added"
    heading = next(i for i, b in enumerate(doc.blocks) if isinstance(b, RawBlock) and b.role == "heading")
    doc.blocks.insert(heading + 1, new("First", "https://first.example/"))
    assert "## 🌟 AI 相关\n\n[First](https://first.example/)\n\n[《Claude 3.5 Sonnet》]" in render_docusaurus(doc)
