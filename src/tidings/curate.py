"""Digests in the store: weeks, importing past digests, assembling a week's draft, and every curation
edit (sections, order, keep/drop, text, tags, notes, covers, front matter, one-item re-runs, writing
to the blog directory). Every user edit leaves an ``Edit`` row, so an item's page shows its history.

The CLI and the web UI both call these functions; neither holds digest logic of its own."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, defer, selectinload

# The stage loop, the renderers and the digest parser are imported inside the functions that use them:
# `tidings items`, `feeds list` and the week view's reads load this module and never need them
# (they cost more to import than those commands take to run; see bench/startup.py).
from .config import Config, canonical_section
from .errors import ConfigError, UsageError
from .records import DigestDoc, ItemRecord, RawBlock
from .store import (
    SET_ASIDE,
    Correction,
    CuratorAction,
    Digest,
    DigestBlock,
    DigestEntryRow,
    Edit,
    Item,
    ItemSource,
    ItemStatus,
    ItemTag,
    ItemUrl,
    Source,
    Store,
    get_or_create_source,
)

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def timezone_of(config: Config) -> ZoneInfo | None:
    if not config.timezone:
        return None  # the system's local time zone
    try:
        return ZoneInfo(config.timezone)
    except Exception as exc:  # ZoneInfoNotFoundError or a malformed key
        raise ConfigError(f"timezone: unknown time zone {config.timezone!r}") from exc


def today(config: Config) -> date:
    return datetime.now(timezone_of(config)).date()


def latest_week_end(day: date, week_ends_on: str = "sunday") -> date:
    """The latest week end on or before ``day``."""
    back = (day.weekday() - WEEKDAYS.index(week_ends_on)) % 7
    return day - timedelta(days=back)


def week_window(week_end: date, config: Config) -> tuple[datetime, datetime]:
    """The 7 days ending on ``week_end``, as aware datetimes in the configured time zone."""
    tz = timezone_of(config)
    start = datetime.combine(week_end - timedelta(days=6), time.min, tz)
    end = datetime.combine(week_end + timedelta(days=1), time.min, tz)
    if tz is None:
        start, end = start.astimezone(), end.astimezone()
    return start, end


def week_has_entries(store: Store, week: date) -> bool:
    """Whether the week's digest has something to publish: an imported one always does (it is the
    curator's file); a draft, when it holds any entry. An empty draft is not worth writing."""
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == week))
        if digest is None:
            return False
        if digest.status != "draft":
            return True
        return session.scalar(select(func.count(DigestEntryRow.id)).where(DigestEntryRow.digest_id == digest.id)) > 0


def week_of_newest_candidate(store: Store, config: Config) -> date | None:
    """The week end of the newest extracted article, for a hint when the week asked for is empty."""
    with store.session() as session:
        newest = session.scalar(
            select(func.max(Item.seen_at)).where(
                Item.status == ItemStatus.EXTRACTED, Item.kind == "article", Item.duplicate_of_id.is_(None)
            )
        )
    if newest is None:
        return None
    if newest.tzinfo is None:  # SQLite hands back naive datetimes; ours are stored in UTC
        newest = newest.replace(tzinfo=UTC)
    day = newest.astimezone(timezone_of(config)).date()
    return latest_week_end(day + timedelta(days=6), config.week_ends_on)


def default_week(store: Store, config: Config) -> date:
    """The week ``run`` and ``digest`` take when none is named: the latest week that has ended while it
    is still to do (a draft, or candidates and no digest yet); else the week under way when it has a
    draft or candidates. A curator who published last week, or a new user who adds links on a Monday,
    wants the week those links are in, not "nothing for last week"."""
    day = today(config)
    ended = latest_week_end(day, config.week_ends_on)
    under_way = latest_week_end(day + timedelta(days=6), config.week_ends_on)
    if under_way == ended:
        return ended
    with store.session() as session:
        done = find_digest(session, ended)
        if done is None and _has_candidates(session, ended, config) or done is not None and done.status == "draft":
            return ended
        if find_digest(session, under_way) is not None or _has_candidates(session, under_way, config):
            return under_way
        return ended


def _has_candidates(session: Session, week: date, config: Config) -> bool:
    query = _week_items(session, week, config, None).where(Item.status == ItemStatus.EXTRACTED).limit(1)
    return session.scalar(query) is not None


