"""The CLI's edges, through ``tidings.cli.run_cli`` on a real SQLite store: `add` checks every
argument before storing any, `digest` only reads, `-q`/`-v`/`--version`/help, and `feeds add` /
`feeds import` go through the one URL check (``collect.url_refusal``); and the light commands import
only what they use."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tidings import pipeline
from tidings.cli import run_cli
from tidings.records import ItemRecord
from tidings.store import Digest, DigestEntryRow, Item, Source, Store, open_store

# A literal public address: checked without any DNS lookup, and never fetched by these tests.
PUBLIC_FEED = "https://93.184.216.34/feed.xml"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "edges.db"


def cli(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(["--db", str(db), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def count(db: Path, model: type) -> int:
    store = open_store(db)
    try:
        with store.session() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        store.close()


def seen_in_week(store: Store, url: str, title: str, summary: str | None, day: str = "2024-06-05") -> int:
    """An extracted item seen on ``day``: a candidate for that week's digest."""
    text = "正文。" * 40
    report = pipeline.ingest(store, [ItemRecord(url=url, title=title, summary=summary, text=text)],
                             source_kind="test", locator="edges")
    with store.session() as session:
        item = session.get(Item, report.item_ids[0])
        assert item is not None and item.status == "extracted"
        item.seen_at = datetime.fromisoformat(day + "T09:00:00").replace(tzinfo=UTC)
        return item.id


# --- add -------------------------------------------------------------------------------------------


def test_add_refuses_every_bad_argument_and_stores_nothing(capsys: pytest.CaptureFixture[str], db: Path,
                                                           tmp_path: Path) -> None:
    code, _out, err = cli(capsys, db, "add", "https://go.dev/blog/go1.22", "not-a-url", "/nonexistent.html",
                          "mailto:someone@example.org", "http://")
    assert code == 2
    for bad in ("not-a-url", "/nonexistent.html", "mailto:someone@example.org", "http://"):
        assert f"  {bad}: " in err, bad
    assert "https://go.dev/blog/go1.22:" not in err  # the good one is not named as bad
    assert count(db, Item) == 0

    page = tmp_path / "saved.html"
    page.write_text("<html><title>t</title><body><p>saved</p></body></html>", encoding="utf-8")
    other = tmp_path / "other.html"
    other.write_text("<p>other</p>", encoding="utf-8")
    code, _out, err = cli(capsys, db, "add", "https://go.dev/blog/go1.22", str(page), other.as_uri(),
                          "http://10.0.0.8/internal")  # private: refused at fetch time, not here
    assert code == 0, err
    assert count(db, Item) == 4


# --- digest only reads -------------------------------------------------------------------------------


