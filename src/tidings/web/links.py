"""The add-links box: pasted URLs or Markdown links become items of the week, fetched and filed by
a background job whose progress the week view polls; and, on start, the jobs a restart cut short."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .. import curate, pipeline
from ..collect import url_refusal
from ..config import Config
from ..records import ItemRecord
from ..sources.links import parse_links
from ..sources.urlcheck import FetchPolicy
from ..store import Store
from . import jobs as web_jobs
from .deps import (
    CSRF,
    ConfigDep,
    FormError,
    JobsDep,
    PolicyDep,
    StoreDep,
    back,
    check_length,
    current_week,
    mutate,
    page,
    parse_week_param,
)
from .jobs import Job, Jobs
from .week import week_page

log = logging.getLogger("tidings.web")
router = APIRouter()

MAX_LINKS = 200  # per submission of the add-links box


@router.post("/week/links", dependencies=CSRF)
def add_links(request: Request, store: StoreDep, config: ConfigDep, jobs: JobsDep, policy: PolicyDep,
              week: Annotated[str, Form()] = "", links: Annotated[str, Form()] = "") -> Response:
    values = {"week": week, "links": links}

    def work() -> Response:
        try:
            when = parse_week_param(week, config)
        except FormError:
            return week_page(request, current_week(config), status=422, errors={("links", "week"): "not a week date"},
                             values={("links", "links"): links})
        try:
            check_length("links", links, 200_000)
            job = start_links_job(store, config, jobs, policy, when, links)
        except FormError as exc:
            return week_page(request, when, status=422, errors={("links", exc.field): exc.message},
                             values={("links", "links"): links})
        if not job.items:
            return week_page(request, when, status=422, refused=job.refused, values={("links", "links"): links},
                             errors={("links", "links"): "no link was accepted: see the reasons below"})
        return back(f"/week?week={when.isoformat()}&job={job.id}#jobs")

    return mutate(request, "/week/links", values, work)


def checked_links(text: str, policy: FetchPolicy) -> tuple[list[ItemRecord], list[tuple[str, str]]]:
    """The links in ``text`` that may be fetched, and (what was typed, why not) for the others."""
    parsed = parse_links(text, file="the links box")
    refused: list[tuple[str, str]] = [(str(e).split(": ", 1)[-1], "not a URL or Markdown link")
                                      for e in parsed.errors]
    accepted = []
    for record in parsed.items:
        url = record.url or ""
        why = url_refusal(url, policy)
        if why is not None:
            refused.append((url, why))
            continue
        accepted.append(record)
    if len(accepted) > MAX_LINKS:
        raise FormError("links", f"at most {MAX_LINKS} links at once")
    if not parsed.items and not parsed.errors:
        raise FormError("links", "paste one or more URLs or Markdown links, one per line")
    return accepted, refused


def start_links_job(store: Store, config: Config, jobs: Jobs, policy: FetchPolicy, week: date, text: str) -> Job:
    """Add the accepted links to ``week``'s draft at once (so they show while they are fetched) and
    queue the job that fetches them; a job with no items is done, with only its refusals."""
    status = curate.digest_status(store, week)
    if status is not None and status != "draft":
        raise FormError("links", f"the digest of {week.isoformat()} is {status}, not a draft: "
                                 "add links to the current week instead")
    accepted, refused = checked_links(text, policy)
    job = web_jobs.new_job(week, [], refused)
    if accepted:
        report = pipeline.ingest(store, accepted, source_kind="web", locator="tidings serve: add links")
        curate.assign_to_week(store, report.item_ids, week, config)
        job.items = list(zip(report.item_ids, [r.url or "" for r in accepted], strict=True))
        web_jobs.start(jobs, job, store, config, policy)
    else:
        job.state = "done"
    return job


def resume_links_jobs(store: Store, config: Config, jobs: Jobs, policy: FetchPolicy) -> None:
    """Jobs live in memory. Links added in the box that a restart interrupted are still pending in
    the store, or fetched but not yet summarized or filed: start them again, one job per draft
    week (each stage skips what is already done)."""
    for week, items in curate.unfinished_web_links(store).items():
        log.info("resuming %d link(s) added for %s", len(items), week.isoformat())
        web_jobs.start(jobs, web_jobs.new_job(week, items), store, config, policy)


# --- job progress --------------------------------------------------------------------------------
# The JSON route comes first: "/jobs/{job_id}" would otherwise take "abc.json" as a job id.


@router.get("/jobs/{job_id}.json")
def job_json(job_id: str, store: StoreDep, jobs: JobsDep) -> Response:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, "no such job")
    return JSONResponse({"id": job.id, "state": job.state, "stage": job.stage, "message": job.message,
                         "items": web_jobs.job_rows(store, job),
                         "refused": [{"what": w, "reason": r} for w, r in job.refused]})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, store: StoreDep, jobs: JobsDep) -> Response:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, "There is no such job (jobs are kept while the server runs).")
    return page(request, "job.html", job=job, rows=web_jobs.job_rows(store, job))