def _fingerprint(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- import --------------------------------------------------------------------------------


def save_imported_digest(
    store: Store, doc: DigestDoc, *, week: date, path: str, source_text: str, config: Config
) -> tuple[str, int]:
    """Store a parsed digest with its verbatim blocks; returns (``new``/``updated``/``unchanged``, entries)."""
    from .pipeline import upsert_record
    digest_hash = _fingerprint(source_text)
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == week))
        if digest is not None and (digest.meta or {}).get("_source_hash") == digest_hash:
            return "unchanged", len(digest.entries)
        state = "new" if digest is None else "updated"
        if digest is None:
            digest = Digest(week=week)
            session.add(digest)
        digest.entries.clear()
        digest.blocks.clear()
        session.flush()
        meta = dict(doc.meta)
        meta["_source_hash"] = digest_hash
        digest.meta = _jsonable(meta)
        digest.slug = str(doc.meta.get("slug")) if doc.meta.get("slug") is not None else None
        digest.title = str(doc.meta.get("title")) if doc.meta.get("title") is not None else None
        digest.authors = _as_list(doc.meta.get("authors"))
        digest.tags = _as_list(doc.meta.get("tags"))
        digest.front_matter_raw = doc.front_matter_raw
        if doc.cover:
            digest.cover_image, digest.cover_alt = doc.cover.image, doc.cover.alt
            digest.cover_label, digest.cover_caption = doc.cover.label, doc.cover.caption
        digest.sections = list(doc.sections)
        digest.status = "imported"
        digest.source_path = path
        source = get_or_create_source(session, "digest", path)
        entries = 0
        for position, block in enumerate(doc.blocks):
            if isinstance(block, RawBlock):
                digest.blocks.append(
                    DigestBlock(position=position, role=block.role, section=block.section, text=block.text)
                )
                continue
            item_id = None
            url = block.url or f"digest:{week.isoformat()}/{position}"
            record = ItemRecord(
                url=url,
                title=block.title or None,
                summary=block.prose or None,  # the note's prose, without its code samples and admonitions
                summary_origin="human" if block.prose else None,
                section=canonical_section(block.section, config),
            )
            item, _ = upsert_record(session, record, source)
            item_id = item.id
            digest.entries.append(
                DigestEntryRow(
                    item_id=item_id,
                    position=position,
                    section=block.section,
                    marker=block.marker,
                    url_raw=block.url_raw,
                    title_raw=block.title_raw,
                    separator=block.separator,
                    summary_raw=block.summary,
                    verbatim=block.verbatim,
                )
            )
            entries += 1
        return state, entries


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# --- a week's draft ------------------------------------------------------------------------


# An item is a real candidate for a draft only once its text is in: pages still pending join when
# they are extracted, and pages judged "no article" or failed are set aside with their reason.
SET_ASIDE_STATUSES = SET_ASIDE


def _week_items(session: Session, week: date, config: Config, digest: Digest | None) -> Select[tuple[Item]]:
    """Items seen in the week that no other digest holds (imported history is not this week's news)."""
    start, end = week_window(week, config)
    in_other = select(DigestEntryRow.item_id).where(DigestEntryRow.item_id.is_not(None))
    if digest is not None and digest.id is not None:
        in_other = in_other.where(DigestEntryRow.digest_id != digest.id)
    return (
        select(Item)
        .where(
            Item.duplicate_of_id.is_(None),
            Item.kind == "article",
            Item.seen_at >= start,
            Item.seen_at < end,
            Item.id.not_in(in_other),
        )
        .order_by(Item.id)
    )


def _shows_something() -> ColumnElement[bool]:
    """A title or a summary to show: what makes an extracted item a candidate."""
    return or_(func.coalesce(Item.title, "") != "", func.coalesce(Item.summary, "") != "")


def candidates(session: Session, week: date, config: Config, digest: Digest | None) -> list[Item]:
    """The week's extracted items that no other digest holds, each with something to show, one per
    story (its best item; none when the draft already lists an item of that story)."""
    from .stages.stories import one_per_story

    # The page's bytes and its text are the largest columns and nothing here reads them (a week view
    # of 1,000 candidates loaded megabytes of article text it never showed).
    query = _week_items(session, week, config, digest).where(
        Item.status == ItemStatus.EXTRACTED, _shows_something()).options(defer(Item.raw), defer(Item.text))
    found = list(session.scalars(query))
    listed = [entry.item for entry in digest.entries if entry.item is not None] if digest is not None else []
    return one_per_story(session, found, listed)


def set_aside(session: Session, week: date, config: Config) -> list[Item]:
    """The week's items that were rejected or failed: never in the draft, listed apart with their reason."""
    digest = session.scalar(select(Digest).where(Digest.week == week))
    query = _week_items(session, week, config, digest).where(Item.status.in_(SET_ASIDE_STATUSES))
    found = {item.id: item for item in session.scalars(query)}
    # Links asked for in this week (``import --week``) whatever day they were seen: the JSON field
    # is compared in SQL, so only those rows load, not every set-aside item of the store.
    asked = select(Item).where(
        Item.duplicate_of_id.is_(None),
        Item.status.in_(SET_ASIDE_STATUSES),
        Item.extra["asked_for_week"].as_string() == week.isoformat(),
    )
    for item in session.scalars(asked):
        found.setdefault(item.id, item)
    if digest is not None and digest.status == "draft":
        for entry in digest.entries:
            if entry.item is not None and entry.item.status in SET_ASIDE_STATUSES:
                found.setdefault(entry.item.id, entry.item)
    return sorted(found.values(), key=lambda item: item.id)


EntryCopy = tuple[str | None, str, str, str | None, str | None]
"""What an unedited draft entry copies from its item: (section, url_raw, title_raw, separator,
summary_raw)."""


def entry_copy(entry_section: str | None, item_section: str | None, title: str | None, summary: str | None,
               fetch_url: str, config: Config) -> EntryCopy:
    """The fields an unedited entry holds for its item as it is now: one rule for the draft's ORM
    refresh and for the column-only check that finds nothing to refresh. No URL or path stands in
    for a missing title: extraction derives one from the page itself."""
    section = entry_section if entry_section == item_section else (item_section or config.fallback_section)
    return section, fetch_url, title or "", "。" if summary else None, summary


