"""The stages as procrastinate jobs, for a store on PostgreSQL (``tidings worker``, ``tidings queue``).

One job per item and stage for fetch, summarize and classify; dedupe and stories, which compare an
item with all others, run as passes over every item that needs them (one job, one at a time across
all workers: its lock; one waiting at a time: its queueing lock, so the fetches that end while a
pass waits all join it). A job runs :func:`tidings.pipeline.run` for its stage and its item (or,
for a pass, all items), so the selection, the step and the commit are the in-process loop's own: a
job whose item no longer needs the stage does nothing, which is what makes a retried job harmless.
When a job ends it queues what comes next among the wanted stages (``then``): the item's next stage,
the next pass, or after a pass every item the next stage selects. The queueing lock ``STAGE:ITEM``
keeps one waiting job per item and stage, however many times it is enqueued.

What holds across workers: per-host fetch politeness (``per_host_concurrency`` requests at a time
per host, counted over all workers by PostgreSQL advisory locks, which a killed worker's closed
connection releases), the LLM cache (the store's ``llm_calls`` table) and a run's LLM token budget
(its ``llm_budgets`` row, :class:`tidings.llm.gateway.SharedBudget`).

A worker killed mid-job (SIGKILL) stops sending heartbeats; every worker looks for jobs of stalled
workers every few seconds and puts them back in the queue (``retry_stalled``). Their items were not
committed, so the retry does the work once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import text

from . import pipeline
from .errors import UsageError
from .store import Item, Store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .config import Config
    from .pipeline import Progress, StageProgress, StageReport
    from .sources.urlcheck import FetchPolicy

log = logging.getLogger("tidings.queue")

TASK_NAME = "tidings.stage"
GLOBAL_STAGES = ("dedupe", "stories")
"""Stages whose jobs are passes over all items that need them: dedupe compares every item with
every other; stories compares each new item with all stories, far cheaper for many items at once."""


def is_queued(store: Store) -> bool:
    """Whether ``store``'s stages run as queue jobs (PostgreSQL) rather than in-process (SQLite)."""
    return store.engine.dialect.name == "postgresql"


def libpq_url(store: Store) -> str:
    """The store's URL as psycopg takes it (no SQLAlchemy driver suffix)."""
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def queue_of(stage: str) -> str:
    return f"tidings.{stage}"


# --- the worker side -------------------------------------------------------------------------


@dataclass
class _WorkerState:
    store: Store
    config: Config
    llms: dict[Any, Any] = field(default_factory=dict)
    classifiers: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def llm(self, task: str, run: str, budget: int | None) -> Any:
        """One gateway per task and run in this process. Its cache is the store's ``llm_calls`` and
        its budget the run's ``llm_budgets`` row: both shared by all workers."""
        with self.lock:
            if (task, run) not in self.llms:
                from .llm.gateway import LLM, SharedBudget

                shared = SharedBudget(self.store, run, budget) if budget is not None else None
                if len(self.llms) >= KEPT_GATEWAYS:  # a long-lived worker sees many runs: keep the latest
                    del self.llms[next(iter(self.llms))]
                self.llms[task, run] = LLM(self.config, self.store, budget=shared)
            return self.llms[task, run]

    def classifier(self, run: str) -> Any:
        """The section classifier, read from the store once per run and process (not per item)."""
        with self.lock:
            if run not in self.classifiers:
                self.classifiers = {run: pipeline.default_classifier(self.store, self.config)}
            return self.classifiers[run]


KEPT_GATEWAYS = 8
"""LLM gateways a worker keeps (one per task and run; an older run's is dropped when it sees a new one)."""

_worker: _WorkerState | None = None
app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())


def _next_stage(stage: str, then: Sequence[str]) -> str | None:
    later = pipeline.STAGES[pipeline.STAGES.index(stage) + 1 :]
    return next((s for s in later if s in then), None)


def needing(store: Store, config: Config, stage: str, llm: Sequence[str], *, force: bool = False) -> list[int]:
    """The items a per-item stage would select now: the in-process loop's own selections."""
    from sqlalchemy import select

    with store.session() as session:
        if stage == "fetch":  # pages on a disk are read by the command that named them (read_local)
            return _pending_fetch(session, force=force, on_disk=False)
        if stage == "summarize":
            return list(session.scalars(pipeline.needs_summary(None, upgrade="summarize" in llm)))
        if stage == "classify":
            below = config.llm.classify_below if "classify" in llm else None
            return list(session.scalars(pipeline.needs_section(None, unsure_below=below)))
        if stage == "stories":
            from .stages.stories import eligible  # the stories stage's own selection

            return list(session.scalars(select(Item.id).where(eligible(), Item.story_id.is_(None))))
    raise ValueError(f"{stage} is not a per-item stage")


