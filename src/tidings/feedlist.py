"""The feeds page's queries: one page of subscriptions at a time, filtered by state and folder,
each with its item count and items per week for a sparkline. A reader with 2,000 feeds gets 100
rows and a handful of queries over only those rows, not every feed on one page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from .store import Item, ItemSource, Source, Store

PER_PAGE = 100
SPARK_WEEKS = 26
STATES = ("all", "ok", "failing", "dead")
"""Filters: every feed; live ones whose last poll worked (or not polled yet); live ones whose
last poll failed; dead ones (too many failures in a row)."""


@dataclass(frozen=True)
class FeedRow:
    id: int
    locator: str
    title: str | None
    folder: str | None
    dead: bool
    failures: int
    last_success_at: datetime | None
    last_error: str | None
    items: int
    weekly: list[int]
    """Items per week over the page's sparkline weeks, oldest first (by publication date, else
    when first seen)."""

    @property
    def state(self) -> str:
        return "dead" if self.dead else "failing" if self.failures else "ok"


@dataclass(frozen=True)
class FeedPage:
    rows: list[FeedRow]
    page: int
    pages: int
    matching: int
    state: str
    folder: str | None
    folders: list[tuple[str, int]]
    """Every folder with its feed count, for the filter menu."""
    counts: dict[str, int]
    """Feeds per state, over all folders."""
    weeks_end: date | None
    """The last day of the sparklines' newest week: the newest feed item's date, not the clock."""


def _filtered(state: str, folder: str | None) -> Select[tuple[Source]]:
    query = select(Source).where(Source.kind == "feed")
    if state == "dead":
        query = query.where(Source.dead.is_(True))
    elif state == "failing":
        query = query.where(Source.dead.is_(False), Source.consecutive_failures > 0)
    elif state == "ok":
        query = query.where(Source.dead.is_(False), func.coalesce(Source.consecutive_failures, 0) == 0)
    if folder is not None:
        query = query.where(Source.folder == folder) if folder else query.where(Source.folder.is_(None))
    return query


def feed_page(store: Store, *, page: int = 1, state: str = "all", folder: str | None = None,
              per_page: int = PER_PAGE, weeks: int = SPARK_WEEKS) -> FeedPage:
    """Page ``page`` (from 1; past the end gives the last) of the feeds in ``state`` and ``folder``
    (None: any folder; "": feeds in no folder)."""
    if state not in STATES:
        raise ValueError(f"unknown feed state {state!r}; one of {', '.join(STATES)}")
    with store.session() as session:
        query = _filtered(state, folder)
        matching = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        pages = max(1, -(-matching // per_page))
        page = min(max(page, 1), pages)
        feeds = session.scalars(query.order_by(Source.folder, Source.id).offset((page - 1) * per_page)
                                .limit(per_page)).all()
        ids = [f.id for f in feeds]
        items = dict(session.execute(
            select(ItemSource.source_id, func.count(ItemSource.id))
            .where(ItemSource.source_id.in_(ids)).group_by(ItemSource.source_id)
        ).all()) if ids else {}
        end = _newest_feed_item(session)
        weekly = _weekly(session, ids, end, weeks) if end is not None else {}
        rows = [FeedRow(f.id, f.locator, f.title, f.folder, bool(f.dead), f.consecutive_failures or 0,
                        f.last_success_at, f.last_error, items.get(f.id, 0), weekly.get(f.id, [0] * weeks))
                for f in feeds]
        folders = [(name or "", count) for name, count in session.execute(
            select(Source.folder, func.count(Source.id)).where(Source.kind == "feed")
            .group_by(Source.folder).order_by(Source.folder))]
        counts = {name: session.scalar(select(func.count()).select_from(_filtered(name, None).subquery())) or 0
                  for name in STATES}
    return FeedPage(rows, page, pages, matching, state, folder, folders, counts, end)


def _item_day() -> ColumnElement[datetime]:
    return func.coalesce(Item.published_at, Item.seen_at)


def _newest_feed_item(session: Session) -> date | None:
    newest = session.scalar(
        select(func.max(_item_day())).join(ItemSource, ItemSource.item_id == Item.id)
        .join(Source, Source.id == ItemSource.source_id).where(Source.kind == "feed")
    )
    if newest is None:
        return None
    day = newest.date() if isinstance(newest, datetime) else date.fromisoformat(str(newest)[:10])
    return min(day, date.today())  # a feed dated in the future does not push every line off the chart


def _weekly(session: Session, ids: list[int], end: date, weeks: int) -> dict[int, list[int]]:
    start = end - timedelta(days=7 * weeks - 1)
    found: dict[int, list[int]] = {}
    rows = session.execute(
        select(ItemSource.source_id, _item_day()).join(Item, Item.id == ItemSource.item_id)
        .where(ItemSource.source_id.in_(ids), _item_day() >= datetime.combine(start, datetime.min.time()))
    )
    for source_id, when in rows:
        day = when.date() if isinstance(when, datetime) else date.fromisoformat(str(when)[:10])
        index = (day - start).days // 7
        if 0 <= index < weeks:
            found.setdefault(source_id, [0] * weeks)[index] += 1
    return found
