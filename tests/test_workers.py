"""The stages as procrastinate jobs on a real PostgreSQL (tests/pg.py), run by `tidings worker`
processes of the installed script over the real saved pages served on loopback.

Two workers share the queue; one is killed with SIGKILL mid-run and started again; every item ends
done exactly once (one succeeded job per item and stage, nothing pending, nothing duplicated), and
no host ever sees more requests at a time than ``per_host_concurrency``, counted over all workers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply, Request
from pg import stop_worker, until_alive
from sqlalchemy import select, text

from tidings import pipeline
from tidings.records import ItemRecord
from tidings.store import Item, ItemStatus, open_store

SCRIPT = Path(sys.executable).with_name("tidings")
PAGE_DELAY = 0.15
"""Seconds each page takes to serve: long enough that a kill lands mid-run and overlaps show."""


class Pages:
    """The corpus's saved pages on loopback, counting requests and the most in flight at once."""

    def __init__(self, corpus_dir: Path, count: int) -> None:
        self.bodies = {f"/p{n}": page.read_bytes()
                       for n, page in enumerate(sorted((corpus_dir / "html").glob("*.html"))[:count])}
        self.lock = threading.Lock()
        self.served = 0
        self.spans: list[tuple[float, float]] = []
        """When each request was being served (monotonic start, end)."""
        self.server = LoopbackServer({path: self.serve for path in self.bodies})

    def serve(self, request: Request) -> Reply:
        start = time.monotonic()
        time.sleep(PAGE_DELAY)
        with self.lock:
            self.spans.append((start, time.monotonic()))
            self.served += 1
        return Reply(200, self.bodies[request.path.split("?", 1)[0]], {"Content-Type": "text/html"})

    def most_at_once(self, *, except_at: float | None = None) -> int:
        """The most requests served at one moment; ``except_at``: leave out those being served then.
        A worker killed mid-request lets go of its host slot at once (its database session ends), but
        this server goes on serving the request it can no longer answer until its delay is over: such
        a request is no fetch of a live worker, so it must not count against the politeness limit."""
        with self.lock:
            spans = [(a, b) for a, b in self.spans if except_at is None or not a <= except_at <= b]
        events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])  # an end before a start
        most = now = 0
        for _, step in events:
            now += step
            most = max(most, now)
        return most


@pytest.fixture
def pages(corpus_dir: Path) -> Iterator[Pages]:
    served = Pages(corpus_dir, 30)
    with served.server:
        yield served


def tidings(db: str, *args: str, config: Path | None = None) -> list[str]:
    return [str(SCRIPT), "--db", db, *(["--config", str(config)] if config else []), *args]