@app.task(name=TASK_NAME, retry=procrastinate.RetryStrategy(max_attempts=3, wait=2))
def stage_job(
    *, stage: str, item_id: int | None, then: list[str], run: str, allow_private: bool = False,
    force: bool = False, llm: list[str] | None = None, budget: int | None = None,
) -> None:
    """One stage for one item, or (``item_id`` None, the stages over all items) one pass of it."""
    state = _worker
    if state is None:
        raise RuntimeError("stage jobs run in `tidings worker`, which opens the store first")
    from .sources.urlcheck import FetchPolicy

    policy = FetchPolicy.from_config(state.config.fetch, allow_private=allow_private, allow_files=False)
    llms = {task: state.llm(task, run, budget) for task in llm or () if task in ("summarize", "classify")}
    classifier = state.classifier(run) if stage == "classify" else None
    ids = None if item_id is None else [item_id]
    pipeline.run(state.store, state.config, stages=[stage], item_ids=ids, force=force, policy=policy, llms=llms,
                 classifier=classifier)
    following = _next_stage(stage, then)
    if following is None:
        return
    chained = {"then": then, "run": run, "allow_private": allow_private, "force": force, "llm": llm,
               "budget": budget}
    if following in GLOBAL_STAGES:
        defer(following, None, **chained)  # a pass is already waiting: it will see this item too
    elif item_id is not None:
        defer(following, item_id, **chained)
    else:  # after a pass: each item at the first later stage it needs (one with a human summary
        # needs classify only), but once per run (an item a stage cannot help, e.g. a text too
        # short to summarize, stays selected)
        later = pipeline.STAGES[pipeline.STAGES.index(stage) + 1 :]
        queued: dict[str, set[int]] = {}
        for next_stage, next_id in _first_needs(state.store, state.config, [s for s in later if s in then], llm or []):
            if next_id not in queued.setdefault(next_stage, set(_job_items(state.store, run, next_stage))):
                defer(next_stage, next_id, **chained)


def _pending_fetch(session: Session, *, force: bool, on_disk: bool) -> list[int]:
    """The items the fetch stage selects now whose pages are files (``on_disk``), or the others."""
    return [item.id for item in pipeline.pending_fetch(session, retry_failed=force) if _on_disk(item) == on_disk]


def _on_disk(item: Item) -> bool:
    """Whether ``item``'s page is a file path (``file:`` URL or bare path): it names a file on the
    machine of the command that added it, which a worker (maybe on another machine) must never read."""
    from .sources.urlcheck import is_local_reference

    return is_local_reference(pipeline.fetch_url_of(item))


def defer(stage: str, item_id: int | None, *, then: Sequence[str], run: str, allow_private: bool = False,
          force: bool = False, llm: Sequence[str] | None = None, budget: int | None = None) -> int | None:
    """Queue one stage job; None when the same job already waits (its queueing lock)."""
    options: dict[str, Any] = {"queue": queue_of(stage), "queueing_lock": f"{stage}:{item_id or '*'}"}
    if stage in GLOBAL_STAGES:
        options["lock"] = f"tidings:{stage}"  # one pass at a time over all workers
    try:
        return stage_job.configure(**options).defer(
            stage=stage, item_id=item_id, then=list(then), run=run, allow_private=allow_private, force=force,
            llm=list(llm or []), budget=budget,
        )
    except AlreadyEnqueued:
        return None


@contextmanager
def _advisory_slot(url: str, host: str, slots: int) -> Iterator[None]:
    """Hold one of ``slots`` PostgreSQL advisory locks for ``host`` (shared by every worker)."""
    import psycopg

    key = zlib.crc32(host.encode()) - 2**31  # the lock's first int4: the host
    connection = _host_connection(url)
    try:
        while True:
            for slot in range(slots):
                if connection.execute("SELECT pg_try_advisory_lock(%s, %s)", (key, slot)).fetchone()[0]:  # type: ignore[index]
                    try:
                        yield
                    finally:
                        connection.execute("SELECT pg_advisory_unlock(%s, %s)", (key, slot))
                    return
            time.sleep(0.05)  # every slot taken: some worker is fetching from this host
    except psycopg.Error as exc:
        log.warning("host politeness lock for %s failed (%s): fetching without it", host, exc)
        raise


