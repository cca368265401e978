"""Helpers shared by the web, site, format and browser tests.

Importing the 87 shared digests takes a while, so each store is built once per test process and
copied for every test that writes to it."""

from __future__ import annotations

import functools
import ipaddress
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tidings import collect
from tidings.config import Config
from tidings.store import open_store

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


# --- no traffic off the machine (issue 9, point 6) --------------------------------------------

_AUDIT = {"installed": False, "active": False}
VIOLATIONS: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _AUDIT["active"] or event not in ("socket.connect", "socket.sendto"):
        return
    sock, address = args[0], args[-1]
    if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0]).split("%", 1)[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            VIOLATIONS.append(f"{event} to {address}")
            raise ConnectionRefusedError(f"test guard: {event} to {address} blocked (off-machine)")


@contextmanager
def no_traffic_off_machine() -> Iterator[None]:
    """Fail on any connect to a non-loopback address while active (audit hooks cannot be removed,
    so one is installed per process and switched by a flag)."""
    if not _AUDIT["installed"]:
        sys.addaudithook(_audit)
        _AUDIT["installed"] = True
    VIOLATIONS.clear()
    _AUDIT["active"] = True
    try:
        yield
    finally:
        _AUDIT["active"] = False
    assert not VIOLATIONS, f"traffic would have left the machine: {VIOLATIONS}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
