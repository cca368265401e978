"""Importers that their input cannot break (issue 13, point 5): alias bombs, files cut short, NUL and
random bytes, binary files, two first imports at once, and local files named inside documents.

Every test reads the real corpus (../shared/corpus) and writes only under tmp_path."""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parserfuzz import check_clean, cut_file_test, garbled, injected_line_test
from sqlalchemy import select

from tidings.collect import add_urls, import_paths
from tidings.config import Config
from tidings.errors import ImportFormatError
from tidings.pipeline import fetch_and_extract
from tidings.records import DigestEntry, ItemRecord, ParseResult
from tidings.sources import (
    YAMLLimitError,
    blog,
    decode_bytes,
    digest,
    feeds,
    links,
    load_yaml,
    notes,
    opml,
    social,
)
from tidings.sources.urlcheck import FetchPolicy
from tidings.store import Item, open_store

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SOCIAL = CORPUS / "social" / "posts-2023-12-part1.md"
NOTES = CORPUS / "notes" / "ainotes-part1.md"
DIGESTS = sorted((CORPUS / "digests" / "blog").glob("*/index.md"))
BLOGS = sorted(p for p in (CORPUS / "blog").rglob("*") if p.suffix in (".md", ".mdx", ".markdown"))
FEEDS = sorted(p for p in (CORPUS / "feeds").iterdir() if p.suffix != ".tsv")
OPMLS = sorted(p for p in (CORPUS / "opml").iterdir() if p.suffix != ".tsv")
LINKS = EXAMPLES / "links.txt"  # the corpus has no links file; this is the project's own demo list

# Nine levels of nine: 9**9 strings once expanded, from under 900 bytes.
BOMB = "---\ntitle: boom\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
) + "---\n\nbody\n"


def tidings(*args: str, timeout: float = 120, limit_memory: bool = False) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process, as a user runs it."""

    def cap() -> None:  # a regression must fail the test, not take the machine's memory with it
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args], capture_output=True, text=True, timeout=timeout,
        preexec_fn=cap if limit_memory else None, env={**os.environ, "TIDINGS_PROGRESS": "0", "COLUMNS": "400"},
    )


def _digest_result(text: str, file: str) -> ParseResult:
    """A digest's entries as records with their line numbers, for the shared cut checks."""
    result = ParseResult(format="digest")
    try:
        doc = digest.parse_digest(text, path=file)
    except ImportFormatError as exc:
        result.errors.append(exc)
        return result
    offset = len(doc.front_matter_raw or "") + (1 if text.startswith("\ufeff") else 0)
    for block in doc.blocks:
        source = (block.verbatim or "") if isinstance(block, DigestEntry) else block.text
        if isinstance(block, DigestEntry):
            result.items.append(ItemRecord(url=block.url, title=block.title, summary=block.summary,
                                           line=text.count("\n", 0, offset) + 1))
        offset += len(source)
    return result


PARSERS = {
    "social": (lambda text, file: social.parse_social(text, file=file), [SOCIAL]),
    "notes": (lambda text, file: notes.parse_notes(text, file=file), [NOTES]),
    "blog": (lambda text, file: blog.parse_blog_post(text, file=file, root=str(CORPUS / "blog")), BLOGS),
    "digest": (_digest_result, DIGESTS),
    "links": (lambda text, file: links.parse_links(text, file=file), [LINKS]),
}

test_cut_social = cut_file_test(*PARSERS["social"], examples=40)
test_cut_notes = cut_file_test(*PARSERS["notes"], examples=30)
test_cut_blog = cut_file_test(*PARSERS["blog"], examples=40)
test_cut_digest = cut_file_test(*PARSERS["digest"], examples=40)
test_cut_links = cut_file_test(*PARSERS["links"], examples=20)
test_injected_social = injected_line_test(*PARSERS["social"], examples=30)
test_injected_notes = injected_line_test(*PARSERS["notes"], examples=20)
test_injected_digest = injected_line_test(*PARSERS["digest"], examples=30)
test_injected_links = injected_line_test(*PARSERS["links"], examples=20)


# --- decoding ------------------------------------------------------------------------------------


def test_social_cut_inside_a_character_stays_utf8_and_says_where() -> None:
    data = SOCIAL.read_bytes()
    cut = data.index("宝玉".encode()) + 4  # inside 玉
    decoded = decode_bytes(data[:cut])
    assert decoded.encoding == "utf-8" and decoded.text.endswith("宝")
    [(line, why)] = decoded.problems
    assert line == data[:cut].count(b"\n") + 1 and "cut short" in why
    result = social.parse_social(decoded.text, file="p.md")
    check_clean(result)
    assert not any("瀹" in (item.text or "") for item in result.items)


