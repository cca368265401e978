"""Digests compile with the real MDX compiler Docusaurus 3 uses (``@mdx-js/mdx`` 3, installed by
``npm ci --prefix tests/mdx``), and hostile fetched text comes out as plain text in every format:
no JSX, no ``{expressions}``, no ESM, no raw HTML, no emphasis or links it did not ask for.

Docusaurus 3 compiles ``.md`` as MDX unless ``markdown.format: 'detect'``, which makes it plain
Markdown (``format: 'md'``); both are checked. CommonMark is checked with markdown-it-py."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from typer.testing import CliRunner

from tidings import curate
from tidings.cli import app
from tidings.config import Config, DigestConfig
from tidings.publish import formats
from tidings.publish.docusaurus import escape_markdown, new_digest_doc, render_docusaurus
from tidings.records import DigestEntry
from tidings.sources.digest import parse_digest, split_front_matter

MDX_DIR = Path(__file__).parent / "mdx"
NODE = shutil.which("node")
SECTIONS = ["🌟 AI 相关", "📒 后端相关"]

HAVE_MDX = NODE is not None and (MDX_DIR / "node_modules" / "@mdx-js" / "mdx" / "package.json").is_file()
# Only the tests that run the compiler need Node; the CommonMark and HTML checks run anyway.
needs_mdx = pytest.mark.skipif(
    not HAVE_MDX,
    reason="node is not installed (.ci/run installs Debian's nodejs)"
    if NODE is None
    else "@mdx-js/mdx is not installed: run `npm ci --prefix tests/mdx` (.ci/run does)",
)

HOSTILE_TITLES = [
    "Ten Go tips {console.log(process.env)} <img src=x onError={() => alert(1)} />",
    "Box<dyn Trait>",
    "{prompt, response}",
    "<script>alert(1)</script>",
    "a_b*c*",
    "[x](javascript:alert(1))",
    "Use `code`, ``` fences and \\`escapes\\`",
    "<!-- hidden --> comment",
    "import x from 'y'",
    "export const meta = {a: 1}",
    "# Not a heading",
    "---",
    "1. not a list",
    "- not a list",
    ":::danger[Not an admonition]",
    "~~struck~~ a | b &amp; &#60;b&#62; AT&T",
    "Regex \\d+ and \\. and C:\\path\\",
    "<https://autolink.example/> and <a@b.example>",
    "**bold** __also__ ![img](x.png)",
]
HOSTILE_SUMMARIES = [
    "Summary with {process.exit(1)} and <Tabs>JSX</Tabs> and <b>bold</b>.",
    "First line.\n\nimport x from 'y'\nexport const a = 1\n# heading\n---\n<div>{1 + 1}</div>\n\n- item\n> quote",
    "import {readFileSync} from 'node:fs'",
    "`unclosed code and *emphasis* and _under_ and [link](https://evil.example/)",
    "<!-- comment --> and <!--truncate--> and {/* mdx comment */}",
    "Line\n    indented code\n\n```\nfence\n```",
]


def _plain(text: str) -> str:
    """What a reader should see: the text with its line breaks folded into spaces."""
    return re.sub(r"\s*\n\s*", " ", text).strip()


def _entries() -> tuple[list[DigestEntry], list[str], list[str]]:
    """Hostile new entries, the paragraph text each should render as, and the links there should be."""
    entries: list[DigestEntry] = []
    expected: list[str] = []
    links: list[str] = []
    for index, title in enumerate(HOSTILE_TITLES):
        summary = HOSTILE_SUMMARIES[index % len(HOSTILE_SUMMARIES)] if index % 3 else None
        url = f"https://news.example/{index}?q={{a}}&b=<c>"
        if index == 5:
            url = "javascript:alert(1)"  # shown as text, never a link
        elif index in (7, 8, 10, 11, 12):
            url = None  # a title with no link starts its line: "#", "---", "import", "1." there
        entries.append(
            DigestEntry(
                url_raw=url,
                title_raw=title,
                separator="。" if summary else None,
                summary=summary,
                section=SECTIONS[index % 2],
            )
        )
        shown = f"《{title}》。{_plain(summary)}" if summary else title
        if url is None or url.startswith("javascript:"):
            shown = f"{title}。{_plain(summary)}" if summary else title
        expected.append(shown)
        if url is not None and not url.startswith("javascript:"):
            links.append(url.replace("<", "%3C").replace(">", "%3E"))
    return entries, expected, links


def _hostile_doc() -> tuple[Any, list[str], list[str]]:
    entries, expected, links = _entries()
    doc = new_digest_doc(date(2024, 6, 9), entries, SECTIONS, DigestConfig())
    return doc, expected, links


def compile_mdx(paths: list[Path], fmt: str = "mdx") -> list[dict[str, Any]]:
    """Each file compiled by tests/mdx/compile.mjs; one report per file (see there)."""
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(MDX_DIR / "compile.mjs"), "--format", fmt, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(reports) == len(paths), result.stderr
    assert result.returncode == (0 if all(r["ok"] for r in reports) else 1), result.stderr
    return reports


def compile_text(tmp_path: Path, text: str, fmt: str = "mdx", name: str = "index.md") -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return compile_mdx([path], fmt)[0]


def assert_only_text(report: dict[str, Any], expected: list[str], links: list[str]) -> None:
    """The compiled digest is headings and paragraphs of plain text and the entries' links."""
    assert report["ok"], report["error"]
    assert report["jsx"] == [] and report["expressions"] == [] and report["esm"] == [], report
    assert report["html"] == [], report["html"]
    assert set(report["nodes"]) <= {"root", "heading", "paragraph", "text", "link"}, report["nodes"]
    assert sorted(report["links"]) == sorted(links)  # in section order, not in entry order
    texts = report["texts"]
    for text in expected:
        assert text in texts, (text, texts)