_local = threading.local()


def _host_connection(url: str) -> Any:
    """The calling thread's own autocommit connection for the advisory locks (a lock belongs to a
    session; a thread holds at most one at a time)."""
    import psycopg

    connection = getattr(_local, "connection", None)
    if connection is None or connection.closed:
        connection = _local.connection = psycopg.connect(url, autocommit=True)
    return connection


async def _retry_stalled(every: float, heartbeat: float) -> None:
    """Put back the jobs of workers that stopped sending heartbeats (killed, or their machine died)."""
    while True:
        await asyncio.sleep(every)
        try:
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=heartbeat * 3):
                log.warning("job %s (%s) was left by a stalled worker: queued again", job.id, job.task_kwargs)
                await app.job_manager.retry_job(job)
        except Exception as exc:  # noqa: BLE001 - a failed sweep is retried at the next tick
            log.warning("stalled-job sweep failed: %s", exc)


def run_worker(store: Store, config: Config, *, stages: Sequence[str] = pipeline.STAGES, concurrency: int = 2,
               heartbeat: float = 10.0) -> None:
    """Work the queue's ``stages`` until stopped (SIGINT/SIGTERM finish the jobs in hand first)."""
    from .sources import http

    if not is_queued(store):
        raise UsageError("`tidings worker` needs a PostgreSQL store (--db postgresql://…): "
                         "a SQLite store runs its stages in-process")
    unknown = [s for s in stages if s not in pipeline.STAGES]
    if unknown:
        raise UsageError(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(pipeline.STAGES)}")
    global _worker  # noqa: PLW0603 - the jobs of this process share one store and config
    _worker = _WorkerState(store, config)
    url = libpq_url(store)
    http.set_host_gate(lambda host, slots: _advisory_slot(url, host, slots))
    # In a worker one job is one item: the process pool would only add start-up cost.
    config.workers = 0

    async def main() -> None:
        with app.replace_connector(procrastinate.PsycopgConnector(conninfo=url)) as replaced:
            async with replaced.open_async() as opened:
                sweeper = asyncio.create_task(_retry_stalled(max(heartbeat, 0.5), heartbeat))
                try:
                    await opened.run_worker_async(
                        queues=[queue_of(s) for s in stages], concurrency=concurrency,
                        update_heartbeat_interval=heartbeat, stalled_worker_timeout=heartbeat * 3,
                    )
                finally:
                    sweeper.cancel()

    asyncio.run(main())


# --- the enqueuing side ------------------------------------------------------------------------


@contextmanager
def _opened(store: Store) -> Iterator[procrastinate.App]:
    """The app on a synchronous connection to ``store``'s database, for deferring and listing."""
    with app.replace_connector(procrastinate.SyncPsycopgConnector(conninfo=libpq_url(store))) as replaced:
        with replaced.open():
            yield replaced


@dataclass
class Enqueued:
    run: str
    jobs: int
    read_here: list[int] = field(default_factory=list)
    """Items whose pages are files on this machine: fetched by the enqueuing process, not by a job."""


def read_local(store: Store, config: Config, policy: FetchPolicy, *, force: bool = False,
               progress: StageProgress | None = None) -> list[int]:
    """Fetch and extract, in this process and through the one stage loop, the pending items whose
    pages are files (``tidings add PATH``, a links file's own folder): only the command that named
    them can read them. Returns their ids; the queue's fetch jobs never include them."""
    with store.session() as session:
        ids = _pending_fetch(session, force=force, on_disk=True)
    if ids:
        pipeline.run(store, config, stages=["fetch"], item_ids=ids, force=force, policy=policy,
                     **({"progress": progress} if progress else {}))
    return ids