def start_worker(db: str, config: Path, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("ab")
    worker = subprocess.Popen(tidings(db, "worker", "--concurrency", "3", "--heartbeat", "0.5", config=config),
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    until_alive(db, worker)  # `run` with no live worker does the work itself, off the queue under test
    return worker


def job_counts(db: str) -> dict[str, int]:
    store = open_store(db)
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1")).all()
    store.close()
    return dict(rows)  # type: ignore[arg-type]


@pytest.fixture
def setup(pg_url: str, pages: Pages, tmp_path: Path) -> tuple[str, Path, list[str]]:
    if SCRIPT.exists() is False or shutil.which(str(SCRIPT)) is None:
        pytest.skip("the tidings script is not installed in this environment")
    config = tmp_path / "tidings.toml"
    config.write_text("[fetch]\nper_host_concurrency = 2\nretries = 0\n")
    urls = sorted(pages.server.url(path) for path in pages.bodies)
    store = open_store(pg_url)
    pipeline.ingest(store, [ItemRecord(url=url) for url in urls], source_kind="links", locator="test")
    store.close()
    return pg_url, config, urls


def test_two_workers_one_killed_every_item_done_once(setup: tuple[str, Path, list[str]], pages: Pages,
                                                     tmp_path: Path) -> None:
    db, config, urls = setup
    queued = subprocess.run(tidings(db, "fetch", "--allow-private", "--no-wait", config=config),
                            capture_output=True, text=True, timeout=60, check=False)
    assert queued.returncode == 0, queued.stderr
    assert f"queued {len(urls)} job(s)" in queued.stderr
    assert job_counts(db) == {"todo": len(urls)}  # --no-wait returned with nothing run
    workers = [start_worker(db, config, tmp_path, "a"), start_worker(db, config, tmp_path, "b")]
    try:
        deadline = time.monotonic() + 60
        while pages.served < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pages.served >= 6, (tmp_path / "a.log").read_text(errors="replace")
        killed_at = time.monotonic()
        workers[0].send_signal(signal.SIGKILL)  # mid-run: it holds jobs in 'doing'
        workers[0].wait()
        workers[0] = start_worker(db, config, tmp_path, "a")
        # `fetch` (waiting) on the same items queues nothing new and follows the queue to its end.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and set(job_counts(db)) != {"succeeded"}:
            time.sleep(0.3)
        counts = job_counts(db)
        assert counts == {"succeeded": counts.get("succeeded", 0)}, counts
        shown = subprocess.run(tidings(db, "queue"), capture_output=True, text=True, timeout=60, check=False)
    finally:
        for worker in workers:
            stop_worker(worker)
    store = open_store(db)
    with store.session() as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
        assert len(items) == len(urls)  # nothing duplicated
        assert [i.url for i in items if i.status in (ItemStatus.PENDING, ItemStatus.ERROR)] == []
        assert len([i for i in items if i.status == ItemStatus.EXTRACTED]) >= len(urls) // 2
    with store.engine.connect() as connection:
        per_item = connection.execute(text(
            "SELECT args->>'stage', args->>'item_id', count(*) FROM procrastinate_jobs GROUP BY 1, 2")).all()
    store.close()
    fetches = [n for stage, _, n in per_item if stage == "fetch"]
    assert len(fetches) == len(urls) and set(fetches) == {1}  # one job per item, done once
    # the killed worker's jobs came back through the stalled-job retry
    retried = int(re.search(r"retried: (\d+)", shown.stdout)[1])  # type: ignore[index]
    assert 1 <= retried <= 6, shown.stdout  # the jobs in hand (two workers × 3 at a time at most)
    assert "fetch" in shown.stdout and "pending" in shown.stdout
    # politeness held across both workers (6 job slots): never more than 2 at once on the host
    assert pages.most_at_once(except_at=killed_at) == 2  # and both slots were used


def test_run_waits_for_the_workers_and_every_stage_is_done(setup: tuple[str, Path, list[str]], pages: Pages,
                                                           tmp_path: Path) -> None:
    db, config, urls = setup
    worker = start_worker(db, config, tmp_path, "w")
    try:
        done = subprocess.run(tidings(db, "run", "--allow-private", config=config),
                              capture_output=True, text=True, timeout=240, check=False)
    finally:
        stop_worker(worker)
    assert "Traceback" not in done.stderr, done.stderr
    for stage in pipeline.STAGES:  # the summary table: every stage ran through the queue
        assert stage in done.stderr
    store = open_store(db)
    with store.session() as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
        extracted = [item for item in items if item.status == ItemStatus.EXTRACTED]
        assert len(extracted) >= len(urls) // 2
        assert [item.url for item in extracted if not (item.summary and item.section)] == []
        assert [item.url for item in extracted if item.story_id is None] == []
        assert [item.url for item in items if item.status == ItemStatus.PENDING] == []
    with store.engine.connect() as connection:
        per_job = connection.execute(text(
            "SELECT args->>'stage', args->>'item_id', count(*) FROM procrastinate_jobs GROUP BY 1, 2")).all()
    store.close()
    # one job per item and stage (the queueing locks held); dedupe and stories ran as passes
    assert {n for _, item, n in per_job if item is not None} == {1}
    assert {stage for stage, item, _ in per_job if item is None} <= {"dedupe", "stories"}
    assert job_counts(db).keys() == {"succeeded"}
    shown = subprocess.run(tidings(db, "queue"), capture_output=True, text=True, timeout=60, check=False)
    assert "retried: 0" in shown.stdout, shown.stdout  # nothing was killed: every job ran once
    # the same run again finds no item to advance: every per-item selection is empty, and only
    # the pass over all items (dedupe, run every time as in-process) is queued
    again = subprocess.run(tidings(db, "run", "--allow-private", "--no-wait", config=config),
                           capture_output=True, text=True, timeout=60, check=False)
    assert "queued 1 job(s)" in again.stderr, again.stderr
    assert job_counts(db).get("todo") == 1


def test_local_pages_are_read_by_the_command_never_queued_for_a_worker(
    setup: tuple[str, Path, list[str]], pages: Pages
) -> None:
    """A file path names a file on the machine of the command that added it: that command fetches
    it (in-process, through the one stage loop) and queues only the network pages."""
    db, config, urls = setup
    page = Path(__file__).resolve().parents[1] / "examples" / "pages" / "go-iterators.html"
    added = subprocess.run(tidings(db, "add", str(page), config=config), capture_output=True, text=True,
                           timeout=60, check=False)
    assert added.returncode == 0, added.stderr
    queued = subprocess.run(tidings(db, "fetch", "--allow-private", "--no-wait", config=config),
                            capture_output=True, text=True, timeout=120, check=False)
    assert queued.returncode == 0, queued.stderr
    assert "read 1 local page(s) in this process" in queued.stderr, queued.stderr
    assert f"queued {len(urls)} job(s)" in queued.stderr, queued.stderr
    store = open_store(db)
    with store.session() as session:
        local = session.scalars(select(Item).where(Item.url.like("file:%"))).one()
        assert local.status == ItemStatus.EXTRACTED and "iter.Pull" in (local.text or "")
    with store.engine.connect() as connection:
        queued_items = set(connection.scalars(text("SELECT (args->>'item_id')::bigint FROM procrastinate_jobs")))
    store.close()
    assert local.id not in queued_items and len(queued_items) == len(urls)
    assert pages.served == 0  # --no-wait and no worker: no network page was fetched here


def test_queue_needs_postgresql(tmp_path: Path) -> None:
    shown = subprocess.run(tidings(str(tmp_path / "t.db"), "queue"), capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 2
    assert "PostgreSQL" in shown.stderr and "Traceback" not in shown.stderr
    worker = subprocess.run(tidings(str(tmp_path / "t.db"), "worker"), capture_output=True, text=True,
                            timeout=60, check=False)
    assert worker.returncode == 2 and "needs a PostgreSQL store" in worker.stderr, worker.stderr


def test_a_runs_token_budget_is_spent_by_all_workers_together(pg_url: str) -> None:
    """Two gateways' budgets, as two worker processes hold them for one run: the store's row is the
    one allowance. A reservation that would pass it is refused, and then every worker is refused."""
    from tidings.errors import BudgetExceeded
    from tidings.llm.gateway import SharedBudget

    store = open_store(pg_url)
    SharedBudget.open(store, "run1", 100)
    first, second = SharedBudget(store, "run1", 100), SharedBudget(store, "run1", 100)
    first.reserve(60)
    with pytest.raises(BudgetExceeded):
        second.reserve(50)  # 60 + 50 > 100 although this worker has spent nothing
    first.settle(60, 40)
    with pytest.raises(BudgetExceeded):
        first.reserve(10)  # refused once for the run: refused for every worker from then on
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT used, reserved, exceeded FROM llm_budgets")).one() == (40, 0, True)
    # another run has its own allowance
    SharedBudget.open(store, "run2", 100)
    SharedBudget(store, "run2", 100).reserve(100)
    store.close()


def test_failed_jobs_are_shown_and_queued_again(pg_url: str, tmp_path: Path) -> None:
    """A job that cannot run (here: arguments its task does not take, as a job queued by another
    version of tidings could have) fails after its retries; `queue` names it, `queue retry` requeues it."""
    from tidings import queue

    store = open_store(pg_url)
    with queue._opened(store):  # noqa: SLF001 - the test queues a job no command would
        queue.stage_job.configure(queue=queue.queue_of("summarize")).defer(
            stage="summarize", item_id=1, then=["summarize"], run="r1", unknown_argument=True)
    store.close()
    config = tmp_path / "tidings.toml"
    config.write_text("")
    worker = start_worker(pg_url, config, tmp_path, "f")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and job_counts(pg_url) != {"failed": 1}:
            time.sleep(0.3)
    finally:
        stop_worker(worker)
    shown = subprocess.run(tidings(pg_url, "queue"), capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "failed job" in shown.stdout and "summarize item 1 after 4 attempt(s)" in shown.stdout, shown.stdout  # 1 + 3 retries
    again = subprocess.run(tidings(pg_url, "queue", "retry"), capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "queued again: 1 failed job(s)" in again.stderr, again.stderr
    assert job_counts(pg_url) == {"todo": 1}


def test_run_with_no_worker_alive_does_the_work_itself(setup: tuple[str, Path, list[str]], pages: Pages) -> None:
    """Waiting on a queue no worker serves would never end: `run` says so and runs the stages in-process."""
    db, config, urls = setup
    done = subprocess.run(tidings(db, "run", "--allow-private", config=config),
                          capture_output=True, text=True, timeout=240, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert "no `tidings worker` is running" in done.stderr
    store = open_store(db)
    with store.session() as session:
        items = session.scalars(select(Item)).all()
        assert [item.url for item in items if item.status == ItemStatus.PENDING] == []
        assert sum(item.status == ItemStatus.EXTRACTED for item in items) >= len(urls) // 2
    store.close()
    assert job_counts(db) == {}  # nothing was queued
