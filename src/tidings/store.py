"""The store: SQLAlchemy 2.x models over SQLite or PostgreSQL (psycopg 3), migrated by Alembic on open.

Only portable column types are used in the model layer (no SQLite-only constructs), so the same
models will run on PostgreSQL. SQLite specifics (WAL, busy_timeout, foreign keys) are set per
connection in one event listener."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DataError, OperationalError, ProgrammingError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
    validates,
)

from .errors import StoreError
from .records import ItemView


class ItemStatus(StrEnum):
    """Where an item stands. A ``StrEnum``, so rows and queries hold the plain string."""

    PENDING = "pending"
    """Known by URL, not fetched yet (or a transient failure waiting for a re-run)."""
    EXTRACTED = "extracted"
    """Has its text: fetched and extracted, or brought its own (posts, notes, blog posts)."""
    REJECTED = "rejected"
    """Fetched and judged not an article (a home page, an error page, a bare code listing)."""
    ERROR = "error"
    """The fetch or extraction failed; ``error_reason`` says why."""
    DUPLICATE = "duplicate"
    """Folded into another item (``duplicate_of``)."""


SET_ASIDE = (ItemStatus.REJECTED, ItemStatus.ERROR)
"""Statuses that keep an item out of every draft."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreDateTime(TypeDecorator[datetime]):
    """A timestamp that reads back the same on SQLite and PostgreSQL: the wall-clock time as given,
    without an offset (a ``timestamp with time zone`` column on both, as the migrations create it).

    SQLite has always dropped the offset and kept the wall clock; PostgreSQL would convert to its
    session time zone and return aware values, which the code (and every stored digest) never
    saw. PostgreSQL sessions run in UTC (:func:`make_engine`), and the offset is dropped on the
    way in and out, so both dialects hold and return identical values and a store copies losslessly."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=None) if value is not None and value.tzinfo is not None else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=None) if value is not None and value.tzinfo is not None else value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: StoreDateTime()}


class Source(Base):
    """Where items came from: a file import, a CLI add, or a subscribed feed (kind "feed")."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    locator: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str | None] = mapped_column(Text)
    html_url: Mapped[str | None] = mapped_column(String(2048))
    folder: Mapped[str | None] = mapped_column(String(512))
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime | None]
    dead: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("kind", "locator"),)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    """Canonical URL (or a stable ``post:``/``note:``/``blog:`` identifier)."""
    kind: Mapped[str] = mapped_column(String(16), default="article")
    title: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(512))
    author_handle: Mapped[str | None] = mapped_column(String(256))
    published_at: Mapped[datetime | None]
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    language: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(80), index=True)
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    summary: Mapped[str | None] = mapped_column(Text)
    summary_origin: Mapped[str | None] = mapped_column(String(128))
    section: Mapped[str | None] = mapped_column(String(256))
    section_confidence: Mapped[float | None] = mapped_column(Float)
    section_origin: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(512))
    note: Mapped[str | None] = mapped_column(Text)
    guid: Mapped[str | None] = mapped_column(String(2048), index=True)
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.PENDING)
    """An :class:`ItemStatus`: pending → extracted, rejected or error; duplicate once merged."""
    error: Mapped[str | None] = mapped_column(Text)
    error_reason: Mapped[str | None] = mapped_column(String(64))
    error_transient: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_content_type: Mapped[str | None] = mapped_column(String(256))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="SET NULL"), index=True)
    """The :class:`Story` this item belongs to; None until the stories stage has seen it."""
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    urls: Mapped[list[ItemUrl]] = relationship(back_populates="item", cascade="all, delete-orphan", order_by="ItemUrl.id")
    tag_rows: Mapped[list[ItemTag]] = relationship(cascade="all, delete-orphan", order_by="ItemTag.id")
    link_rows: Mapped[list[ItemLink]] = relationship(cascade="all, delete-orphan", order_by="ItemLink.id")

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]

    @property
    def links(self) -> list[str]:
        return [link.url for link in self.link_rows]

    def view(self, *, with_text: bool = True) -> ItemView:
        """This item as every interface shows it (see :class:`tidings.records.ItemView`)."""
        return ItemView(
            id=self.id, url=self.url, link=self.urls[0].url if self.urls else self.url,
            urls=[u.url for u in self.urls], title=self.title,
            title_derived=bool((self.extra or {}).get("title_derived")),
            summary=self.summary, summary_origin=self.summary_origin, section=self.section,
            section_confidence=self.section_confidence, section_origin=self.section_origin,
            tags=self.tags, kind=self.kind, author=self.author, author_handle=self.author_handle,
            category=self.category, note=self.note, links=self.links, language=self.language,
            published_at=self.published_at, seen_at=self.seen_at, status=self.status,
            error=self.error, error_reason=self.error_reason, text=self.text if with_text else None,
        )

    @validates("status")
    def _known_status(self, _key: str, value: str) -> str:
        try:
            return ItemStatus(value).value
        except ValueError:
            raise StoreError(f"unknown item status {value!r}; one of {', '.join(ItemStatus)}") from None


