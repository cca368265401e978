"""Plain-text pages (issue 18, part 2): ``tidings import --format text`` and its ``auto`` detection.

Two kinds of input:

* plain-text versions of the shared corpus's saved pages, made at test time (the project's own
  extraction gives the article text; the title is SOURCES.tsv's ``expected_title``), with a
  category/tag index written by us put before, after or inside their head;
* pages WRITTEN BY US in the same shape (labelled ``WRITTEN_BY_US`` below), for the layouts the
  corpus has no example of.

Nothing of the corpus is copied into the repository: every page is built from it when the test runs."""

from __future__ import annotations

import csv
import re
import time
from datetime import datetime
from functools import cache
from pathlib import Path

import pytest
from conftest import CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tidings.cli import run_cli
from tidings.errors import ExtractError, ImportFormatError
from tidings.records import ItemRecord
from tidings.sources import decode_bytes, detect
from tidings.sources import text as plain
from tidings.stages.extract import extract
from tidings.store import Item, open_store

# --- text written by us (WRITTEN_BY_US): index names, paragraphs, titles ------------------------------

WRITTEN_BY_US_CATEGORIES = ("技术\nGo Rust Python Java JavaScript TypeScript Kubernetes Docker 云原生 微服务 "
                            "数据库 Redis MySQL 前端 后端 算法 机器学习 深度学习 大模型 编译器 操作系统")
WRITTEN_BY_US_TAGS = ("标签\n并发 性能优化 GC 内存模型 泛型 反射 接口 错误处理 单元测试 基准测试 工具链 模块 依赖管理 "
                      "调度器 协程 通道 锁 原子操作 逃逸分析 内联")
WRITTEN_BY_US_ARCH = "架构\n分层 六边形 整洁架构 事件驱动 CQRS 领域驱动 服务网格 网关 限流 熔断 降级 缓存 消息队列"
WRITTEN_BY_US_EN_TAGS = ("Tags: golang rust python kubernetes docker terraform ansible grafana prometheus "
                         "postgres redis kafka nginx envoy istio linkerd vault consul nomad")
WRITTEN_BY_US_INDEXES = (WRITTEN_BY_US_CATEGORIES, WRITTEN_BY_US_TAGS, WRITTEN_BY_US_ARCH, WRITTEN_BY_US_EN_TAGS)


def names_of(block: str) -> str:
    """The names line of an index block: after its label line, or after ``Label:``."""
    return block.split("\n", 1)[1] if "\n" in block else block.split(":", 1)[1]


INDEX_NAMES = {name for block in WRITTEN_BY_US_INDEXES for name in names_of(block).split()}

WRITTEN_BY_US_PARAGRAPHS = (
    "缓存是后端服务里最常见的组件之一。本文从一个简单的 map 加锁实现讲起，逐步改进到分片锁和无锁结构。",
    "第一步，我们先写出最朴素的版本，然后用基准测试找出瓶颈所在。结果显示，锁竞争占了一半以上的时间。",
    "分片之后，每个分片各有一把锁，竞争随分片数下降；但分片太多也会浪费内存，需要权衡。",
    "Finally, we compare the three designs under a mixed read and write load, and explain why the sharded "
    "version wins on two cores while the lock-free one only pays off with many more.",
    "结论：先测量，再优化。没有数据支持的优化，往往只是把代码变复杂了。",
)
WRITTEN_BY_US_TITLE = "用 Go 写一个高性能的缓存"


def page(*parts: str) -> str:
    return "\n\n".join(parts) + "\n"


def only_item(text: str, file: str = "page.txt") -> ItemRecord:
    result = plain.parse_text_page(text, file=file)
    assert not [e for e in result.errors if "internal parser error" in str(e)]
    assert len(result.items) == 1, result.errors
    return result.items[0]


def squash(text: str) -> str:
    return " ".join(text.split())


def assert_article_kept(item: ItemRecord, paragraphs: list[str] | tuple[str, ...]) -> None:
    body = squash(item.text or "")
    for paragraph in paragraphs:
        assert squash(paragraph) in body, paragraph[:60]