def new_draft(week: date, config: Config) -> Digest:
    """A new, empty draft digest for ``week`` (front matter and cover from the config), not yet
    added to a session: ``assemble_week`` stores it, ``preview_week`` only renders it."""
    from .publish.docusaurus import new_digest_doc
    doc = new_digest_doc(week, [], config.section_names, config.digest)
    digest = Digest(
        week=week,
        status="draft",
        meta=_jsonable(doc.meta),
        slug=str(doc.meta.get("slug")),
        title=str(doc.meta.get("title")),
        authors=_as_list(doc.meta.get("authors")),
        tags=_as_list(doc.meta.get("tags")),
        sections=config.section_names,
    )
    if doc.cover:
        digest.cover_image, digest.cover_alt = doc.cover.image, doc.cover.alt
        digest.cover_label, digest.cover_caption = doc.cover.label, doc.cover.caption
    return digest


def assemble_week(store: Store, week: date, config: Config) -> Digest:
    """The week's digest: an imported one as it is, or a draft created and refreshed from candidates."""
    with store.session() as session:
        # Entries with their items and URLs in three queries, not two per entry (the week view
        # calls this on every load).
        digest = session.scalar(
            select(Digest)
            .where(Digest.week == week)
            .options(selectinload(Digest.entries).selectinload(DigestEntryRow.item)
                     .options(defer(Item.raw), defer(Item.text), selectinload(Item.urls)))
        )
        if digest is not None and digest.status != "draft":
            return digest
        if digest is None:
            digest = new_draft(week, config)
            session.add(digest)
            session.flush()
        refresh_draft(session, digest, week, config)
        return digest


def refresh_draft(session: Session, digest: Digest, week: date, config: Config) -> None:
    """Bring a draft up to date: new candidates in, set-aside items out, unedited entries re-copied."""
    for entry in list(digest.entries):
        if entry.item is not None and entry.item.status in SET_ASIDE_STATUSES:
            digest.entries.remove(entry)
            session.delete(entry)
    present = {entry.item_id for entry in digest.entries}
    position = max((e.position for e in digest.entries), default=-1) + 1
    for item in candidates(session, week, config, digest):
        if item.id not in present:
            # The row gets its item object, not just the id: the copy below reads entry.item, and
            # a new row's relationship is not loaded from an id until the next session.
            section = item.section or config.fallback_section
            digest.entries.append(DigestEntryRow(item=item, position=position, section=section))
            position += 1
    from .pipeline import fetch_url_of
    for entry in digest.entries:
        item = entry.item
        if not entry.edited and item is not None:
            (entry.section, entry.url_raw, entry.title_raw, entry.separator, entry.summary_raw) = entry_copy(
                entry.section, item.section, item.title, item.summary, fetch_url_of(item), config)


def refresh_week(store: Store, week: date, config: Config) -> None:
    """What ``assemble_week`` does, for a view that only needs the store up to date: the draft is
    checked column by column first, and its entries and items are loaded as objects only when a
    candidate came in, an item was set aside or an unedited entry's copy is out of date. A week
    view of 1,000 candidates otherwise loaded and dirty-checked 2,000 objects to change nothing."""
    with store.session() as session:
        found = session.execute(select(Digest.id, Digest.status).where(Digest.week == week)).one_or_none()
        if found is not None and (found.status != "draft" or _draft_is_current(session, found.id, week, config)):
            return
    assemble_week(store, week, config)


def _draft_is_current(session: Session, digest_id: int, week: date, config: Config) -> bool:
    """True when ``refresh_draft`` would change nothing in the draft ``digest_id``."""
    from .stages.stories import one_per_story

    first_url = select(ItemUrl.url).where(ItemUrl.item_id == Item.id).order_by(ItemUrl.id).limit(1).scalar_subquery()
    listed = session.execute(
        select(Item.id, Item.story_id, Item.status, DigestEntryRow.edited, DigestEntryRow.section, Item.section,
               Item.title, Item.summary, func.coalesce(first_url, Item.url), DigestEntryRow.url_raw,
               DigestEntryRow.title_raw, DigestEntryRow.separator, DigestEntryRow.summary_raw)
        .join(Item, Item.id == DigestEntryRow.item_id)
        .where(DigestEntryRow.digest_id == digest_id)
    ).all()
    for (_, _, status, edited, entry_section, item_section, title, summary, fetch_url, *held) in listed:
        if status in SET_ASIDE_STATUSES:
            return False
        if not edited:
            copy = entry_copy(entry_section, item_section, title, summary, fetch_url, config)
            if copy != (entry_section, *held):
                return False
    digest = session.get(Digest, digest_id)
    found = session.execute(
        _week_items(session, week, config, digest)
        .where(Item.status == ItemStatus.EXTRACTED, _shows_something())
        .with_only_columns(Item.id, Item.story_id)
    ).all()
    present = {row.id for row in listed}
    if all(row.id in present for row in found):
        return True
    # New candidates count only if one per story leaves one that the draft does not list yet.
    return all(row.id in present for row in one_per_story(session, found, listed))


