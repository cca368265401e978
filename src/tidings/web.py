"""The curation web UI: ``tidings serve``. FastAPI with server-rendered Jinja2 pages.

It holds no digest logic of its own: every page reads the store, every form post calls a
library function (``curate``, ``collect``, ``pipeline``) and redirects back, so each
edit works as a plain form post; ``static/web/app.js`` only enhances (drag and drop, in-place
edits, live progress) by posting the same forms with ``fetch``.

Security, in one place (``_guard``):
- loopback only by default; any other bind address needs a token, checked on every request
  (``Authorization: Bearer``, or the cookie set after ``?token=`` once);
- without a token, the Host header must name loopback (no DNS rebinding onto the UI);
- every POST carries a CSRF token: an HMAC, under a per-install secret kept beside the store, of
  the HttpOnly SameSite session cookie (so a token is only good with the cookie it was made for,
  and nobody without the secret can make a matching pair); a foreign Origin is refused;
- every way of adding a URL or a feed goes through one check, ``url_refusal``;
- Jinja2 autoescapes everything; article HTML goes through nh3; hrefs are http(s) only;
- a Content-Security-Policy without 'unsafe-inline' means only our own script files run.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import selectinload
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import collect, curate, pipeline
from .config import Config
from .errors import FetchError, ImportFormatError, StoreError, TidingsError, UsageError
from .htmltext import safe_href, text_html
from .records import DigestEntry
from .sources.http import FetchPolicy, check_url
from .sources.links import parse_links
from .store import (
    SET_ASIDE,
    Correction,
    Digest,
    DigestEntryRow,
    Edit,
    Item,
    ItemSource,
    ItemStatus,
    Source,
    Store,
)

log = logging.getLogger("tidings.web")

CSRF_COOKIE = "tidings_csrf"
TOKEN_COOKIE = "tidings_token"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
STATIC_DIR = Path(__file__).parent / "static" / "web"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
MAX_LINKS = 200  # per submission of the add-links box
MAX_FIELD = 20_000  # characters of any one text field
# Week dates the UI accepts: a week's window and its neighbours (± 7 days) must stay inside what
# ``date`` and the store can hold, and no digest is older than 1900.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)
MAX_ROW_ID = 2**63 - 1  # SQLite's largest integer: a bigger id is out of range, not missing
RowId = Annotated[int, PathParam(ge=1, le=MAX_ROW_ID)]


class FormError(Exception):
    """A bad form value: the page comes back with ``message`` beside ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- background jobs (the add-links box) ---------------------------------------------------------


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


# --- views of store rows -------------------------------------------------------------------------


@dataclass
class EntryView:
    id: int
    item_id: int | None
    title: str
    url: str | None
    domain: str
    published: str
    summary: str
    summary_origin: str
    section: str | None
    tags: list[str]
    note: str
    kept: bool
    marker: str | None
    status: str
    error: str
    edited: bool
    unsure: float | None = None
    """The classifier's confidence when it filed this entry less surely than ``llm.classify_below``:
    the week view marks it for the curator to check."""
    index: int = 0
    count: int = 0


@dataclass
class SetAsideView:
    """An item of the week that failed or was judged not an article: listed apart, with its reason."""

    id: int
    title: str
    url: str
    status: str
    reason: str
    error: str


def _set_aside_view(item: Item) -> SetAsideView:
    url = pipeline.fetch_url_of(item)
    return SetAsideView(id=item.id, title=item.title or url, url=url, status=item.status,
                        reason=item.error_reason or "", error=item.error or "")


@dataclass
class SectionView:
    name: str | None
    label: str
    entries: list[EntryView]


def _domain(url: str | None) -> str:
    if not url:
        return ""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


def _unsure(row: DigestEntryRow, threshold: float) -> float | None:
    item = row.item
    # Only the local classifier's picks: a curator's move is sure, and an LLM's decision is recorded
    # with the threshold of its time as its confidence.
    origin = item.section_origin if item is not None else None
    if item is None or origin not in ("model", "rules") or item.section_confidence is None:
        return None
    if row.section != item.section or item.section_confidence >= threshold:
        return None
    return round(item.section_confidence, 2)


def _entry_view(row: DigestEntryRow, entry: DigestEntry, unsure_below: float) -> EntryView:
    item = row.item
    url = safe_href(entry.url) or (safe_href(item.url) if item is not None else None)
    if row.summary_override is not None:
        origin = "edited" if item is None or item.summary_origin == "human" else f"{item.summary_origin}"
    elif row.verbatim is not None:
        origin = "human (imported)"
    else:
        origin = (item.summary_origin if item is not None else None) or ""
    published = ""
    if item is not None and item.published_at is not None:
        published = item.published_at.date().isoformat()
    return EntryView(
        id=row.id,
        item_id=row.item_id,
        title=entry.title or (item.title if item is not None else "") or entry.url or "(untitled)",
        url=url,
        domain=_domain(url),
        published=published,
        summary=entry.summary or "",
        summary_origin=origin if entry.summary else "",
        section=row.section,
        tags=list(item.tags) if item is not None else [],
        note=(item.note or "") if item is not None else "",
        kept=row.kept,
        marker=row.marker,
        status=item.status if item is not None else "",
        error=((item.error_reason or "") if item is not None else ""),
        edited=row.edited,
        unsure=_unsure(row, unsure_below),
    )


def _load_digest(session: Any, week: date) -> Digest | None:
    return session.scalar(
        select(Digest)
        .where(Digest.week == week)
        .options(
            selectinload(Digest.blocks),
            selectinload(Digest.entries).selectinload(DigestEntryRow.item).selectinload(Item.tag_rows),
        )
    )