def assert_no_index(item: ItemRecord) -> None:
    """No index in the tags, as the title, or anywhere in the article (every test puts its indexes
    outside the article)."""
    assert not item.tags and not item.category
    assert (item.title or "") not in INDEX_NAMES
    body = squash(item.text or "")
    for block in WRITTEN_BY_US_INDEXES:
        assert squash(names_of(block))[:80] not in body, block[:20]


# --- the shape rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", WRITTEN_BY_US_INDEXES)
def test_written_index_lines_are_name_runs(block: str) -> None:
    assert plain.is_name_run(names_of(block))


@pytest.mark.parametrize("line", [
    # WRITTEN_BY_US: things that look a little like an index but are text
    "How Alibaba is leading the evolution of online luxury shopping",  # an unpunctuated headline
    "One of the biggest benefits of using a systems language is control over memory, and with it speed.",
    "for i in range ( 10 ) : total += values [ i ] * weights [ i ]",
    "我们 使用 Go 和 Rust 写了 两个 版本，对比 了 它们 的 性能。",
    "1 2 3",
    "",
])
def test_text_is_not_a_name_run(line: str) -> None:
    assert not plain.is_name_run(line)


@pytest.mark.parametrize(("line", "day"), [
    ("2023年05月20日", "2023-05-20"),
    ("发布于 2023年5月2日 10:30 阅读 1234", "2023-05-02"),
    ("2023-05-20", "2023-05-20"),
    ("2023/5/20 08:00", "2023-05-20"),
    ("2023.05.20", "2023-05-20"),
    ("May 20, 2023", "2023-05-20"),
    ("Posted on September 3rd 2021 by Ann", "2021-09-03"),
    ("20 May 2023", "2023-05-20"),
    ("2023-02-30", None),  # no such day: no date rather than a wrong one
    ("version 1.2.3", None),
])
def test_find_date(line: str, day: str | None) -> None:
    found = plain.find_date(line)
    assert (found.date().isoformat() if found else None) == day


# --- layouts, on pages written by us ------------------------------------------------------------------


def test_indexes_first_then_title_date_article() -> None:
    item = only_item(page(WRITTEN_BY_US_CATEGORIES, WRITTEN_BY_US_ARCH, WRITTEN_BY_US_TAGS,
                          WRITTEN_BY_US_TITLE + "\n2023年05月20日", *WRITTEN_BY_US_PARAGRAPHS))
    assert item.title == WRITTEN_BY_US_TITLE
    assert item.published_at == datetime(2023, 5, 20)
    assert item.kind == "article" and item.url and item.url.startswith("text:")
    assert (item.text or "").startswith(WRITTEN_BY_US_PARAGRAPHS[0])
    assert_article_kept(item, WRITTEN_BY_US_PARAGRAPHS)
    assert_no_index(item)
    assert [b["label"] for b in item.extra["index_blocks"]] == ["技术", "架构", "标签"]
    assert item.extra["date_line"] == "2023年05月20日" and item.language == "zh"


def test_no_index() -> None:
    item = only_item(page(WRITTEN_BY_US_TITLE, "2023-05-20", *WRITTEN_BY_US_PARAGRAPHS))
    assert item.title == WRITTEN_BY_US_TITLE and item.published_at == datetime(2023, 5, 20)
    assert "index_blocks" not in item.extra
    assert_article_kept(item, WRITTEN_BY_US_PARAGRAPHS)


def test_index_at_the_end_and_between_title_and_body() -> None:
    at_end = only_item(page(WRITTEN_BY_US_TITLE, "2023/5/20", *WRITTEN_BY_US_PARAGRAPHS, WRITTEN_BY_US_TAGS,
                            WRITTEN_BY_US_EN_TAGS))
    between = only_item(page(WRITTEN_BY_US_TITLE, WRITTEN_BY_US_CATEGORIES, "May 20, 2023",
                             WRITTEN_BY_US_EN_TAGS, *WRITTEN_BY_US_PARAGRAPHS))
    for item in (at_end, between):
        assert item.title == WRITTEN_BY_US_TITLE and item.published_at == datetime(2023, 5, 20)
        assert_article_kept(item, WRITTEN_BY_US_PARAGRAPHS)
        assert_no_index(item)
        assert not set((item.text or "").split()) & {"Kubernetes", "golang", "逃逸分析", "内联"}


