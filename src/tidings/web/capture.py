"""Capture from the browser: the bookmarklet page (``GET /capture``) and the post it makes
(``POST /capture``).

The bookmarklet runs on the reader's page, another origin, so its post can carry neither our CSRF
cookie nor the token cookie (both are SameSite=Strict). It carries a capture key instead: an HMAC
of the per-install secret and the web token, shown only on ``/capture`` (a page behind the usual
host and token checks), so a key is good for capturing only and changes with the token. Pages
whose CSP forbids ``fetch`` (``connect-src``) must still work, so the bookmarklet always submits a
real form into a new window (``target=_blank``), and the answer is a small page naming what was
saved."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..capture import CaptureError, capture_page
from . import jobs as web_jobs
from .deps import current_week, error_page, page

router = APIRouter()

CAPTURE_PATH = "/capture"
RECEIVE_PATH = "/capture/receive"
FORM_OVERHEAD = 256 * 1024  # bytes beside the page: its URL, the key, multipart framing (the selection is in the page)
FIELDS = ("url", "html", "selection", "key")


def capture_key(request: Request) -> str:
    """The key the bookmarklet of this install carries: only the server can make it."""
    token = getattr(request.app.state, "token", None) or ""
    return hmac.new(request.app.state.secret, b"capture\0" + token.encode(), hashlib.sha256).hexdigest()


def bookmarklet(action: str, key: str) -> str:
    """The ``javascript:`` URL that posts the current page to ``action`` in a new window.

    A form, not ``fetch``: a page's ``connect-src`` cannot block a form's navigation. Multipart,
    so the page's bytes travel as they are (URL-encoding would triple every Chinese character).
    A page whose ``form-action`` blocks the form reports it (``securitypolicyviolation``): then
    the page goes by ``postMessage``, to our origin only, into a window of ours
    (:data:`RECEIVE_PATH`), which posts the same form from there."""
    origin = action[: action.index("/", action.index("//") + 2)]
    code = (
        "(function(){var d=document,"
        f"v={{url:location.href,html:d.documentElement.outerHTML,selection:String(window.getSelection()||''),"
        f"key:{json.dumps(key)}}},sent=0;"
        "function byWindow(e){if(sent||String(e.effectiveDirective||e.violatedDirective).indexOf('form-action'))return;"
        "sent=1;window.addEventListener('message',function h(m){"
        f"if(m.origin==={json.dumps(origin)}&&m.data==='tidings-capture-ready'){{"
        f"window.removeEventListener('message',h);m.source.postMessage(v,{json.dumps(origin)})}}}});"
        f"window.open({json.dumps(origin + RECEIVE_PATH)},'_blank')}}"
        "d.addEventListener('securitypolicyviolation',byWindow,true);"
        "setTimeout(function(){d.removeEventListener('securitypolicyviolation',byWindow,true)},10000);"
        "var f=d.createElement('form');"
        f"f.method='post';f.action={json.dumps(action)};f.target='_blank';"
        "f.enctype='multipart/form-data';f.acceptCharset='utf-8';f.style.display='none';"
        "for(var k in v){var i=d.createElement('input');i.type='hidden';i.name=k;i.value=v[k];f.appendChild(i)}"
        "(d.body||d.documentElement).appendChild(f);f.submit();f.remove()})()"
    )
    return "javascript:" + quote(code, safe="(){}[];,.=:'/+!*?&|<>_~$-")


@router.get(CAPTURE_PATH)
def capture_help(request: Request) -> Response:
    action = str(request.base_url).rstrip("/") + CAPTURE_PATH
    return page(request, "capture.html", nav="capture", bookmarklet=bookmarklet(action, capture_key(request)),
                max_bytes=request.app.state.policy.max_bytes)


@router.get(RECEIVE_PATH)
def capture_receive(request: Request) -> Response:
    """The window a page whose CSP blocks forms sends itself to (``static/web/capture.js``)."""
    return page(request, "capture_receive.html", nav="")


@router.post(CAPTURE_PATH)
async def capture(request: Request) -> Response:
    """Store the posted page. The capture key is checked before anything is stored; the body is
    bounded by the fetcher's cap (``fetch.max_bytes``) before it is read."""
    max_bytes: int = request.app.state.policy.max_bytes
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return error_page(request, 411, "Length required",
                          "A capture must say how large it is (Content-Length); nothing was saved.")
    if int(declared) > max_bytes + FORM_OVERHEAD:
        return _too_large(request, max_bytes)
    try:
        form = await request.form(max_files=0, max_fields=len(FIELDS) + 4, max_part_size=max_bytes + 1)
    except HTTPException as exc:
        if "maximum size" in str(exc.detail):
            return _too_large(request, max_bytes)
        return error_page(request, 400, "Bad request", f"The capture could not be read: {exc.detail}")
    values = {name: form.get(name) for name in FIELDS}
    if any(isinstance(value, UploadFile) for value in values.values()):
        return error_page(request, 400, "Bad request", "A capture sends text fields, not files.")
    fields = {name: str(value or "") for name, value in values.items()}
    if not hmac.compare_digest(fields["key"].encode(), capture_key(request).encode()):
        return error_page(request, 403, "Refused",
                          "This capture does not carry this server's key: copy the bookmarklet again from "
                          f"{CAPTURE_PATH}. Nothing was saved.")
    store, config = request.app.state.store, request.app.state.config
    try:
        captured = await run_in_threadpool(
            capture_page, store, url=fields["url"], html=fields["html"].encode("utf-8", "replace"),
            selection=fields["selection"], max_bytes=max_bytes,
        )
    except CaptureError as exc:
        if exc.reason == "too_large":
            return _too_large(request, max_bytes)
        return error_page(request, 400, "Not captured", f"{exc}.")
    # Summarize and file it as a link added in the week view is: the same job, on the job queue.
    job = web_jobs.new_job(current_week(config), [(captured.item_id, fields["url"].strip())])
    web_jobs.start(request.app.state.jobs, job, store, config, request.app.state.policy)
    return page(request, "capture_saved.html", 201 if captured.state == "new" else 200, nav="",
                captured=captured, job=job)


def _too_large(request: Request, max_bytes: int) -> Response:
    return error_page(request, 413, "Page too large",
                      f"The captured page is larger than the {max_bytes} bytes allowed (fetch.max_bytes); "
                      "nothing was saved.")
