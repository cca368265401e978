"""The week view and every edit made from it: keep or drop, title and summary, section and
position, tags, notes, one-item re-runs, and retrying a set-aside item.

Each edit is a plain form post that calls one ``curate`` function and redirects back to the
entry; a bad value gives the week page back with the message beside the field (422)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm.exc import StaleDataError

from .. import curate, triage
from ..collect import url_refusal
from ..errors import UsageError
from ..store import DigestEntryRow
from . import jobs as web_jobs
from .deps import (
    CSRF,
    EDIT,
    ConfigDep,
    FormError,
    JobsDep,
    PolicyDep,
    RowId,
    StaleForm,
    StoreDep,
    back,
    check_length,
    check_version,
    config_of,
    curator_of,
    curator_session,
    current_week,
    jobs_of,
    mutate,
    page,
    parse_week_param,
    store_of,
    week_url,
)
from .views import group_entries, list_choices, list_rows, section_choices, set_aside_view, shown_entry

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

router = APIRouter()

FormKey = tuple[Any, str]
"""(what the form is about: an entry id, ``"links"``, ``"item-<id>"`` ..., field name)."""


@dataclass(frozen=True)
class ListMode:
    """The list mode's query: only what is new since the last published digest (a draft's
    default), and a title filter."""

    new_only: bool = True
    query: str = ""


def week_page(request: Request, week: date, *, status: int = 200, errors: dict[FormKey, str] | None = None,
              values: dict[FormKey, str] | None = None, notice: str = "",
              refused: list[tuple[str, str]] | None = None, listing: ListMode | None = None) -> HTMLResponse:
    """The week's draft (or imported digest), its set-aside items and its jobs; ``errors`` and
    ``values`` put a failed form back, filled in, beside the entry it was about."""
    store, config, jobs = store_of(request), config_of(request), jobs_of(request)
    with store.session() as session:
        has_candidates = (curate.find_digest(session, week) is not None
                          or bool(curate.candidates(session, week, config, None)))
    if has_candidates:
        curate.refresh_week(store, week, config)  # drafts pick up the week's new candidates
    if listing is not None:
        return list_page(request, week, status, listing, errors or {})
    with store.session() as session:
        digest = curate.week_digest(session, week)
        groups = group_entries(digest, config) if digest is not None else []
        choices = section_choices(digest, config)
        vocabulary = curate.tag_vocabulary(session)
        weeks = curate.digest_weeks(session)
        status_of = digest.status if digest is not None else "none"
        source_path = digest.source_path if digest is not None else None
        # The draft's entries are the candidates; set-aside items are listed apart, not counted.
        kept = sum(1 for g in groups for e in g.entries if e.kept)
        total = sum(len(g.entries) for g in groups)
        set_aside = [set_aside_view(item) for item in curate.set_aside(session, week, config)]
    return page(
        request, "week.html", status, week=week, groups=groups, choices=choices, vocabulary=vocabulary,
        weeks=weeks, digest_status=status_of, source_path=source_path, kept=kept, total=total,
        set_aside=set_aside,
        errors=errors or {}, values=values or {}, notice=notice,
        job_views=[(j, web_jobs.job_rows(store, j)) for j in jobs.for_week(week)],
        # The week /week opens (run's and digest's default), so the link names the week it leads to.
        refused=refused or [], current=curate.default_week(store, config), prev_week=week - timedelta(days=7),
        next_week=week + timedelta(days=7),
    )


def list_page(request: Request, week: date, status: int, listing: ListMode,
              errors: dict[FormKey, str]) -> HTMLResponse:
    """The compact list: one line per candidate, best triage score first, for the keyboard. It
    reads only the columns it shows (``triage.week_lines``), not the cards' full entries."""
    store, config = store_of(request), config_of(request)
    lines = triage.week_lines(store, week)
    with store.session() as session:
        digest = curate.find_digest(session, week)
        digest_status = digest.status if digest is not None else "none"
        sections = list(digest.sections or []) if digest is not None else []
    choices = list_choices(sections, lines, config)
    item_ids = [line.item_id for line in lines if line.item_id is not None]
    rows = list_rows(lines, triage.score_items(store, item_ids, week), choices)
    since = triage.last_published_end(store, week) if digest_status == "draft" else None
    new_only = listing.new_only and since is not None
    if new_only and since is not None:
        fresh = triage.new_item_ids(store, item_ids, curate.week_window(since, config)[1])
        rows = [r for r in rows if r.line.item_id is None or r.line.item_id in fresh]
    needle = listing.query.strip().casefold()
    if needle:
        rows = [r for r in rows if needle in r.line.title.casefold() or needle in r.domain.casefold()]
    return page(request, "week_list.html", status, week=week, rows=rows, choices=choices,
                digest_status=digest_status, kept=sum(1 for line in lines if line.kept), total=len(lines),
                new_only=new_only, since=since, query=listing.query, errors=errors,
                prev_week=week - timedelta(days=7), next_week=week + timedelta(days=7))