class Story(Base):
    """Items about the same story across sources (a repost, a post linking it, the same URL in feeds)."""

    __tablename__ = "stories"
    id: Mapped[int] = mapped_column(primary_key=True)
    best_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))
    """The item a digest shows for the story."""
    chosen_by: Mapped[str] = mapped_column(String(16), default="auto")
    """'auto' (longest text, then source preference) or 'curator' (kept by every later run)."""
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    """The curator split or merged it: the grouper adds new items but never moves these."""
    sources_count: Mapped[int] = mapped_column(Integer, default=1)
    """Seen in N sources: distinct feeds, accounts and sites among its items."""
    size: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StoryEvent(Base):
    """One change to a story: 'join' (by the grouper), 'split', 'merge' or 'choose' (best item)."""

    __tablename__ = "story_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="SET NULL"), index=True)
    other_story_id: Mapped[int | None] = mapped_column(Integer)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ItemUrl(Base):
    """Every original URL an item was seen under (the canonical one is ``Item.url``)."""

    __tablename__ = "item_urls"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    item: Mapped[Item] = relationship(back_populates="urls")


class ItemTag(Base):
    __tablename__ = "item_tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(256), index=True)
    __table_args__ = (UniqueConstraint("item_id", "tag"),)


class ItemLink(Base):
    """An outgoing link found in an item's body (a post's 原文 link, say)."""

    __tablename__ = "item_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    __table_args__ = (UniqueConstraint("item_id", "url"),)


class ItemSource(Base):
    __tablename__ = "item_sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    __table_args__ = (UniqueConstraint("item_id", "source_id"),)


