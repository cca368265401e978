"""The digests list and one digest's page: its rendering in any format, its front matter and
cover, and writing it into the blog directory."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from sqlalchemy.orm.exc import StaleDataError

from .. import curate
from ..config import Config
from ..errors import UsageError
from ..store import Store
from .deps import (
    CSRF,
    EDIT,
    ConfigDep,
    FormError,
    StaleForm,
    StoreDep,
    back,
    check_length,
    check_version,
    config_of,
    curator_session,
    mutate,
    page,
    parse_day,
    store_of,
)

router = APIRouter()


def parse_digest_week(value: str) -> date:
    """A digest's week from its URL: not a date at all is no such page (404), a date out of
    range a bad request (400)."""
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(404, f"{value[:40]!r} is not a week date (YYYY-MM-DD).") from exc
    try:
        return parse_day(value)
    except ValueError as exc:
        raise HTTPException(400, f"{exc}.") from exc


def check_format(fmt: str, message: str | None = None) -> None:
    from ..publish import formats  # the renderers load only when a digest is shown

    if fmt not in formats.FORMAT_NAMES:
        raise HTTPException(400, message or f"Unknown format {fmt[:20]!r}: use one of {', '.join(formats.FORMAT_NAMES)}.")


def digest_context(store: Store, config: Config, week: date, fmt: str) -> dict[str, Any]:
    """What the digest page shows: the digest, its rendering in ``fmt``, its front matter as the
    Docusaurus rendering has it, and where writing it would go. A draft is refreshed first."""
    from ..publish import formats

    with store.session() as session:
        digest = curate.week_digest(session, week)
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
        weeks = curate.digest_weeks(session)
    return {
        "week": week, "digest": digest, "preview": preview, "fmt": fmt, "formats": formats.FORMAT_NAMES,
        "front_matter": curate.front_matter_text(docusaurus), "weeks": weeks,
        "blog_target": str(curate.blog_target(config, week)) if config.digest.blog_dir else "",
        "labels": curate.COVER_LABELS,
    }


STALE_DIGEST = ("Not saved: another curator changed this digest after your page was loaded. This is the digest "
                "as it is now; make your change again if it still applies.")


def digest_failed(request: Request, week: date, exc: FormError, values: dict[str, str],
                  status: int = 422) -> HTMLResponse:
    context = digest_context(store_of(request), config_of(request), week, "docusaurus")
    return page(request, "digest.html", status, **context, errors={exc.field: exc.message}, values=values,
                notice="")


@router.get("/digests", response_class=HTMLResponse)
def digests_page(request: Request, store: StoreDep) -> Response:
    rows = [(d.week, d.title or d.week.isoformat(), d.status, count) for d, count in curate.digests_with_counts(store)]
    return page(request, "digests.html", rows=rows)


@router.get("/digest/{week}", response_class=HTMLResponse)
def digest_page(request: Request, week: str, store: StoreDep, config: ConfigDep,
                format: str = "docusaurus") -> Response:
    when = parse_digest_week(week)
    check_format(format)
    return page(request, "digest.html", **digest_context(store, config, when, format), errors={}, values={},
                notice="")


@router.get("/digest/{week}/preview.txt")
def digest_preview(week: str, store: StoreDep, config: ConfigDep, format: str = "docusaurus") -> Response:
    when = parse_digest_week(week)
    check_format(format, "unknown format")
    text = digest_context(store, config, when, format)["preview"]
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


@router.post("/digest/{week}/front-matter", dependencies=EDIT)
def digest_front_matter(request: Request, week: str, store: StoreDep,
                        front_matter: Annotated[str, Form()] = "") -> Response:
    when = parse_digest_week(week)
    values = {"front_matter": front_matter}

    def work() -> Response:
        try:
            check_length("front_matter", front_matter)
            with curator_session(request) as session:
                digest = curate.find_digest(session, when)
                if digest is None:
                    raise HTTPException(404, "no such digest")
                check_version(request, digest.version)
                try:
                    curate.set_front_matter(session, digest, front_matter)
                except UsageError as exc:
                    raise FormError("front_matter", str(exc)) from exc
        except FormError as exc:
            return digest_failed(request, when, exc, values)
        except (StaleForm, StaleDataError):  # another curator saved this digest after the page was made
            return digest_failed(request, when, FormError("stale", STALE_DIGEST), {}, status=409)
        return back(f"/digest/{when.isoformat()}#front-matter")

    return mutate(request, f"/digest/{when.isoformat()}/front-matter", values, work)


@router.post("/digest/{week}/cover", dependencies=EDIT)
def digest_cover(request: Request, week: str, store: StoreDep, image: Annotated[str, Form()] = "",
                 alt: Annotated[str, Form()] = "", label: Annotated[str, Form()] = "封面图",
                 caption: Annotated[str, Form()] = "") -> Response:
    when = parse_digest_week(week)
    values = {"image": image, "alt": alt, "label": label, "caption": caption}

    def work() -> Response:
        try:
            for name, value in values.items():
                check_length(name, value, 1000)
            with curator_session(request) as session:
                digest = curate.find_digest(session, when)
                if digest is None:
                    raise HTTPException(404, "no such digest")
                check_version(request, digest.version)
                try:
                    curate.set_cover(session, digest, image=image, alt=alt, label=label, caption=caption)
                except UsageError as exc:
                    raise FormError("label" if "label" in str(exc) else "image", str(exc)) from exc
        except FormError as exc:
            return digest_failed(request, when, exc, values)
        except (StaleForm, StaleDataError):  # another curator saved this digest after the page was made
            return digest_failed(request, when, FormError("stale", STALE_DIGEST), {}, status=409)
        return back(f"/digest/{when.isoformat()}#cover")

    return mutate(request, f"/digest/{when.isoformat()}/cover", values, work)


@router.post("/digest/{week}/write", dependencies=CSRF)
def digest_write(request: Request, week: str, store: StoreDep, config: ConfigDep) -> Response:
    from ..publish import formats

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
        context = digest_context(store, config, when, "docusaurus")
        notice = f"{'Wrote' if changed else 'Unchanged:'} {target}"
        return page(request, "digest.html", **context, errors={}, values={}, notice=notice)

    return mutate(request, f"/digest/{when.isoformat()}/write", values={}, work=work)
