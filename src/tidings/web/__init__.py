"""The curation web UI: ``tidings serve``. FastAPI with server-rendered Jinja2 pages.

It holds no digest logic and no queries of its own: every page reads the store through library
functions (``curate``, ``collect``, ``search``), every form post calls one (``curate``,
``collect``, ``pipeline``) and redirects back, so each edit works as a plain form post;
``static/web/app.js`` only enhances (drag and drop, in-place edits, live progress) by posting the
same forms with ``fetch``.

The package:
- ``app``: ``create_app`` (settings, the security guard, error pages, routers) and ``serve``;
- ``security``: host and token checks, CSRF tokens; ``deps``: what routers share (the app's
  state as dependencies, rendering, the CSRF check of form posts, form values);
- routers by area: ``week`` (the week view, entry edits, set-aside retry), ``links`` (the
  add-links box and its jobs), ``items``, ``digests``, ``feeds``, ``search`` (search and ask);
- ``jobs``: the background worker the add-links box and retries use; ``views``: what templates show.

Security, in one place (``app._guard`` and ``deps.require_csrf``):
- loopback only by default; any other bind address needs a token, checked on every request
  (``Authorization: Bearer``, or the cookie set after ``?token=`` once);
- without a token, the Host header must name loopback (no DNS rebinding onto the UI);
- every POST carries a CSRF token: an HMAC, under a per-install secret kept beside the store, of
  the HttpOnly SameSite session cookie (so a token is only good with the cookie it was made for,
  and nobody without the secret can make a matching pair); a foreign Origin is refused;
- every way of adding a URL or a feed goes through one check, ``collect.url_refusal``;
- Jinja2 autoescapes everything; article HTML goes through nh3; hrefs are http(s) only;
- a Content-Security-Policy without 'unsafe-inline' means only our own script files run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..collect import url_refusal
    from .app import create_app, serve
    from .security import CSP, csrf_secret, csrf_token, resolve_token

__all__ = ["CSP", "create_app", "csrf_secret", "csrf_token", "resolve_token", "serve", "url_refusal"]

# Where each public name lives. Loaded on first use, so that importing ``tidings.web`` for a
# name that needs no web framework (``url_refusal``, ``CSP``) does not import FastAPI.
_HOMES = {
    "create_app": ".app", "serve": ".app", "url_refusal": "..collect",
    "CSP": ".security", "csrf_secret": ".security", "csrf_token": ".security", "resolve_token": ".security",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
