"""Rendering: new digests through the template, imported ones after edits, drops and moves."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from tidings.config import DigestConfig
from tidings.errors import ConfigError
from tidings.publish import RENDERERS, entry_markdown, new_digest_doc, render_docusaurus, yaml_value
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
    text = read(corpus_dir, day)
    assert render_docusaurus(rebuilt(parse_digest(text))) == text


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
