"""Named curators of a shared web app (issue 15.4): ``tidings users add NAME`` makes a token, the
store keeps only its SHA-256, and the web app maps a request's token back to a name, which every
edit records (``edits.by``, ``curator_actions.by``).

A token is 32 random bytes (``secrets.token_urlsafe``): with that much entropy a plain SHA-256 is
as safe as a slow password hash and lets the web app look a token up by its hash on every request."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from secrets import token_urlsafe
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists, select

from .errors import UsageError
from .store import User

if TYPE_CHECKING:
    from .store import Store

OWNER = "owner"
"""Who edits when the web app runs without named users: the single configured token, or nobody's
token on loopback. Reserved: no named user can take it."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class UserView:
    name: str
    created_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """``name`` if it can name a curator; UsageError saying why not otherwise."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"not a user name: {name[:80]!r} (1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit)")
    if name.lower() == OWNER:
        raise UsageError(f"{OWNER!r} is reserved for the single configured token: choose another name")
    return name


def add_user(store: Store, name: str) -> str:
    """Create curator ``name`` and return its token, which is shown only this once."""
    check_name(name)
    token = token_urlsafe(32)
    with store.session() as session:
        if session.scalar(select(User.id).where(User.name == name)) is not None:
            raise UsageError(f"there is already a user {name!r}: remove it first to give it a new token")
        session.add(User(name=name, token_hash=token_hash(token)))
    return token


def list_users(store: Store) -> list[UserView]:
    with store.session() as session:
        rows = session.execute(select(User.name, User.created_at).order_by(User.name)).all()
    return [UserView(name=row.name, created_at=row.created_at) for row in rows]


def remove_user(store: Store, name: str) -> None:
    """Remove curator ``name``: its token stops working at once; its edits keep its name."""
    with store.session() as session:
        removed = session.execute(delete(User).where(User.name == name)).rowcount
    if not removed:
        raise UsageError(f"there is no user {name[:80]!r} (see `tidings users list`)")


def user_for_token(store: Store, token: str) -> str | None:
    """The name of the curator whose token this is, or None."""
    if not token:
        return None
    with store.session() as session:
        return session.scalar(select(User.name).where(User.token_hash == token_hash(token)))


def has_users(store: Store) -> bool:
    """Whether any named curator exists: then every web request must carry a token."""
    with store.session() as session:
        return bool(session.scalar(select(exists().where(User.id.is_not(None)))))
