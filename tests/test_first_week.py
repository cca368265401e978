"""A new user's first week, typed as a new user types it: a fresh store, the 30 shared pages added,
ONE `tidings run --out DIR`. The digest that first run writes must already hold every extracted page
once, with a real title and a summary free of markup, and none of the pages that were rejected.

Runs the installed console script in a subprocess, on the real pages in ../shared/corpus/html/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

TIDINGS = Path(sys.executable).with_name("tidings")
ENTRY_RE = re.compile(r"^\[《?(?P<title>.*?)》?\]\((?P<url>[^)\s]+)\)(?:。(?P<summary>.*))?$", re.M)
MARKUP_RE = re.compile(r"<%@|<!DOCTYPE|<br\s*/?>|</?(?:div|span|script|p|a)\b|&nbsp;", re.I)


def tidings(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIDINGS_DB": str(workdir / "t.db")}
    return subprocess.run([str(TIDINGS), *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def this_sunday() -> date:
    today = date.today()
    return today + timedelta(days=(6 - today.weekday()) % 7)


@pytest.fixture(scope="module")
def first_week(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not TIDINGS.exists():
        pytest.fail(f"the console script is not installed at {TIDINGS}")
    workdir = tmp_path_factory.mktemp("first-week")
    pages = sorted(str(p) for p in (corpus_dir / "html").glob("*.html"))
    added = tidings(workdir, "add", *pages)
    assert added.returncode == 0, added.stderr
    week = this_sunday()
    run = tidings(workdir, "run", "--week", week.isoformat(), "--out", "blog")
    listed = tidings(workdir, "items", "--json")
    assert listed.returncode == 0, listed.stderr
    digest = workdir / "blog" / "blog" / week.isoformat() / "index.md"
    return {
        "pages": pages,
        "run": run,
        "items": [json.loads(line) for line in listed.stdout.splitlines() if line.strip()],
        "digest": digest.read_text(encoding="utf-8") if digest.exists() else None,
        "workdir": workdir,
        "week": week,
    }


def _entries_by_url(text: str) -> dict[str, list[re.Match[str]]]:
    found: dict[str, list[re.Match[str]]] = {}
    for match in ENTRY_RE.finditer(text):
        found.setdefault(match["url"], []).append(match)
    return found


def _urls(item: dict) -> set[str]:
    return {u for u in {item.get("url"), *(item.get("urls") or [])} if u}


def test_first_run_exits_cleanly_and_writes_the_digest(first_week: dict) -> None:
    run = first_week["run"]
    assert run.returncode in (0, 1), run.stderr
    assert "Traceback" not in run.stderr
    assert first_week["digest"] is not None, "the first run wrote no digest"


def test_every_extracted_page_is_in_the_first_digest_once(first_week: dict) -> None:
    entries = _entries_by_url(first_week["digest"])
    extracted = [i for i in first_week["items"] if i["status"] == "extracted" and (i.get("text") or "").strip()]
    assert len(extracted) >= 20, "most shared pages are articles"
    for item in extracted:
        hits = [m for url in _urls(item) for m in entries.get(url, [])]
        assert len(hits) == 1, f"{item['url']}: {len(hits)} entries"


def test_titles_are_real_and_summaries_free_of_markup(first_week: dict) -> None:
    entries = _entries_by_url(first_week["digest"])
    for url, matches in entries.items():
        title = matches[0]["title"].strip()
        assert title, f"{url}: empty title"
        assert not title.startswith(("file:", "http:", "https:", "/")), f"{url}: title {title!r}"
        summary = matches[0]["summary"]
        assert summary is None or not MARKUP_RE.search(summary), f"{url}: markup in {summary[:80]!r}"


def test_rejected_pages_stay_out_of_the_draft(first_week: dict) -> None:
    rejected = [i for i in first_week["items"] if i["status"] in ("rejected", "error")]
    assert rejected, "the shared pages include a home page and an expired WeChat link"
    entries = _entries_by_url(first_week["digest"])
    for item in rejected:
        assert not (_urls(item) & entries.keys()), f"{item['url']} ({item['error']}) is in the digest"
    # The run's summary counts them as skipped with their reason, not as kept.
    assert "no_article" in first_week["run"].stdout + first_week["run"].stderr


def test_a_second_run_changes_nothing(first_week: dict) -> None:
    workdir, week = first_week["workdir"], first_week["week"]
    again = tidings(workdir, "run", "--week", week.isoformat(), "--out", "blog")
    assert again.returncode in (0, 1), again.stderr
    digest = workdir / "blog" / "blog" / week.isoformat() / "index.md"
    assert digest.read_text(encoding="utf-8") == first_week["digest"]


def test_the_week_view_lists_the_rejected_pages_apart(first_week: dict) -> None:
    """Issue 13.2 on the real pages: the web's week view lists each rejected or failed page apart,
    with its reason and a retry action, and "kept of N" counts only the draft's real candidates."""
    from fastapi.testclient import TestClient

    from tidings.config import Config
    from tidings.store import open_store
    from tidings.web import create_app

    items, week = first_week["items"], first_week["week"]
    aside = [i for i in items if i["status"] in ("rejected", "error")]
    store = open_store(first_week["workdir"] / "t.db")
    try:
        with TestClient(create_app(store, Config()), base_url="http://127.0.0.1:8000") as client:
            response = client.get(f"/week?week={week.isoformat()}")
    finally:
        store.close()
    assert response.status_code == 200
    main, _, listed = response.text.partition('id="set-aside"')
    assert f"Set aside: {len(aside)}" in listed
    for item in aside:
        assert f'action="/item/{item["id"]}/retry"' in listed and f'action="/item/{item["id"]}/retry"' not in main
        assert item["error_reason"] in listed, item
    candidates = len(_entries_by_url(first_week["digest"]))
    assert f"{candidates} kept of {candidates}" in " ".join(main.split())


def test_run_without_a_week_drafts_the_week_its_links_are_in(corpus_dir: Path, tmp_path: Path) -> None:
    """`add` then `run --out` with no --week, on any day: the ended week has nothing, so the digest is the
    week under way, where the links just added are (on a Monday it used to say "nothing for last week")."""
    names = ("golang-blog_godoc-documenting-go-code.html", "juejin_post_vue3-effect-computed.html")
    pages = [str(corpus_dir / "html" / name) for name in names]
    assert tidings(tmp_path, "add", *pages).returncode == 0
    run = tidings(tmp_path, "run", "--out", "blog")
    assert run.returncode in (0, 1), run.stderr
    week = this_sunday()
    assert f"week ending {week}" in run.stderr
    written = tmp_path / "blog" / "blog" / week.isoformat() / "index.md"
    assert written.exists(), run.stderr
    assert ENTRY_RE.search(written.read_text(encoding="utf-8"))
    again = tidings(tmp_path, "digest")  # the same default for the read-only render
    assert again.returncode == 0 and again.stdout == written.read_text(encoding="utf-8")
