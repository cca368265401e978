"""Background jobs of the web UI: links from the add-links box (or a set-aside item retried from
the week view) fetched, summarized and filed while the page stays responsive.

A job is the same ``pipeline.run`` as ``tidings run``, limited to its items. Jobs live in memory;
what a restart interrupts is found again in the store (``links.resume_links_jobs``)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from functools import partial

from .. import curate, pipeline
from ..config import Config
from ..errors import TidingsError
from ..sources.urlcheck import FetchPolicy
from ..store import Store

log = logging.getLogger("tidings.web")


@dataclass
class Job:
    id: str
    week: date
    items: list[tuple[int, str]]  # (item id, URL as given)
    refused: list[tuple[str, str]]  # (what the user typed, why it was refused)
    state: str = "queued"  # queued | running | done | failed
    stage: str = ""
    message: str = ""
    created: float = field(default_factory=time.time)


def new_job(week: date, items: list[tuple[int, str]], refused: list[tuple[str, str]] | None = None) -> Job:
    # Twelve hex digits: short enough for a URL, too many to guess another curator's job.
    return Job(id=uuid.uuid4().hex[:12], week=week, items=items, refused=refused or [])


class Jobs:
    """One worker thread: fetches run one job at a time, so the store sees one writer from here."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-web-job")

    def add(self, job: Job, work: Callable[[Job], None]) -> None:
        with self._lock:
            # Jobs live in memory while the server runs; finished ones go after a day.
            old = time.time() - 86_400
            for key in [k for k, j in self._jobs.items() if j.created < old and j.state in ("done", "failed")]:
                del self._jobs[key]
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, work)

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        job.state = "running"
        try:
            work(job)
            job.state = "done"
        except TidingsError as exc:
            job.state, job.message = "failed", str(exc)
        except Exception as exc:  # a bug must show as a failed job, not kill the worker
            log.exception("job %s failed", job.id)
            job.state, job.message = "failed", f"internal error: {type(exc).__name__}"

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def for_week(self, week: date) -> list[Job]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.week == week]
        recent = time.time() - 3600
        return sorted((j for j in jobs if j.state in ("queued", "running") or j.created > recent),
                      key=lambda j: j.created, reverse=True)[:5]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def run_links_job(store: Store, config: Config, policy: FetchPolicy, job: Job) -> None:
    """Fetch, summarize and file the job's items, then put them into the job's week."""
    ids = [item_id for item_id, _ in job.items]

    def stage_of(name: str) -> AbstractContextManager[pipeline.Progress]:
        job.stage = name  # the page polls the job and shows the stage it is in
        return nullcontext(lambda _done, _total, _what: None)

    # The same loop as `tidings run`, limited to this job's links.
    pipeline.run(store, config, item_ids=ids, policy=policy, progress=stage_of)
    job.stage = "digest"
    # The links were asked for in this week, whenever they were seen: a retried item that now
    # has its text joins the week's draft (items still failing stay set aside).
    curate.assign_to_week(store, ids, job.week, config)
    job.stage = "done"


def start(jobs: Jobs, job: Job, store: Store, config: Config, policy: FetchPolicy) -> None:
    """Queue ``job`` on the worker thread."""
    jobs.add(job, partial(run_links_job, store, config, policy))


# How the job page names an item's status while its job runs.
_ROW_STATE = {"pending": "fetching", "extracted": "done", "error": "failed", "rejected": "failed"}


def job_rows(store: Store, job: Job) -> list[dict[str, str | int]]:
    """One row per link of the job, as the job page and its JSON show it."""
    found = curate.items_by_id(store, [item_id for item_id, _ in job.items])
    rows: list[dict[str, str | int]] = []
    for item_id, url in job.items:
        item = found.get(item_id)
        if item is None:
            rows.append({"id": item_id, "url": url, "state": "gone", "title": "", "reason": ""})
            continue
        state = _ROW_STATE.get(item.status, item.status)
        if state == "fetching" and job.state in ("done", "failed"):
            state = "failed" if job.state == "failed" else "done"
        rows.append({
            "id": item_id, "url": url, "state": state, "title": item.title or "",
            "reason": (f"{item.error_reason}: {item.error}" if item.error_reason else "") if state == "failed"
            else "",
        })
    return rows