def _commonmark() -> MarkdownIt:
    # CommonMark with raw HTML on (the default) plus the GFM parts Docusaurus and Hugo have.
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def commonmark_blocks(markdown: str) -> tuple[set[str], list[str]]:
    """Every token type markdown-it-py finds, and the plain text of each paragraph and heading."""
    types: set[str] = set()
    texts: list[str] = []

    def walk(tokens: list[Token]) -> None:
        for token in tokens:
            types.add(token.type)
            if token.type == "inline":
                texts.append(
                    "".join(c.content if c.type in ("text", "code_inline") else " " if c.type == "softbreak" else "" for c in token.children or [])
                )
                walk(token.children or [])

    walk(_commonmark().parse(markdown))
    return types, texts


def assert_commonmark_text(markdown: str, expected: list[str]) -> None:
    types, texts = commonmark_blocks(markdown)
    allowed = {"heading_open", "heading_close", "paragraph_open", "paragraph_close", "inline", "text", "link_open", "link_close"}
    assert types <= allowed | {"image", "hr"}, types - allowed  # image: a cover; hr: none here
    assert "hr" not in types and "image" not in types
    for text in expected:
        assert text in texts, (text, texts)


# --- the escaping itself -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mdx", "md"])
@needs_mdx
def test_every_escape_renders_as_the_plain_character(tmp_path: Path, fmt: str) -> None:
    """Each ASCII punctuation character, alone and in pairs, at the start of a line and inside
    one, comes back as itself from MDX and from CommonMark."""
    punctuation = "".join(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum())
    samples = [punctuation, *punctuation, *(a + b for a in punctuation for b in "<{[*_`&#"), "&#60;", "&lt;", "& x"]
    texts = [f"{sample} tail" for sample in samples] + [f"head {sample}" for sample in samples]
    markdown = "\n\n".join(escape_markdown(text) for text in texts) + "\n"
    report = compile_text(tmp_path, markdown, fmt)
    assert report["ok"], report["error"]
    assert report["texts"] == texts
    assert set(report["nodes"]) == {"root", "paragraph", "text"}
    types, rendered = commonmark_blocks(markdown)
    assert rendered == texts
    assert types == {"paragraph_open", "paragraph_close", "inline", "text"}


@needs_mdx
def test_the_checks_see_unescaped_text(tmp_path: Path) -> None:
    """The checks below can fail: every hostile title written as it is, on a line of its own,
    breaks the MDX build or turns into something other than its plain text."""
    plain = {"root", "paragraph", "text"}
    for index, title in enumerate(HOSTILE_TITLES):
        report = compile_text(tmp_path, f"{title}\n", "mdx", name=f"raw{index}.md")
        assert (
            not report["ok"]
            or report["jsx"] or report["expressions"] or report["esm"]
            or set(report["nodes"]) != plain
            or report["texts"] != [title]
        ), title
    _types, texts = commonmark_blocks("[<script>alert(1)</script> a_b*c*](https://x.example/)\n")
    assert texts != ["<script>alert(1)</script> a_b*c*"]


# --- hostile entries through the library, every format ------------------------------------------


@pytest.mark.parametrize("fmt", ["mdx", "md"])
@needs_mdx
def test_hostile_new_digest_compiles_to_plain_text(tmp_path: Path, fmt: str) -> None:
    doc, expected, links = _hostile_doc()
    text = render_docusaurus(doc)
    report = compile_text(tmp_path, text, fmt)
    assert_only_text(report, expected, links)
    assert report["frontMatter"] == {"slug": "6月9日内容汇总", "title": "6月9日内容汇总", "authors": ["garfield"], "tags": []}
    assert [t for t in report["texts"] if t in SECTIONS] == SECTIONS
    assert_commonmark_text(split_front_matter(text)[1], expected)