def test_gb18030_only_for_files_that_are_not_utf8_at_all() -> None:
    gbk = "标题：宝玉的帖子\n正文".encode("gb18030")
    assert decode_bytes(gbk).text == "标题：宝玉的帖子\n正文" and decode_bytes(gbk).encoding == "gb18030"
    # Damaged UTF-8 that happens to decode as GB18030 cleanly is still read as UTF-8.
    damaged = "宝玉 说：\n".encode() + b"\xff\n" + "第三行\n".encode()
    decoded = decode_bytes(damaged)
    assert decoded.encoding == "utf-8" and decoded.text == "宝玉 说：\n\n第三行\n"
    assert [line for line, _ in decoded.problems] == [2]


def test_real_gb18030_file_is_read_only_when_it_decodes_cleanly(tmp_path: Path) -> None:
    """The notes file saved as GB18030 imports the same notes as the UTF-8 original; one bad
    GB18030 sequence in it means it is no longer tried as GB18030: it is refused, never garbled."""
    text = NOTES.read_text(encoding="utf-8")
    gbk = text.encode("gb18030")
    decoded = decode_bytes(gbk)
    assert decoded.encoding == "gb18030" and decoded.text == text and not decoded.problems
    clean, broken = tmp_path / "clean.md", tmp_path / "broken.md"
    clean.write_bytes(gbk)
    at = gbk.index(b"\n", len(gbk) // 2) + 1
    broken.write_bytes(gbk[:at] + b"\x81\x20" + gbk[at:])  # 0x81 0x20 starts no GB18030 character
    assert decode_bytes(broken.read_bytes()).encoding != "gb18030"
    store = open_store(tmp_path / "t.db")
    report, _ = import_paths(store, [str(clean)], "notes", Config())
    expected = notes.parse_notes(text, file=str(clean)).items
    assert report.new == len(expected) > 0 and not report.failures
    report, _ = import_paths(store, [str(broken)], "notes", Config())
    assert report.new == 0 and report.failed == 1 and "save it as UTF-8" in report.failures[0][0]
    with store.session() as session:
        titles = {i.title for i in session.scalars(select(Item))}
    assert titles == {r.title for r in expected} and not any(garbled(t) for t in titles)


@pytest.mark.parametrize("feed", FEEDS, ids=lambda p: p.name)
def test_cut_feeds_never_raise_and_never_garble(feed: Path) -> None:
    data = feed.read_bytes()
    for offset in random.Random(feed.name).sample(range(len(data)), 6):
        parsed = feeds.parse_feed(data[:offset], file=feed.name)
        ok = b"\xef\xbf\xbd" in data  # a real feed that holds U+FFFD itself
        for item in parsed.items:
            assert not any(garbled(v, fffd_ok=ok) for v in (item.title, item.text, item.summary)), item.title
        assert all(isinstance(e, ImportFormatError) for e in parsed.errors)


def test_feed_with_damaged_utf8_reports_the_line_and_keeps_the_entries() -> None:
    data = (CORPUS / "feeds" / "jekyll_halfrost_feed.xml").read_bytes()
    full = feeds.parse_feed(data, file="f.xml")
    at = data.index(b"<title>", data.index(b"<item>") if b"<item>" in data else data.index(b"<entry>")) + 9
    parsed = feeds.parse_feed(data[:at] + b"\xff\xfe" + data[at:], file="f.xml")
    assert len(parsed.items) == len(full.items)
    assert not any("\ufffd" in (item.title or "") for item in parsed.items)
    assert [e.line for e in parsed.damage] == [data[:at].count(b"\n") + 1] and not parsed.errors


@pytest.mark.parametrize("path", OPMLS, ids=lambda p: p.name)
def test_cut_opml_never_raises(path: Path) -> None:
    data = path.read_bytes()
    for offset in random.Random(path.name).sample(range(len(data)), 6):
        try:
            found = opml.parse_opml(data[:offset], file=path.name)
        except ImportFormatError:
            continue
        assert not any(garbled(f.title, fffd_ok=b"\xef\xbf\xbd" in data) for f in found)


# --- YAML alias bombs ----------------------------------------------------------------------------


def test_alias_bomb_is_refused_in_under_a_second() -> None:
    assert len(BOMB.encode()) < 1000
    started = time.monotonic()
    result = blog.parse_blog_post(BOMB, file="bomb.md")
    assert time.monotonic() - started < 1
    assert not result.items and "alias bomb" in str(result.errors[0])
    with pytest.raises(ImportFormatError, match="alias bomb"):
        digest.parse_digest(BOMB.replace("title: boom", "title: 内容汇总"), path="blog/2024-01-07/index.md")
    with pytest.raises(YAMLLimitError):
        load_yaml("a: &a [*a]")  # an alias inside itself
    # Ordinary aliases still work, and a long document without aliases is not "too big".
    assert load_yaml("a: &x [1, 2]\nb: *x") == {"a": [1, 2], "b": [1, 2]}
    assert len(load_yaml("\n".join(f"k{i}: [{', '.join(['v'] * 5)}]" for i in range(3000)))) == 3000


def test_alias_bomb_in_a_directory_import_costs_only_that_file(tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "bomb.md").write_text(BOMB, encoding="utf-8")
    (posts / "fine.md").write_text("---\ntitle: 还在\n---\n\n正文\n", encoding="utf-8")
    started = time.monotonic()
    run = tidings("--db", str(tmp_path / "t.db"), "import", "--format", "blog", str(posts), limit_memory=True,
                  timeout=60)
    assert time.monotonic() - started < 30
    assert run.returncode == 1, run.stderr
    assert "alias bomb" in run.stderr and "Traceback" not in run.stderr
    listed = tidings("--db", str(tmp_path / "t.db"), "items", "--json")
    assert "还在" in listed.stdout and "boom" not in listed.stdout


# --- NUL bytes and binary files ------------------------------------------------------------------


def test_nul_byte_rejects_its_line_not_the_file(tmp_path: Path) -> None:
    week = tmp_path / "week.txt"
    week.write_bytes(b"https://a.example/one\nhttps://b.example/t\x00wo\nhttps://c.example/three\n")
    run = tidings("--db", str(tmp_path / "t.db"), "import", "--format", "links", str(week))
    assert run.returncode == 1, run.stderr  # some input failed: exit 1, never 3
    assert f"{week}:2" in run.stderr and "NUL" in run.stderr
    listed = tidings("--db", str(tmp_path / "t.db"), "items", "--json").stdout
    assert "a.example/one" in listed and "c.example/three" in listed and "b.example" not in listed
    # The parser alone, given text with a NUL (library callers), rejects the line the same way.
    result = links.parse_links("https://a.example/\nhttps://b\x00.example/\n", file="w.txt")
    assert [r.url for r in result.items] == ["https://a.example/"]
    assert [e.line for e in result.errors if isinstance(e, ImportFormatError)] == [2]


@pytest.mark.parametrize("fmt", ["auto", "links", "social", "notes", "blog", "digest", "feed", "opml"])
def test_binary_files_are_refused_by_every_format(tmp_path: Path, fmt: str) -> None:
    junk = tmp_path / "junk.md"
    junk.write_bytes(random.Random(fmt).randbytes(4096))
    exe = tmp_path / "prog.md"
    exe.write_bytes(Path(sys.executable).resolve().read_bytes()[:200_000])
    store = open_store(tmp_path / "t.db")
    report, _ = import_paths(store, [str(junk), str(exe)], fmt, Config())
    assert report.done == 0 and not report.item_ids
    assert report.failed == 2 and all("binary" in what or "not text" in what for what, _ in report.failures)
    with store.session() as session:
        assert session.scalars(select(Item)).first() is None


def test_binary_file_through_the_cli_is_exit_1(tmp_path: Path) -> None:
    junk = tmp_path / "noise.txt"
    junk.write_bytes(random.Random(7).randbytes(2048))
    run = tidings("--db", str(tmp_path / "t.db"), "import", str(junk))
    assert run.returncode == 1 and "binary" in run.stderr, run.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=64, max_size=3000))