def test_a_short_title_right_above_unlabelled_tags() -> None:
    """"Go 并发" is as short as a label: with only index lines before the date, it is the title."""
    tags = names_of(WRITTEN_BY_US_TAGS)
    item = only_item(page(WRITTEN_BY_US_CATEGORIES, "Go 并发\n" + tags, "2023-05-20", *WRITTEN_BY_US_PARAGRAPHS))
    assert item.title == "Go 并发" and "title_derived" not in item.extra
    assert_article_kept(item, WRITTEN_BY_US_PARAGRAPHS)
    assert_no_index(item)
    assert [b["label"] for b in item.extra["index_blocks"]] == ["技术", None]


def test_a_list_inside_the_article_is_kept() -> None:
    """An index-shaped block between two paragraphs may be the article's own list: kept."""
    inside = page(WRITTEN_BY_US_TITLE, "2023-05-20", *WRITTEN_BY_US_PARAGRAPHS[:2], WRITTEN_BY_US_TAGS,
                  *WRITTEN_BY_US_PARAGRAPHS[2:])
    item = only_item(inside)
    assert squash(WRITTEN_BY_US_TAGS) in squash(item.text or "")
    assert "index_blocks" not in item.extra


def test_a_page_that_opens_with_prose_gets_a_derived_title() -> None:
    item = only_item(page(WRITTEN_BY_US_TAGS, *WRITTEN_BY_US_PARAGRAPHS))
    assert item.extra.get("title_derived") is True
    assert item.title and WRITTEN_BY_US_PARAGRAPHS[0].startswith(item.title.rstrip("…"))
    assert_article_kept(item, WRITTEN_BY_US_PARAGRAPHS)
    assert item.published_at is None


@pytest.mark.parametrize(("text", "title"), [
    ("Just one line, and it is the whole page.\n", "Just one line, and it is the whole page."),
    (WRITTEN_BY_US_TITLE + "\n2023-05-20\n", WRITTEN_BY_US_TITLE),
    (WRITTEN_BY_US_TAGS + "\n" + WRITTEN_BY_US_TITLE + "\n", WRITTEN_BY_US_TITLE),
])
def test_a_page_of_one_line_is_its_article(text: str, title: str) -> None:
    item = only_item(text)
    assert item.title == title and item.extra.get("title_derived") is True
    assert squash(title) in squash(item.text or "")


def test_same_page_same_identity_other_page_other_identity() -> None:
    text = page(WRITTEN_BY_US_TAGS, WRITTEN_BY_US_TITLE, "2023-05-20", *WRITTEN_BY_US_PARAGRAPHS)
    assert only_item(text).url == only_item(text.replace("\n", "\r\n")).url
    other = page(WRITTEN_BY_US_TITLE, "2023-05-20", *reversed(WRITTEN_BY_US_PARAGRAPHS))
    assert only_item(other).url != only_item(text).url


@pytest.mark.parametrize("text", ["", "\n \n\t\n", WRITTEN_BY_US_TAGS + "\n" + WRITTEN_BY_US_ARCH])
def test_no_article_is_a_clear_error(text: str) -> None:
    result = plain.parse_text_page(text, file="empty.txt")
    assert not result.items and len(result.errors) == 1
    error = result.errors[0]
    assert isinstance(error, ImportFormatError) and "empty.txt" in str(error)
    assert "internal" not in error.reason


# --- the shared corpus's pages as plain text ----------------------------------------------------------