def assign_to_week(store: Store, item_ids: list[int], week: date, config: Config) -> None:
    """Put items into the week's draft digest, whenever they were seen (``import --week``)."""
    digest = assemble_week(store, week, config)
    if digest.status != "draft":
        return
    with store.session() as session:
        digest = session.get(Digest, digest.id)
        assert digest is not None
        present = {entry.item_id for entry in digest.entries}
        position = max((e.position for e in digest.entries), default=-1) + 1
        for item_id in dict.fromkeys(item_ids):
            item = session.get(Item, item_id)
            if item is not None:
                # Remembered so that a link asked for in a past week that fails is still set aside
                # there, where the curator looks for it.
                item.extra = {**(item.extra or {}), "asked_for_week": week.isoformat()}
            if item_id not in present and item is not None and item.status not in SET_ASIDE_STATUSES:
                digest.entries.append(DigestEntryRow(item=item, position=position))
                position += 1
    assemble_week(store, week, config)


def load_doc(store: Store, week: date, config: Config) -> DigestDoc | None:
    from .publish.docusaurus import doc_of
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == week))
        if digest is None:
            return None
        return doc_of(digest, config, order=section_order(store, config), see_also=_see_also(session, digest, config))


def _see_also(session: Session, digest: Digest, config: Config) -> dict[int, list[tuple[str, str]]]:
    """The other sources of each draft entry's story, when ``[publish] see_also`` asks for them."""
    if not config.publish.see_also or digest.status != "draft":
        return {}
    from .stages.stories import see_also

    ids = [entry.item.id if entry.item is not None else entry.item_id for entry in digest.entries]
    return see_also(session, [item_id for item_id in ids if item_id is not None])


def section_order(store: Store, config: Config) -> list[str]:
    """Draft sections in the order the curator's own digests use, unless the config sets them."""
    from .stages.classify import section_layout

    return [section.name for section in section_layout(store, config)]


# --- edits (the week view and the CLI) -----------------------------------------------------

EDITOR_KEY = "by"
"""``session.info[EDITOR_KEY]``: the curator the web app makes a session's edits for."""


def editor(session: Session) -> str | None:
    """Who this session's edits are made by; None when nobody was named (the CLI)."""
    by = session.info.get(EDITOR_KEY)
    return str(by) if by else None


def record_edit(session: Session, entry: DigestEntryRow | None, digest: Digest | None, *,
                item_id: int | None = None, field: str, old: str | None, new: str | None) -> None:
    """One edit in the history, by the session's curator; the entry's or digest's version moves on,
    so a form loaded before this edit is refused as stale instead of overwriting it."""
    session.add(Edit(item_id=item_id, entry_id=entry.id if entry is not None else None, field=field,
                     old=old, new=new, by=editor(session)))
    if entry is not None:
        entry.version = (entry.version or 1) + 1
    if digest is not None:
        digest.version = (digest.version or 1) + 1


def edit_entry(session: Session, entry: DigestEntryRow, *, title: str | None = None, summary: str | None = None) -> None:
    for name, value in (("title", title), ("summary", summary)):
        if value is None:
            continue
        current = getattr(entry, f"{name}_override")
        if current is None:
            current = entry.title_raw if name == "title" else entry.summary_raw
        if value == current:
            continue
        record_edit(session, entry, None, item_id=entry.item_id, field=name, old=current, new=value)
        setattr(entry, f"{name}_override", value)
        entry.edited = True
        if name == "summary" and entry.item is not None:
            entry.item.summary, entry.item.summary_origin = value, "human"
    if entry.separator is None and (entry.summary_override or entry.summary_raw):
        entry.separator = "。"


def move_entry(session: Session, entry: DigestEntryRow, section: str, index: int | None = None) -> None:
    """Move an entry to ``section`` at ``index`` among its entries (default: last), record the correction.

    Blocks and entries share one position space, so the whole digest is renumbered: an entry
    moved in an imported digest lands under the target section's heading block."""
    digest = entry.digest
    if section != entry.section:
        if entry.item_id is not None:
            session.add(
                Correction(item_id=entry.item_id, digest_id=digest.id, from_section=entry.section, to_section=section)
            )
        record_edit(session, entry, None, item_id=entry.item_id, field="section", old=entry.section, new=section)
        if entry.item is not None:
            entry.item.section, entry.item.section_origin, entry.item.section_confidence = section, "human", 1.0
        entry.section = section
        record_action(session, entry, "move")
    parts: list[DigestBlock | DigestEntryRow] = sorted([*digest.blocks, *digest.entries], key=lambda p: p.position)
    parts.remove(entry)
    same = [p for p in parts if isinstance(p, DigestEntryRow) and p.section == section]
    if index is not None and 0 <= index < len(same):
        insert_at = parts.index(same[index])
    elif same:
        insert_at = parts.index(same[-1]) + 1
    else:
        heading = next(
            (p for p in parts if isinstance(p, DigestBlock) and p.role == "heading" and p.section == section), None
        )
        insert_at = parts.index(heading) + 1 if heading is not None else len(parts)
    parts.insert(insert_at, entry)
    for position, part in enumerate(parts):
        part.position = position


def set_kept(session: Session, entry: DigestEntryRow, kept: bool) -> None:
    if entry.kept != kept:
        record_edit(session, entry, None, item_id=entry.item_id, field="kept", old=str(entry.kept), new=str(kept))
        entry.kept = kept
    # Recorded even when nothing changed: "keep" on a kept entry is still the curator's verdict.
    record_action(session, entry, "keep" if kept else "drop")