def test_random_bytes_never_become_items_with_nul(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "r.txt"
    path.write_bytes(data)
    decoded = decode_bytes(data)
    records = links.parse_links(decoded.text, file="r.txt").items if not decoded.binary else []
    assert all("\x00" not in (r.url or "") and "\ufffd" not in (r.url or "") for r in records)


# --- cut files through the store and the CLI -----------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["social", "notes", "digest", "blog"]), st.floats(0.05, 1), st.randoms())
def test_cut_files_import_through_the_library(tmp_path_factory: pytest.TempPathFactory, fmt: str,
                                              where: float, rnd: random.Random) -> None:
    source = {"social": SOCIAL, "notes": NOTES}.get(fmt) or rnd.choice(DIGESTS if fmt == "digest" else BLOGS)
    data = source.read_bytes()
    folder = tmp_path_factory.mktemp("cut")
    cut = folder / source.parent.name / source.name  # digests keep their date folder (the week)
    cut.parent.mkdir()
    cut.write_bytes(data[: int(len(data) * where)])
    store = open_store(folder / "t.db")
    report, _ = import_paths(store, [str(cut)], fmt, Config())
    with store.session() as session:
        for item in session.scalars(select(Item)):
            assert not garbled(item.title) and not garbled(item.text), item.title
    assert all(what.startswith(str(cut)) for what, _ in report.failures)
    store.close()


@pytest.mark.parametrize("source", [SOCIAL, NOTES], ids=lambda p: p.name)
def test_cut_file_through_the_cli(tmp_path: Path, source: Path) -> None:
    data = source.read_bytes()
    cut = data.index("宝玉".encode() if source == SOCIAL else "思考".encode()) + 4
    path = tmp_path / source.name
    path.write_bytes(data[:cut])
    run = tidings("--db", str(tmp_path / "t.db"), "import", str(path))
    assert run.returncode == 1, run.stderr  # the damage is reported as a failed line
    line = data[:cut].count(b"\n") + 1
    assert f"{path}:{line}" in run.stderr and "cut short" in run.stderr
    listed = tidings("--db", str(tmp_path / "t.db"), "items", "--json").stdout
    assert "\\ufffd" not in listed and "瀹" not in listed and "\ufffd" not in listed


# --- two first imports at once -------------------------------------------------------------------


def test_two_imports_at_once_on_a_new_store(tmp_path: Path) -> None:
    for round_ in range(3):
        db = tmp_path / f"fresh-{round_}.db"
        procs = [
            subprocess.Popen([sys.executable, "-m", "tidings.cli", "--db", str(db), "import", "--format", "links",
                              str(LINKS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outcomes = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        for _out, err, code in outcomes:
            assert code == 0, err
            assert "already exists" not in err and "internal error" not in err


# --- local files named inside documents ----------------------------------------------------------


def test_local_files_inside_documents_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.html"
    secret.write_text("<html><body><article><p>" + "私密内容 " * 200 + "</p></article></body></html>",
                      encoding="utf-8")
    week = tmp_path / "blog" / "2024-06-09" / "index.md"
    week.parent.mkdir(parents=True)
    week.write_text(
        "---\ntitle: 6月9日内容汇总\n---\n\n## 🌟 AI 相关\n\n"
        f"[《本地文件》]({secret.as_uri()})。摘要\n\n[《裸路径》]({secret})。摘要\n",
        encoding="utf-8",
    )
    store = open_store(tmp_path / "t.db")
    import_paths(store, [str(week)], "digest", Config())
    report = fetch_and_extract(store, FetchPolicy(allow_files=True))
    assert report.failed == 2 and {reason for _, reason in report.failures} == {"local_file_refused"}
    with store.session() as session:
        rows = session.scalars(select(Item)).all()
        assert rows and all(i.error_reason == "local_file_refused" and not i.text for i in rows)
    # The same file named on the command line (`tidings add PATH`) is read.
    add_urls(store, [str(secret)])
    report = fetch_and_extract(store, FetchPolicy(allow_files=True), retry_failed=True)
    with store.session() as session:
        texts = [i.text or "" for i in session.scalars(select(Item))]
    assert any("私密内容" in t for t in texts)


def test_links_file_reads_only_files_in_its_own_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.html"
    outside.write_text("<html><body><article><p>" + "外面的文件 " * 200 + "</p></article></body></html>",
                       encoding="utf-8")
    folder = tmp_path / "list"
    (folder / "pages").mkdir(parents=True)
    (folder / "pages" / "in.html").write_text(
        "<html><body><article><p>" + "里面的文件 " * 200 + "</p></article></body></html>", encoding="utf-8")
    (folder / "week.txt").write_text(f"pages/in.html\n../outside.html\n{outside.as_uri()}\n", encoding="utf-8")
    store = open_store(tmp_path / "t.db")
    import_paths(store, [str(folder / "week.txt")], "links", Config())
    fetch_and_extract(store, FetchPolicy(allow_files=True))
    with store.session() as session:
        by_name = {Path(i.url).name: i for i in session.scalars(select(Item))}
    assert "里面的文件" in (by_name["in.html"].text or "")
    assert by_name["outside.html"].error_reason == "local_file_refused" and not by_name["outside.html"].text
