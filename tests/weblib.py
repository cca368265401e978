"""Helpers shared by the web, site, format and browser tests.

Importing the 87 shared digests takes a while, so each store is built once per test process and
copied for every test that writes to it."""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidings import collect
from tidings.config import Config
from tidings.store import open_store

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

WEEK = "2024-06-09"  # a sectioned week with a cover, the one the issue names
MARKER_WEEK = "2022-01-09"  # one of the 70 digests without ## sections


def _import(db: Path, paths: list[Path]) -> Path:
    store = open_store(db)
    try:
        report, _ = collect.import_paths(store, [str(p) for p in paths], "digest", Config())
        assert report.failed == 0, report.failures
    finally:
        store.close()  # the last connection closing checkpoints the WAL into the file
    return db


@functools.cache
def corpus_db(corpus: Path) -> Path:
    """A store holding all 87 shared digests (read-only: copy it before writing)."""
    return _import(Path(tempfile.mkdtemp(prefix="tidings-corpus-")) / "corpus.db", [corpus / "digests"])


@functools.cache
def week_db(corpus: Path) -> Path:
    """A store holding two real weeks: a sectioned one and a marker-style one."""
    paths = [corpus / "digests" / "blog" / w / "index.md" for w in (WEEK, MARKER_WEEK)]
    return _import(Path(tempfile.mkdtemp(prefix="tidings-week-")) / "week.db", paths)


def copy_db(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    return target




def wait_for_job(client: TestClient, location: str, timeout: float = 20.0, every: float = 0.05) -> dict[str, Any]:
    """The job a web form started (its id is in the redirect's ``location``, ``job=...``), polled
    through ``/jobs/<id>.json`` until it is done or failed, or ``timeout`` seconds pass: the
    caller asserts on the state it comes back in."""
    found = re.search(r"job=(\w+)", location)
    assert found is not None, f"no job in {location!r}"
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{found.group(1)}.json").json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(every)
