"""Benchmark: items per second through every stage, in-process on SQLite against queue workers on PostgreSQL.

The same N synthetic article pages (``bench/pipeline.py``'s: real Chinese tech prose from the shared
digests, 5% near-duplicate re-posts) are served on loopback, added as links, and taken through fetch →
dedupe → stories → summarize → classify:

- ``sqlite``: ``tidings.pipeline.run`` in this process with its process pool (``Config.workers``);
- ``pg_wN``: a fresh PostgreSQL database (a real server, started as the tests start it: tests/pg.py)
  and N ``tidings worker`` processes (``--concurrency`` jobs each) of the installed script; the clock
  runs from enqueueing to the last job's end (``tidings.queue.enqueue`` + ``wait``), with the workers
  already started.

``efficiency_2_over_1`` is (items/s with 2 workers) / (2 × items/s with 1): 1.0 is perfect scaling.

What limits it is measured in the same runs: CPU seconds over the clocked part (from /proc: this
process, which also serves the pages and, on SQLite, its process pool; each worker; the PostgreSQL
server with its backends), and on PostgreSQL the statements the database ran (``pg_stat_statements``:
each is one round trip) and its transactions, per job. ``cores_busy`` is all that CPU over the
wall-clock seconds: near the machine's free cores, the run is CPU-bound.
Every engine fetches with ``per_host_concurrency`` = ``--per-host`` (all pages are on one loopback host;
on PostgreSQL the limit holds across all workers together).

With ``--search-items N`` it also times search (p50/p95 ms of ``search.rank.search`` over the labelled
queries) on a store of N items on SQLite and the same store copied to PostgreSQL (``tidings store
copy``). The last line printed is one JSON object.

    python bench/scale.py --n 300
    python bench/scale.py --n 300 --workers 1 2 4 --search-items 100000
    python bench/scale.py --search-only --search-items 100000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from loopback import LoopbackServer, Reply  # noqa: E402  # the tests' loopback server
from pg import PgServer, server_bin_dir  # noqa: E402  # the tests' real PostgreSQL
from pipeline import make_pages  # noqa: E402  # bench/pipeline.py's pages

from tidings import pipeline as engine  # noqa: E402
from tidings import queue  # noqa: E402
from tidings.config import Config  # noqa: E402
from tidings.records import ItemRecord  # noqa: E402
from tidings.sources.urlcheck import FetchPolicy  # noqa: E402
from tidings.store import Item, ItemStatus, Store, open_store  # noqa: E402

SCRIPT = Path(sys.executable).with_name("tidings")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float, float]]:
    """Every process: pid → (parent pid, its own CPU seconds, its reaped children's CPU seconds)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        # after the command name: state, ppid, …, utime (12th), stime, cutime, cstime
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS,
                                  (int(fields[13]) + int(fields[14])) / TICKS)
    return table


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU seconds ``pid`` has used (all its threads); with ``children``, with its children's,
    running (recursively) and ended (the PostgreSQL server's backends, a process pool's workers)."""
    table = _processes()

    def total(node: int) -> float:
        _, own, reaped = table.get(node, (0, 0.0, 0.0))
        if not children:
            return own
        return own + reaped + sum(total(child) for child, (parent, _, _) in table.items() if parent == node)

    return total(pid)


def runqueue_wait_seconds(pids: list[int]) -> float:
    """Seconds the threads of ``pids`` (and of their running children) spent ready to run but waiting
    for a core (/proc/PID/task/TID/schedstat): CPU contention, as opposed to waiting on I/O or locks."""
    table = _processes()
    todo, seen, total = list(pids), set(), 0.0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += [child for child, (parent, _, _) in table.items() if parent == pid]
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[1]) / 1e9
            except (OSError, IndexError, ValueError):
                continue
    return total


def db_counters(store: Store) -> dict[str, int]:
    """The database's statements (pg_stat_statements), the polls of ``queue.wait`` among them, and its
    transactions so far."""
    from sqlalchemy import text

    here = "dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    with store.engine.connect() as connection:
        statements = connection.scalar(text(f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE {here}"))
        polls = connection.scalar(text(
            f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE {here}"
            " AND query LIKE '%FROM procrastinate_jobs%GROUP BY 1, 2%'"))
        transactions = connection.scalar(text(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"))
    return {"statements": int(statements or 0), "polls": int(polls or 0), "transactions": int(transactions or 0)}


def top_statements(store: Store, limit: int = 8) -> list[tuple[int, str]]:
    """The statements run most often in this database: (calls, the statement's first 90 characters)."""
    from sqlalchemy import text

    query = text("SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements"
                 " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                 " ORDER BY calls DESC LIMIT :limit")
    with store.engine.connect() as connection:
        return [(int(calls), sql[:90]) for calls, sql in connection.execute(query, {"limit": limit})]


def add_links(store: Store, urls: list[str]) -> None:
    engine.ingest(store, [ItemRecord(url=url) for url in urls], source_kind="links", locator="bench")


def outcome(store: Store) -> dict[str, int]:
    from sqlalchemy import func, select

    with store.session() as session:
        rows = session.execute(select(Item.status, func.count()).group_by(Item.status)).all()
    return {str(status): int(n) for status, n in rows}


def sqlite_run(workdir: Path, urls: list[str], per_host: int) -> dict[str, Any]:
    store = open_store(workdir / "bench.db")
    add_links(store, urls)
    config = Config()
    config.fetch.per_host_concurrency = per_host
    policy = FetchPolicy.from_config(config.fetch, allow_private=True)
    cpu_before, waited = cpu_seconds(os.getpid()), -runqueue_wait_seconds([os.getpid()])
    started = time.perf_counter()
    engine.run(store, config, policy=policy)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(os.getpid()) - cpu_before  # this process (pages served too) and its pool
    waited += runqueue_wait_seconds([os.getpid()])
    states = outcome(store)
    store.close()
    return {"items": len(urls), "seconds": round(seconds, 2), "items_per_s": round(len(urls) / seconds, 1),
            "processes": config.workers, "cpu_s": round(cpu, 2),
            "cpu_ms_per_item": round(1000 * cpu / len(urls), 1), "cores_busy": round(cpu / seconds, 2),
            "waiting_for_cpu": round(waited / seconds, 2), "statuses": states}


def start_workers(url: str, config_file: Path, count: int, concurrency: int, logdir: Path) -> list[subprocess.Popen[bytes]]:
    workers = []
    for number in range(count):
        output = (logdir / f"worker{count}-{number}.log").open("wb")
        workers.append(subprocess.Popen(
            [str(SCRIPT), "--db", url, "--config", str(config_file), "worker", "--concurrency", str(concurrency),
             "--heartbeat", "2"], stdout=output, stderr=subprocess.STDOUT))
    return workers


def wait_registered(store: Store, count: int, timeout: float = 120) -> None:
    """Until ``count`` workers have registered (their start-up is not what is measured)."""
    from sqlalchemy import text

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.engine.connect() as connection:
            if connection.scalar(text("SELECT count(*) FROM procrastinate_workers")) >= count:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{count} worker(s) did not start within {timeout}s")


def pg_run(server: PgServer, workdir: Path, urls: list[str], count: int, concurrency: int,
           config_file: Path) -> dict[str, Any]:
    url = server.fresh_database()
    server.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", url.rsplit("/", 1)[-1])
    store = open_store(url)
    add_links(store, urls)
    config = Config()
    workers = start_workers(url, config_file, count, concurrency, workdir)
    try:
        wait_registered(store, count)
        counters = db_counters(store)
        cpu = {"bench": -cpu_seconds(os.getpid(), children=False), "postgres": -cpu_seconds(server.pid),
               "workers": -sum(cpu_seconds(worker.pid) for worker in workers)}
        waited = -runqueue_wait_seconds([worker.pid for worker in workers])
        started = time.perf_counter()
        queued = queue.enqueue(store, config, allow_private=True)
        reports = queue.wait(store, queued.run, progress=lambda *_: None, poll=0.2)
        seconds = time.perf_counter() - started
        cpu["bench"] += cpu_seconds(os.getpid(), children=False)  # enqueueing, waiting, serving the pages
        cpu["postgres"] += cpu_seconds(server.pid)
        cpu["workers"] += sum(cpu_seconds(worker.pid) for worker in workers)
        waited += runqueue_wait_seconds([worker.pid for worker in workers])
        jobs = {stage: n for (stage, status), n in queue.run_counts(store, queued.run).items() if status == "succeeded"}
        counters = {name: db_counters(store)[name] - before for name, before in counters.items()}
        common = top_statements(store)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    states = outcome(store)
    failed = sum(report.failed for report in reports)
    store.close()
    server.drop_database(url)
    all_jobs = sum(jobs.values())
    total_cpu = sum(cpu.values())
    return {"items": len(urls), "workers": count, "concurrency": concurrency, "seconds": round(seconds, 2),
            "items_per_s": round(len(urls) / seconds, 1), "jobs": jobs, "failed": failed, "statuses": states,
            "cpu_s": {name: round(value, 2) for name, value in cpu.items()},
            "cpu_ms_per_item": round(1000 * total_cpu / len(urls), 1),
            "worker_cpu_ms_per_job": round(1000 * cpu["workers"] / max(all_jobs, 1), 1),
            "cores_busy": round(total_cpu / seconds, 2),
            # the workers' threads ready to run but without a core, in seconds per wall-clock second
            "workers_waiting_for_cpu": round(waited / seconds, 2),
            # the statements of the workers' jobs: all but this process's polls of the job states
            "statements_per_job": round((counters["statements"] - counters["polls"]) / max(all_jobs, 1), 1),
            "transactions_per_job": round(counters["transactions"] / max(all_jobs, 1), 1),
            "polls": counters["polls"], "most_run_statements": common}


def search_latency(size: int, server: PgServer, workdir: Path) -> dict[str, Any]:
    """p50/p95 of search.rank.search on the labelled queries: SQLite, and the same store on PostgreSQL."""
    import search as searchbench  # bench/search.py

    from tidings.search import evaluate as searcheval
    from tidings.search.index import rebuild_index
    from tidings.search.rank import search
    from tidings.storecopy import copy_stores

    config = Config()
    base = workdir / "search.db"
    searchbench.import_corpus(base, config).close()
    searchbench.add_filler(base, max(0, size - 2000))
    queries = [q for path in searchbench.QUERIES for q in searcheval.load_queries(path)]
    found: dict[str, Any] = {"items": size}
    url = server.fresh_database()
    copy_stores(str(base), url)
    for name, db in (("sqlite", str(base)), ("postgresql", url)):
        store = open_store(db)
        started = time.perf_counter()
        rebuild_index(store)
        build = time.perf_counter() - started
        timings = []
        for query in queries:
            started = time.perf_counter()
            search(store, query.query, limit=10)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        found[name] = {"index_s": round(build, 1), "p50_ms": round(timings[len(timings) // 2], 2),
                       "p95_ms": round(timings[int(len(timings) * 0.95)], 2), "queries": len(timings)}
        store.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="pages (items) per engine")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker process counts")
    parser.add_argument("--concurrency", type=int, default=2, help="jobs at a time per worker process")
    parser.add_argument("--per-host", type=int, default=8, help="fetch.per_host_concurrency for every engine")
    parser.add_argument("--search-items", type=int, default=0, help="also time search at this store size")
    parser.add_argument("--search-only", action="store_true", help="time search only (with --search-items)")
    args = parser.parse_args()
    if args.search_only and not args.search_items:
        parser.error("--search-only needs --search-items N")
    bin_dir = server_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): install postgresql")
    pages = make_pages(args.n)
    routes = {f"/a{n}": (lambda body: lambda _r: Reply(200, body, {"Content-Type": "text/html"}))(page.encode())
              for n, page in enumerate(pages)}
    result: dict[str, Any] = {"n": args.n, "cpus": os.cpu_count(), "per_host_concurrency": args.per_host}
    server = PgServer(bin_dir)
    with tempfile.TemporaryDirectory(prefix="tidings-scale-") as tmp, LoopbackServer(routes) as web:
        workdir = Path(tmp)
        urls = [web.url(path) for path in routes]
        config_file = workdir / "tidings.toml"
        config_file.write_text(f"[fetch]\nper_host_concurrency = {args.per_host}\n")
        if not args.search_only:
            log(f"sqlite, in-process: {args.n} items")
            result["sqlite"] = sqlite_run(workdir, urls, args.per_host)
            log(f"  {result['sqlite']}")
        server.start(settings={"shared_preload_libraries": "pg_stat_statements"})
        result["load_average_before"] = os.getloadavg()
        try:
            for count in [] if args.search_only else args.workers:
                log(f"postgresql, {count} worker(s) × {args.concurrency}")
                result[f"pg_w{count}"] = pg_run(server, workdir, urls, count, args.concurrency, config_file)
                log(f"  {result[f'pg_w{count}']}")
            if "pg_w1" in result and "pg_w2" in result:
                result["efficiency_2_over_1"] = round(
                    result["pg_w2"]["items_per_s"] / (2 * result["pg_w1"]["items_per_s"]), 2)
            if args.search_items:
                log(f"search at {args.search_items} items")
                try:
                    result["search"] = search_latency(args.search_items, server, workdir)
                except Exception as exc:  # noqa: BLE001 - the throughput figures are kept; the failure is reported
                    result["search"] = f"failed: {type(exc).__name__}: {exc}"
            else:
                result["search"] = "not measured in this run (--search-items N)"
        finally:
            result["load_average_after"] = os.getloadavg()
            server.stop()
    assert all(ItemStatus.PENDING not in (run.get("statuses") or {}) for run in result.values() if isinstance(run, dict))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
