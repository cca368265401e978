"""The web UI's security checks that need no web framework: which hosts and tokens are let in, and
the CSRF tokens every form carries. ``app.py`` applies them to every request; ``deps.py`` checks a
form's token. Kept free of FastAPI so that ``tidings serve``'s checks and tests import it cheaply."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..config import Config
    from ..store import Store

CSRF_COOKIE = "tidings_csrf"
TOKEN_COOKIE = "tidings_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, brackets allowed) names this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header without its port; an IPv6 address keeps its brackets."""
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def supplied_token(request: Request) -> str:
    """The token the request carries: a Bearer header, the cookie set after the first ``?token=``
    (the login form), or that query parameter itself; empty when none."""
    supplied = ""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        supplied = auth[7:].strip()
    return supplied or request.cookies.get(TOKEN_COOKIE, "") or request.query_params.get("token", "")


def token_ok(request: Request, token: str) -> bool:
    """Whether the request carries ``token``. Compared in constant time."""
    supplied = supplied_token(request)
    return bool(supplied) and hmac.compare_digest(supplied.encode(), token.encode())


def request_curator(request: Request, token: str | None, store: Store) -> str | None:
    """Who the request's token belongs to: ``owner`` for the single configured token, a named
    curator's name for a token ``tidings users add`` made, None for no or an unknown token."""
    from ..users import OWNER, user_for_token

    if token is not None and token_ok(request, token):
        return OWNER
    supplied = supplied_token(request)
    return user_for_token(store, supplied) if supplied else None


def resolve_token(config: Config) -> str | None:
    """The token every request must carry: ``TIDINGS_TOKEN`` first, so a secret need not sit in
    the config file, then ``web.token``; None when neither is set."""
    from_env = os.environ.get("TIDINGS_TOKEN")
    return from_env or config.web.token or None


def csrf_secret(store: Store) -> bytes:
    """The per-install secret CSRF tokens are made with: a file beside the store (``DB.web-secret``,
    mode 0600), created once and kept, so tokens survive a restart."""
    database = store.engine.url.database
    if store.engine.dialect.name != "sqlite" or not database or database == ":memory:":
        # A store in memory lives only as long as this process. A server store has no file to sit
        # beside; its forms are good until this process restarts (a shared secret needs a table).
        return secrets.token_bytes(32)
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


def csrf_ok(secret: bytes, cookie: str, supplied: str) -> bool:
    """Whether ``supplied`` is the token made for the session ``cookie`` names."""
    expected = csrf_token(secret, cookie)
    return bool(cookie) and bool(supplied) and hmac.compare_digest(expected.encode(), supplied.encode())
