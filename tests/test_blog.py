"""Blog post parser: every row of blog/SOURCES.tsv, the quirks it lists, and robustness."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parserfuzz import check_result, never_raises_tests

from tidings.errors import ImportFormatError
from tidings.records import ItemRecord, ParseResult
from tidings.sources.blog import blog_path, looks_like, parse_blog_post

BLOG_ROOT = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "blog"


def _rows() -> list[dict[str, str]]:
    sources = BLOG_ROOT / "SOURCES.tsv"
    if not sources.is_file():
        return []
    with sources.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = _rows()

# Where SOURCES.tsv leaves title or date empty (nothing in the front matter), the parser falls
# back: title to the first level-1 heading or the file name, date to the file name or lastmod.
FALLBACK_TITLES = {
    "lijiaocn-lijiaocn.github.io/_posts/2014-06-22-非主流编程语言.md": "非主流编程语言",
    "lijiaocn-lijiaocn.github.io/_posts/2014-07-24-加解密技术.md": "加解密技术",
    "Wang-Ray-Wang-Ray.github.io/_posts/AI/2025-11-19-实践Kiro.md": "实践Kiro",
    "Wang-Ray-Wang-Ray.github.io/_posts/database/2017-10-25-BI解决方案.md": "BI解决方案",
    "zhaohuabing-hugo_blog/content/post/digital-nomad-draft.md": "digital-nomad-draft",
}
FALLBACK_DATES = {
    # TOML with only lastmod (Hugo's own fallback order ends in lastmod)
    "yuantops-blog/content/tech/thoughts_on_distributed_tracing_system.md": datetime(
        2021, 3, 31, 10, 47, 57, tzinfo=timezone(timedelta(hours=8))
    ),
}


def read(rel: str) -> str:
    # newline="" keeps CRLF files as they are, so the parser sees the real bytes' line endings
    with (BLOG_ROOT / rel).open(encoding="utf-8", newline="") as fh:
        return fh.read()


def parse(rel: str) -> ItemRecord:
    result = parse_blog_post(read(rel), file=str(BLOG_ROOT / rel), root=str(BLOG_ROOT))
    assert result.errors == []
    [item] = result.items
    return item


def expected_list(cell: str) -> list[str]:
    """SOURCES.tsv writes lists as JSON, strings raw, and false/null for no value."""
    cell = cell.strip()
    if cell in ("", "false", "null"):
        return []
    if cell.startswith("["):
        return [str(v) for v in json.loads(cell)]
    return cell.split()


def expected_date(cell: str) -> datetime:
    m = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})(.*)$", cell.strip())
    assert m, cell
    text = f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}{m.group(4)}"
    text = re.sub(r"\s*([+-]\d{2})(\d{2})$", r"\1:\2", text)  # "+0800" -> "+08:00"
    return datetime.fromisoformat(text)


def date_in_name(rel: str) -> datetime | None:
    name = Path(rel).name if Path(rel).stem != "index" else Path(rel).parent.name
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", name)
    return datetime(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def test_sources_tsv_has_45_rows() -> None:
    if not BLOG_ROOT.is_dir():
        pytest.fail(f"shared corpus not found at {BLOG_ROOT}")
    assert len(ROWS) == 45
    on_disk = sorted(
        str(p.relative_to(BLOG_ROOT))
        for p in BLOG_ROOT.rglob("*")
        if p.suffix in (".md", ".markdown", ".mdx")
    )
    assert sorted(row["file"] for row in ROWS) == on_disk


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_sources_row(row: dict[str, str]) -> None:
    rel = row["file"]
    item = parse(rel)
    assert item.kind == "blog"
    assert item.line == 1

    want_title = " ".join(row["title"].split()) or FALLBACK_TITLES[rel]
    assert item.title == want_title

    if row["date"]:
        want_date: datetime | None = expected_date(row["date"])
    else:
        want_date = FALLBACK_DATES.get(rel) or date_in_name(rel)
    assert want_date is not None
    assert item.published_at == want_date
    assert (item.published_at.tzinfo is None) == (want_date.tzinfo is None)

    categories = expected_list(row["categories"])
    assert item.extra["categories"] == categories
    assert item.category == (categories[0] if categories else None)
    assert item.tags == expected_list(row["tags"])

    assert item.url == f"blog:{rel}"  # no post in the sample has an absolute url/permalink
    assert item.extra["front_matter_format"] == (
        None if row["front_matter"] == "none" else row["front_matter"]
    )
    consumed = {"title", "date", "categories", "category", "tags"}
    keys = [k for k in row["front_matter_keys"].split(",") if k and k.lower() not in consumed]
    assert set(item.extra["front_matter"]) == set(keys)
    json.dumps(item.extra, ensure_ascii=False)  # the store writes extra as JSON
    assert item.text is not None and "\r" not in item.text
    assert item.language in ("zh", "en")

    assert looks_like(read(rel))[0] is (row["front_matter"] != "none")
    # re-importing gives the identical record
    assert parse(rel) == item


def test_tab_after_key_is_repaired() -> None:
    item = parse("pandaychen-pandaychen.github.io/_posts/2020-02-29-AUTOMAXPROCS-ANALYSIS.md")
    assert item.extra["front_matter_error"].endswith("read after turning TABs after keys into spaces")
    assert item.extra["front_matter"]["subtitle"] == "Docker 中的 CPU 调度总结"
    assert item.extra["front_matter"]["header-img"] is None
    assert item.category is None  # category: false
    assert item.author == "pandaychen"


def test_front_matter_never_closed_is_body() -> None:
    item = parse("lijiaocn-lijiaocn.github.io/_posts/2014-07-24-加解密技术.md")
    assert "never closed" in item.extra["front_matter_error"]
    assert item.text.startswith("---\nlayout: default\ntitle: https证书的制作")
    assert item.tags == [] and item.extra["front_matter"] == {}


def test_stray_characters_before_front_matter() -> None:
    item = parse("lijiaocn-lijiaocn.github.io/_posts/2014-06-22-非主流编程语言.md")
    assert item.extra["front_matter_format"] is None and "front_matter_error" not in item.extra
    assert item.text.startswith("／‘---")


def test_blank_line_before_front_matter() -> None:
    item = parse("zhaohuabing-hugo_blog/content/post/digital-nomad-draft.md")
    assert item.extra["front_matter"]["draft"] is True
    assert item.author == "赵化冰"


def test_author_with_no_break_spaces_and_quotes() -> None:
    assert (
        parse("zhaohuabing-hugo_blog/content/post/2021-07-10-full-stack-service-mesh.md").author == "赵化冰"
    )


def test_dates() -> None:
    cst = timezone(timedelta(hours=8))
    assert parse("lijiaocn-lijiaocn.github.io/_posts/2025-09-16-ai-online-tools.md").published_at == datetime(
        2025, 9, 16, 19, 36, 16, tzinfo=cst
    )
    one_digit = parse("Huxpro-huxpro.github.io/_posts/2014-10-01-why-alibaba-ux-sucks.markdown")
    assert one_digit.published_at == datetime(2014, 10, 1, 12, 0)
    xor = parse("yuantops-blog/content/tech/understanding-xor.md")  # TOML native datetime
    assert xor.published_at == datetime(2019, 7, 25, tzinfo=cst)
    assert xor.extra["front_matter"]["lastmod"] == "2019-11-21T15:54:40+08:00"
    assert parse("yuantops-blog/content/tech/sync-pool-benchmark.md").published_at == datetime(
        2018, 5, 11, 10, 33, 25, tzinfo=UTC
    )
    # the front matter wins over a different date in the file name
    podsync = "dazkarieh-print.github.io/content/post/20230220利用NAS docker建立youtube的播客中转站podsync.md"
    assert parse(podsync).published_at == datetime(2023, 2, 22, 9, 18, 26, tzinfo=cst)
    # lijiaocn's createdate (2018/10/05) loses to the file name, as in Jekyll
    assert parse(
        "lijiaocn-lijiaocn.github.io/_posts/2018-10-04-k8s-class-concepts.md"
    ).published_at == datetime(2018, 10, 4)


def test_excerpts() -> None:
    deploy = parse("zxuqian-zxuqian.cn/blog/2020-03-03-deploy-a-docusaurus-site.md")
    assert deploy.extra["excerpt"].startswith("import useBaseUrl")
    assert "<!--truncate-->" not in deploy.extra["excerpt"]
    assert "<!--truncate-->" in deploy.text  # the body stays as written
    # "<!-- truncate -->" right after the front matter: no excerpt
    assert "excerpt" not in parse("kuizuo-blog/blog/develop/SSE 服务器发送事件.md").extra
    assert (
        parse("zxuqian-zxuqian.cn/lifestyle/2021-06-04-programmer-choose-lie-down.md")
        .extra["excerpt"]
        .startswith("在“内卷”浪潮的冲涮下")
    )
    mdx = parse("tikazyq-marvinzhang.dev/i18n/zh/docusaurus-plugin-content-blog/2025-02-11-deepseek.mdx")
    assert mdx.extra["excerpt"].startswith("# DeepSeek：技术民主化的先锋，还是搅局者？")
    assert "{/* truncate */}" not in mdx.extra["excerpt"]
    hugo_more = parse("cnych-qikqiak.com/content/post/Curosr Rules.md")
    assert hugo_more.extra["excerpt"].startswith("[![Cursor Rules]")


def test_thematic_breaks_after_front_matter_are_body() -> None:
    item = parse("devstream-io-website/blog/2099-12-31-Archive-and-Tags/index.md")
    assert item.title == "Archive and Tags" and item.tags == []
    assert item.text.startswith("---") or "---" in item.text


def test_duplicate_keys_last_wins() -> None:
    item = parse("coderzh-gohugo.org/content/post/coderzh-automated-deploy-hugo.md")
    assert item.extra["front_matter"]["keywords"] == ["GitCafe", "部署"]
    assert item.tags == []


def test_links_skip_images_and_relative_paths() -> None:
    item = parse("devstream-io-website/blog/2022-04-12-dagger/index.md")
    assert all(link.startswith(("http://", "https://")) for link in item.links)
    assert not any(link.endswith((".jpg", ".png")) for link in item.links)


def test_blog_path_without_root() -> None:
    guessed = {row["file"]: blog_path(str(BLOG_ROOT / row["file"])) for row in ROWS}
    wrong = sorted(rel for rel, path in guessed.items() if path != rel)
    # a top-level folder that is no known layout folder cannot be told apart from the corpus
    # folder above it; pass root for those
    assert wrong == ["zxuqian-zxuqian.cn/lifestyle/2021-06-04-programmer-choose-lie-down.md"]
    assert blog_path("post.md") == "post.md"
    assert blog_path("/x/site/_posts/2020/a.md", root="/x") == "site/_posts/2020/a.md"


# ------------------------------------------------------------------ synthetic cases


def test_absolute_url_in_front_matter() -> None:
    text = "---\ntitle: T\npermalink: https://blog.example/p/1\n---\nbody\n"
    [item] = parse_blog_post(text, file="/x/site/_posts/2020-01-02-p.md").items
    assert item.url == "https://blog.example/p/1"
    assert item.published_at == datetime(2020, 1, 2)


def test_malformed_yaml_falls_back_to_lines() -> None:
    text = "---\ntitle: a: b: [c\ndate: 2021-02-03 04:05\ncategories: 技术 随笔\ntags:\n  - x\n  - 'y'\n---\n# H\n"
    [item] = parse_blog_post(text, file="p.md").items
    assert item.title == "a: b: [c"
    assert item.published_at == datetime(2021, 2, 3, 4, 5)
    assert item.extra["categories"] == ["技术", "随笔"] and item.tags == ["x", "y"]
    assert item.extra["front_matter_error"].startswith("YAML:")


def test_malformed_toml_falls_back_to_lines() -> None:
    text = '+++\ntitle = "T"\ndate = 2021-02-03T04:05:06+08:00\ntags = ["a", "b"]\nbroken = \n+++\nbody\n'
    [item] = parse_blog_post(text, file="p.md").items
    assert item.title == "T" and item.tags == ["a", "b"]
    assert item.published_at == datetime(2021, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=8)))
    assert item.extra["front_matter_error"].startswith("TOML:")


def test_front_matter_that_is_not_a_mapping() -> None:
    [item] = parse_blog_post("---\n- a\n- b\n---\n# Heading\ntext\n", file="dir/2020-05-06-slug.md").items
    assert item.title == "Heading" and item.published_at == datetime(2020, 5, 6)
    assert "not a mapping" in item.extra["front_matter_error"]


def test_title_fallbacks() -> None:
    assert (
        parse_blog_post("# Real title {#anchor}\n\n## 目录\n", file="a/2020-01-01-x.md").items[0].title
        == "Real title"
    )
    assert parse_blog_post("## 目录\ntext\n", file="a/2020-01-01-slug-name.md").items[0].title == "slug-name"
    assert (
        parse_blog_post("```\n# comment\n```\n", file="a/2022-04-12-dagger/index.md").items[0].title
        == "dagger"
    )
    no_title = parse_blog_post("---\ntitle: ''\n---\ntext", file="20190322一个标题.md").items[0]
    assert (no_title.title, no_title.published_at) == ("一个标题", datetime(2019, 3, 22))


def test_empty_file_is_rejected() -> None:
    result = parse_blog_post(" \n\n", file="e.md")
    assert result.items == []
    [error] = result.errors
    assert isinstance(error, ImportFormatError) and error.file == "e.md"


def test_odd_values_stay_json_serialisable() -> None:
    text = "---\ntitle: 42\ndate: 2021-99-99\nwhen: 2020-01-01\nnested: {a: [1, 2.5, .nan, {b: 2020-01-01 10:00:00}]}\ncategories: [[x, y], null, true]\n---\n"
    [item] = parse_blog_post(text, file="p.md").items
    json.dumps(item.extra, allow_nan=False)
    assert item.title == "42"
    assert item.extra["front_matter"]["when"] == "2020-01-01"
    assert item.extra["categories"] == ["x", "y"]


# ------------------------------------------------------------------ robustness


def _check(result: ParseResult) -> None:
    check_result(result, "blog")


_LINES = st.sampled_from(
    [
        "---",
        "--- ",
        "+++",
        "",
        "title: x",
        "title = 'x'",
        "date: 2014-10-1 12:00:00",
        "date = 2019-07-25T00:00:00+08:00",
        "date: '2025-09-16 19:36:16 +0800'",
        "subtitle:\tTAB",
        "tags:",
        "  - a",
        "tags: [a, b",
        "category: false",
        "<!--truncate-->",
        "{/* truncate */}",
        "# Heading",
        "```",
        "key: &a [*a]",
        "!!python/object:os.system",
    ]
)


test_random_text_never_raises, test_structured_noise_never_raises = never_raises_tests(
    lambda text, file: parse_blog_post(text, file=file), looks_like, _check, _LINES,
    files=["p.md", "a/2020-02-30-x/index.md", "#.mdx"], max_lines=30,
)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([row["file"] for row in ROWS] or ["missing"]), st.floats(min_value=0, max_value=1))
def test_truncated_real_posts_never_raise(rel: str, fraction: float) -> None:
    text = read(rel)
    result = parse_blog_post(
        text[: int(len(text) * fraction)], file=str(BLOG_ROOT / rel), root=str(BLOG_ROOT)
    )
    _check(result)
    assert len(result.items) + len(result.errors) == 1
