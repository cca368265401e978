"""The Foundation end to end, through the CLI as a user runs it: capture, fetch, extract, dedupe,
summarize, classify, digest; bad input; a killed run resumed; idempotent re-runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply
from netguard import no_traffic_off_machine
from pg import worker_for

from tidings.cli import run_cli
from tidings.curate import latest_week_end
from tidings.sources.links import parse_links

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GOLDEN = Path(__file__).parent / "golden"


def tidings(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_cli(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def items(capsys: pytest.CaptureFixture[str], db: Path | str) -> list[dict]:
    code, out, _ = tidings(capsys, "--db", str(db), "items", "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("line", "url", "title", "summary"),
    [
        ("https://go.dev/blog/go1.22", "https://go.dev/blog/go1.22", None, None),
        ("[《你好，Qwen2!》](https://mp.weixin.qq.com/s/abc)。本文介绍了", "https://mp.weixin.qq.com/s/abc", "你好，Qwen2!", "本文介绍了"),
        ("[Rust tips](https://x.dev/r) ：很好", "https://x.dev/r", "Rust tips", "很好"),
        ("[a \\[b\\]](https://x.dev/a) - dash summary", "https://x.dev/a", "a [b]", "dash summary"),
        ("https://x.dev/p 。 space before the stop", "https://x.dev/p", None, "space before the stop"),
        ('[T3](https://create.t3.gg/ "Create T3 App")', "https://create.t3.gg/", "T3", None),
    ],
)
def test_links_format(line: str, url: str, title: str | None, summary: str | None) -> None:
    result = parse_links(f"# a comment\n\n{line}\n")
    assert not result.errors
    [record] = result.items
    assert (record.url, record.title, record.summary) == (url, title, summary)
    assert record.summary_origin == ("human" if summary else None)
    assert record.line == 3


def test_links_format_reports_bad_lines() -> None:
    result = parse_links("https://ok.example/a\nnot a link at all\n", file="week.txt")
    assert len(result.items) == 1
    assert [str(e) for e in result.errors] == ["week.txt:2: not a URL or Markdown link: 'not a link at all'"]


def test_demo_week_renders_the_hand_checked_digest(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    db = db_url  # a SQLite file, then a PostgreSQL database: the same golden digest on both
    assert tidings(capsys, "--db", db, "import", "--format", "links", "--week", "2024-06-09", str(EXAMPLES / "links.txt"))[0] == 0
    with worker_for(db):  # on PostgreSQL the stages are queue jobs a worker runs
        code, out, err = tidings(capsys, "--db", db, "run", "--week", "2024-06-09")
    assert code == 0, err
    expected = (GOLDEN / "demo-2024-06-09.md").read_text(encoding="utf-8")
    assert out.replace(EXAMPLES.as_uri() + "/", "file://EXAMPLES/") == expected
    # the re-posted MoE article was merged into the first one, with both URLs kept
    merged = [i for i in items(capsys, db) if "moe-routing" in i["url"]]
    assert len(merged) == 1 and len(merged[0]["urls"]) == 2
    # the curator's own summary survived the extractive summarizer
    redis = next(i for i in items(capsys, db) if "redis" in i["url"])
    assert redis["summary_origin"] == "human" and redis["summary"].startswith("策展人亲手写的摘要")
    # a second run does no work and renders the same bytes
    with worker_for(db):
        code, again, err = tidings(capsys, "--db", db, "run", "--week", "2024-06-09")
    assert code == 0 and again == out
    before = len(items(capsys, db))
    code, _, err = tidings(capsys, "--db", db, "import", "--format", "links", str(EXAMPLES / "links.txt"))
    assert code == 0
    # done 5, new 0, updated 0, unchanged 5: re-importing the same file changes nothing
    assert re.search(r"import\s*│\s*5\s*│\s*0\s*│\s*0\s*│\s*5\s*│", err), err
    assert len(items(capsys, db)) == before


def test_digest_writes_the_docusaurus_layout(capsys: pytest.CaptureFixture[str], tmp_path: Path, db_url: str) -> None:
    db = db_url
    tidings(capsys, "--db", db, "import", "--format", "links", "--week", "2024-06-09", str(EXAMPLES / "links.txt"))
    assert tidings(capsys, "--db", db, "digest", "--week", "2024-06-09", "--out", str(tmp_path / "site"))[0] == 0
    written = (tmp_path / "site" / "blog" / "2024-06-09" / "index.md").read_text(encoding="utf-8")
    assert written.startswith("---\nslug: 6月9日内容汇总\n")




def test_bad_input_is_recorded_and_the_run_goes_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus_dir: Path, db_url: str
) -> None:
    gbk = (corpus_dir / "html" / "gbk-bytes_declared-utf8_alipay-blog.html").read_bytes()
    good = (EXAMPLES / "pages" / "redis-cache.html").read_bytes()

    def slow(_r: object) -> Reply:
        time.sleep(3)
        return Reply(200, good, {"Content-Type": "text/html"})

    def huge(_r: object) -> Reply:
        chunk = b"<p>" + b"x" * (1024 * 1024) + b"</p>"
        return Reply(200, (chunk for _ in range(50)), {"Content-Type": "text/html"})

    routes = {
        "/good": lambda r: Reply(200, good, {"Content-Type": "text/html; charset=utf-8"}),
        "/missing": lambda r: Reply(404, b"gone"),
        "/slow": slow,
        "/huge": huge,
        "/binary": lambda r: Reply(200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 50, {"Content-Type": "image/png"}),
        "/bad-utf8": lambda r: Reply(200, b"<html><body><p>\xff\xfe\xfa broken</p></body></html>",
                                     {"Content-Type": "text/html; charset=utf-8"}),
        "/gbk": lambda r: Reply(200, gbk, {"Content-Type": "text/html; charset=utf-8"}),
        "/empty": lambda r: Reply(200, b"", {"Content-Type": "text/html"}),
    }
    with LoopbackServer(routes) as server:
        config = tmp_path / "tidings.toml"
        config.write_text(
            f'[fetch]\nallow_hosts = ["{server.host_port}"]\nread_timeout = 1.0\nretries = 0\nmax_bytes = 5000000\n',
            encoding="utf-8",
        )
        db = db_url
        # A path that does not exist is refused by `add` itself (exit 2, nothing stored): a usage error.
        assert tidings(capsys, "--db", db, "add", str(tmp_path / "no-such-page.html"))[0] == 2
        urls = [server.url(p) for p in routes] + ["http://10.0.0.1/private"]
        assert tidings(capsys, "--db", db, "--config", str(config), "add", *urls)[0] == 0
        with no_traffic_off_machine(), worker_for(db, config):  # no traffic off the machine, whatever the bug
            code, _, err = tidings(capsys, "--db", db, "--config", str(config), "fetch")
    assert code == 1  # some items failed, and they are reported
    by_path = {i["urls"][0].rsplit("/", 1)[-1]: i for i in items(capsys, db)}
    assert by_path["good"]["status"] == "extracted" and "Redis" in by_path["good"]["title"]
    assert by_path["gbk"]["status"] == "extracted" and by_path["gbk"]["language"] == "zh"
    assert by_path["bad-utf8"]["error"] or by_path["bad-utf8"]["text"]
    expected = {
        "missing": "http_404",
        "slow": "timeout",
        "huge": "too_large",
        "binary": "binary",
        "empty": "empty",
        "private": "private_host",
    }
    for name, reason in expected.items():
        assert by_path[name]["error_reason"] == reason, (name, by_path[name])
        assert by_path[name]["error"]
    assert "http_404" in err and "private_host" in err



def _extracted(db: Path) -> int:
    """Items committed as extracted so far, read with the standard library (WAL: readers never block)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT count(*) FROM items WHERE status = 'extracted'").fetchone()[0]
    except sqlite3.Error:
        return 0