def record_action(session: Session, entry: DigestEntryRow, action: str) -> None:
    """A keep, drop or move from the week view, as a label for the triage score."""
    if entry.item_id is not None:
        session.add(CuratorAction(item_id=entry.item_id, week=entry.digest.week, action=action, section=entry.section,
                                  by=editor(session) or "web"))


def write_digest(text: str, out_dir: Path, week: date) -> Path:
    from .publish.docusaurus import write_if_changed
    target = out_dir / "blog" / week.isoformat() / "index.md"
    write_if_changed(target, text)
    return target


# --- tags, notes, order, covers, front matter, one-item re-runs, the blog directory -------------

MAX_TAGS = 12
MAX_TAG_CHARS = 64
COVER_LABELS = ("封面图", "题图")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def parse_tags(text: str) -> list[str]:
    """``"Go, Rust，云原生"`` → ``["Go", "Rust", "云原生"]``: commas (ASCII or full-width) separate;
    blanks and repeats go. Raises UsageError naming the bad tag."""
    tags: list[str] = []
    for raw in re.split(r"[,，、\n]", text or ""):
        tag = raw.strip()
        if not tag or tag in tags:
            continue
        if _CONTROL_RE.search(tag):
            raise UsageError(f"tag {tag!r}: control characters are not allowed")
        if len(tag) > MAX_TAG_CHARS:
            raise UsageError(f"tag {tag[:20]!r}…: at most {MAX_TAG_CHARS} characters")
        tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise UsageError(f"at most {MAX_TAGS} tags per item")
    return tags


def set_item_tags(session: Session, item: Item, tags: list[str], entry: DigestEntryRow | None = None) -> bool:
    """Replace the item's tags; user-chosen tags are training data for the tag model."""
    old = item.tags
    if old == tags:
        return False
    record_edit(session, entry, None, item_id=item.id, field="tags", old=", ".join(old), new=", ".join(tags))
    for row in list(item.tag_rows):
        if row.tag not in tags:
            item.tag_rows.remove(row)
    session.flush()
    present = {row.tag for row in item.tag_rows}
    for tag in tags:
        if tag not in present:
            item.tag_rows.append(ItemTag(tag=tag))
    return True


def set_item_note(session: Session, item: Item, note: str, entry: DigestEntryRow | None = None) -> bool:
    """The curator's own thoughts on an item (个人思考); empty clears it."""
    value = note.strip() or None
    if value == item.note:
        return False
    record_edit(session, entry, None, item_id=item.id, field="note", old=item.note, new=value)
    item.note = value
    return True


def tag_vocabulary(session: Session) -> list[str]:
    """Every tag in use, most used first: the week view offers these before any new one."""

    rows = session.execute(
        select(ItemTag.tag, func.count(ItemTag.id)).group_by(ItemTag.tag).order_by(func.count(ItemTag.id).desc())
    ).all()
    tags = [tag for tag, _ in rows]
    for digest_tags in session.scalars(select(Digest.tags)):
        for tag in digest_tags or []:
            if tag not in tags:
                tags.append(str(tag))
    return tags


def reorder_entry(session: Session, entry: DigestEntryRow, step: int) -> bool:
    """Move an entry ``step`` places up (negative) or down within its section."""
    same = sorted((e for e in entry.digest.entries if e.section == entry.section), key=lambda e: e.position)
    index = same.index(entry)
    target = index + step
    if step == 0 or target < 0 or target >= len(same):
        return False
    # move_entry's index counts the section's entries once this one is taken out.
    move_entry(session, entry, entry.section, index=target)  # type: ignore[arg-type]
    record_edit(session, entry, None, item_id=entry.item_id, field="position", old=str(index), new=str(target))
    return True


def show_item_summary(session: Session, entry: DigestEntryRow) -> None:
    """After a re-summarize, the entry shows the item's new summary, which keeps its origin."""
    item = entry.item
    if item is None or item.summary is None:
        return
    if entry.digest.status == "draft" and not entry.edited:
        return  # assemble_week copies it into the draft's entry
    origin = item.summary_origin
    edit_entry(session, entry, summary=item.summary)
    item.summary_origin = origin


def resummarize(store: Store, config: Config, entry_id: int) -> str:
    """Re-run summarize on one entry's item; returns what happened, for the user."""
    from .pipeline import run as run_stages
    with store.session() as session:
        entry = session.get(DigestEntryRow, entry_id)
        if entry is None or entry.item is None:
            raise UsageError("no such item")
        item = entry.item
        if not item.text:
            raise UsageError("no extracted text to summarize: the page has not been fetched")
        item_id = item.id
    [report] = run_stages(store, config, stages=["summarize"], item_ids=[item_id], force=True)
    with store.session() as session:
        entry = session.get(DigestEntryRow, entry_id)
        assert entry is not None and entry.item is not None
        if not report.done or entry.item.summary is None:
            raise UsageError("the text is too short for a summary; the old one was kept")
        show_item_summary(session, entry)
        return f"summary rewritten ({entry.item.summary_origin})"