def entry_week(request: Request, entry_id: int) -> date:
    week = curate.week_of_entry(store_of(request), entry_id)
    if week is None:
        raise HTTPException(404, f"There is no digest entry {entry_id}.")
    return week


def load_entry(session: Session, entry_id: int) -> DigestEntryRow:
    row = curate.find_entry(session, entry_id)
    if row is None:
        raise HTTPException(404, f"There is no digest entry {entry_id}.")
    return row


def form_failed(request: Request, entry_id: int, exc: FormError, values: dict[str, str]) -> HTMLResponse:
    """The week page again, with the entry's form as it was posted and ``exc`` beside its field."""
    week = entry_week(request, entry_id)
    return week_page(request, week, status=422, errors={(entry_id, exc.field): exc.message},
                     values={(entry_id, k): v for k, v in values.items()})


def stale_entry(request: Request, entry_id: int) -> HTMLResponse:
    """409: the entry changed since the form's page was made. Nothing was saved; the week page
    comes back with the entry as it is now and who changed it, so no one's edit is lost unseen."""
    week = entry_week(request, entry_id)
    latest = curate.latest_entry_edit(store_of(request), entry_id)
    who = f"{latest[0] or 'someone'} ({latest[1].strftime('%Y-%m-%d %H:%M')} UTC)" if latest else "someone"
    message = (f"Not saved: {who} changed this entry after your page was loaded. This is the entry as it "
               "is now; make your change again if it still applies.")
    return week_page(request, week, status=409, errors={(entry_id, "stale"): message})


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return back("/week")


@router.get("/week", response_class=HTMLResponse)
def week_view(request: Request, store: StoreDep, config: ConfigDep, week: str | None = None,
              flash: str | None = None, view: str = "cards", new: str = "1", q: str = "") -> Response:
    try:
        # No week named: the one `tidings run` would draft (the ended week while it is still to do, else
        # the week under way), so the page opens on the links just added.
        when = parse_week_param(week, config) if week else curate.default_week(store, config)
    except FormError as exc:
        return week_page(request, current_week(config), status=400, errors={("week", "week"): exc.message},
                         values={("week", "week"): week or ""})
    errors: dict[FormKey, str] = {}
    message = request.app.state.flashes.pop(flash) if flash else None
    if message is not None:
        errors[(message[0], "stage_ok")] = message[1]
    listing = ListMode(new_only=new != "0", query=q[:200]) if view == "list" else None
    return week_page(request, when, errors=errors, listing=listing)


# --- entry edits (each a plain form post) --------------------------------------------------------


def edit_entry(request: Request, entry_id: int, action: str, values: dict[str, str],
               apply: Callable[[Session, DigestEntryRow], None], view: str = "") -> Response:
    """One entry edit: ``apply`` changes the row in a session, and the browser goes back to the
    entry (its line, when the form came from the list mode). A FormError from ``apply`` gives the
    week page back with the form as it was posted."""
    def work() -> Response:
        try:
            with curator_session(request) as session:
                row = load_entry(session, entry_id)
                check_version(request, row.version)
                apply(session, row)
                week = row.digest.week
        except FormError as exc:
            return form_failed(request, entry_id, exc, values)
        except (StaleForm, StaleDataError):  # a stale form, or another edit committed mid-way
            return stale_entry(request, entry_id)
        if view == "list":
            return back(f"/week?week={week.isoformat()}&view=list#row-{entry_id}")
        return back(week_url(week, f"entry-{entry_id}"))

    return mutate(request, f"/entry/{entry_id}/{action}", values, work)


@router.post("/entry/{entry_id}/keep", dependencies=EDIT)
def entry_keep(request: Request, entry_id: RowId, kept: Annotated[str, Form()] = "",
               view: Annotated[str, Form()] = "") -> Response:
    def apply(session: Session, row: DigestEntryRow) -> None:
        if kept not in ("0", "1"):
            raise FormError("kept", "kept must be 0 or 1")
        curate.set_kept(session, row, kept == "1")

    return edit_entry(request, entry_id, "keep", {"kept": kept}, apply, view)