def _first_jobs(store: Store, config: Config, wanted: Sequence[str], *, force: bool,
                llm: Sequence[str]) -> list[tuple[str, int | None]]:
    """The jobs to start with: the items to fetch; then, when a pass stage (dedupe, stories) is
    wanted, one pass (unless the fetch jobs lead to it), which queues the later stages' items when it
    ends; without one, each item at the first per-item stage it needs."""
    pairs: list[tuple[str, int | None]] = []
    if "fetch" in wanted:
        pairs += [("fetch", item_id) for item_id in needing(store, config, "fetch", llm, force=force)]
    passes = [stage for stage in wanted if stage in GLOBAL_STAGES]
    if passes:
        if not pairs:
            pairs.append((passes[0], None))
        return pairs
    fetched = [item_id for _, item_id in pairs if item_id is not None]
    return _first_needs(store, config, wanted, llm, taken=fetched) + pairs


def _first_needs(store: Store, config: Config, stages: Sequence[str], llm: Sequence[str], *,
                 taken: Sequence[int] = ()) -> list[tuple[str, int | None]]:
    """Each item (but the ``taken`` ones) at the first of the per-item ``stages`` after the passes
    (summarize, classify) that selects it; its job queues the item's next stage when it ends."""
    first: dict[int, str] = dict.fromkeys(taken, "")
    for stage in (s for s in ("summarize", "classify") if s in stages):
        for item_id in needing(store, config, stage, llm):
            first.setdefault(item_id, stage)
    return [(stage, item_id) for item_id, stage in sorted(first.items()) if stage]


def enqueue(store: Store, config: Config, *, stages: Sequence[str] = pipeline.STAGES, force: bool = False,
            allow_private: bool = False, llm: Sequence[str] = (), budget_tokens: int | None = None,
            local_policy: FetchPolicy | None = None, progress: StageProgress | None = None) -> Enqueued:
    """Queue the items that need ``stages``: one job per item at its first stage. With ``llm`` tasks
    and a token budget (``budget_tokens``, else the config's), the run's workers share that budget.

    With ``local_policy`` (a command on the machine that added them), pending items whose pages are
    files are first fetched here (:func:`read_local`, ``progress`` showing it); the later stages take
    them from the queue like any other. Without it they stay pending: a worker never reads a file."""
    wanted = [s for s in pipeline.STAGES if s in stages]
    read_here = (read_local(store, config, local_policy, force=force, progress=progress)
                 if local_policy is not None and "fetch" in wanted else [])
    run = uuid.uuid4().hex[:12]
    pairs = _first_jobs(store, config, wanted, force=force, llm=llm)
    budget = budget_tokens if budget_tokens is not None else config.llm.budget_tokens
    if llm and budget is not None:
        from .llm.gateway import SharedBudget

        SharedBudget.open(store, run, budget)
    with _opened(store):
        queued = sum(
            defer(stage, item_id, then=wanted, run=run, allow_private=allow_private, force=force, llm=llm,
                  budget=budget if llm else None) is not None
            for stage, item_id in pairs
        )
    return Enqueued(run, queued, read_here)


def live_workers(store: Store, within_s: float = 60.0) -> int:
    """Workers that sent a heartbeat in the last ``within_s`` seconds (0 before any worker ever ran)."""
    query = text("SELECT count(*) FROM procrastinate_workers"
                 " WHERE last_heartbeat > now() - make_interval(secs => :within)")
    with store.engine.connect() as connection:
        return int(connection.execute(query, {"within": within_s}).scalar() or 0)


def run_counts(store: Store, run: str) -> dict[tuple[str, str], int]:
    """Jobs of one run by (stage, status)."""
    query = text("SELECT args->>'stage', status::text, count(*) FROM procrastinate_jobs"
                 " WHERE task_name = :task AND args->>'run' = :run GROUP BY 1, 2")
    with store.engine.connect() as connection:
        return {(stage, status): n for stage, status, n in connection.execute(query, {"task": TASK_NAME, "run": run})}


