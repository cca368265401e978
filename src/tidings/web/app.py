"""``create_app``: the settings, the security guard every request passes, error pages, and the
routers of ``tidings.web`` mounted together; ``serve`` runs it with uvicorn."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Config
from ..errors import StoreError, UsageError
from ..sources.urlcheck import FetchPolicy
from ..store import Store
from ..users import OWNER, has_users
from . import capture, digests, feeds, items, links, search, week
from .deps import error_page, page
from .jobs import Jobs
from .security import (
    CSP,
    CSRF_COOKIE,
    TOKEN_COOKIE,
    csrf_secret,
    csrf_token,
    host_name,
    is_loopback,
    request_curator,
    resolve_token,
    supplied_token,
)

log = logging.getLogger("tidings.web")

# The package's static files (``static/web``, package data beside ``templates/web``).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "web"


def create_app(store: Store, config: Config, *, token: str | None = None,
               allowed_hosts: Iterable[str] | None = None) -> FastAPI:
    """The web UI over ``store``. With ``token`` every request must carry it; without one, only
    requests addressed to a loopback host name (or ``allowed_hosts``) are served."""
    jobs = Jobs()
    policy = FetchPolicy.from_config(config.fetch, allow_private=False, allow_files=False)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            links.resume_links_jobs(store, config, jobs, policy)
        except Exception:  # a locked or broken store must not keep the UI from starting
            log.exception("could not resume interrupted link jobs; `tidings fetch` will pick them up")
        yield
        jobs.shutdown()

    app = FastAPI(title="tidings", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    # What the routers ask for through ``deps``: one store, config and job queue per app.
    app.state.store, app.state.config, app.state.jobs, app.state.policy = store, config, jobs, policy
    app.state.secret = csrf_secret(store)
    app.state.token = token  # the capture key is made from it (web/capture.py)
    app.state.flashes = {}  # one-shot messages after a redirect (re-run results), by key
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.middleware("http")(_guard(token, {h.lower() for h in (allowed_hosts or ())}))
    _add_error_pages(app)
    for module in (week, links, items, digests, search, feeds, capture):
        app.include_router(module.router)
    app.add_api_route("/favicon.ico", _favicon, include_in_schema=False)
    return app


def _favicon() -> Response:
    return Response(status_code=204)


Guard = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def _guard(token: str | None, hosts: set[str]) -> Guard:
    """The middleware every request passes, static files included: host and token first, then the
    CSRF session cookie and the security headers on every answer."""

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        session = request.cookies.get(CSRF_COOKIE) or ""
        new_csrf = None
        if not session:
            new_csrf = session = secrets.token_urlsafe(32)
        request.state.csrf = csrf_token(request.app.state.secret, session)
        response: Response
        host = host_name(request.headers.get("host", "")).lower()
        busy = ""
        try:
            # Named curators (``tidings users``) lock the app as a configured token does.
            curator, locked = await run_in_threadpool(_curator_and_lock, request, token)
        except StoreError as exc:
            curator, locked, busy = None, True, str(exc)
        if busy:
            response = PlainTextResponse(f"{busy}. Nothing was changed; reload to try again.", 503)
        elif not locked and not (is_loopback(host) or host in hosts):
            response = PlainTextResponse("unexpected Host header: this server answers on loopback only", 421)
        elif locked and curator is None and not _capture_post(request):
            response = page(request, "token.html", 401, bad=bool(request.query_params.get("token")))
        elif curator is not None and request.query_params.get("token") and request.method == "GET":
            # The token moves from the URL into a cookie, so it does not stay in history or logs.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            response = RedirectResponse(target, 303)
            response.set_cookie(TOKEN_COOKIE, supplied_token(request), httponly=True, samesite="strict")
        else:
            request.state.curator = curator or OWNER
            response = await call_next(request)
        if new_csrf:
            response.set_cookie(CSRF_COOKIE, new_csrf, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return guard


def _curator_and_lock(request: Request, token: str | None) -> tuple[str | None, bool]:
    """Who the request's token names (None: nobody), and whether the app wants a token at all:
    a configured token or any named curator makes it so; otherwise loopback stays open as before."""
    store = request.app.state.store
    curator = request_curator(request, token, store)
    return curator, token is not None or curator is not None or has_users(store)


def _capture_post(request: Request) -> bool:
    """A bookmarklet's post comes from another site, without our cookies: it carries the capture
    key in its form instead, which its route checks before storing anything. Its fallback window
    (an empty page that waits for a page to post) is opened from that site too."""
    return (request.method, request.url.path) in (("POST", capture.CAPTURE_PATH), ("GET", capture.RECEIVE_PATH))


def _add_error_pages(app: FastAPI) -> None:
    """Errors are pages, never tracebacks: a busy store says so, and a bug names only its type."""

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


def serve(store: Store, config: Config, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the UI with uvicorn. A non-loopback address without a token is a usage error."""
    import uvicorn

    token = resolve_token(config)
    if not is_loopback(host) and not token and not has_users(store):
        raise UsageError(f"--host {host} is not loopback: set TIDINGS_TOKEN (or web.token in the config), "
                         "or add curators with `tidings users add NAME`, so that every request must carry a token")
    if token is not None and len(token) < 12:
        raise UsageError("the token is too short: use at least 12 characters")
    app = create_app(store, config, token=token)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"tidings: serving {where}" + (" (token required)" if token else ""), flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