def section_choices(digest: Digest | None, config: Config) -> list[str]:
    names = list(config.section_names)
    for name in [*(digest.sections if digest else []), *(e.section for e in (digest.entries if digest else []))]:
        if name and name not in names:
            names.append(name)
    if config.fallback_section not in names:
        names.append(config.fallback_section)
    return names


def group_entries(digest: Digest, config: Config) -> list[SectionView]:
    """Entries by section, in the configured order (old names sort by what they were renamed to)."""
    doc = curate.doc_of(digest, config)
    unsure_below = config.llm.classify_below
    views = [_entry_view(row, entry, unsure_below) for row, entry in zip(digest.entries, doc.entries, strict=True)]
    order = {name: i for i, name in enumerate(config.section_names)}
    own = {name: i for i, name in enumerate(digest.sections or [])}

    def rank(name: str | None) -> tuple[int, int, str]:
        if name is None:
            return (2, 0, "")
        canonical = curate.canonical_section(name, config) or name
        if canonical in order:
            return (0, order[canonical], name)
        return (1, own.get(name, len(own)), name)

    names: list[str | None] = list(config.section_names)
    for view in views:
        if view.section not in names:
            names.append(view.section)
    groups = []
    for name in sorted(dict.fromkeys(names), key=rank):
        members = [v for v in views if v.section == name]
        for index, view in enumerate(members):
            view.index, view.count = index, len(members)
        if members or name in config.section_names:
            groups.append(SectionView(name, name or "No section", members))
    return groups


