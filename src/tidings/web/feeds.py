"""The feeds page: subscriptions listed, added one by one or from an OPML file, removed, exported.
Every feed added here passes ``collect.url_refusal``, as the CLI's ``feeds add`` and ``feeds import`` do."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from .. import collect, feedlist, pipeline
from ..errors import ImportFormatError, UsageError
from .deps import CSRF, FormError, PolicyDep, StoreDep, back, check_length, mutate, page, store_of
from .views import sparkline

router = APIRouter()

MAX_OPML = 5 * 1024 * 1024  # bytes of an uploaded OPML file


def feeds_view(request: Request, status: int = 200, *, errors: dict[str, str] | None = None,
               values: dict[str, str] | None = None, notice: str = "", number: int = 1, state: str = "all",
               folder: str | None = None) -> HTMLResponse:
    """One page of the feeds (100 a page), filtered by state and folder, each with its sparkline."""
    listing = feedlist.feed_page(store_of(request), page=number, state=state, folder=folder)
    lines = [(row, sparkline(row.weekly)) for row in listing.rows]
    return page(request, "feeds.html", status, listing=listing, lines=lines, errors=errors or {},
                values=values or {}, notice=notice, states=feedlist.STATES)


def feeds_failed(request: Request, exc: FormError, values: dict[str, str]) -> HTMLResponse:
    return feeds_view(request, 422, errors={exc.field: exc.message}, values=values)


def feeds_done(request: Request, notice: str) -> HTMLResponse:
    return feeds_view(request, notice=notice)


@router.get("/feeds", response_class=HTMLResponse)
def feeds_page(request: Request, number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
               state: Annotated[Literal["all", "ok", "failing", "dead"], Query()] = "all",
               folder: Annotated[str | None, Query(max_length=512)] = None) -> Response:
    return feeds_view(request, number=number, state=state, folder=folder)


@router.get("/feeds/export.opml")
def feeds_export(store: StoreDep) -> Response:
    return Response(collect.export_feeds(store), media_type="text/x-opml; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="tidings-feeds.opml"'})


@router.post("/feeds/add", dependencies=CSRF)
def feeds_add(request: Request, store: StoreDep, policy: PolicyDep, url: Annotated[str, Form()] = "",
              folder: Annotated[str, Form()] = "") -> Response:
    values = {"url": url, "folder": folder}

    def work() -> Response:
        address = url.strip()
        try:
            check_length("url", address, 2048)
            check_length("folder", folder, 512)
            why = collect.url_refusal(address, policy)
            if why is not None:
                raise FormError("url", f"refused: {why}")
        except FormError as exc:
            return feeds_failed(request, exc, values)
        added = collect.subscribe(store, address, folder=folder.strip() or None)
        return feeds_done(request, "Subscribed." if added else "Already subscribed.")

    return mutate(request, "/feeds/add", values, work)


@router.post("/feeds/remove", dependencies=CSRF)
def feeds_remove(request: Request, store: StoreDep, url: Annotated[str, Form()] = "",
                 page: Annotated[str, Form()] = "1", state: Annotated[str, Form()] = "all",
                 folder: Annotated[str | None, Form()] = None) -> Response:
    def work() -> Response:
        if not collect.remove_feed(store, url):
            return feeds_failed(request, FormError("remove", f"not subscribed: {url[:200]}"), {})
        # Back to the page the feed was removed from (a later page of 23 is not page 1).
        query = {"page": page if page.isdigit() and len(page) < 8 else "1",
                 "state": state if state in feedlist.STATES else "all"}
        if folder is not None:
            query["folder"] = folder[:512]
        return back(f"/feeds?{urlencode(query)}")

    return mutate(request, "/feeds/remove", {"url": url}, work)


@router.post("/feeds/import", dependencies=CSRF)
def feeds_import(request: Request, store: StoreDep, policy: PolicyDep,
                 opml: Annotated[UploadFile | None, File()] = None) -> Response:
    def work() -> Response:
        if opml is None or not opml.filename:
            return feeds_failed(request, FormError("opml", "choose an OPML file"), {})
        content = opml.file.read(MAX_OPML + 1)
        if len(content) > MAX_OPML:
            return feeds_failed(request, FormError("opml", "the file is larger than 5 MB"), {})
        report = pipeline.StageReport("feeds import")
        try:
            # An OPML file comes from elsewhere and may list file: or private addresses: every
            # feed passes the links box's check, and the refused ones are failures in the report.
            collect.subscribe_opml(store, content, opml.filename, report,
                                   check=lambda url: collect.url_refusal(url, policy, resolve=False))
        except (ImportFormatError, UsageError) as exc:
            return feeds_failed(request, FormError("opml", f"not a usable OPML file: {exc}"), {})
        refusals = "; ".join(f"{url[:200]} ({why})" for url, why in report.failures[:10])
        if not report.done:
            message = f"no feed was accepted: {refusals}" if refusals else "no feeds found in that file"
            return feeds_failed(request, FormError("opml", message), {})
        notice = f"Imported {report.done} feeds: {report.new} new, {report.unchanged} already subscribed."
        if report.failures:
            notice += f" Refused {report.failed}: {refusals}"
        return feeds_done(request, notice)

    return mutate(request, "/feeds/import", {}, work)