def reclassify(store: Store, config: Config, entry_id: int) -> str:
    """Re-run classify on one entry's item. A draft's untouched entry follows the new section;
    an imported digest keeps showing the entry where it stood (that is where it was published)."""
    from .pipeline import run as run_stages
    with store.session() as session:
        entry = session.get(DigestEntryRow, entry_id)
        if entry is None or entry.item is None:
            raise UsageError("no such item")
        item_id = entry.item.id
    [report] = run_stages(store, config, stages=["classify"], item_ids=[item_id], force=True)
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        if not report.done or item.section is None:
            return "the classifier had no answer; the section was kept"
        confidence = f" ({item.section_confidence:.2f})" if item.section_confidence is not None else ""
        return f"classified as {item.section}{confidence} by {item.section_origin}"


# --- digests -------------------------------------------------------------------------------------


def _parts(digest: Digest) -> list[DigestBlock | DigestEntryRow]:
    return sorted([*digest.blocks, *digest.entries], key=lambda p: p.position)


def cover_text(image: str, alt: str, label: str, caption: str) -> str:
    text = f"![{alt}]({image})\n"
    if caption:
        text += f"\n{label}：{caption}\n"
    return text


def set_cover(session: Session, digest: Digest, *, image: str, alt: str, label: str, caption: str) -> bool:
    """Set or clear (empty image) the cover. In an imported digest the cover is a verbatim block,
    so that block is rewritten (its trailing blank lines kept) or added after the front matter."""
    from .sources.digest import trailing_ws
    image, alt, caption = image.strip(), alt.strip(), caption.strip()
    if label not in COVER_LABELS:
        raise UsageError(f"cover label must be one of {', '.join(COVER_LABELS)}")
    if any(_CONTROL_RE.search(v) for v in (image, alt, caption)) or any(c in image for c in " ()<>"):
        raise UsageError("cover image: a file name or URL without spaces, brackets or control characters")
    old = (digest.cover_image or "", digest.cover_alt or "", digest.cover_label or label, digest.cover_caption or "")
    new = (image, alt, label, caption)
    if old == new:
        return False
    record_edit(session, None, digest, field="cover", old=" | ".join(old), new=" | ".join(new))
    digest.cover_image, digest.cover_alt = image or None, alt or None
    digest.cover_label, digest.cover_caption = label, caption or None
    if digest.front_matter_raw is None:
        return True  # a draft renders its cover from these fields through the template
    block = next((b for b in digest.blocks if b.role == "cover"), None)
    if block is not None:
        if image:
            # The blank lines after the old cover stay, so the body below it does not move.
            block.text = cover_text(image, alt, label, caption).rstrip("\n") + (trailing_ws(block.text) or "\n")
        else:
            digest.blocks.remove(block)
        return True
    if image:
        parts = _parts(digest)
        at = next((i for i, p in enumerate(parts) if not (isinstance(p, DigestBlock) and p.role == "blank")), 0)
        new_block = DigestBlock(role="cover", text=cover_text(image, alt, label, caption) + "\n", position=0)
        digest.blocks.append(new_block)
        parts.insert(at, new_block)
        for position, part in enumerate(parts):
            part.position = position
    return True


def set_front_matter(session: Session, digest: Digest, text: str) -> bool:
    """Replace the front matter, given as YAML with or without its ``---`` lines."""
    import yaml

    from .sources.digest import split_front_matter
    body = text.replace("\r\n", "\n").strip("\n")
    if not body.startswith("---"):
        body = "---\n" + body + "\n---"
    raw = body + "\n"
    try:
        found, rest, _meta = split_front_matter(raw)
    except Exception as exc:  # ImportFormatError: unclosed
        raise UsageError("front matter: needs a closing --- line") from exc
    if found is None or rest.strip():
        raise UsageError("front matter: YAML between two --- lines, and nothing after them")
    inner = found.split("\n", 1)[1].rsplit("---", 1)[0]
    try:
        meta = yaml.safe_load(inner) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"front matter: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(meta, dict):
        raise UsageError("front matter: must be YAML keys and values")
    meta = _jsonable(meta)
    if digest.front_matter_raw is not None and digest.front_matter_raw == found:
        return False
    old = digest.front_matter_raw if digest.front_matter_raw is not None else repr(digest.meta)
    record_edit(session, None, digest, field="front_matter", old=old, new=found)
    hidden = {k: v for k, v in (digest.meta or {}).items() if k.startswith("_")}
    digest.meta = {**meta, **hidden}
    if digest.front_matter_raw is not None:
        digest.front_matter_raw = found  # an imported digest renders its front matter verbatim
    digest.slug = str(meta["slug"]) if meta.get("slug") is not None else None
    digest.title = str(meta["title"]) if meta.get("title") is not None else None
    digest.authors = _as_list(meta.get("authors"))
    digest.tags = _as_list(meta.get("tags"))
    return True


def front_matter_text(rendered: str) -> str:
    """The front matter of a rendered digest, as the digest page shows it for editing."""
    from .sources.digest import split_front_matter
    found, _body, _meta = split_front_matter(rendered)
    return found or ""