def start_fetch(tmp_path: Path, server: LoopbackServer, pages: int, config_text: str) -> tuple[subprocess.Popen[bytes], list[str], dict[str, str]]:
    """``pages`` links on ``server`` imported into a fresh store, then ``tidings fetch`` started in a
    subprocess (to be killed); returns it, the command prefix and the environment to re-run with."""
    links = tmp_path / "links.txt"
    links.write_text("".join(f"{server.url(f'/p{n}')}\n" for n in range(pages)), encoding="utf-8")
    config = tmp_path / "tidings.toml"
    config.write_text(f'{config_text}[fetch]\nallow_hosts = ["{server.host_port}"]\nconcurrency = 2\n', encoding="utf-8")
    env = {**os.environ, "TIDINGS_DB": str(tmp_path / "t.db")}
    base = [sys.executable, "-m", "tidings.cli", "--config", str(config)]
    subprocess.run([*base, "import", "--format", "links", str(links)], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*base, "fetch"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, base, env


def kill_once_committed(proc: subprocess.Popen[bytes], db: Path, pages: int, watch: Callable[[], None] = lambda: None) -> None:
    """SIGKILL ``proc`` once ``pages`` pages are committed (the extraction pool may take a moment to
    start): the re-run must then find work done, and fetch only the rest. ``watch`` runs while waiting."""
    deadline = time.time() + 60
    while _extracted(db) < pages and time.time() < deadline:
        watch()
        time.sleep(0.05)
    watch()
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_run_resumes_without_duplicates(tmp_path: Path) -> None:
    page = (EXAMPLES / "pages" / "go-iterators.html").read_bytes()

    def slow_page(_r: object) -> Reply:
        time.sleep(0.4)
        return Reply(200, page, {"Content-Type": "text/html; charset=utf-8"})

    with LoopbackServer({"*": slow_page}) as server:
        proc, base, env = start_fetch(tmp_path, server, 24, "")
        kill_once_committed(proc, tmp_path / "t.db", 3)
        served_before = {r.path for r in server.requests}
        assert 0 < len(served_before) < 24
        done = subprocess.run([*base, "fetch"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        listed = subprocess.run([*base, "items", "--json"], env=env, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 24 and len({r["url"] for r in rows}) == 24
    assert all(r["status"] == "extracted" for r in rows)
    # the re-run fetched only what the killed run had not finished
    assert len(server.requests) < 24 + len(served_before)


def test_week_ends() -> None:
    assert latest_week_end(date(2024, 6, 9)) == date(2024, 6, 9)  # a Sunday
    assert latest_week_end(date(2024, 6, 12)) == date(2024, 6, 9)
    assert latest_week_end(date(2024, 6, 12), "friday") == date(2024, 6, 7)


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    import typer.main

    from tidings.cli import app

    group = typer.main.get_command(app)
    missing = []

    def walk(command: object, path: list[str]) -> None:
        sub = getattr(command, "commands", None)
        if sub:
            for name, child in sub.items():
                walk(child, [*path, name])
            return
        code, out, _ = tidings(capsys, *path, "--help")
        if code != 0 or "Example" not in out:
            missing.append(" ".join(path))

    walk(group, [])
    assert not missing, missing


def test_config_errors_name_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[fetch]\nmax_bytes = "lots"\n[digest]\nauthor = "x"\n', encoding="utf-8")
    code, _, err = tidings(capsys, "--config", str(bad), "config", "show")
    assert code == 2
    assert "fetch.max_bytes" in err and "digest.author" in err
    code, out, _ = tidings(capsys, "config", "show")
    assert code == 0 and json.loads(out)["week_ends_on"] == "sunday"
    assert tidings(capsys, "digest", "--week", "2024-13-01")[0] == 2