class Digest(Base):
    __tablename__ = "digests"
    id: Mapped[int] = mapped_column(primary_key=True)
    week: Mapped[date] = mapped_column(Date, unique=True)
    slug: Mapped[str | None] = mapped_column(String(512))
    title: Mapped[str | None] = mapped_column(Text)
    authors: Mapped[list[str]] = mapped_column(default=list)
    tags: Mapped[list[str]] = mapped_column(default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Every front-matter key, parsed."""
    front_matter_raw: Mapped[str | None] = mapped_column(Text)
    """The front matter exactly as imported; None for digests tidings created."""
    cover_image: Mapped[str | None] = mapped_column(String(1024))
    cover_alt: Mapped[str | None] = mapped_column(Text)
    cover_label: Mapped[str | None] = mapped_column(String(32))
    cover_caption: Mapped[str | None] = mapped_column(Text)
    sections: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | imported | published
    source_path: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # as on entries
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}
    entries: Mapped[list[DigestEntryRow]] = relationship(
        back_populates="digest", cascade="all, delete-orphan", order_by="DigestEntryRow.position"
    )
    blocks: Mapped[list[DigestBlock]] = relationship(cascade="all, delete-orphan", order_by="DigestBlock.position")


class DigestEntryRow(Base):
    """An item as one digest shows it. Entries and blocks of a digest share one position space."""

    __tablename__ = "digest_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    section: Mapped[str | None] = mapped_column(String(256))
    marker: Mapped[str | None] = mapped_column(String(16))
    url_raw: Mapped[str | None] = mapped_column(String(2048))
    title_raw: Mapped[str | None] = mapped_column(Text)
    separator: Mapped[str | None] = mapped_column(String(32))
    summary_raw: Mapped[str | None] = mapped_column(Text)
    verbatim: Mapped[str | None] = mapped_column(Text)
    title_override: Mapped[str | None] = mapped_column(Text)
    summary_override: Mapped[str | None] = mapped_column(Text)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    kept: Mapped[bool] = mapped_column(Boolean, default=True)
    # Optimistic concurrency (issue 15.4): curate bumps it on a curator's edit; every UPDATE of the
    # row checks the version it read, so two curators never overwrite each other unseen.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    digest: Mapped[Digest] = relationship(back_populates="entries")
    item: Mapped[Item | None] = relationship()
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class DigestBlock(Base):
    """Verbatim text of an imported digest that is not an entry: headings, prose, code, images."""

    __tablename__ = "digest_blocks"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32), default="text")
    section: Mapped[str | None] = mapped_column(String(256))
    text: Mapped[str] = mapped_column(Text)


class Edit(Base):
    """History of user edits to items and entries."""

    __tablename__ = "edits"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("digest_entries.id", ondelete="SET NULL"))
    field: Mapped[str] = mapped_column(String(64))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    by: Mapped[str | None] = mapped_column(String(64))  # the curator (a users.name, or "owner")


class Correction(Base):
    """A user moved an item to another section: training signal for the learned classifier."""

    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id", ondelete="SET NULL"))
    from_section: Mapped[str | None] = mapped_column(String(256))
    to_section: Mapped[str] = mapped_column(String(256))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class CuratorAction(Base):
    """One keep, drop or move the curator made in the week view: the triage score learns from
    each item's latest one (``tidings.triage``). Rows are only added, never changed."""

    __tablename__ = "curator_actions"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    week: Mapped[date | None] = mapped_column(Date)
    action: Mapped[str] = mapped_column(String(16))  # keep | drop | move
    section: Mapped[str | None] = mapped_column(String(256))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    by: Mapped[str] = mapped_column(String(64), default="web")


class User(Base):
    """A curator of a shared web app (``tidings users``): a name and the SHA-256 of its token."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LLMCall(Base):
    """Cache and ledger of model calls, keyed by (task, prompt version, model, params, input hash)."""

    __tablename__ = "llm_calls"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    task: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256))
    prompt_version: Mapped[str] = mapped_column(String(32))
    output: Mapped[str | None] = mapped_column(Text)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    ms: Mapped[int] = mapped_column(Integer, default=0)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    __tablename__ = "embeddings"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(256))
    content_hash: Mapped[str] = mapped_column(String(80))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    __table_args__ = (UniqueConstraint("item_id", "model"),)


class ClassifierModel(Base):
    """A trained classifier, versioned."""

    __tablename__ = "classifier_models"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # section | tags
    version: Mapped[int] = mapped_column(Integer)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # The CLI and the web server may write at once: wait instead of failing with "database is locked".
    # First, so that switching a new file to WAL (which needs a write lock) waits too.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""Plain PostgreSQL URLs, as ``psql`` and most hosts print them; they get the psycopg 3 driver."""


def is_postgres_url(url_or_path: str | Path) -> bool:
    return str(url_or_path).startswith((*POSTGRES_SCHEMES, "postgresql+"))


def database_url(url_or_path: str | Path) -> str:
    """The SQLAlchemy URL for a ``--db`` value: a path is a SQLite file; a plain ``postgresql://``
    URL uses psycopg 3 (SQLAlchemy's default PostgreSQL driver is psycopg2, which we do not ship)."""
    raw = str(url_or_path)
    for scheme in POSTGRES_SCHEMES:
        if raw.startswith(scheme):
            return "postgresql+psycopg://" + raw[len(scheme):]
    return raw if "://" in raw else f"sqlite:///{raw}"


def _postgres_adapters(dbapi_connection: Any, _record: Any) -> None:
    """PostgreSQL text cannot hold NUL (U+0000), which SQLite stores and hostile input carries:
    it is written as U+FFFD instead of failing the whole batch."""
    from psycopg.types.string import StrDumperUnknown

    class NulFreeStr(StrDumperUnknown):
        def dump(self, obj: str) -> Any:
            return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)

    dbapi_connection.adapters.register_dumper(str, NulFreeStr)


def shown(url_or_path: str | Path) -> str:
    """A ``--db`` value fit for a message: a URL's password is masked."""
    raw = str(url_or_path)
    if "://" not in raw:
        return raw
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # a URL SQLAlchemy cannot parse (a port that is not a number)
        return raw.split("://", 1)[0] + "://…"


