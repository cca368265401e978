"""Social archives whose header lines come in other orders (issue 13).

Another export of the same archives writes a block's header lines (date, name, @handle, status
URL) in another order, with other blank lines among them. Every block of the real archive, its
header lines reordered and spaced differently, must come back as the same post; a block whose
header cannot be read is rejected on its own, never merged into the post before it."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.errors import ImportFormatError
from tidings.records import ItemRecord, ParseResult
from tidings.sources import detect
from tidings.sources.social import looks_like, parse_social

# The header shapes, recognised here independently of the parser so that a parser bug cannot
# hide by also mis-cutting the blocks the tests build.
_HEADING_RE = re.compile(r"^### \d+$")
_INLINE_AUTHOR_RE = re.compile(r"^\S.*\s\d{1,4}-\d{1,2}-\d{1,2}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STATUS_LINE_RE = re.compile(r"^https://(?:x|twitter)\.com/\w+/status/\d+")
_FIRST_STATUS_ID = 1740813574505898026  # the id of the example in issue 13


@dataclasses.dataclass(frozen=True)
class Block:
    """One ``### NN`` block of the archive, cut into heading, header lines and body."""

    heading: str
    header: tuple[str, ...]  # the header lines, in file order
    gaps: tuple[tuple[str, ...], ...]  # the blank lines before each header line, then before the body
    body: tuple[str, ...]  # from the first body line to the line before the next heading

    @property
    def spacing(self) -> tuple[int, ...]:
        return tuple(len(gap) for gap in self.gaps)

    def render(self, header: Sequence[str] | None = None, spacing: Sequence[int] | None = None) -> str:
        """The block's text; with ``header`` and ``spacing`` (blank lines before each header line,
        then before the body) its header lines in that order and spacing instead."""
        if header is None or spacing is None:
            header, gaps = self.header, self.gaps
        else:
            gaps = tuple(("",) * n for n in spacing)
        assert len(gaps) == len(header) + 1
        lines = [self.heading]
        for gap, line in zip(gaps, header, strict=False):
            lines += [*gap, line]
        lines += gaps[-1]
        return "\n".join(lines + list(self.body))


def _gap(lines: Sequence[str], i: int) -> tuple[str, ...]:
    """The blank (or whitespace-only) lines from ``i`` on."""
    j = i
    while j < len(lines) and not lines[j].strip():
        j += 1
    return tuple(lines[i:j])


def split_blocks(text: str) -> list[Block]:
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _HEADING_RE.match(line)]
    assert starts and starts[0] == 0, "the archive starts with its first block"
    blocks = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        i = start + 1
        header: list[str] = []
        gaps: list[tuple[str, ...]] = []
        # One "Name @handle date" line, or three lines: the date, the name and the @handle;
        # then a status URL line, if one follows.
        while True:
            gap = _gap(lines, i)
            line = lines[i + len(gap)]
            inline = bool(header) and _INLINE_AUTHOR_RE.match(header[0])
            author_done = len(header) == (1 if inline else 3)
            if len(header) > 3 or (author_done and not _STATUS_LINE_RE.match(line)):
                break
            gaps.append(gap)
            header.append(line)
            i += len(gap) + 1
            if author_done:  # that was the status line
                break
        gaps.append(_gap(lines, i))
        body = tuple(lines[i + len(gaps[-1]) : end])
        blocks.append(Block(lines[start], tuple(header), tuple(gaps), body))
    return blocks