def blog_target(config: Config, week: date) -> Path:
    """``digest.blog_dir`` is the Docusaurus blog folder: the digest goes to ``<blog_dir>/DATE/index.md``."""
    if not config.digest.blog_dir:
        raise UsageError("no blog directory: set digest.blog_dir in tidings.toml")
    return Path(config.digest.blog_dir).expanduser() / week.isoformat() / "index.md"


def write_to_blog(store: Store, config: Config, week: date, text: str) -> tuple[Path, bool]:
    """Write the rendered digest into the blog directory (only when it changed) and mark the digest
    published, so the static site lists it. Returns the path and whether the file changed."""
    from .publish.docusaurus import write_if_changed

    target = blog_target(config, week)
    if not target.parent.parent.is_dir():
        raise UsageError(f"digest.blog_dir {target.parent.parent} is not a directory")
    changed = write_if_changed(target, text)
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == week))
        if digest is not None and digest.status == "draft":
            record_edit(session, None, digest, field="status", old="draft", new="published")
            digest.status = "published"
    return target, changed


def entry_summary(entry: DigestEntryRow) -> str | None:
    return entry.summary_override if entry.summary_override is not None else entry.summary_raw


def preview_week(store: Store, week: date, config: Config) -> DigestDoc | None:
    """The week's digest as ``assemble_week`` would make it, built in memory and never written:
    ``tidings digest`` only renders. None when the week has no digest and no candidates."""
    from .publish.docusaurus import doc_of
    with Session(store.engine, autoflush=False) as session:  # nothing is flushed, all is rolled back
        try:
            digest = session.scalar(
                select(Digest)
                .where(Digest.week == week)
                .options(selectinload(Digest.entries).selectinload(DigestEntryRow.item).selectinload(Item.urls))
            )
            if digest is None:
                if not candidates(session, week, config, None):
                    return None
                digest = new_draft(week, config)
            if digest.status == "draft":
                refresh_draft(session, digest, week, config)
                for entry in digest.entries:
                    # Column defaults are applied on INSERT, which never happens to these rows.
                    entry.kept = True if entry.kept is None else entry.kept
                    entry.edited = bool(entry.edited)
            return doc_of(digest, config, order=section_order(store, config),
                          see_also=_see_also(session, digest, config))
        finally:
            session.rollback()


# --- lookups: what the web UI reads ----------------------------------------------------------------
# The web layer holds no queries of its own: each page and form asks one of these, so a rule about
# which rows count (a draft, a set-aside item, a link from the add-links box) is written once, here.


def find_digest(session: Session, week: date) -> Digest | None:
    """The digest of the week ending ``week``, or None; its rows load when they are read."""
    return session.scalar(select(Digest).where(Digest.week == week))


def week_digest(session: Session, week: date) -> Digest | None:
    """The digest of ``week`` with its blocks, entries, their items and the items' URLs, tags and
    links loaded up front: the week view makes each entry's ``Item.view()``, which reads all of
    them, and one query per entry would make a long week slow."""
    items = selectinload(Digest.entries).selectinload(DigestEntryRow.item)
    return session.scalar(
        select(Digest)
        .where(Digest.week == week)
        .options(
            selectinload(Digest.blocks),
            items.selectinload(Item.tag_rows),
            items.selectinload(Item.urls),
            items.selectinload(Item.link_rows),
        )
    )


def digest_weeks(session: Session) -> list[date]:
    """Every week that has a digest, newest first (the week picker and the digest page's menu)."""
    return list(session.scalars(select(Digest.week).order_by(Digest.week.desc())))


def digests_with_counts(store: Store) -> list[tuple[Digest, int]]:
    """Every digest, newest first, with how many entries it holds (kept or not)."""
    with store.session() as session:
        counts = dict(session.execute(
            select(DigestEntryRow.digest_id, func.count(DigestEntryRow.id)).group_by(DigestEntryRow.digest_id)
        ).all())
        return [(digest, counts.get(digest.id, 0))
                for digest in session.scalars(select(Digest).order_by(Digest.week.desc()))]


def digest_status(store: Store, week: date) -> str | None:
    """``draft`` or ``published`` (or how an imported digest was marked); None when the week has none."""
    with store.session() as session:
        digest = find_digest(session, week)
        return digest.status if digest is not None else None


def find_entry(session: Session, entry_id: int) -> DigestEntryRow | None:
    return session.get(DigestEntryRow, entry_id)


def latest_entry_edit(store: Store, entry_id: int) -> tuple[str | None, datetime] | None:
    """(who, when) of the newest edit of entry ``entry_id``: a refused stale form names them."""
    with store.session() as session:
        row = session.execute(
            select(Edit.by, Edit.at).where(Edit.entry_id == entry_id).order_by(Edit.id.desc()).limit(1)
        ).first()
    return (row.by, row.at) if row is not None else None


def week_of_entry(store: Store, entry_id: int) -> date | None:
    """The week of the digest that holds entry ``entry_id``, or None when there is no such entry."""
    with store.session() as session:
        entry = find_entry(session, entry_id)
        return entry.digest.week if entry is not None else None