@router.post("/entry/{entry_id}/edit", dependencies=EDIT)
def entry_edit(request: Request, entry_id: RowId, config: ConfigDep,
               title: Annotated[str | None, Form()] = None, summary: Annotated[str | None, Form()] = None) -> Response:
    values = {k: v for k, v in (("title", title), ("summary", summary)) if v is not None}

    def apply(session: Session, row: DigestEntryRow) -> None:
        if title is not None:
            check_length("title", title, 1000)
            if not title.strip():
                raise FormError("title", "a title cannot be empty")
        if summary is not None:
            check_length("summary", summary)
        doc_entry = shown_entry(row, config)
        new_title = title.strip() if title is not None else None
        new_summary = summary.strip().replace("\r\n", "\n") if summary is not None else None
        # Only what the user changed: re-sending the shown title must not mark it edited.
        if new_title is not None and new_title == (doc_entry.title or ""):
            new_title = None
        if new_summary is not None and new_summary == (doc_entry.summary or "").strip():
            new_summary = None
        curate.edit_entry(session, row, title=new_title, summary=new_summary)

    return edit_entry(request, entry_id, "edit", values, apply)


def parse_position(index: str) -> int | None:
    """The form's position within a section: empty means the end."""
    if not index.strip():
        return None
    try:
        position = int(index)
    except ValueError as exc:
        raise FormError("index", "the position must be a whole number") from exc
    if position < 0:
        raise FormError("index", "the position cannot be negative")
    return position


@router.post("/entry/{entry_id}/move", dependencies=EDIT)
def entry_move(request: Request, entry_id: RowId, config: ConfigDep,
               section: Annotated[str, Form()] = "", index: Annotated[str, Form()] = "",
               view: Annotated[str, Form()] = "") -> Response:
    def apply(session: Session, row: DigestEntryRow) -> None:
        if section not in section_choices(row.digest, config):
            raise FormError("section", f"unknown section {section[:60]!r}: choose one from the list")
        curate.move_entry(session, row, section, parse_position(index))

    return edit_entry(request, entry_id, "move", {"section": section, "index": index}, apply, view)


@router.post("/entry/{entry_id}/reorder", dependencies=EDIT)
def entry_reorder(request: Request, entry_id: RowId, step: Annotated[str, Form()] = "") -> Response:
    def apply(session: Session, row: DigestEntryRow) -> None:
        if step not in ("-1", "1"):
            raise FormError("step", "step must be -1 (up) or 1 (down)")
        curate.reorder_entry(session, row, int(step))

    return edit_entry(request, entry_id, "reorder", {"step": step}, apply)


@router.post("/entry/{entry_id}/tags", dependencies=EDIT)
def entry_tags(request: Request, entry_id: RowId, tags: Annotated[str, Form()] = "",
               add: Annotated[str, Form()] = "") -> Response:
    def apply(session: Session, row: DigestEntryRow) -> None:
        check_length("tags", tags, 2000)
        check_length("tags", add, 200)
        try:
            # The known tag picked from the vocabulary menu joins the typed ones.
            parsed = curate.parse_tags(tags + ("," + add if add.strip() else ""))
        except UsageError as exc:
            raise FormError("tags", str(exc)) from exc
        if row.item is None:
            raise FormError("tags", "this entry has no item to tag")
        curate.set_item_tags(session, row.item, parsed, row)

    return edit_entry(request, entry_id, "tags", {"tags": tags}, apply)


@router.post("/entry/{entry_id}/note", dependencies=EDIT)
def entry_note(request: Request, entry_id: RowId, note: Annotated[str, Form()] = "") -> Response:
    def apply(session: Session, row: DigestEntryRow) -> None:
        check_length("note", note)
        if row.item is None:
            raise FormError("note", "this entry has no item to note on")
        curate.set_item_note(session, row.item, note.replace("\r\n", "\n"), row)

    return edit_entry(request, entry_id, "note", {"note": note}, apply)


@router.post("/entry/{entry_id}/rerun", dependencies=CSRF)
def entry_rerun(request: Request, entry_id: RowId, store: StoreDep, config: ConfigDep,
                stage: Annotated[str, Form()] = "") -> Response:
    values = {"stage": stage}

    def work() -> Response:
        week = entry_week(request, entry_id)
        try:
            if stage == "summarize":
                message = curate.resummarize(store, config, entry_id)
            elif stage == "classify":
                message = curate.reclassify(store, config, entry_id)
            else:
                raise FormError("stage", "choose summarize or classify")
        except UsageError as exc:
            return week_page(request, week, status=422, errors={(entry_id, "stage"): str(exc)})
        except FormError as exc:
            return form_failed(request, entry_id, exc, values)
        # The result shows once, beside the entry, on the page the redirect leads to.
        flashes: dict[str, tuple[int, str]] = request.app.state.flashes
        key = secrets.token_urlsafe(8)
        while len(flashes) >= 100:  # never-read messages (a redirect not followed) do not pile up
            flashes.pop(next(iter(flashes)))
        flashes[key] = (entry_id, message)
        return back(f"/week?week={week.isoformat()}&flash={key}#entry-{entry_id}")

    return mutate(request, f"/entry/{entry_id}/rerun", values, work)