def make_engine(url_or_path: str | Path) -> Engine:
    url = database_url(url_or_path)
    # PostgreSQL sessions run in UTC, so timestamps read back as written (see StoreDateTime).
    options: dict[str, Any] = {"connect_args": {"options": "-c timezone=UTC"}} if is_postgres_url(url) else {}
    try:
        engine = create_engine(url, **options)
    except (ArgumentError, ImportError, ValueError) as exc:
        reason = str(exc).replace(url, shown(url)).replace(str(url_or_path), shown(url_or_path))
        raise StoreError(f"cannot open the store {shown(url_or_path)}: {reason}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_adapters)
    return engine


def head_revision() -> str:
    """The newest revision id, read from the version files (revisions are numbered 0001, 0002, ...)."""
    found = []
    for path in (MIGRATIONS / "versions").glob("*.py"):
        match = re.search(r"^revision = ['\"]([^'\"]+)['\"]", path.read_text(encoding="utf-8"), re.M)
        if match:
            found.append(match.group(1))
    return max(found)


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError):
        return None


MIGRATION_LOCK_KEY = 0x7469_6469_6E67  # "tiding": one advisory lock id for schema upgrades
INGEST_LOCK_KEY = 0x7469_6469_6E68
"""PostgreSQL advisory lock held by one ingest transaction at a time (see :func:`_take_write_lock`)."""


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Hold an exclusive lock while migrating: an OS lock on ``<db>.lock`` beside a SQLite file, a
    session advisory lock on PostgreSQL.

    Two ``tidings`` processes started at once on a store that does not exist yet would both see
    no schema and both run the first migration ("table alembic_version already exists"). The
    database's own locks do not cover Alembic's check-then-create, so the whole upgrade is
    serialised here. The SQLite lock is released when the file is closed, the PostgreSQL one when
    its connection ends, even if the process dies. In-memory stores take no lock (memory is private)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with open(f"{database}.lock", "a+b") as handle:
        _lock_file(handle.fileno())
        yield  # closing the file releases the lock


def _lock_file(fd: int) -> None:
    """Block until this process holds an exclusive lock on ``fd``."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for ~10 s, then raises
                return
            except OSError:
                continue
    fcntl.flock(fd, fcntl.LOCK_EX)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision; the one place migrations run.

    A store already at head skips Alembic entirely: importing it costs more than most commands.
    Safe when several processes open a new store at once: the upgrade runs under
    :func:`_migration_lock`, and the revision is read again once the lock is held (the process
    that waited finds the schema another one just created)."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    with _migration_lock(engine):
        if current_revision(engine) == head:
            return
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")


class Store:
    """An open store: ``with store.session() as s: ...`` commits on success, rolls back on error."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError("the store is busy (another tidings process is writing); try again") from exc
            raise StoreError(f"database error: {exc.orig}") from exc
        except DataError as exc:  # PostgreSQL refuses what SQLite took (an over-long indexed value, say)
            session.rollback()
            raise StoreError(f"the store refused a value, nothing of this batch was written: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def open_store(path: str | Path) -> Store:
    if str(path) != ":memory:" and "://" not in str(path):
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise StoreError(f"cannot create the store {path}: directory {parent} does not exist")
    try:
        engine = make_engine(path)
        migrate(engine)
    except OperationalError as exc:
        raise StoreError(f"cannot open the store {shown(path)}: {exc.orig}") from exc
    return Store(engine)


def _take_write_lock(session: Session) -> None:
    """Make the session's read-then-write atomic against other processes ingesting at once.

    Two processes importing the same file both read "no such source / item", then both insert:
    a UNIQUE error for the second. On SQLite the transaction starts as ``BEGIN IMMEDIATE`` (if it
    has not begun), taking the file's write lock before the first read; the other process waits
    (busy_timeout). On PostgreSQL a transaction-scoped advisory lock does the same job: one
    ingest transaction at a time, the others wait, and it is released at commit or rollback.
    Taking it again in the same transaction is a no-op, so nesting is safe."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY})
        return
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.driver_connection
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


def get_or_create_source(session: Session, kind: str, locator: str, **fields: Any) -> Source:
    """The source row, created if new. Called first in every ingest session, it takes the write
    lock for that session (see :func:`_take_write_lock`), so concurrent imports never collide."""
    _take_write_lock(session)
    source = session.scalar(select(Source).where(Source.kind == kind, Source.locator == locator))
    if source is None:
        source = Source(kind=kind, locator=locator, **fields)
        session.add(source)
        session.flush()
    return source