@pytest.fixture(scope="module")
def archive_text(corpus_dir: Path) -> str:
    return (corpus_dir / "social" / "posts-2023-12-part1.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def blocks(archive_text: str) -> list[Block]:
    return split_blocks(archive_text)


@pytest.fixture(scope="module")
def posts(archive_text: str) -> list[ItemRecord]:
    result = parse_social(archive_text, file="a.md")
    assert result.errors == [] and len(result.items) == 154  # one post per block, in order
    return result.items


def _fields(item: ItemRecord) -> dict[str, object]:
    # Where a block starts moves with the blank lines; everything else must not.
    return {k: v for k, v in dataclasses.asdict(item).items() if k != "line"}


def expected(post: ItemRecord, status: str | None) -> dict[str, object]:
    want = _fields(post)
    if status is not None:
        want["url"] = status.split("?")[0]
    return want


def own_status(post: ItemRecord, k: int) -> str | None:
    """A status URL line of the post's own account, as the other export writes it."""
    return (
        f"https://x.com/{post.author_handle}/status/{_FIRST_STATUS_ID + k}?s=20"
        if post.author_handle
        else None
    )


def is_quoted_status(line: str, post: ItemRecord) -> bool:
    return bool(_STATUS_LINE_RE.match(line)) and not (
        post.author_handle and line.startswith(f"https://x.com/{post.author_handle}/")
    )


def only(result: ParseResult) -> ItemRecord:
    assert result.errors == [], [str(e) for e in result.errors]
    [item] = result.items
    return item


# ------------------------------------------------------------------ the blocks the tests build


def test_blocks_are_cut_as_the_readme_describes(blocks: list[Block], archive_text: str) -> None:
    assert len(blocks) == 154
    assert "\n".join(block.render() for block in blocks) == archive_text  # nothing lost or moved
    stacked = [block for block in blocks if len(block.header) >= 3]
    assert len(stacked) == 52  # from the last "### 99" on
    for block in stacked:
        assert _DATE_RE.match(block.header[0]) and block.header[2].startswith("@"), block.heading
    quoted = [block for block in blocks if _STATUS_LINE_RE.match(block.header[-1])]
    assert [block.heading for block in quoted] == ["### 46", "### 57"]


# ------------------------------------------------------------------ every order of every block


def test_every_order_of_every_block_gives_the_same_post(blocks: list[Block], posts: list[ItemRecord]) -> None:
    checked = 0
    for k, (block, post) in enumerate(zip(blocks, posts, strict=True)):
        variants: list[tuple[tuple[str, ...], str | None]] = [(block.header, None)]
        status = own_status(post, k)
        if status and not _STATUS_LINE_RE.match(block.header[-1]):
            variants.append(((*block.header, status), status))
        for header, url in variants:
            for order in itertools.permutations(header):
                got = only(parse_social(block.render(order, [1] * (len(order) + 1)), file="b.md"))
                assert _fields(got) == expected(post, url), (block.heading, order)
                checked += 1
    assert checked > 52 * (6 + 24)  # the stacked blocks alone, with and without a status line


@st.composite
def reordered_archive(
    draw: st.DrawFn, blocks: list[Block], posts: list[ItemRecord]
) -> tuple[str, list[str | None]]:
    """The whole archive, each block's header lines shuffled (an own status URL line added to
    some) and spaced anew; with the status URL each block's post should get."""
    texts: list[str] = []
    urls: list[str | None] = []
    for k, (block, post) in enumerate(zip(blocks, posts, strict=True)):
        header = list(block.header)
        status = own_status(post, k) if not _STATUS_LINE_RE.match(header[-1]) else None
        if status and draw(st.booleans()):
            header.append(status)
        else:
            status = None
        order = draw(st.permutations(header))
        spacing = draw(st.lists(st.integers(0, 3), min_size=len(order) + 1, max_size=len(order) + 1))
        if is_quoted_status(order[-1], post):
            # A quoted post that ends the header is the body's first line: the blank lines after
            # it are body text and stay as they were.
            spacing[-1] = block.spacing[-1]
        texts.append(block.render(order, spacing))
        urls.append(status)
    return "\n".join(texts), urls


@pytest.fixture(scope="module")
def archive_strategy(
    blocks: list[Block], posts: list[ItemRecord]
) -> st.SearchStrategy[tuple[str, list[str | None]]]:
    return reordered_archive(blocks, posts)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_shuffled_headers_and_blank_lines_give_the_same_posts(
    archive_strategy: st.SearchStrategy[tuple[str, list[str | None]]],
    posts: list[ItemRecord],
    data: st.DataObject,
) -> None:
    text, urls = data.draw(archive_strategy)
    result = parse_social(text, file="r.md")
    assert result.errors == [], [str(e) for e in result.errors[:3]]
    assert len(result.items) == 154
    headings = [i + 1 for i, line in enumerate(text.split("\n")) if _HEADING_RE.match(line)]
    assert [item.line for item in result.items] == headings
    for got, post, url in zip(result.items, posts, urls, strict=True):
        assert _fields(got) == expected(post, url), post.line


# ------------------------------------------------------------------ the export of issue 13


def _issue_example(blocks: list[Block], posts: list[ItemRecord]) -> tuple[Block, ItemRecord]:
    k = next(
        k
        for k, post in enumerate(posts)
        if post.extra["layout"] == "stacked" and post.author_handle == "op7418"
    )
    return blocks[k], posts[k]


def test_the_reordered_example_of_the_issue(blocks: list[Block], posts: list[ItemRecord]) -> None:
    block, post = _issue_example(blocks, posts)
    date, name, handle = block.header
    assert (name, handle) == ("歸藏", "@op7418")
    status = "https://x.com/op7418/status/1740813574505898026?s=20"
    text = "\n".join(["### 286", date, status, name, handle, "", *block.body])
    got = only(parse_social(text, file="other-export.md"))
    assert (got.author, got.author_handle, got.published_at) == ("歸藏", "op7418", post.published_at)
    assert got.url == "https://x.com/op7418/status/1740813574505898026"
    assert got.text == post.text and status not in got.text and got.links == post.links
    assert (got.line, got.extra) == (1, {"block": "286", "layout": "stacked"})


def test_a_whole_archive_in_the_other_export_order(blocks: list[Block], posts: list[ItemRecord]) -> None:
    # Date, status URL, name, @handle, no blank lines among them: the export that lost 122 posts.
    texts = []
    urls: list[str | None] = []
    for k, (block, post) in enumerate(zip(blocks, posts, strict=True)):
        header: tuple[str, ...] = block.header
        status = own_status(post, k) if len(header) == 3 else None
        if status:
            date, name, handle = header
            header = (date, status, name, handle)
        texts.append(block.render(header, [0] * len(header) + [1]))
        urls.append(status)
    assert sum(1 for url in urls if url) == 52
    text = "\n".join(texts)
    assert looks_like(text)[0]
    result = parse_social(text, file="other-export.md")
    assert result.errors == [] and len(result.items) == 154
    for got, post, url in zip(result.items, posts, urls, strict=True):
        assert _fields(got) == expected(post, url), post.line


def test_an_archive_of_reordered_blocks_is_detected_as_social(
    blocks: list[Block], posts: list[ItemRecord], tmp_path: Path
) -> None:
    # How posts were merged before: when most headers were unreadable, detection called the file
    # a blog post, and the blog importer made one post of all of them.
    texts = []
    for k, (block, post) in enumerate(zip(blocks, posts, strict=True)):
        if len(block.header) == 3:
            date, name, handle = block.header
            texts.append(block.render((date, own_status(post, k) or "", name, handle), [0, 0, 0, 0, 1]))
    text = "\n".join(texts)
    path = tmp_path / "other-export.md"
    path.write_text(text, encoding="utf-8")
    assert detect(path, text.encode("utf-8"), []) == (
        "social",
        "52 '### NN' blocks, 52 with author/date lines",
    )
    assert len(parse_social(text).items) == 52


# ------------------------------------------------------------------ headers it cannot read


def test_an_unreadable_header_is_rejected_and_never_merged(
    blocks: list[Block], posts: list[ItemRecord]
) -> None:
    before, after = blocks[100], blocks[101]
    bad = "### 7\n\n2023-12-14\n\n这一行是正文，不是名字。\n\n@dotey\n\n第二段正文。"
    no_header = "### 8\n\n这个块没有作者行，只有正文。"
    bad_date = "### 9\n\n@dotey\n\n宝玉\n\n2023-02-30\n\n正文。"
    text = "\n".join([before.render(), bad, no_header, bad_date, after.render()])
    result = parse_social(text, file="mixed.md")
    assert [_fields(item) for item in result.items] == [_fields(posts[100]), _fields(posts[101])]
    for item in result.items:
        assert not any(
            words in (item.text or "") for words in ("这一行是正文", "第二段正文", "这个块没有作者行")
        ), item.line
    lines = text.split("\n")
    heading_of = {lines[i]: i + 1 for i in range(len(lines)) if lines[i] in ("### 7", "### 8", "### 9")}
    assert all(isinstance(e, ImportFormatError) and e.file == "mixed.md" for e in result.errors)
    assert [e.line for e in result.errors] == [heading_of["### 7"], heading_of["### 8"], heading_of["### 9"]]
    first, second, third = (e.reason for e in result.errors)
    assert first.startswith("### 7: author lines have a date but no name or @handle")
    assert f"line {heading_of['### 7'] + 4} is not a header line" in first and "这一行是正文" in first
    assert second.startswith("### 8: no author/date line under the heading")
    assert third.startswith("### 9: invalid date '2023-02-30'")


def test_a_sentence_after_date_and_handle_stays_in_the_body() -> None:
    # synthetic fixture: the real file has no header without a name line
    for first in ("推荐阅读：《某篇文章》", "洋同学的宏观笔记 @locean0410", "3D 可视化展示, GPT 模型"):
        text = f"### 1\n\n@dotey\n\n2023-12-14\n\n{first}\n\n第二段。\n"
        got = only(parse_social(text))
        assert (got.author, got.author_handle) == ("dotey", "dotey")
        assert got.text == f"{first}\n\n第二段。"


def test_name_and_handle_on_one_line_in_any_order() -> None:
    # synthetic fixture: the real file writes "Name @handle" only with the date on the same line
    lines = ("2023-12-14", "宝玉 @dotey", "https://twitter.com/dotey/status/42")
    for order in itertools.permutations(lines):
        got = only(parse_social("### 1\n" + "\n\n".join(order) + "\n\n正文。\n"))
        assert (got.author, got.author_handle, got.text) == ("宝玉", "dotey", "正文。")
        assert got.url == "https://x.com/dotey/status/42"