def test_hostile_entries_parse_back_to_the_same_titles() -> None:
    """The escaped digest is still a tidings digest: importing it gives back the fetched titles."""
    doc, _expected, _links = _hostile_doc()
    reparsed = parse_digest(render_docusaurus(doc))
    linked = [e for e in doc.entries if e.url_raw is not None and not e.url_raw.startswith("javascript:")]
    titles = {e.title for e in reparsed.entries}
    for entry in linked:
        assert entry.title_raw in titles, entry.title_raw


@pytest.mark.parametrize("fmt", ["hugo", "jekyll", "markdown"])
def test_portable_formats_carry_no_raw_html(tmp_path: Path, fmt: str) -> None:
    doc, expected, links = _hostile_doc()
    text = formats.render(doc, fmt)
    _raw, body, _meta = split_front_matter(text)
    if fmt == "jekyll" and body.startswith("{% raw %}"):
        body = body.removeprefix("{% raw %}\n").rsplit("{% endraw %}", 1)[0]
    assert_commonmark_text(body, expected)
    assert "{{" not in body  # a Hugo shortcode or a Liquid output tag
    if HAVE_MDX:  # and what remark (Docusaurus's parser, also a CommonMark one) makes of it
        report = compile_text(tmp_path, body, "md")
        assert report["ok"] and report["html"] == [] and sorted(report["links"]) == sorted(links), report


def test_html_format_escapes(tmp_path: Path) -> None:
    doc, expected, _links = _hostile_doc()
    page = formats.render(doc, "html")
    tags = {re.match(r"</?(!?[a-z0-9]+)", tag.lower()).group(1) for tag in re.findall(r"<[^>]*>", page)}  # type: ignore[union-attr]
    assert tags <= {"!doctype", "html", "head", "meta", "title", "body", "article", "h1", "h2", "p", "a"}, tags
    assert "<!--" not in page and "javascript:" not in " ".join(re.findall(r"<[^>]*>", page))
    visible = html.unescape(re.sub(r"<[^>]+>", "", page))
    for text in expected:
        assert text in visible, text


@needs_mdx
def test_an_imported_digest_stays_verbatim_around_a_hostile_new_entry(tmp_path: Path, corpus_dir: Path) -> None:
    source = (corpus_dir / "digests" / "blog" / "2024-06-09" / "index.md").read_text(encoding="utf-8")
    doc = parse_digest(source)
    title = HOSTILE_TITLES[0]
    doc.blocks.append(DigestEntry(url_raw="https://x.example/", title_raw=title, separator="。", summary=HOSTILE_SUMMARIES[0], section=SECTIONS[1]))
    out = render_docusaurus(doc)
    assert out.startswith(source)
    report = compile_text(tmp_path, out, "mdx")
    assert report["ok"], report["error"]
    assert f"《{title}》。{HOSTILE_SUMMARIES[0]}" in report["texts"]
    assert report["jsx"] == [] and report["expressions"] == []


# --- through the CLI, on a real store -------------------------------------------------------------