DATE_FORMATS = ("{y}年{m:02d}月{d:02d}日", "{y}-{m:02d}-{d:02d}", "{y}/{m}/{d}", "{mon} {d}, {y}")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@cache
def corpus_pages() -> list[tuple[str, str, str]]:
    """(file, expected title, article text) of every shared page that has an article."""
    rows = list(csv.DictReader((CORPUS / "html" / "SOURCES.tsv").open(encoding="utf-8"), delimiter="\t"))
    pages = []
    for row in rows:
        try:
            found = extract((CORPUS / "html" / row["file"]).read_bytes(), f"https://{row['site']}/page")
        except ExtractError:
            continue  # error pages and home pages: there is no article to write down
        title = " ".join((row["expected_title"] or found.title or "").split())  # fragments name none
        if title and len((found.text or "").strip()) >= 100:
            pages.append((row["file"], title, found.text.strip()))
    return pages


def corpus_page_ids() -> list[str]:
    rows = csv.DictReader((CORPUS / "html" / "SOURCES.tsv").open(encoding="utf-8"), delimiter="\t")
    return [row["file"] for row in rows] if (CORPUS / "html" / "SOURCES.tsv").exists() else []


def as_plain_text(title: str, article: str, number: int, where: str) -> tuple[str, datetime]:
    day = datetime(2020 + number % 5, 1 + number % 12, 1 + number % 28)
    date_line = DATE_FORMATS[number % len(DATE_FORMATS)].format(
        y=day.year, m=day.month, d=day.day, mon=MONTHS[day.month - 1])
    indexes = "\n\n".join(WRITTEN_BY_US_INDEXES[number % 2: number % 2 + 2])
    if where == "head":
        text = page(indexes, title, date_line, article)
    elif where == "tail":
        text = page(title, date_line, article, indexes)
    else:
        text = page(title, indexes, date_line, article)
    return text, day


@pytest.mark.parametrize("where", ["head", "tail", "between"])
@pytest.mark.parametrize("file", corpus_page_ids())
def test_corpus_pages_as_plain_text(corpus_dir: Path, file: str, where: str) -> None:
    pages = {name: (title, article) for name, title, article in corpus_pages()}
    if file not in pages:
        pytest.skip("a page with no article (error page, home page, empty fragment)")
    title, article = pages[file]
    number = sorted(pages).index(file)
    text, day = as_plain_text(title, article, number, where)
    item = only_item(text, file=file.replace(".html", ".txt"))
    assert item.title == title
    assert item.published_at == day
    paragraphs = [p for p in article.split("\n") if p.strip()]
    assert squash(item.text or "").startswith(squash(paragraphs[0])), "the article's first sentence"
    assert_article_kept(item, paragraphs)
    assert_no_index(item)
    assert len(item.extra["index_blocks"]) == 2
    assert plain.looks_like(text)[0]


def test_most_corpus_pages_are_in_the_test() -> None:
    assert len(corpus_pages()) >= 20


def test_no_line_of_real_writing_is_a_name_run(corpus_dir: Path) -> None:
    """The corpus's Markdown (digests, blog posts, notes, social posts: 12,000 lines of real Chinese
    and English writing, lists and code) holds no category or tag index, so no line may look like one."""
    files = [p for p in corpus_dir.rglob("*.md") if p.name.lower() != "readme.md"]
    assert len(files) > 100
    runs = [(p.name, line[:80]) for p in files for line in p.read_text(encoding="utf-8", errors="replace").split("\n")
            if plain.is_name_run(line)]
    assert runs == []


# --- property tests: shuffled and repeated indexes, cuts, damage ----------------------------------------

blocks = st.lists(st.sampled_from(WRITTEN_BY_US_INDEXES), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=blocks, between=blocks, after_date=blocks, tail=blocks,
       order=st.permutations(list(WRITTEN_BY_US_PARAGRAPHS)), date_form=st.sampled_from(DATE_FORMATS))
def test_indexes_anywhere_outside_the_article(head: list[str], between: list[str], after_date: list[str],
                                              tail: list[str], order: list[str], date_form: str) -> None:
    date_line = date_form.format(y=2023, m=5, d=20, mon="May")
    item = only_item(page(*head, WRITTEN_BY_US_TITLE, *between, date_line, *after_date, *order, *tail))
    assert item.title == WRITTEN_BY_US_TITLE and item.published_at == datetime(2023, 5, 20)
    assert_article_kept(item, order)
    assert_no_index(item)
    blocks_written = len(head) + len(between) + len(after_date) + len(tail)
    assert len(item.extra.get("index_blocks", [])) == blocks_written