def test_digest_snaps_to_the_week_end_and_creates_no_row(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    store = open_store(db)
    seen_in_week(store, "https://example.org/a", "周六之前的一篇文章", "有摘要的文章。")
    store.close()
    code, out, err = cli(capsys, db, "digest", "--week", "2024-06-08")
    assert code == 0, err
    assert "2024-06-08 is not a week end; using 2024-06-09" in err
    assert "周六之前的一篇文章" in out and "6月9日" in out  # the week of 2024-06-09
    assert count(db, Digest) == 0 and count(db, DigestEntryRow) == 0
    code, out, err = cli(capsys, db, "digest", "--week", "2024-06-09", "--format", "markdown")
    assert code == 0 and "周六之前的一篇文章" in out and "not a week end" not in err
    assert count(db, Digest) == 0


def test_digest_of_an_empty_week_says_so_and_exits_0(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, out, err = cli(capsys, db, "digest", "--week", "2030-01-06")
    assert code == 0
    assert out == ""
    assert "nothing for week 2030-01-06" in err
    assert count(db, Digest) == 0


def test_digest_renders_a_draft_with_new_candidates_without_changing_it(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    from tidings import curate
    from tidings.config import Config

    store = open_store(db)
    seen_in_week(store, "https://example.org/first", "已在草稿里的文章", "摘要一。")
    curate.assemble_week(store, datetime(2024, 6, 9).date(), Config())
    seen_in_week(store, "https://example.org/later", "后来才加入的文章", "摘要二。")
    store.close()
    code, out, err = cli(capsys, db, "digest", "--week", "2024-06-09")
    assert code == 0, err
    assert "已在草稿里的文章" in out and "后来才加入的文章" in out
    assert count(db, DigestEntryRow) == 1  # the draft in the store is as it was


def test_digest_week_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, _out, err = cli(capsys, db, "digest", "--week", "9999-12-31")
    assert code == 2 and "out of range" in err and "internal error" not in err


# --- -q, -v, --version, help ------------------------------------------------------------------------


def test_quiet_leaves_only_the_output_and_errors(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    store = open_store(db)
    seen_in_week(store, "https://example.org/a", "安静模式下的文章", "摘要。")
    store.close()
    code, out, err = cli(capsys, db, "-q", "digest", "--week", "2024-06-08")
    assert code == 0 and "安静模式下的文章" in out
    assert err == ""  # no "not a week end" note
    code, out, err = cli(capsys, db, "-q", "add", "https://go.dev/")
    assert code == 0 and err == "" and out == ""  # no summary table
    code, _out, err = cli(capsys, db, "-q", "add", "not-a-url")
    assert code == 2 and "error:" in err and "not-a-url" in err
    code, _out, err = cli(capsys, db, "digest", "--week", "2030-01-06")  # -q does not stick
    assert "nothing for week" in err


def test_verbose_counts_version_and_help_shows_no_types_on_flags(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    code, out, _err = cli(capsys, db, "--version")
    assert code == 0 and out.strip() == "tidings 0.1.0"
    code, _out, err = cli(capsys, db, "-vv", "digest", "--week", "2030-01-06")
    assert code == 0 and "nothing for week" in err
    code, _out, _err = cli(capsys, db, "-v", "-v", "items")
    assert code == 0
    for args in (["--help"], ["add", "--help"], ["digest", "--help"], ["feeds", "add", "--help"]):
        code, out, _err = cli(capsys, db, *args)
        assert code == 0, args
        assert "Usage" in out, args
        assert "<bool>" not in out and "<int>" not in out and "<list[str]>" not in out, (args, out)
    code, out, _err = cli(capsys, db, "--help")
    assert "--version" in out and "-vv" in out


# --- feeds: the one URL check ------------------------------------------------------------------------


def test_feeds_add_refuses_files_and_private_addresses(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, _out, err = cli(capsys, db, "feeds", "add", PUBLIC_FEED, "file:///etc/passwd",
                          "http://169.254.169.254/latest/meta-data/", "ftp://example.org/feed")
    assert code == 2
    assert "file:///etc/passwd: bad_scheme" in err
    assert "http://169.254.169.254/latest/meta-data/: private_host" in err
    assert "ftp://example.org/feed: bad_scheme" in err
    assert count(db, Source) == 0
    code, _out, err = cli(capsys, db, "feeds", "add", PUBLIC_FEED)
    assert code == 0, err
    code, _out, err = cli(capsys, db, "feeds", "add", "--allow-private", "http://127.0.0.1:8080/feed.xml")
    assert code == 0, err
    assert count(db, Source) == 2


def test_feeds_import_subscribes_only_what_the_check_accepts(capsys: pytest.CaptureFixture[str], db: Path,
                                                             tmp_path: Path) -> None:
    opml = tmp_path / "feeds.opml"
    opml.write_text(f"""<?xml version="1.0"?>
<opml version="2.0"><head><title>t</title></head><body>
<outline text="ok" type="rss" xmlUrl="{PUBLIC_FEED}"/>
<outline text="passwd" type="rss" xmlUrl="file:///etc/passwd"/>
<outline text="metadata" type="rss" xmlUrl="http://169.254.169.254/latest/meta-data/"/>
</body></opml>""", encoding="utf-8")
    code, _out, err = cli(capsys, db, "feeds", "import", str(opml))
    assert code == 1
    assert "file:///etc/passwd" in err and "169.254.169.254" in err and "private_host" in err
    store = open_store(db)
    with store.session() as session:
        assert list(session.scalars(select(Source.locator).where(Source.kind == "feed"))) == [PUBLIC_FEED]
    store.close()


# --- start-up: a command imports only what it uses (issue 14) ---------------------------------------

# Each costs tens to hundreds of milliseconds to import; none is needed to parse arguments or print help.
# (Not pydantic: typer itself coerces every parsed option through it.)
HEAVY = ("fastapi", "starlette", "uvicorn", "trafilatura", "sklearn", "jieba", "openai", "numpy", "httpx",
         "sqlalchemy", "alembic", "jinja2", "rich.progress")
# What no light store command may load: they read the store, they do not fetch, extract or learn.
HEAVY_FOR_STORE_COMMANDS = ("fastapi", "uvicorn", "trafilatura", "sklearn", "jieba", "openai", "alembic")


def modules_after(code: str, *args: str, cwd: Path | None = None) -> set[str]:
    """The modules a fresh interpreter holds after ``code`` (no test has imported anything yet)."""
    probe = f"{code}\nimport json, sys\nsys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, check=False)
    assert "MODULES " in done.stderr, done.stderr
    return set(json.loads(done.stderr.rsplit("MODULES ", 1)[1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


def test_importing_the_cli_and_the_library_loads_no_heavy_module() -> None:
    assert loaded(modules_after("import tidings.cli"), (*HEAVY, "pydantic", "rich")) == []
    assert loaded(modules_after("import tidings"), (*HEAVY, "pydantic", "rich", "typer")) == []


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["feeds", "--help"], ["add", "--help"]])
def test_help_and_version_load_no_heavy_module(args: list[str], tmp_path: Path) -> None:
    run = "import sys\nfrom tidings.cli import run_cli\nrun_cli(sys.argv[1:])"
    assert loaded(modules_after(run, *args, cwd=tmp_path), HEAVY) == []


@pytest.mark.parametrize("args", [["items", "--json"], ["feeds", "list"], ["digest"], ["config", "show"]])
def test_light_store_commands_load_no_fetcher_extractor_or_model(args: list[str], db: Path, tmp_path: Path) -> None:
    open_store(db).close()  # migrated beforehand: Alembic is the first open's cost, not the command's
    run = "import sys\nfrom tidings.cli import run_cli\nrun_cli(sys.argv[1:])"
    assert loaded(modules_after(run, "--db", str(db), *args, cwd=tmp_path), HEAVY_FOR_STORE_COMMANDS) == []


def test_import_formats_in_the_help_are_the_importers_formats() -> None:
    from tidings.cli import IMPORT_FORMATS
    from tidings.sources import FORMATS

    assert IMPORT_FORMATS == FORMATS
