"""What every router of the web UI shares: the app's state as FastAPI dependencies, page
rendering, the CSRF check of form posts, form-value checks and the redirect after an edit.

The store, config, job queue and fetch policy live on ``app.state`` (set once by ``create_app``),
so routers are plain module-level functions that ask for them, not closures over ``create_app``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.orm import Session

from .. import curate
from ..config import Config
from ..errors import StoreError
from ..htmltext import safe_href
from ..sources.urlcheck import FetchPolicy
from ..store import Store
from ..users import OWNER
from .jobs import Jobs
from .security import CSRF_COOKIE, csrf_ok

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


# --- the app's state -----------------------------------------------------------------------------
# Routes ask for these as dependencies (``store: StoreDep``); helpers that already hold the request
# call them directly.


def store_of(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def config_of(request: Request) -> Config:
    return request.app.state.config  # type: ignore[no-any-return]


def jobs_of(request: Request) -> Jobs:
    return request.app.state.jobs  # type: ignore[no-any-return]


def policy_of(request: Request) -> FetchPolicy:
    """How the web UI fetches: the config's limits, but never files or private addresses."""
    return request.app.state.policy  # type: ignore[no-any-return]


def curator_of(request: Request) -> str:
    """Who makes this request's edits: the named curator its token belongs to, else ``owner``."""
    return str(getattr(request.state, "curator", None) or OWNER)


@contextmanager
def curator_session(request: Request) -> Iterator[Session]:
    """A store session whose edits ``curate`` records as made by this request's curator."""
    with store_of(request).session() as session:
        session.info[curate.EDITOR_KEY] = curator_of(request)
        yield session


StoreDep = Annotated[Store, Depends(store_of)]
ConfigDep = Annotated[Config, Depends(config_of)]
JobsDep = Annotated[Jobs, Depends(jobs_of)]
PolicyDep = Annotated[FetchPolicy, Depends(policy_of)]


# --- rendering -----------------------------------------------------------------------------------


@functools.cache
def templates() -> Environment:
    """The Jinja2 environment of ``templates/web``; one per process, since it holds no config."""
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


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered with the request's CSRF token and the config, which every page uses."""
    html = templates().get_template(template).render(
        request=request, csrf=getattr(request.state, "csrf", ""), config=request.app.state.config, **context
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return page(request, "error.html", status, title=title, message=message)


def back(url: str) -> RedirectResponse:
    """The answer to a successful form post: 303, so a reload does not post it again."""
    return RedirectResponse(url, status_code=303)


def week_url(week: date, anchor: str | None = None) -> str:
    return f"/week?week={week.isoformat()}" + (f"#{anchor}" if anchor else "")


def mutate(request: Request, action: str, values: dict[str, str], work: Callable[[], Response]) -> Response:
    """Run one edit; a busy store gives the form back, filled in, so no edit is lost."""
    try:
        return work()
    except StoreError as exc:
        return page(request, "busy.html", 503, action=action, values=values, message=str(exc))


# --- form posts ----------------------------------------------------------------------------------


def require_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    """Every POST carries the token made for its session cookie (as a form field, or the
    ``X-CSRF-Token`` header app.js sends), and no foreign Origin."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    supplied = csrf or request.headers.get("x-csrf-token", "")
    if not csrf_ok(request.app.state.secret, cookie, supplied):
        raise HTTPException(403, "This form has expired or did not come from this page: reload and try again.")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise HTTPException(403, "This form was posted from another site.")


CSRF = [Depends(require_csrf)]
"""``dependencies=CSRF`` on every POST route."""


class StaleForm(Exception):
    """The form was made from an older version of what it edits: another curator changed it since."""


def remember_version(request: Request, version: Annotated[str, Form()] = "") -> None:
    """Keep the edit form's ``version`` field (the row's edit counter when the page was made) for
    :func:`check_version`; a form without one (an older page, a script) is not checked."""
    request.state.form_version = version.strip()


def check_version(request: Request, current: int | None) -> None:
    """StaleForm unless the posted version is the row's ``current`` one (or none was posted)."""
    posted = getattr(request.state, "form_version", "")
    if posted and posted != str(current or 1):
        raise StaleForm(f"version {posted[:20]} is not {current}")


EDIT = [*CSRF, Depends(remember_version)]
"""``dependencies=EDIT`` on every POST route that edits a versioned row (an entry, a digest)."""


def check_length(name: str, value: str, limit: int = MAX_FIELD) -> None:
    if len(value) > limit:
        raise FormError(name, f"at most {limit} characters")


def parse_day(value: str) -> date:
    """A YYYY-MM-DD date the UI can work with; ValueError (with a message for the user) otherwise."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"not a date: {value[:40]!r} (use YYYY-MM-DD)") from exc
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day.isoformat()} is out of range ({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()})")
    return day


def current_week(config: Config) -> date:
    """The latest week end on or before today: where a form without a week puts its links."""
    return curate.latest_week_end(curate.today(config), config.week_ends_on)


def parse_week_param(value: str | None, config: Config) -> date:
    if not value:
        return current_week(config)
    try:
        return parse_day(value)
    except ValueError as exc:
        raise FormError("week", str(exc)) from exc
