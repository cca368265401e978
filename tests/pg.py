"""A real PostgreSQL server for the test session, from Debian's ``postgresql`` package.

The session runs ``initdb`` and ``pg_ctl`` (found by glob under ``/usr/lib/postgresql/*/bin``) in a
temporary directory, on a free loopback port. ``initdb`` refuses to run as root, so when the tests run
as root (CI containers do) the server runs as the unprivileged ``postgres`` user the package creates
(or ``nobody``), through ``runuser``, in a directory handed to that user. Durability is switched off
(fsync, synchronous commit): the data lives for one session only.

Each test gets a fresh database copied from a template that already holds the migrated schema
(``CREATE DATABASE … TEMPLATE``), so no test pays for the migrations again."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUPERUSER = "tidings"
TEMPLATE = "tidings_template"


def server_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when the server is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


MISSING_REASON = ("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
                  "install Debian's postgresql package to run the PostgreSQL tests")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_user() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists for initdb")


class PgServer:
    """``server = PgServer(); server.start(); url = server.fresh_database(); ...; server.stop()``"""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._counter = itertools.count(1)
        self._started = False

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120,
                              cwd=self.root, check=False)

    def _check(self, *argv: str) -> None:
        done = self._run(*argv)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr or done.stdout}\n{tail}")

    def start(self, *, settings: dict[str, str] | None = None) -> None:
        """initdb, then the server; ``settings`` are more ``-c NAME=VALUE`` options (a benchmark's
        ``shared_preload_libraries=pg_stat_statements``)."""
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._check(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
                   + "".join(f" -c {name}={value}" for name, value in (settings or {}).items()))
        self._check(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                    "-o", options, "-w", "-t", "60", "start")
        self._started = True
        self._make_template()

    @property
    def pid(self) -> int:
        """The postmaster's process id (the first line of its pid file)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            connection.execute(statement)  # type: ignore[arg-type]  # test-built DDL, no user input

    def _make_template(self) -> None:
        from tidings.store import open_store

        self.execute(f"CREATE DATABASE {TEMPLATE}")
        open_store(self.url(TEMPLATE)).close()  # runs every migration once for the whole session

    def fresh_database(self, *, migrated: bool = True) -> str:
        """A new, empty database's URL: with the schema at head, or bare (``migrated=False``)."""
        name = f"t{os.getpid()}_{next(self._counter)}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[-1]} WITH (FORCE)")

    def stop(self) -> None:
        if self._started:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def worker_for(db: str, config: Path | None = None) -> Iterator[None]:
    """A ``tidings worker`` beside the block when ``db`` is PostgreSQL: there ``run`` and ``fetch``
    queue their stages as jobs and wait for a worker to do them (SQLite runs them in-process)."""
    if not db.startswith("postgres"):
        yield
        return
    argv = [sys.executable, "-m", "tidings.cli", "--db", db, *(["--config", str(config)] if config else []),
            "worker", "--concurrency", "2", "--heartbeat", "0.5"]
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until_alive(db, worker)
        yield
    finally:
        stop_worker(worker)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a worker finishes its job and leaves), SIGKILL after 20 s."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def until_alive(db: str, worker: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait for the worker's first heartbeat: `run` without a live worker does the work itself, so a
    test of the queued path must not start before its worker is there."""
    import time

    from tidings.queue import live_workers
    from tidings.store import open_store

    store = open_store(db)
    try:
        deadline = time.monotonic() + timeout
        while not live_workers(store):
            if worker.poll() is not None:
                raise RuntimeError(f"the tidings worker exited with {worker.returncode} before its first heartbeat")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no heartbeat from the tidings worker in {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        store.close()