# --- the app -------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tidings", "templates/web"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )
    env.filters["safe_href"] = safe_href
    env.globals["urlencode"] = urlencode
    return env


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def parse_day(value: str) -> date:
    """A YYYY-MM-DD date the UI can work with; ValueError (with a message for the user) otherwise."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"not a date: {value[:40]!r} (use YYYY-MM-DD)") from exc
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day.isoformat()} is out of range ({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()})")
    return day


def parse_week_param(value: str | None, config: Config) -> date:
    if not value:
        return curate.latest_week_end(curate.today(config), config.week_ends_on)
    try:
        return parse_day(value)
    except ValueError as exc:
        raise FormError("week", str(exc)) from exc


# --- adding URLs and feeds: the one check --------------------------------------------------------


def url_refusal(url: str, policy: FetchPolicy) -> str | None:
    """Why ``url`` may not be added under ``policy``, or None when it may.

    Every way of adding a link or a feed asks this one question (here: the add-links box, feeds
    add and OPML uploads; in the CLI: ``add``, ``feeds add`` and ``feeds import``), so none of them
    is a way around the others. A name that does not resolve right now is accepted: the fetch
    retries it and shows its failure per item. Other schemes, private addresses (unless the policy
    allows them), missing files and malformed URLs are refused."""
    try:
        check_url(url, policy)
    except FetchError as exc:
        if exc.transient:
            return None
        if exc.reason == "bad_scheme" and not policy.allow_files:
            return "bad_scheme: only http and https URLs are accepted here (no files, no paths)"
        return f"{exc.reason}: {str(exc).split(': ', 1)[-1]}"
    except ValueError as exc:  # urlsplit refuses e.g. "http://[::1" before check_url can say why
        return f"bad_url: malformed URL ({exc})"
    return None


def subscribe_opml_checked(store: Store, content: bytes, where: str, report: pipeline.StageReport,
                           policy: FetchPolicy) -> None:
    """``collect.subscribe_opml``, with every feed put through ``url_refusal`` first: an OPML file
    comes from elsewhere, and may list ``file:`` or private addresses. Refused feeds are failures
    in ``report``, named with their reason; the others are subscribed."""
    from .sources.opml import parse_opml

    for feed in parse_opml(content, file=where):
        why = url_refusal(feed.url, policy)
        if why is not None:
            report.fail(feed.url, why)
            continue
        if collect.subscribe(store, feed.url, title=feed.title, folder=feed.folder, html_url=feed.html_url):
            report.new += 1
        else:
            report.unchanged += 1
        report.done += 1


# --- CSRF tokens ---------------------------------------------------------------------------------


def csrf_secret(store: Store) -> bytes:
    """The per-install secret CSRF tokens are made with: a file beside the store (``DB.web-secret``,
    mode 0600), created once and kept, so tokens survive a restart."""
    database = store.engine.url.database
    if not database or database == ":memory:":
        return secrets.token_bytes(32)  # a store in memory lives only as long as this process
    path = Path(database).with_name(Path(database).name + ".web-secret")
    try:
        found = path.read_bytes()
        if len(found) >= 32:
            return found
    except FileNotFoundError:
        pass
    value = secrets.token_bytes(32)
    spare = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(value)
    try:
        # A hard link appears whole, and fails when another process created the secret first: then
        # both use that one. A short file (truncated by hand) is replaced.
        if path.exists():
            os.replace(spare, path)
        else:
            os.link(spare, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        spare.unlink(missing_ok=True)
    return value


def csrf_token(secret: bytes, session: str) -> str:
    """The token the forms of one browser session carry: only the server can make it."""
    return hmac.new(secret, session.encode(), hashlib.sha256).hexdigest()


def create_app(store: Store, config: Config, *, token: str | None = None,
               allowed_hosts: Iterable[str] | None = None) -> FastAPI:
    """The web UI over ``store``. With ``token`` every request must carry it; without one, only
    requests addressed to a loopback host name (or ``allowed_hosts``) are served."""
    env = _environment()
    jobs = Jobs()
    flashes: dict[str, tuple[int, str]] = {}  # one-shot messages after a redirect (re-run results)
    hosts = {h.lower() for h in (allowed_hosts or ())}
    policy = FetchPolicy.from_config(config.fetch, allow_private=False, allow_files=False)
    secret = csrf_secret(store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        try:
            resume_links_jobs()
        except Exception:  # a locked or broken store must not keep the UI from starting
            log.exception("could not resume interrupted link jobs; `tidings fetch` will pick them up")
        yield
        jobs.shutdown()

    app = FastAPI(title="tidings", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.store, app.state.config, app.state.jobs = store, config, jobs
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    # -- rendering --

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            request=request, csrf=getattr(request.state, "csrf", ""), config=config, **context
        )
        return HTMLResponse(html, status_code=status)

    def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return page(request, "error.html", status, title=title, message=message)

    # -- the guard: host, token, CSRF cookie, headers --

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        session = request.cookies.get(CSRF_COOKIE) or ""
        new_csrf = None
        if not session:
            new_csrf = session = secrets.token_urlsafe(32)
        request.state.csrf = csrf_token(secret, session)
        response: Response
        host = _host_name(request.headers.get("host", "")).lower()
        if token is None and not (_is_loopback(host) or host in hosts):
            response = PlainTextResponse("unexpected Host header: this server answers on loopback only", 421)
        elif token is not None and not _token_ok(request, token):
            response = page(request, "token.html", 401, bad=bool(request.query_params.get("token")))
        elif token is not None and request.query_params.get("token") and request.method == "GET":
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            response = RedirectResponse(target, 303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        else:
            response = await call_next(request)
        if new_csrf:
            response.set_cookie(CSRF_COOKIE, new_csrf, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def require_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        supplied = csrf or request.headers.get("x-csrf-token", "")
        expected = csrf_token(secret, cookie)
        if not cookie or not supplied or not hmac.compare_digest(expected.encode(), supplied.encode()):
            raise HTTPException(403, "This form has expired or did not come from this page: reload and try again.")
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
            raise HTTPException(403, "This form was posted from another site.")

    csrf_guard = [Depends(require_csrf)]

    # -- errors: pages, never tracebacks --

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 403: "Refused", 405: "Not allowed", 400: "Bad request"}
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else (
            exc.detail if isinstance(exc.detail, str) and exc.detail != "Not Found" else "There is nothing here."
        )
        return error_page(request, exc.status_code, titles.get(exc.status_code, "Error"), message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return error_page(request, 400, "Bad request", f"Some values were not understood: {problems}")

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        return error_page(request, 503, "The store is busy", f"{exc}. Nothing was changed; reload to try again.")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return error_page(request, 500, "Something went wrong",
                          f"An internal error ({type(exc).__name__}) stopped this page. Nothing was changed.")

    # -- shared helpers --

    def back(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def week_url(week: date, anchor: str | None = None) -> str:
        return f"/week?week={week.isoformat()}" + (f"#{anchor}" if anchor else "")

    def mutate(request: Request, action: str, values: dict[str, str], work: Callable[[], Response]) -> Response:
        """Run one edit; a busy store gives the form back, filled in, so no edit is lost."""
        try:
            return work()
        except StoreError as exc:
            return page(request, "busy.html", 503, action=action, values=values, message=str(exc))

    def entry_week(entry_id: int) -> date:
        with store.session() as session:
            row = session.get(DigestEntryRow, entry_id)
            if row is None:
                raise HTTPException(404, f"There is no digest entry {entry_id}.")
            return row.digest.week

    def week_page(request: Request, week: date, *, status: int = 200, errors: dict[tuple[Any, str], str] | None = None,
                  values: dict[tuple[Any, str], str] | None = None, notice: str = "",
                  refused: list[tuple[str, str]] | None = None) -> HTMLResponse:
        with store.session() as session:
            digest = _load_digest(session, week)
            exists = digest is not None
            has_candidates = exists or bool(curate.candidates(session, week, config, None))
        if has_candidates:
            curate.assemble_week(store, week, config)  # drafts pick up the week's new candidates
        with store.session() as session:
            digest = _load_digest(session, week)
            groups = group_entries(digest, config) if digest is not None else []
            choices = section_choices(digest, config)
            vocabulary = curate.tag_vocabulary(session)
            weeks = list(session.scalars(select(Digest.week).order_by(Digest.week.desc())))
            status_of = digest.status if digest is not None else "none"
            source_path = digest.source_path if digest is not None else None
            # The draft's entries are the candidates; set-aside items are listed apart, not counted.
            kept = sum(1 for g in groups for e in g.entries if e.kept)
            total = sum(len(g.entries) for g in groups)
            set_aside = [_set_aside_view(item) for item in curate.set_aside(session, week, config)]
        current = curate.latest_week_end(curate.today(config), config.week_ends_on)
        return page(
            request, "week.html", status, week=week, groups=groups, choices=choices, vocabulary=vocabulary,
            weeks=weeks, digest_status=status_of, source_path=source_path, kept=kept, total=total,
            set_aside=set_aside,
            errors=errors or {}, values=values or {}, notice=notice,
            job_views=[(j, job_rows(j)) for j in jobs.for_week(week)],
            refused=refused or [], current=current, prev_week=week - timedelta(days=7),
            next_week=week + timedelta(days=7),
        )

    def form_failed(request: Request, entry_id: RowId, exc: FormError, values: dict[str, str]) -> HTMLResponse:
        week = entry_week(entry_id)
        return week_page(request, week, status=422, errors={(entry_id, exc.field): exc.message},
                         values={(entry_id, k): v for k, v in values.items()})

    def load_entry(session: Any, entry_id: int) -> DigestEntryRow:
        row = session.get(DigestEntryRow, entry_id)
        if row is None:
            raise HTTPException(404, f"There is no digest entry {entry_id}.")
        return row

    def check_length(name: str, value: str, limit: int = MAX_FIELD) -> None:
        if len(value) > limit:
            raise FormError(name, f"at most {limit} characters")

    # -- pages --

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return back("/week")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/week", response_class=HTMLResponse)
    def week_view(request: Request, week: str | None = None, flash: str | None = None) -> Response:
        try:
            when = parse_week_param(week, config)
        except FormError as exc:
            current = curate.latest_week_end(curate.today(config), config.week_ends_on)
            response = week_page(request, current, status=400, errors={("week", "week"): exc.message},
                                 values={("week", "week"): week or ""})
            return response
        errors: dict[tuple[Any, str], str] = {}
        message = flashes.pop(flash) if flash else None
        if message is not None:
            errors[(message[0], "stage_ok")] = message[1]
        return week_page(request, when, errors=errors)

    @app.get("/item/{item_id}", response_class=HTMLResponse)
    def item_page(request: Request, item_id: RowId) -> Response:
        with store.session() as session:
            item = session.get(Item, item_id)
            if item is None:
                raise HTTPException(404, f"There is no item {item_id}.")
            sources = session.scalars(
                select(Source).join(ItemSource, ItemSource.source_id == Source.id).where(ItemSource.item_id == item_id)
            ).all()
            appearances = session.execute(
                select(Digest.week, Digest.title, DigestEntryRow.section, DigestEntryRow.kept, DigestEntryRow.id)
                .join(Digest, Digest.id == DigestEntryRow.digest_id)
                .where(DigestEntryRow.item_id == item_id)
                .order_by(Digest.week.desc())
            ).all()
            history = session.scalars(select(Edit).where(Edit.item_id == item_id).order_by(Edit.at.desc())).all()
            corrections = session.scalars(
                select(Correction).where(Correction.item_id == item_id).order_by(Correction.at.desc())
            ).all()
            duplicates = session.scalars(select(Item).where(Item.duplicate_of_id == item_id)).all()
            return page(
                request, "item.html", item=item, urls=[u.url for u in item.urls], sources=sources,
                appearances=appearances, history=history, corrections=corrections, duplicates=duplicates,
                text_html=text_html(item.text or ""), href=safe_href(pipeline.fetch_url_of(item)),
            )

    @app.get("/digests", response_class=HTMLResponse)
    def digests_page(request: Request) -> Response:
        with store.session() as session:
            counts = dict(session.execute(
                select(DigestEntryRow.digest_id, func.count(DigestEntryRow.id)).group_by(DigestEntryRow.digest_id)
            ).all())
            rows = [(d.week, d.title or d.week.isoformat(), d.status, counts.get(d.id, 0))
                    for d in session.scalars(select(Digest).order_by(Digest.week.desc()))]
        return page(request, "digests.html", rows=rows)

    def digest_context(week: date, fmt: str) -> dict[str, Any]:
        from . import formats

        with store.session() as session:
            digest = _load_digest(session, week)
            if digest is None:
                raise HTTPException(404, f"There is no digest for the week of {week.isoformat()} yet: "
                                         "open its week view to start one.")
        if digest.status == "draft":
            curate.assemble_week(store, week, config)
        doc = curate.load_doc(store, week, config)
        assert doc is not None
        docusaurus = formats.render(doc, "docusaurus", config.digest.template_dir)
        preview = docusaurus if fmt == "docusaurus" else formats.render(doc, fmt, config.digest.template_dir)
        with store.session() as session:
            weeks = list(session.scalars(select(Digest.week).order_by(Digest.week.desc())))
        return {
            "week": week, "digest": digest, "preview": preview, "fmt": fmt, "formats": formats.FORMAT_NAMES,
            "front_matter": curate.front_matter_text(docusaurus), "weeks": weeks,
            "blog_target": str(curate.blog_target(config, week)) if config.digest.blog_dir else "",
            "labels": curate.COVER_LABELS,
        }

    def parse_digest_week(value: str) -> date:
        try:
            date.fromisoformat(value)
        except ValueError as exc:  # not a date at all: no such page
            raise HTTPException(404, f"{value[:40]!r} is not a week date (YYYY-MM-DD).") from exc
        try:
            return parse_day(value)
        except ValueError as exc:
            raise HTTPException(400, f"{exc}.") from exc

    @app.get("/digest/{week}", response_class=HTMLResponse)
    def digest_page(request: Request, week: str, format: str = "docusaurus") -> Response:
        from . import formats

        when = parse_digest_week(week)
        if format not in formats.FORMAT_NAMES:
            raise HTTPException(400, f"Unknown format {format[:20]!r}: use one of {', '.join(formats.FORMAT_NAMES)}.")
        return page(request, "digest.html", **digest_context(when, format), errors={}, values={}, notice="")

    @app.get("/digest/{week}/preview.txt")
    def digest_preview(week: str, format: str = "docusaurus") -> Response:
        from . import formats

        when = parse_digest_week(week)
        if format not in formats.FORMAT_NAMES:
            raise HTTPException(400, "unknown format")
        text = digest_context(when, format)["preview"]
        return PlainTextResponse(text, media_type="text/plain; charset=utf-8")

    @app.get("/search", response_class=HTMLResponse)
    def search_page(request: Request, q: str = "") -> Response:
        from . import search as search_mod

        query = q.strip()[:500]
        hits: list[tuple[Any, list[tuple[str, bool]]]] = []
        errors: dict[str, str] = {}
        mode = ""
        if query:
            try:
                result = search_mod.search(store, query, config=config, limit=30)
                mode = result.mode
                hits = [(hit, _marked(hit.snippet)) for hit in result.hits]
            except TidingsError as exc:  # SearchError: a query it cannot parse
                errors["q"] = str(exc)
        return page(request, "search.html", 422 if errors else 200, q=query, hits=hits, mode=mode, errors=errors)

    @app.get("/ask", response_class=HTMLResponse)
    def ask_page(request: Request, q: str = "") -> Response:
        from . import search as search_mod

        question = q.strip()[:1000]
        answer = None
        errors: dict[str, str] = {}
        if question:
            try:
                answer = search_mod.ask(store, question, config=config)
            except TidingsError as exc:
                errors["q"] = str(exc)
        return page(request, "ask.html", 422 if errors else 200, q=question, answer=answer, errors=errors)

    @app.get("/feeds", response_class=HTMLResponse)
    def feeds_page(request: Request) -> Response:
        return page(request, "feeds.html", rows=collect.feed_rows(store), errors={}, values={}, notice="")

    @app.get("/feeds/export.opml")
    def feeds_export() -> Response:
        return Response(collect.export_feeds(store), media_type="text/x-opml; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="tidings-feeds.opml"'})

    def job_rows(job: Job) -> list[dict[str, str | int]]:
        with store.session() as session:
            rows = []
            for item_id, url in job.items:
                item = session.get(Item, item_id)
                if item is None:
                    rows.append({"id": item_id, "url": url, "state": "gone", "title": "", "reason": ""})
                    continue
                state = {"pending": "fetching", "extracted": "done", "error": "failed", "rejected": "failed"}.get(
                    item.status, item.status)
                if state == "fetching" and job.state in ("done", "failed"):
                    state = "failed" if job.state == "failed" else "done"
                rows.append({
                    "id": item_id, "url": url, "state": state, "title": item.title or "",
                    "reason": (f"{item.error_reason}: {item.error}" if item.error_reason else "") if state == "failed"
                    else "",
                })
            return rows

    @app.get("/jobs/{job_id}.json")
    def job_json(job_id: str) -> Response:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return JSONResponse({"id": job.id, "state": job.state, "stage": job.stage, "message": job.message,
                             "items": job_rows(job), "refused": [{"what": w, "reason": r} for w, r in job.refused]})

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: str) -> Response:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "There is no such job (jobs are kept while the server runs).")
        return page(request, "job.html", job=job, rows=job_rows(job))

    # -- entry edits (each a plain form post) --

    @app.post("/entry/{entry_id}/keep", dependencies=csrf_guard)
    def entry_keep(request: Request, entry_id: RowId, kept: Annotated[str, Form()] = "") -> Response:
        values = {"kept": kept}

        def work() -> Response:
            if kept not in ("0", "1"):
                return form_failed(request, entry_id, FormError("kept", "kept must be 0 or 1"), values)
            with store.session() as session:
                row = load_entry(session, entry_id)
                curate.set_kept(session, row, kept == "1")
                week = row.digest.week
            return back(week_url(week, f"entry-{entry_id}"))

        return mutate(request, f"/entry/{entry_id}/keep", values, work)

    @app.post("/entry/{entry_id}/edit", dependencies=csrf_guard)
    def entry_edit(request: Request, entry_id: RowId, title: Annotated[str | None, Form()] = None,
                   summary: Annotated[str | None, Form()] = None) -> Response:
        values = {k: v for k, v in (("title", title), ("summary", summary)) if v is not None}

        def work() -> Response:
            try:
                if title is not None:
                    check_length("title", title, 1000)
                    if not title.strip():
                        raise FormError("title", "a title cannot be empty")
                if summary is not None:
                    check_length("summary", summary)
                with store.session() as session:
                    row = load_entry(session, entry_id)
                    doc_entry = _shown_entry(row, config)
                    new_title = title.strip() if title is not None else None
                    new_summary = summary.strip().replace("\r\n", "\n") if summary is not None else None
                    # Only what the user changed: re-sending the shown title must not mark it edited.
                    if new_title is not None and new_title == (doc_entry.title or ""):
                        new_title = None
                    if new_summary is not None and new_summary == (doc_entry.summary or "").strip():
                        new_summary = None
                    curate.edit_entry(session, row, title=new_title, summary=new_summary)
                    week = row.digest.week
            except FormError as exc:
                return form_failed(request, entry_id, exc, values)
            return back(week_url(week, f"entry-{entry_id}"))

        return mutate(request, f"/entry/{entry_id}/edit", values, work)

    @app.post("/entry/{entry_id}/move", dependencies=csrf_guard)
    def entry_move(request: Request, entry_id: RowId, section: Annotated[str, Form()] = "",
                   index: Annotated[str, Form()] = "") -> Response:
        values = {"section": section, "index": index}

        def work() -> Response:
            try:
                with store.session() as session:
                    row = load_entry(session, entry_id)
                    choices = section_choices(row.digest, config)
                    if section not in choices:
                        raise FormError("section", f"unknown section {section[:60]!r}: choose one from the list")
                    position: int | None = None
                    if index.strip():
                        try:
                            position = int(index)
                        except ValueError as exc:
                            raise FormError("index", "the position must be a whole number") from exc
                        if position < 0:
                            raise FormError("index", "the position cannot be negative")
                    curate.move_entry(session, row, section, position)
                    week = row.digest.week
            except FormError as exc:
                return form_failed(request, entry_id, exc, values)
            return back(week_url(week, f"entry-{entry_id}"))

        return mutate(request, f"/entry/{entry_id}/move", values, work)

    @app.post("/entry/{entry_id}/reorder", dependencies=csrf_guard)
    def entry_reorder(request: Request, entry_id: RowId, step: Annotated[str, Form()] = "") -> Response:
        values = {"step": step}

        def work() -> Response:
            if step not in ("-1", "1"):
                return form_failed(request, entry_id, FormError("step", "step must be -1 (up) or 1 (down)"), values)
            with store.session() as session:
                row = load_entry(session, entry_id)
                curate.reorder_entry(session, row, int(step))
                week = row.digest.week
            return back(week_url(week, f"entry-{entry_id}"))

        return mutate(request, f"/entry/{entry_id}/reorder", values, work)

    @app.post("/entry/{entry_id}/tags", dependencies=csrf_guard)
    def entry_tags(request: Request, entry_id: RowId, tags: Annotated[str, Form()] = "",
                   add: Annotated[str, Form()] = "") -> Response:
        values = {"tags": tags}

        def work() -> Response:
            try:
                check_length("tags", tags, 2000)
                check_length("tags", add, 200)
                try:
                    # The known tag picked from the vocabulary menu joins the typed ones.
                    parsed = curate.parse_tags(tags + ("," + add if add.strip() else ""))
                except UsageError as exc:
                    raise FormError("tags", str(exc)) from exc
                with store.session() as session:
                    row = load_entry(session, entry_id)
                    if row.item is None:
                        raise FormError("tags", "this entry has no item to tag")
                    curate.set_item_tags(session, row.item, parsed, row)
                    week = row.digest.week
            except FormError as exc:
                return form_failed(request, entry_id, exc, values)
            return back(week_url(week, f"entry-{entry_id}"))

        return mutate(request, f"/entry/{entry_id}/tags", values, work)

    @app.post("/entry/{entry_id}/note", dependencies=csrf_guard)
    def entry_note(request: Request, entry_id: RowId, note: Annotated[str, Form()] = "") -> Response:
        values = {"note": note}

        def work() -> Response:
            try:
                check_length("note", note)
                with store.session() as session:
                    row = load_entry(session, entry_id)
                    if row.item is None:
                        raise FormError("note", "this entry has no item to note on")
                    curate.set_item_note(session, row.item, note.replace("\r\n", "\n"), row)
                    week = row.digest.week
            except FormError as exc:
                return form_failed(request, entry_id, exc, values)
            return back(week_url(week, f"entry-{entry_id}"))

        return mutate(request, f"/entry/{entry_id}/note", values, work)

    @app.post("/entry/{entry_id}/rerun", dependencies=csrf_guard)
    def entry_rerun(request: Request, entry_id: RowId, stage: Annotated[str, Form()] = "") -> Response:
        values = {"stage": stage}

        def work() -> Response:
            week = entry_week(entry_id)
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
            key = secrets.token_urlsafe(8)
            while len(flashes) >= 100:  # never-read messages (a redirect not followed) do not pile up
                flashes.pop(next(iter(flashes)))
            flashes[key] = (entry_id, message)
            return back(f"/week?week={week.isoformat()}&flash={key}#entry-{entry_id}")

        return mutate(request, f"/entry/{entry_id}/rerun", values, work)

    # -- add links --

    @app.post("/week/links", dependencies=csrf_guard)
    def add_links(request: Request, week: Annotated[str, Form()] = "", links: Annotated[str, Form()] = "") -> Response:
        values = {"week": week, "links": links}

        def work() -> Response:
            try:
                when = parse_week_param(week, config)
            except FormError:
                when = curate.latest_week_end(curate.today(config), config.week_ends_on)
                return week_page(request, when, status=422, errors={("links", "week"): "not a week date"},
                                 values={("links", "links"): links})
            try:
                check_length("links", links, 200_000)
                job = start_links_job(when, links)
            except FormError as exc:
                return week_page(request, when, status=422, errors={("links", exc.field): exc.message},
                                 values={("links", "links"): links})
            if not job.items:
                return week_page(request, when, status=422, refused=job.refused, values={("links", "links"): links},
                                 errors={("links", "links"): "no link was accepted: see the reasons below"})
            return back(f"/week?week={when.isoformat()}&job={job.id}#jobs")

        return mutate(request, "/week/links", values, work)

    def start_links_job(week: date, text: str) -> Job:
        with store.session() as session:
            digest = session.scalar(select(Digest).where(Digest.week == week))
            if digest is not None and digest.status != "draft":
                raise FormError("links", f"the digest of {week.isoformat()} is {digest.status}, not a draft: "
                                         "add links to the current week instead")
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
        job = Job(id=uuid.uuid4().hex[:12], week=week, items=[], refused=refused)
        if accepted:
            report = pipeline.ingest(store, accepted, source_kind="web", locator="tidings serve: add links")
            curate.assign_to_week(store, report.item_ids, week, config)
            job.items = list(zip(report.item_ids, [r.url or "" for r in accepted], strict=True))
            jobs.add(job, run_links_job)
        else:
            job.state = "done"
        return job

    def resume_links_jobs() -> None:
        """Jobs live in memory. Links added in the box that a restart interrupted are still pending in
        the store, or fetched but not yet summarized or filed: start them again, one job per draft
        week (each stage skips what is already done). Links the curator dropped stay as they are,
        and so do failed fetches (``tidings fetch`` retries the transient ones)."""
        unfinished = or_(
            Item.status == ItemStatus.PENDING,
            and_(Item.status == ItemStatus.EXTRACTED, or_(Item.summary.is_(None), Item.section.is_(None))),
        )
        by_week: dict[date, list[tuple[int, str]]] = {}
        with store.session() as session:
            rows = session.execute(
                select(Digest.week, Item)
                .join(DigestEntryRow, DigestEntryRow.digest_id == Digest.id)
                .join(Item, Item.id == DigestEntryRow.item_id)
                .join(ItemSource, ItemSource.item_id == Item.id)
                .join(Source, Source.id == ItemSource.source_id)
                .where(Digest.status == "draft", DigestEntryRow.kept.is_(True), Source.kind == "web",
                       Item.duplicate_of_id.is_(None), unfinished)
                .order_by(Digest.week, Item.id)
                .distinct()
            ).all()
            for week, item in rows:
                by_week.setdefault(week, []).append((item.id, pipeline.fetch_url_of(item)))
        for week, items in by_week.items():
            log.info("resuming %d link(s) added for %s", len(items), week.isoformat())
            jobs.add(Job(id=uuid.uuid4().hex[:12], week=week, items=items, refused=[]), run_links_job)

    def run_links_job(job: Job) -> None:
        ids = [item_id for item_id, _ in job.items]

        def stage_of(name: str) -> AbstractContextManager[pipeline.Progress]:
            job.stage = name
            return nullcontext(lambda _done, _total, _what: None)

        # The same loop as `tidings run`, limited to this job's links.
        pipeline.run(store, config, item_ids=ids, policy=policy, progress=stage_of)
        job.stage = "digest"
        # The links were asked for in this week, whenever they were seen: a retried item that now
        # has its text joins the week's draft (items still failing stay set aside).
        curate.assign_to_week(store, ids, job.week, config)
        job.stage = "done"

    @app.post("/item/{item_id}/retry", dependencies=csrf_guard)
    def item_retry(request: Request, item_id: RowId, week: Annotated[str, Form()] = "") -> Response:
        def work() -> Response:
            try:
                when = parse_week_param(week, config)
            except FormError as exc:
                raise HTTPException(400, exc.message) from exc
            try:
                job = retry_item(item_id, when)
            except FormError as exc:
                return week_page(request, when, status=422, errors={(f"item-{item_id}", exc.field): exc.message})
            return back(f"/week?week={when.isoformat()}&job={job.id}#jobs")

        return mutate(request, f"/item/{item_id}/retry", {"week": week}, work)

    def retry_item(item_id: int, week: date) -> Job:
        """Put a set-aside item back in the queue and fetch it again, as the add-links box does."""
        with store.session() as session:
            item = session.get(Item, item_id)
            if item is None:
                raise HTTPException(404, f"There is no item {item_id}.")
            if item.status not in SET_ASIDE:
                raise FormError("retry", f"this item is {item.status}, not set aside: nothing to retry")
            url = pipeline.fetch_url_of(item)
            why = url_refusal(url, policy)  # what the links box would refuse is not fetched from here either
            if why is not None:
                raise FormError("retry", f"not fetched from the web UI: {why}")
            item.status, item.error, item.error_reason, item.error_transient = ItemStatus.PENDING, None, None, False
        job = Job(id=uuid.uuid4().hex[:12], week=week, items=[(item_id, url)], refused=[])
        jobs.add(job, run_links_job)
        return job

    # -- digest edits --

    def digest_failed(request: Request, week: date, exc: FormError, values: dict[str, str],
                      status: int = 422) -> HTMLResponse:
        context = digest_context(week, "docusaurus")
        return page(request, "digest.html", status, **context, errors={exc.field: exc.message}, values=values,
                    notice="")

    @app.post("/digest/{week}/front-matter", dependencies=csrf_guard)
    def digest_front_matter(request: Request, week: str, front_matter: Annotated[str, Form()] = "") -> Response:
        when = parse_digest_week(week)
        values = {"front_matter": front_matter}

        def work() -> Response:
            try:
                check_length("front_matter", front_matter)
                with store.session() as session:
                    digest = session.scalar(select(Digest).where(Digest.week == when))
                    if digest is None:
                        raise HTTPException(404, "no such digest")
                    try:
                        curate.set_front_matter(session, digest, front_matter)
                    except UsageError as exc:
                        raise FormError("front_matter", str(exc)) from exc
            except FormError as exc:
                return digest_failed(request, when, exc, values)
            return back(f"/digest/{when.isoformat()}#front-matter")

        return mutate(request, f"/digest/{when.isoformat()}/front-matter", values, work)

    @app.post("/digest/{week}/cover", dependencies=csrf_guard)
    def digest_cover(request: Request, week: str, image: Annotated[str, Form()] = "",
                     alt: Annotated[str, Form()] = "", label: Annotated[str, Form()] = "封面图",
                     caption: Annotated[str, Form()] = "") -> Response:
        when = parse_digest_week(week)
        values = {"image": image, "alt": alt, "label": label, "caption": caption}

        def work() -> Response:
            try:
                for name, value in values.items():
                    check_length(name, value, 1000)
                with store.session() as session:
                    digest = session.scalar(select(Digest).where(Digest.week == when))
                    if digest is None:
                        raise HTTPException(404, "no such digest")
                    try:
                        curate.set_cover(session, digest, image=image, alt=alt, label=label, caption=caption)
                    except UsageError as exc:
                        raise FormError("label" if "label" in str(exc) else "image", str(exc)) from exc
            except FormError as exc:
                return digest_failed(request, when, exc, values)
            return back(f"/digest/{when.isoformat()}#cover")

        return mutate(request, f"/digest/{when.isoformat()}/cover", values, work)

    @app.post("/digest/{week}/write", dependencies=csrf_guard)
    def digest_write(request: Request, week: str) -> Response:
        from . import formats

        when = parse_digest_week(week)

        def work() -> Response:
            doc = curate.load_doc(store, when, config)
            if doc is None:
                raise HTTPException(404, "no such digest")
            text = formats.render(doc, "docusaurus", config.digest.template_dir)
            try:
                target, changed = curate.write_to_blog(store, config, when, text)
            except UsageError as exc:
                return digest_failed(request, when, FormError("write", str(exc)), {})
            context = digest_context(when, "docusaurus")
            notice = f"{'Wrote' if changed else 'Unchanged:'} {target}"
            return page(request, "digest.html", **context, errors={}, values={}, notice=notice)

        return mutate(request, f"/digest/{when.isoformat()}/write", {}, work)

    # -- feeds --

    def feeds_failed(request: Request, exc: FormError, values: dict[str, str]) -> HTMLResponse:
        return page(request, "feeds.html", 422, rows=collect.feed_rows(store), errors={exc.field: exc.message},
                    values=values, notice="")

    @app.post("/feeds/add", dependencies=csrf_guard)
    def feeds_add(request: Request, url: Annotated[str, Form()] = "", folder: Annotated[str, Form()] = "") -> Response:
        values = {"url": url, "folder": folder}

        def work() -> Response:
            address = url.strip()
            try:
                check_length("url", address, 2048)
                check_length("folder", folder, 512)
                why = url_refusal(address, policy)
                if why is not None:
                    raise FormError("url", f"refused: {why}")
            except FormError as exc:
                return feeds_failed(request, exc, values)
            added = collect.subscribe(store, address, folder=folder.strip() or None)
            notice = "Subscribed." if added else "Already subscribed."
            return page(request, "feeds.html", rows=collect.feed_rows(store), errors={}, values={}, notice=notice)

        return mutate(request, "/feeds/add", values, work)

    @app.post("/feeds/remove", dependencies=csrf_guard)
    def feeds_remove(request: Request, url: Annotated[str, Form()] = "") -> Response:
        def work() -> Response:
            if not collect.remove_feed(store, url):
                return feeds_failed(request, FormError("remove", f"not subscribed: {url[:200]}"), {})
            return back("/feeds")

        return mutate(request, "/feeds/remove", {"url": url}, work)

    @app.post("/feeds/import", dependencies=csrf_guard)
    def feeds_import(request: Request, opml: Annotated[UploadFile | None, File()] = None) -> Response:
        def work() -> Response:
            if opml is None or not opml.filename:
                return feeds_failed(request, FormError("opml", "choose an OPML file"), {})
            content = opml.file.read(5 * 1024 * 1024 + 1)
            if len(content) > 5 * 1024 * 1024:
                return feeds_failed(request, FormError("opml", "the file is larger than 5 MB"), {})
            report = pipeline.StageReport("feeds import")
            try:
                subscribe_opml_checked(store, content, opml.filename, report, policy)
            except (ImportFormatError, UsageError) as exc:
                return feeds_failed(request, FormError("opml", f"not a usable OPML file: {exc}"), {})
            refusals = "; ".join(f"{url[:200]} ({why})" for url, why in report.failures[:10])
            if not report.done:
                message = f"no feed was accepted: {refusals}" if refusals else "no feeds found in that file"
                return feeds_failed(request, FormError("opml", message), {})
            notice = f"Imported {report.done} feeds: {report.new} new, {report.unchanged} already subscribed."
            if report.failures:
                notice += f" Refused {report.failed}: {refusals}"
            return page(request, "feeds.html", rows=collect.feed_rows(store), errors={}, values={}, notice=notice)

        return mutate(request, "/feeds/import", {}, work)

    return app


def _marked(snippet: str) -> list[tuple[str, bool]]:
    """A search snippet's ``**word**`` highlights as (text, marked) parts, for escaped output."""
    parts = snippet.split("**")
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