# --- stories from the list mode (split one out, merge several) -----------------------------------


def story_changed(request: Request, week: date, entry_id: int, message: str | None) -> Response:
    """Back to the list at the line, or the list with the refusal beside it (422)."""
    if message is not None:
        return week_page(request, week, status=422, errors={(entry_id, "story"): message},
                         listing=ListMode(new_only=False))
    return back(f"/week?week={week.isoformat()}&view=list#row-{entry_id}")


def entry_item(request: Request, entry_id: int) -> tuple[date, int | None]:
    week = entry_week(request, entry_id)
    with store_of(request).session() as session:
        row = load_entry(session, entry_id)
        return week, row.item_id


@router.post("/entry/{entry_id}/split", dependencies=CSRF)
def entry_split(request: Request, entry_id: RowId, store: StoreDep) -> Response:
    """Take the line's item out of its story (``stories.split``): it stands alone from now on."""
    from ..stages import stories  # only when asked: the web app starts without the grouper

    def work() -> Response:
        week, item_id = entry_item(request, entry_id)
        try:
            if item_id is None:
                raise UsageError("this entry has no item, so no story")
            stories.split(store, item_id, by=curator_of(request))
        except UsageError as exc:
            return story_changed(request, week, entry_id, f"not split: {exc}")
        return story_changed(request, week, entry_id, None)

    return mutate(request, f"/entry/{entry_id}/split", {}, work)


@router.post("/week/merge", dependencies=CSRF)
def week_merge(request: Request, store: StoreDep, entry: Annotated[list[str] | None, Form()] = None) -> Response:
    """One story of the selected lines' stories (``stories.merge`` into the first line's)."""
    from ..stages import stories
    chosen = entry or []

    def work() -> Response:
        ids = list(dict.fromkeys(int(e) for e in chosen if e.isdigit() and len(e) < 12))
        if len(ids) < 2:
            raise HTTPException(400, "choose at least two lines to merge")
        found = [entry_item(request, entry_id) for entry_id in ids]
        week = found[0][0]
        try:
            targets = []
            for entry_id, (_, item_id) in zip(ids, found, strict=True):
                story = stories.story_of(store, item_id) if item_id is not None else None
                if story is None:
                    raise UsageError(f"line {entry_id} is in no story yet (run the stories stage first)")
                targets.append(story.id)
            keep = targets[0]
            for other in dict.fromkeys(targets[1:]):
                if other != keep:
                    keep = stories.merge(store, keep, other, by=curator_of(request))
        except UsageError as exc:
            return story_changed(request, week, ids[0], f"not merged: {exc}")
        return story_changed(request, week, ids[0], None)

    return mutate(request, "/week/merge", {}, work)


# --- set-aside items -----------------------------------------------------------------------------


@router.post("/item/{item_id}/retry", dependencies=CSRF)
def item_retry(request: Request, item_id: RowId, store: StoreDep, config: ConfigDep, jobs: JobsDep,
               policy: PolicyDep, week: Annotated[str, Form()] = "") -> Response:
    """Put a set-aside item back in the queue and fetch it again, as the add-links box does."""

    def work() -> Response:
        try:
            when = parse_week_param(week, config)
        except FormError as exc:
            raise HTTPException(400, exc.message) from exc

        def refuse(url: str) -> str | None:
            # What the links box would refuse is not fetched from here either.
            why = url_refusal(url, policy)
            return f"not fetched from the web UI: {why}" if why is not None else None

        try:
            url = curate.requeue_set_aside(store, item_id, refuse)
        except UsageError as exc:
            return week_page(request, when, status=422, errors={(f"item-{item_id}", "retry"): str(exc)})
        if url is None:
            raise HTTPException(404, f"There is no item {item_id}.")
        job = web_jobs.new_job(when, [(item_id, url)])
        web_jobs.start(jobs, job, store, config, policy)
        return back(f"/week?week={when.isoformat()}&job={job.id}#jobs")

    return mutate(request, f"/item/{item_id}/retry", {"week": week}, work)