def list_items(
    session: Session, *, status: str | None = None, kind: str | None = None, limit: int | None = None,
    for_view: bool = False,
) -> list[Item]:
    """Stored items (merged duplicates left out) in id order, for ``tidings items``. ``for_view``
    loads the URLs, tags and links ``Item.view()`` reads: a few queries in all, not three per item."""
    query = select(Item).where(Item.duplicate_of_id.is_(None)).order_by(Item.id)
    if for_view:
        query = query.options(selectinload(Item.urls), selectinload(Item.tag_rows), selectinload(Item.link_rows))
    if status:
        query = query.where(Item.status == status)
    if kind:
        query = query.where(Item.kind == kind)
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def find_item_by(session: Session, target: str) -> Item | None:
    """The item an id (digits) or a URL names: its canonical URL, else any URL it was seen under,
    as ingest matches them (``pipeline.find_item``); a merged duplicate gives the item it joined."""
    from .pipeline import find_item
    if target.isdigit():
        return session.get(Item, int(target))
    from .stages.dedupe import canonicalize_url

    return find_item(session, ItemRecord(url=target), canonicalize_url(target))


def items_by_id(store: Store, item_ids: list[int]) -> dict[int, Item]:
    """The items that still exist among ``item_ids`` (a merge or a delete may have removed some)."""
    if not item_ids:
        return {}
    with store.session() as session:
        return {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(item_ids)))}


@dataclass
class ItemHistory:
    """Everything an item's page shows besides the item: where it came from, the digests it
    appeared in, every edit and section correction, and the duplicates merged into it."""

    item: Item
    sources: list[Source]
    appearances: list[tuple[date, str | None, str | None, bool, int]]
    """(week, digest title, section, kept, entry id), newest week first."""
    edits: list[Edit]
    corrections: list[Correction]
    duplicates: list[Item]


def item_history(session: Session, item_id: int) -> ItemHistory | None:
    """What item ``item_id``'s page shows, newest first; None when there is no such item."""
    item = session.get(Item, item_id)
    if item is None:
        return None
    sources = session.scalars(
        select(Source).join(ItemSource, ItemSource.source_id == Source.id).where(ItemSource.item_id == item_id)
    ).all()
    appearances = session.execute(
        select(Digest.week, Digest.title, DigestEntryRow.section, DigestEntryRow.kept, DigestEntryRow.id)
        .join(Digest, Digest.id == DigestEntryRow.digest_id)
        .where(DigestEntryRow.item_id == item_id)
        .order_by(Digest.week.desc())
    ).all()
    edits = session.scalars(select(Edit).where(Edit.item_id == item_id).order_by(Edit.at.desc())).all()
    corrections = session.scalars(
        select(Correction).where(Correction.item_id == item_id).order_by(Correction.at.desc())
    ).all()
    duplicates = session.scalars(select(Item).where(Item.duplicate_of_id == item_id)).all()
    return ItemHistory(item=item, sources=list(sources), appearances=[tuple(row) for row in appearances],
                       edits=list(edits), corrections=list(corrections), duplicates=list(duplicates))


def unfinished_web_links(store: Store) -> dict[date, list[tuple[int, str]]]:
    """Links added in the web UI's add-links box whose work a restart interrupted, by draft week:
    (item id, fetch URL) of each kept entry still pending, or fetched but not yet summarized or
    filed. Links the curator dropped are left alone, and so are failed fetches (``tidings fetch``
    retries the transient ones)."""
    from .pipeline import fetch_url_of
    unfinished = or_(
        Item.status == ItemStatus.PENDING,
        and_(Item.status == ItemStatus.EXTRACTED, or_(Item.summary.is_(None), Item.section.is_(None))),
    )
    by_week: dict[date, list[tuple[int, str]]] = {}
    with store.session() as session:
        from_web = select(ItemSource.item_id).join(Source, Source.id == ItemSource.source_id).where(Source.kind == "web")
        rows = session.execute(
            select(Digest.week, Item)
            .join(DigestEntryRow, DigestEntryRow.digest_id == Digest.id)
            .join(Item, Item.id == DigestEntryRow.item_id)
            .where(Digest.status == "draft", DigestEntryRow.kept.is_(True), Item.id.in_(from_web),
                   Item.duplicate_of_id.is_(None), unfinished)
            .order_by(Digest.week, Item.id)
        ).all()
        # Deduplicated here, not by SELECT DISTINCT: PostgreSQL cannot compare the JSON column.
        seen: set[tuple[date, int]] = set()
        for week, item in rows:
            if (week, item.id) not in seen:
                seen.add((week, item.id))
                by_week.setdefault(week, []).append((item.id, fetch_url_of(item)))
    return by_week


def requeue_set_aside(store: Store, item_id: int, refuse: Callable[[str], str | None]) -> str | None:
    """Put a set-aside item (failed, or judged no article) back in the fetch queue, its error
    cleared, and return the URL to fetch; None when there is no such item. ``refuse`` is the
    caller's check of that URL (the web UI refuses what its add-links box would): when it names a
    reason, or the item is not set aside, this raises UsageError and changes nothing."""
    from .pipeline import fetch_url_of
    with store.session() as session:
        item = session.get(Item, item_id)
        if item is None:
            return None
        if item.status not in SET_ASIDE_STATUSES:
            raise UsageError(f"this item is {item.status}, not set aside: nothing to retry")
        url = fetch_url_of(item)
        why = refuse(url)
        if why is not None:
            raise UsageError(why)
        item.status, item.error, item.error_reason, item.error_transient = ItemStatus.PENDING, None, None, False
        return url
