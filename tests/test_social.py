"""Social archive parser: the real archive, synthetic cases it lacks, and robustness."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parserfuzz import check_result, never_raises_tests

from tidings.errors import ImportFormatError
from tidings.records import ItemRecord, ParseResult
from tidings.sources import social
from tidings.sources.social import find_hashtags, find_links, looks_like, parse_social


@pytest.fixture(scope="module")
def archive_path() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "social" / "posts-2023-12-part1.md"
    if not path.is_file():
        pytest.fail(f"shared corpus file missing: {path}")
    return path


@pytest.fixture(scope="module")
def archive(archive_path: Path) -> ParseResult:
    return parse_social(archive_path.read_text(encoding="utf-8"), file=str(archive_path))


def block(result: ParseResult, number: str, nth: int = 0) -> ItemRecord:
    return [item for item in result.items if item.extra["block"] == number][nth]


def at_line(result: ParseResult, line: int) -> ItemRecord:
    return next(item for item in result.items if item.line == line)


# ------------------------------------------------------------------ the real archive


def test_real_archive_has_154_posts_one_per_block(archive: ParseResult, archive_path: Path) -> None:
    assert archive.errors == []
    assert len(archive.items) == 154
    assert archive.format == "social"
    lines = archive_path.read_text(encoding="utf-8").split("\n")
    headings = [i + 1 for i, line in enumerate(lines) if line.startswith("### ")]
    assert [item.line for item in archive.items] == headings
    assert sum(1 for item in archive.items if item.extra["block"] == "99") == 5
    assert all(item.kind == "post" for item in archive.items)
    assert len({item.url for item in archive.items}) == 154


def test_every_post_has_author_date_title_and_body(archive: ParseResult) -> None:
    for item in archive.items:
        assert item.author, item.line
        assert isinstance(item.published_at, datetime)
        assert (item.published_at.hour, item.published_at.minute) == (0, 0)
        assert datetime(2023, 11, 1) <= item.published_at < datetime(2024, 1, 1)
        assert item.title and len(item.title) <= social.TITLE_LIMIT
        assert item.text and item.language in ("zh", "en")


def test_inline_author_line(archive: ParseResult) -> None:
    first = block(archive, "01")
    assert (first.author, first.author_handle) == ("小互", "xiaohuggg")
    assert first.published_at == datetime(2023, 12, 3)
    assert first.title == "3D 可视化展示 GPT 模型的工作方式"
    assert first.links == ["https://bbycroft.net/llm", "https://github.com/bbycroft/llm-viz"]
    assert first.language == "zh"
    assert first.extra["layout"] == "inline"
    assert first.url.startswith("post:") and len(first.url) == len("post:") + 16


def test_split_year_typo(archive: ParseResult) -> None:
    post = block(archive, "13")  # "2宝玉 @dotey 023-12-06"
    assert (post.author, post.author_handle, post.published_at) == ("宝玉", "dotey", datetime(2023, 12, 6))
    assert post.line == 426


def test_authors_without_handle(archive: ParseResult) -> None:
    karpathy = block(archive, "30")
    assert (karpathy.author, karpathy.author_handle) == ("Andrej Karpathy", None)
    assert karpathy.published_at == datetime(2023, 12, 7)
    assert karpathy.title == 'On the "hallucination problem"'
    # "\# On the ..." is an escaped heading, not a hashtag
    assert karpathy.tags == []
    assert (block(archive, "31").author, block(archive, "31").author_handle) == ("Song Ma", None)
    assert (block(archive, "36").author, block(archive, "36").author_handle) == ("沉浸式翻译", None)
    # the same person with a handle elsewhere
    assert (block(archive, "71").author, block(archive, "71").author_handle) == (
        "Andrej Karpathy",
        "karpathy",
    )
    assert block(archive, "71").language == "en"


def test_quoted_status_lines_are_links_not_post_urls(archive: ParseResult) -> None:
    for number, quoted in (
        ("46", "https://x.com/sophiamyang/status/1733505991600148892?s=20"),
        ("57", "https://x.com/_akhaliq/status/1732606971876966849?s=20"),
    ):
        post = block(archive, number)
        assert post.url.startswith("post:")
        assert post.links[0] == quoted
        assert post.text.startswith(quoted)  # a quote is part of what the author posted
    assert block(archive, "57").author_handle == "turingbook"
    assert not any(
        item.url.startswith("https://") for item in archive.items
    )  # no own status line in this file


def test_stacked_layout_from_last_99(archive: ParseResult) -> None:
    fours = [item for item in archive.items if item.extra["block"] == "99"]
    assert [item.extra["layout"] for item in fours] == ["inline"] * 4 + ["stacked"]
    last = at_line(archive, 2691)
    assert (last.author, last.author_handle, last.published_at) == (
        "Barret李靖",
        "Barret_China",
        datetime(2023, 11, 30),
    )
    assert last.title == "学到两个读 arxiv PDF 论文的新技巧："
    after = [item for item in archive.items if item.line > 2691]
    assert after and all(item.extra["layout"] == "stacked" for item in after)
    assert (block(archive, "100").author, block(archive, "100").author_handle) == (
        "linear uncle",
        "LinearUncle",
    )
    assert block(archive, "100").published_at == datetime(2023, 12, 14)


def test_stacked_name_with_home_page(archive: ParseResult) -> None:
    post = block(archive, "140")  # "goldengrape https://quail.ink/goldengrape" then "@goldengrape"
    assert (post.author, post.author_handle) == ("goldengrape", "goldengrape")
    assert post.extra["author_url"] == "https://quail.ink/goldengrape"
    assert "https://quail.ink/goldengrape" not in post.links
    assert post.links == ["https://microsoft.com/en-us/research/blog/the-power-of-prompting/"]


def test_hashtags(archive: ParseResult) -> None:
    assert block(archive, "22").tags == ["AI"]  # \#AI 开源项目推荐：MLX
    assert block(archive, "45").tags == []  # "\# 开源项目推荐：baserow" is an escaped heading, not a tag
    assert block(archive, "69").tags == ["开源项目推荐"]  # \#开源项目推荐#：Pitivi (Weibo style)
    assert block(archive, "138").tags == ["开源项目推荐"]
    # The prompt in ### 121 has "\## Role:" lines: not tags.
    assert block(archive, "121").tags == []


def test_compiler_notes_move_to_note(archive: ParseResult) -> None:
    post = block(archive, "25")
    assert post.note == "已下载书籍「2023011大规模语言模型从理论到实践」。（2023-12-09）"
    assert "『" not in post.text
    assert block(archive, "39").note == "已经关注了。（2023-12-09）"
    assert sum(1 for item in archive.items if item.note) == 3


def test_labelled_links(archive: ParseResult) -> None:
    post = block(archive, "03")
    assert post.extra["labelled_links"] == [
        {"label": "原文", "url": "https://commoncog.com/action-produces-information/"}
    ]
    assert post.links[:2] == [
        "https://baoyu.io/translations/ideas/action-produces-information",
        "https://commoncog.com/action-produces-information/",
    ]


def test_reparse_is_identical(archive_path: Path, archive: ParseResult) -> None:
    again = parse_social(archive_path.read_text(encoding="utf-8"), file=str(archive_path))
    assert again.items == archive.items


def test_looks_like(archive_path: Path, corpus_dir: Path) -> None:
    ok, why = looks_like(archive_path.read_text(encoding="utf-8"))
    assert ok and "154" in why
    notes = (corpus_dir / "notes" / "ainotes-part1.md").read_text(encoding="utf-8")
    assert looks_like(notes)[0] is False
    assert looks_like("")[0] is False


# ------------------------------------------------------------------ synthetic cases


def test_own_handle_source_line_is_the_post_url() -> None:
    # synthetic fixture: the real file lacks this case
    text = (
        "### 01\n\n宝玉 @dotey 2023-12-03\n\nhttps://twitter.com/DoTeY/status/1731234567890?s=20\n\n"
        "推荐阅读：《某篇文章》\n\n原文：https://example.com/a\n"
    )
    result = parse_social(text, file="x.md")
    assert result.errors == []
    [post] = result.items
    assert post.url == "https://x.com/DoTeY/status/1731234567890"
    assert "status" not in post.text
    assert post.links == ["https://example.com/a"]
    assert post.title == "推荐阅读：《某篇文章》"


def test_own_handle_source_line_stacked_layout() -> None:
    # synthetic fixture: the real file lacks this case
    text = "### 7\n\n2023-12-14\n\n宝玉\n\n@dotey\n\nhttps://x.com/dotey/status/42\n\n正文。\n"
    [post] = parse_social(text).items
    assert (post.author, post.author_handle, post.url) == ("宝玉", "dotey", "https://x.com/dotey/status/42")
    assert post.text == "正文。"


def test_status_line_of_an_author_without_handle_is_a_quote() -> None:
    # synthetic fixture: the real file lacks this case
    text = "### 1\n\nSong Ma 2023-12-07\n\nhttps://x.com/someone/status/1\n\nbody\n"
    [post] = parse_social(text).items
    assert post.url.startswith("post:")
    assert post.links == ["https://x.com/someone/status/1"]


def test_stable_ids_follow_author_date_and_body() -> None:
    base = "### 1\n\nA @a 2023-12-07\n\nhello world\n"
    url = parse_social(base).items[0].url
    assert parse_social(base.replace("### 1", "### 9")).items[0].url == url  # block numbers do not matter
    assert parse_social(base.replace("@a", "@A")).items[0].url == url  # handles are case-insensitive
    assert parse_social(base.replace("hello", "bye")).items[0].url != url
    assert parse_social(base.replace("07", "08")).items[0].url != url
    with_note = base + "\n1『我的想法。（2023-12-09）』\n"
    assert parse_social(with_note).items[0].url == url  # adding a remark later keeps the id


def test_bad_blocks_are_reported_and_the_rest_imports() -> None:
    text = (
        "intro text\n"
        "### 1\n\njust a body without author line\n\n"
        "### 2\n\nA @a 2023-13-45\n\nbad date\n\n"
        "### 3\n\nB @b 2023-12-01\n\n"
        "### 4\n\nC @c 2023-12-02\n\nfine\n"
    )
    result = parse_social(text, file="f.md")
    assert [item.author for item in result.items] == ["C"]
    assert all(isinstance(e, ImportFormatError) for e in result.errors)
    assert [(e.file, e.line) for e in result.errors] == [("f.md", 1), ("f.md", 2), ("f.md", 6), ("f.md", 12)]
    assert "invalid date" in result.errors[2].reason
    assert "no body" in result.errors[3].reason


def test_no_blocks() -> None:
    assert parse_social("").items == [] and parse_social("").errors == []
    result = parse_social("# a notes file\n\ntext\n", file="n.md")
    assert result.items == [] and len(result.errors) == 1


def test_heading_inside_code_fence_does_not_split() -> None:
    text = "### 1\n\nA @a 2023-12-01\n\n```\n### 2\n```\nafter\n"
    [post] = parse_social(text).items
    assert "### 2" in post.text and post.text.endswith("after")


def test_crlf_and_bom() -> None:
    text = "\ufeff### 1\r\n\r\nA @a 2023-12-01\r\n\r\nline one\r\nline two\r\n"
    [post] = parse_social(text).items
    assert post.text == "line one\nline two"
    assert post.url == parse_social(text.replace("\r\n", "\n").lstrip("\ufeff")).items[0].url


def test_helpers() -> None:
    assert find_hashtags("\\#AI 开源\n#话题#：x\n# heading\nC# and #1\nurl https://a.b/#frag") == [
        "AI",
        "话题",
    ]
    assert find_links(
        "see [x](https://a.example/p) and https://b.example/q。\n![i](https://img.example/i.png)"
    ) == [
        "https://a.example/p",
        "https://b.example/q",
    ]
    assert find_links("```\nhttps://code.example\n```\n`https://inline.example` (https://c.example/x)") == [
        "https://c.example/x"
    ]


# ------------------------------------------------------------------ robustness


def _check(result: ParseResult) -> None:
    check_result(result, "post", titled=False)


_LINES = st.sampled_from(
    [
        "### 1",
        "### 99",
        "",
        "宝玉 @dotey 2023-12-03",
        "2宝玉 @dotey 023-12-06",
        "2023-12-14",
        "2023-02-30",
        "Barret李靖 ",
        "@Barret_China",
        "Andrej Karpathy 2023-12-07",
        "https://x.com/dotey/status/123?s=20",
        "https://x.com/other/status/9",
        "\\#AI 开源项目推荐：MLX",
        "1『已经关注了。（2023-12-09）』",
        "2『没有结尾",
        "```",
        "[x](https://a.example)",
        "正文。",
    ]
)


test_random_text_never_raises, test_structured_noise_never_raises = never_raises_tests(
    lambda text, file: parse_social(text, file=file), looks_like, _check, _LINES
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_truncated_real_archive_never_raises(archive_path: Path, data: st.DataObject) -> None:
    text = archive_path.read_text(encoding="utf-8")
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    result = parse_social(text[:cut], file="t.md")
    _check(result)
    assert len(result.items) + len(result.errors) <= 155