@needs_mdx
def test_cli_run_writes_a_digest_that_compiles(tmp_path: Path) -> None:
    """``tidings add`` a saved page with a hostile <title> and hostile prose, ``tidings run --out``:
    the written blog post compiles, and the title and extracted summary are text in it."""
    title = "Ten Go tips {console.log(process.env)} <img src=x onError={() => alert(1)} /> Box<dyn Trait>"
    sentences = [
        "Box<dyn Trait> is how Rust spells a boxed trait object, and {prompt, response} is one turn of a chat.",
        "The author explains <script>alert(1)</script> and {process.exit(1)} with care and many small examples.",
        "The second part compares error handling in Go and Rust and explains why a_b*c* is not emphasis here.",
        "Finally the article shows that [x](javascript:alert(1)) and `code` are text for every reader of it.",
    ]
    body = "".join(f"<p>{html.escape(' '.join(sentences[i:] + sentences[:i]))}</p>" for i in range(len(sentences)))
    page = tmp_path / "hostile.html"
    page.write_text(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><article><h1>{html.escape(title)}</h1>{body}</article></body></html>",
        encoding="utf-8",
    )
    db = tmp_path / "cli.db"
    env = {**os.environ, "TIDINGS_DB": str(db)}
    runner = CliRunner()
    result = runner.invoke(app, ["--db", str(db), "add", str(page)], env=env)
    assert result.exit_code == 0, result.output
    # The page is seen today, so it belongs to the week that ends on the next week end from today.
    config = Config()
    week = curate.latest_week_end(curate.today(config) + timedelta(days=6), config.week_ends_on)
    out = tmp_path / "site"
    result = runner.invoke(app, ["--db", str(db), "run", "--week", week.isoformat(), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    written = (out / "blog" / week.isoformat() / "index.md").read_text(encoding="utf-8")
    assert "Box\\<dyn Trait>" in written, written
    for fmt in ("mdx", "md"):
        report = compile_text(tmp_path, written, fmt, name=f"cli-{fmt}.md")
        assert report["ok"], report["error"]
        assert report["jsx"] == [] and report["expressions"] == [] and report["esm"] == [] and report["html"] == []
        assert set(report["nodes"]) <= {"root", "heading", "paragraph", "text", "link"}, report["nodes"]
        assert report["links"] == [page.as_uri()]
        [entry] = [text for text in report["texts"] if text.startswith(f"《{title}》。")]
        summary = entry.split("》。", 1)[1]
        assert len(summary) > 40 and summary in " ".join(sentences * 2), summary
        assert "<" in summary or "{" in summary or "*" in summary or "`" in summary, summary


# --- the curator's own digests -------------------------------------------------------------------


@needs_mdx
def test_real_imported_digests_under_the_compiler(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Imported digests render verbatim, so whether they compile is the curator's business: this
    reports the ones that do not (it fails only if the compiler itself cannot run)."""
    paths = sorted((corpus_dir / "digests" / "blog").glob("*/index.md"))
    assert paths
    with capsys.disabled():
        for fmt in ("mdx", "md"):
            reports = compile_mdx(paths, fmt)
            bad = [r for r in reports if not r["ok"]]
            print(f"\n[mdx] format {fmt}: {len(reports) - len(bad)}/{len(reports)} corpus digests compile")
            for report in bad:
                print(f"  {Path(report['file']).parent.name}: {report['error']}")


# --- the real shared pages, through the CLI --------------------------------------------------------


@needs_mdx
def test_the_first_week_of_real_pages_compiles_in_every_format(tmp_path: Path, corpus_dir: Path) -> None:
    """The 30 shared pages added and one ``tidings run --out``, as a new user types it: the written
    Docusaurus post compiles with @mdx-js/mdx 3 (as MDX and as Markdown) to headings, paragraphs,
    text and links only, each kept page's title is plain text in it, and the Hugo, Jekyll and
    Markdown renderings of the same week carry no raw HTML."""
    pages = sorted(str(p) for p in (corpus_dir / "html").glob("*.html"))
    assert len(pages) >= 30
    db = tmp_path / "real.db"
    env = {**os.environ, "TIDINGS_DB": str(db)}
    runner = CliRunner()
    result = runner.invoke(app, ["--db", str(db), "add", *pages], env=env)
    assert result.exit_code == 0, result.output
    config = Config()
    week = curate.latest_week_end(curate.today(config) + timedelta(days=6), config.week_ends_on)
    out = tmp_path / "site"
    result = runner.invoke(app, ["--db", str(db), "run", "--week", week.isoformat(), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    written = (out / "blog" / week.isoformat() / "index.md").read_text(encoding="utf-8")
    listed = runner.invoke(app, ["--db", str(db), "items", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    items = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    for fmt in ("mdx", "md"):
        report = compile_text(tmp_path, written, fmt, name=f"real-{fmt}.md")
        assert report["ok"], report["error"]
        assert report["jsx"] == [] and report["expressions"] == [] and report["esm"] == [] and report["html"] == []
        assert set(report["nodes"]) <= {"root", "heading", "paragraph", "text", "link"}, report["nodes"]
        linked = [item for item in items if item["link"] in report["links"]]
        assert len(linked) >= 20, report["links"]
        for item in linked:
            title = _plain(item["title"])
            assert any(text == title or text.startswith(f"《{title}》。") for text in report["texts"]), title
    for fmt in ("hugo", "jekyll", "markdown"):
        result = runner.invoke(app, ["--db", str(db), "digest", "--week", week.isoformat(), "--format", fmt], env=env)
        assert result.exit_code == 0, result.output
        _raw, body, _meta = split_front_matter(result.stdout)
        if fmt == "jekyll" and body.startswith("{% raw %}"):
            body = body.removeprefix("{% raw %}\n").rsplit("{% endraw %}", 1)[0]
        types, _texts = commonmark_blocks(body)
        assert not [t for t in types if t.startswith("html")], (fmt, types)
        report = compile_text(tmp_path, body, "md", name=f"real-{fmt}.md")
        assert report["ok"] and report["html"] == [], (fmt, report)