def damaged(data: bytes, crlf: bool, bom: bool, nul_at: int | None, long_line: bool) -> bytes:
    if long_line:
        data += ("很长的一行。" * 20000 + "\n").encode()
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    if nul_at is not None:
        at = nul_at % len(data)
        data = data[:at] + b"\x00" + data[at:]
    return (b"\xef\xbb\xbf" if bom else b"") + data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=blocks, tail=blocks, cut=st.floats(0, 1), crlf=st.booleans(), bom=st.booleans(),
       nul_at=st.none() | st.integers(0, 10**6), long_line=st.booleans())
def test_damaged_files_never_raise_and_keep_what_survives(head: list[str], tail: list[str], cut: float,
                                                          crlf: bool, bom: bool, nul_at: int | None,
                                                          long_line: bool) -> None:
    original = page(*head, WRITTEN_BY_US_TITLE, "2023年05月20日", *WRITTEN_BY_US_PARAGRAPHS, *tail).encode()
    data = damaged(original, crlf, bom, nul_at, long_line)
    data = data[: int(len(data) * cut)]
    decoded = decode_bytes(data)
    assert decoded.binary is None or len(data) < 8
    result = plain.parse_text_page(decoded.text, file="cut.txt")
    for error in result.errors:
        assert isinstance(error, ImportFormatError) and "internal" not in error.reason
    # Every paragraph the cut left whole and no NUL damaged is in the article.
    rejected = {line for line, _ in decoded.problems}
    lines = decoded.text.replace("\r", "").split("\n")
    survivors = [p for p in WRITTEN_BY_US_PARAGRAPHS
                 if any(line == p for number, line in enumerate(lines, 1) if number not in rejected)]
    if survivors:
        assert len(result.items) == 1
        assert_article_kept(result.items[0], survivors)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_parses_or_gives_a_clear_error(text: str) -> None:
    result = plain.parse_text_page(text, file="r.txt")
    assert len(result.items) + len(result.errors) >= 1
    for error in result.errors:
        assert isinstance(error, ImportFormatError) and "internal" not in error.reason
    for item in result.items:
        assert item.title and item.url and item.url.startswith("text:") and (item.text or "").strip()
    plain.looks_like(text)


def test_huge_page_is_read_with_a_cap_in_linear_time() -> None:
    paragraph = WRITTEN_BY_US_PARAGRAPHS[0] + "\n\n"
    lines = plain.MAX_CHARS // len(paragraph) * 2
    text = page(WRITTEN_BY_US_TAGS, WRITTEN_BY_US_TITLE, "2023-05-20") + paragraph * lines
    one_line_index = "标签\n" + " ".join(f"名字{i}" for i in range(200_000)) + "\n"
    for big in (text, one_line_index + text):
        started = time.perf_counter()
        result = plain.parse_text_page(big, file="huge.txt")
        assert time.perf_counter() - started < 20
        (item,) = result.items
        assert item.title == WRITTEN_BY_US_TITLE and len(item.text or "") <= plain.MAX_CHARS
        assert any("longer than" in str(e) for e in result.errors)
    assert re.search(r"名字199999", item.extra["index_blocks"][0]["text"])


@pytest.mark.parametrize("text", [
    "[a](" * 250_000,  # Markdown link fragments: social.find_links backtracks quadratically on these
    "a " * 1_000_000,
    "标签\n" * 500_000,
    ("技术\n" + "云原生 微服务 " * 5 + "\n") * 50_000,
    " " * 1_000_000 + "x",
    "```\n" * 300_000,
], ids=["link-fragments", "one-letter-names", "label-lines", "index-blocks", "spaces", "fences"])
def test_hostile_shapes_take_bounded_time(text: str) -> None:
    started = time.perf_counter()
    result = plain.parse_text_page(text, file="hostile.txt")
    plain.looks_like(text)
    assert time.perf_counter() - started < 15  # linear: about 2 s on a busy 2-core machine
    assert len(result.items) + len(result.errors) >= 1
    assert not [e for e in result.errors if "internal" in str(e)]


