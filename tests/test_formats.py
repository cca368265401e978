"""``tidings digest --format``: Hugo and Jekyll front matter parsed back, layouts under --out,
Markdown and HTML, and the default Docusaurus output unchanged, on real shared weeks."""

from __future__ import annotations

import os
import re
from datetime import date
from html import escape
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt
from typer.testing import CliRunner
from weblib import MARKER_WEEK, WEEK, copy_db, week_db

from tidings import curate
from tidings.cli import app
from tidings.config import Config
from tidings.publish import formats
from tidings.publish.formats import RENDERERS
from tidings.records import DigestEntry
from tidings.sources.digest import split_front_matter
from tidings.store import open_store

SECTIONS = ["🌟 AI 相关", "⭐️ Go & 云原生 & Rust 相关", "📒 后端相关", "📒 前端相关"]


@pytest.fixture
def db(corpus_dir: Path, tmp_path: Path) -> Path:
    return copy_db(week_db(corpus_dir), tmp_path / "t.db")


def _run(db: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--db", str(db), *args], env={**os.environ, "TIDINGS_DB": str(db)})
    assert result.exit_code == 0, result.output
    return result.stdout


def _front(text: str) -> tuple[dict, str]:
    raw, body, _ = split_front_matter(text)
    assert raw is not None
    return yaml.safe_load(raw.strip().strip("-")), body


def test_every_format_is_registered() -> None:
    assert set(formats.FORMAT_NAMES) <= set(RENDERERS)


def test_default_docusaurus_output_is_the_corpus_file_byte_for_byte(db: Path, corpus_dir: Path) -> None:
    for week in (WEEK, MARKER_WEEK):
        source = (corpus_dir / "digests" / "blog" / week / "index.md").read_text(encoding="utf-8")
        assert _run(db, "digest", "--week", week) == source
        assert _run(db, "digest", "--week", week, "--format", "docusaurus") == source


def test_hugo_front_matter_parses_back(db: Path) -> None:
    text = _run(db, "digest", "--week", WEEK, "--format", "hugo")
    meta, body = _front(text)
    assert meta["title"] == "6月9日内容汇总"
    assert meta["date"] == date(2024, 6, 9)
    assert meta["draft"] is False
    assert meta["categories"] == SECTIONS
    assert meta["tags"] == []
    assert "[《你好，Qwen2!》](https://mp.weixin.qq.com/s/s5vChAY6B2s_ZVK-ALYP2w)" in body
    assert "## 📒 前端相关" in body


def test_jekyll_front_matter_parses_back(db: Path) -> None:
    text = _run(db, "digest", "--week", WEEK, "--format", "jekyll")
    meta, body = _front(text)
    assert meta["layout"] == "post"
    assert meta["date"] == date(2024, 6, 9)
    assert meta["categories"] == SECTIONS
    assert meta["tags"] == [] and meta["draft"] is False
    assert "published" not in meta
    assert "封面图：Go 1.22.4 is Released!" in body


def test_marker_style_weeks_become_portable_markdown(db: Path) -> None:
    text = _run(db, "digest", "--week", MARKER_WEEK, "--format", "hugo")
    meta, body = _front(text)
    assert meta["categories"] == []  # no ## sections in the old digests
    fence = False
    for line in body.split("\n"):
        if line.lstrip("> ").startswith("```"):
            fence = not fence
        if not fence:
            assert not line.strip().startswith(":::"), line
            assert not line.startswith("import ")
    assert "> **Tip**" in body


def test_out_writes_each_generators_layout(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    expected = {
        "docusaurus": out / "blog" / WEEK / "index.md",
        "hugo": out / "content" / "posts" / WEEK / "index.md",
        "jekyll": out / "_posts" / f"{WEEK}-6月9日内容汇总.md",
        "markdown": out / f"{WEEK}.md",
        "html": out / f"{WEEK}.html",
    }
    for fmt, path in expected.items():
        CliRunner().invoke(app, ["--db", str(db), "digest", "--week", WEEK, "--format", fmt, "--out", str(out)])
        assert path.is_file(), fmt
        assert path.read_text(encoding="utf-8") == _run(db, "digest", "--week", WEEK, "--format", fmt)
    mtime = expected["hugo"].stat().st_mtime_ns
    CliRunner().invoke(app, ["--db", str(db), "digest", "--week", WEEK, "--format", "hugo", "--out", str(out)])
    assert expected["hugo"].stat().st_mtime_ns == mtime  # unchanged: not rewritten


def test_a_draft_goes_to_jekyll_drafts(db: Path, tmp_path: Path) -> None:
    store = open_store(db)
    config = Config()
    doc = curate.load_doc(store, date.fromisoformat(WEEK), config)
    assert doc is not None
    doc.meta["draft"] = True
    meta, _ = _front(formats.render(doc, "jekyll"))
    assert meta["draft"] is True and meta["published"] is False
    assert formats.output_path("jekyll", tmp_path, doc) == tmp_path / "_drafts" / "6月9日内容汇总.md"
    meta, _ = _front(formats.render(doc, "hugo"))
    assert meta["draft"] is True
    store.close()


def test_jekyll_protects_liquid_lookalikes(db: Path) -> None:
    store = open_store(db)
    doc = curate.load_doc(store, date.fromisoformat(WEEK), Config())
    assert doc is not None
    entry = doc.entries[0]
    entry.summary, entry.edited = "Vue 模板写作 {{ message }}，Liquid 不该吞掉它。", True
    text = formats.render(doc, "jekyll")
    _meta, body = _front(text)
    assert body.startswith("{% raw %}\n") and body.rstrip().endswith("{% endraw %}")
    assert "{{ message }}" in body
    store.close()


def test_markdown_and_html_formats(db: Path) -> None:
    markdown = _run(db, "digest", "--week", WEEK, "--format", "markdown")
    assert markdown.startswith("# 6月9日内容汇总\n\n") and "slug:" not in markdown
    html = _run(db, "digest", "--week", WEEK, "--format", "html")
    assert html.startswith("<!doctype html>") and "<h1>6月9日内容汇总</h1>" in html
    assert '<a href="https://mp.weixin.qq.com/s/s5vChAY6B2s_ZVK-ALYP2w"' in html
    assert "<script" not in html


def test_a_bad_format_is_a_usage_error(db: Path) -> None:
    result = CliRunner().invoke(app, ["--db", str(db), "digest", "--week", WEEK, "--format", "pdf"])
    assert result.exit_code != 0


def test_fetched_text_carries_no_html_into_any_format(db: Path) -> None:
    """A new entry's fetched title and summary come out as text in every format, while the
    imported week around it stays as the curator wrote it."""
    store = open_store(db)
    doc = curate.load_doc(store, date.fromisoformat(WEEK), Config())
    store.close()
    assert doc is not None
    title = "<script>alert(1)</script> Box<dyn Trait> {{< shortcode >}} {% tag %}"
    summary = "<img src=x onerror=alert(1)> {prompt, response} a_b*c*\n\n<!--more-->\n# heading"
    doc.blocks.append(DigestEntry(url_raw="https://x.example/", title_raw=title, separator="。", summary=summary, section=SECTIONS[3]))
    shown = f"《{title}》。" + summary.replace("\n\n", " ").replace("\n", " ")
    for fmt in ("hugo", "jekyll", "markdown"):
        _raw, body, _meta = split_front_matter(formats.render(doc, fmt))
        [line] = [line for line in body.split("\n") if "dyn Trait" in line]
        assert re.search(r"(?<!\\)[<{]", line) is None, (fmt, line)  # no tag, shortcode, Liquid or JSX
        # CommonMark with raw HTML on, unsanitized: what a generator that allows HTML would emit.
        html = MarkdownIt("commonmark").render(body)
        assert "<script" not in html and "<img src=x" not in html and "<h1>heading" not in html, fmt
        assert escape(shown, quote=False) in re.sub(r"<[^>]*>", "", html), (fmt, html)
    page = formats.render(doc, "html")
    assert "<script" not in page and "<img src=x" not in page
    assert escape(shown, quote=False) in re.sub(r"<[^>]*>", "", page)