def wait(store: Store, run: str, *, progress: Progress, poll: float = 0.5,
         idle_note: Callable[[], None] | None = None, read_here: Sequence[int] = ()) -> list[StageReport]:
    """Follow a run's jobs until none waits or runs; then one report per stage. The fetch report
    counts the fetched items by what was committed on them, as the in-process stage counts them (a
    page that failed is a failure, with its reason), those ``read_here`` (:func:`read_local`)
    included; the other stages count their jobs. A job that failed is a failure of its stage."""
    from .pipeline import StageReport

    started = time.monotonic()
    noted = False
    while True:
        counts = run_counts(store, run)
        total = sum(counts.values())
        finished = sum(n for (_, status), n in counts.items() if status in ("succeeded", "failed", "cancelled"))
        progress(finished, total, "")
        if finished == total:
            break
        if not noted and idle_note is not None and finished == 0 and time.monotonic() - started > 10:
            idle_note()
            noted = True
        time.sleep(poll)
    reports: dict[str, StageReport] = {}
    fetched = _job_items(store, run, "fetch", "succeeded")
    if fetched or read_here:
        reports["fetch"] = fetch_report(store, [*read_here, *fetched])
    for (stage, status), n in sorted(counts.items()):
        report = reports.setdefault(stage, StageReport(stage))
        if status != "succeeded":
            report.failed += n
            report.failures.append((f"{n} {stage} job(s)", f"{status} (see `tidings queue`)"))
        elif stage != "fetch":
            report.done += n
    return [reports[s] for s in pipeline.STAGES if s in reports]


def fetch_report(store: Store, item_ids: Sequence[int]) -> StageReport:
    """The fetch stage's report on ``item_ids`` from their committed state (pipeline.count_fetched)."""
    from sqlalchemy import select
    from sqlalchemy.orm import load_only, selectinload

    report = pipeline.StageReport("fetch")
    ids = sorted(set(item_ids))
    for start in range(0, len(ids), REPORT_CHUNK):
        with store.session() as session:
            query = (select(Item).where(Item.id.in_(ids[start : start + REPORT_CHUNK])).order_by(Item.id)
                     .options(load_only(Item.id, Item.url, Item.status, Item.error_reason),
                              selectinload(Item.urls)))
            for item in session.scalars(query):
                pipeline.count_fetched(report, pipeline.fetch_url_of(item), item)
    return report


REPORT_CHUNK = 1000
"""Items read per query for a run's fetch report (a run may fetch a whole backlog)."""


def _job_items(store: Store, run: str, stage: str, status: str | None = None) -> list[int]:
    """The items of a run's per-item jobs at ``stage`` (in ``status``, or any)."""
    query = ("SELECT (args->>'item_id')::bigint FROM procrastinate_jobs WHERE task_name = :task"
             " AND args->>'run' = :run AND args->>'stage' = :stage AND args->>'item_id' IS NOT NULL")
    if status is not None:
        query += " AND status::text = :status"
    with store.engine.connect() as connection:
        return list(connection.scalars(text(query), {"task": TASK_NAME, "run": run, "stage": stage,
                                                     "status": status}))


# --- tidings queue -----------------------------------------------------------------------------


@dataclass
class QueueStatus:
    by_stage: dict[str, dict[str, int]]
    retried: int
    failed_jobs: list[tuple[int, str, int | None, int]]
    """(job id, stage, item id, attempts) of the failed jobs, newest first."""


def status(store: Store) -> QueueStatus:
    # procrastinate counts an attempt when a run ends (finished, or put back to retry): a job run more
    # than once has more than one when finished, any while it waits or runs again.
    query = text("SELECT args->>'stage', status::text, count(*), sum(CASE WHEN attempts > CASE WHEN status IN"
                 " ('todo', 'doing') THEN 0 ELSE 1 END THEN 1 ELSE 0 END)"
                 " FROM procrastinate_jobs WHERE task_name = :task GROUP BY 1, 2")
    failed = text("SELECT id, args->>'stage', (args->>'item_id')::bigint, attempts FROM procrastinate_jobs"
                  " WHERE task_name = :task AND status = 'failed' ORDER BY id DESC LIMIT 50")
    by_stage: dict[str, dict[str, int]] = {}
    retried = 0
    with store.engine.connect() as connection:
        for stage, state, n, again in connection.execute(query, {"task": TASK_NAME}):
            by_stage.setdefault(stage, {})[state] = n
            retried += int(again or 0)
        failures = [(int(i), s, item, int(a)) for i, s, item, a in connection.execute(failed, {"task": TASK_NAME})]
    return QueueStatus(by_stage, retried, failures)


def retry_failed(store: Store) -> int:
    """Queue every failed stage job again; returns how many."""
    with _opened(store) as opened:
        ids = [job.id for job in opened.job_manager.list_jobs(task=TASK_NAME, status="failed")]
        for job_id in ids:
            opened.job_manager.retry_job_by_id(job_id, retry_at=_now())
    return len(ids)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