def test_page_links_are_the_bare_urls() -> None:
    text = ("原文：https://go.dev/blog/go1.22。另见 https://example.com/a?b=1，以及 (https://example.com/c).\n"
            "https://go.dev/blog/go1.22 again")
    assert plain.page_links(text) == ["https://go.dev/blog/go1.22", "https://example.com/a?b=1",
                                      "https://example.com/c"]


# --- detection and the CLI ----------------------------------------------------------------------------


def test_a_folder_imports_its_txt_files(tmp_path: Path) -> None:
    from tidings.sources import walk

    (tmp_path / "a.txt").write_text(page(WRITTEN_BY_US_TITLE, *WRITTEN_BY_US_PARAGRAPHS), encoding="utf-8")
    (tmp_path / "b.html").write_text("<html></html>", encoding="utf-8")
    found = {path.name: skip for path, skip, _root in walk([str(tmp_path)], "text")}
    assert found["a.txt"] is None and found["b.html"] and "not a .txt file" in found["b.html"]


def test_auto_detection_tells_pages_from_links(tmp_path: Path) -> None:
    text = page(WRITTEN_BY_US_CATEGORIES, WRITTEN_BY_US_TITLE, "2023-05-20", *WRITTEN_BY_US_PARAGRAPHS)
    assert detect(tmp_path / "p.txt", text.encode(), [], text)[0] == "text"
    links = Path(__file__).resolve().parents[1] / "examples" / "links.txt"
    assert not plain.looks_like(links.read_text(encoding="utf-8"))[0]
    written_links = ("# Links of the week. Comments may be long sentences, and say what the links are about.\n"
                     "# Another comment, which also reads like prose: it must not make this a page.\n"
                     "https://go.dev/blog/go1.22\n[《标题》](https://example.com/a)。一句摘要，说明它。\n")
    assert not plain.looks_like(written_links)[0]  # (detect() calls '# …' lines notes headings first)
    assert detect(tmp_path / "l.txt", written_links.encode(), [], written_links)[0] != "text"
    md = page("# " + WRITTEN_BY_US_TITLE, *WRITTEN_BY_US_PARAGRAPHS)
    assert detect(tmp_path / "p.md", md.encode(), [], md)[0] == "blog"  # a Markdown file stays a post


@pytest.mark.parametrize("fmt", ["text", "auto"])
def test_cli_import_then_run_gives_a_summary(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "t.db"
    saved = tmp_path / "saved-page.txt"
    saved.write_text(page(WRITTEN_BY_US_CATEGORIES, WRITTEN_BY_US_TAGS, WRITTEN_BY_US_TITLE, "2023年05月20日",
                          *WRITTEN_BY_US_PARAGRAPHS), encoding="utf-8")
    assert run_cli(["--db", str(db), "import", "--format", fmt, str(saved)]) == 0
    if fmt == "auto":
        assert "format text" in capsys.readouterr().err
    assert run_cli(["--db", str(db), "import", "--format", fmt, str(saved)]) == 0  # again: no duplicate
    assert run_cli(["--db", str(db), "run", "--week", "2023-05-21", "--out", str(tmp_path / "blog")]) == 0
    store = open_store(db)
    try:
        with store.session() as session:
            items = session.scalars(select(Item)).all()
            assert len(items) == 1
            item = items[0]
            assert item.title == WRITTEN_BY_US_TITLE and item.status == "extracted"
            assert item.summary and item.summary_origin == "extractive"
            assert squash(item.summary).split("。")[0] in squash(item.text or "")
            assert item.section
            assert not item.tags
    finally:
        store.close()


def test_cli_bad_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "t.db"
    only_index = tmp_path / "index-only.txt"
    only_index.write_text(WRITTEN_BY_US_TAGS + "\n", encoding="utf-8")
    code = run_cli(["--db", str(db), "import", "--format", "text", str(only_index)])
    err = capsys.readouterr().err
    assert code == 1 and "index-only.txt" in err and "Traceback" not in err