def _shown_entry(row: DigestEntryRow, config: Config) -> DigestEntry:
    """The entry as the week view shows it (overrides applied), to tell what a form changed."""
    doc = curate.doc_of(row.digest, config)
    for other, entry in zip(row.digest.entries, doc.entries, strict=True):
        if other.id == row.id:
            return entry
    raise HTTPException(404, "no such entry")


def _token_ok(request: Request, token: str) -> bool:
    supplied = ""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        supplied = auth[7:].strip()
    supplied = supplied or request.cookies.get(TOKEN_COOKIE, "") or request.query_params.get("token", "")
    return bool(supplied) and hmac.compare_digest(supplied.encode(), token.encode())


def resolve_token(config: Config) -> str | None:
    import os

    from_env = os.environ.get("TIDINGS_TOKEN")
    return from_env or config.web.token or None


def serve(store: Store, config: Config, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the UI with uvicorn. A non-loopback address without a token is a usage error."""
    import uvicorn

    token = resolve_token(config)
    if not _is_loopback(host) and not token:
        raise UsageError(f"--host {host} is not loopback: set TIDINGS_TOKEN (or web.token in the config) "
                         "so that every request must carry it")
    if token is not None and len(token) < 12:
        raise UsageError("the token is too short: use at least 12 characters")
    app = create_app(store, config, token=token)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"tidings: serving {where}" + (" (token required)" if token else ""), flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
