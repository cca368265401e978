"""Digests in the store: weeks, importing past digests, assembling a week's draft, and edits.

The CLI and the web UI both call these functions; neither holds digest logic of its own."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from .config import Config
from .errors import ConfigError
from .pipeline import fetch_url_of, upsert_record
from .publish import new_digest_doc
from .records import Cover, DigestDoc, DigestEntry, ItemRecord, RawBlock
from .store import Correction, Digest, DigestBlock, DigestEntryRow, Edit, Item, Store, get_or_create_source

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


def canonical_section(name: str | None, config: Config) -> str | None:
    if name is None:
        return None
    return config.classify.aliases.get(name, name)


def _fingerprint(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- import --------------------------------------------------------------------------------


def save_imported_digest(
    store: Store, doc: DigestDoc, *, week: date, path: str, source_text: str, config: Config
) -> tuple[str, int]:
    """Store a parsed digest with its verbatim blocks; returns (``new``/``updated``/``unchanged``, entries)."""
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


def candidates(session: Session, week: date, config: Config, digest: Digest | None) -> list[Item]:
    """Items seen in the week that no other digest holds (imported history is not this week's news)."""
    start, end = week_window(week, config)
    in_other = select(DigestEntryRow.item_id).where(DigestEntryRow.item_id.is_not(None))
    if digest is not None and digest.id is not None:
        in_other = in_other.where(DigestEntryRow.digest_id != digest.id)
    query = (
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
    return [item for item in session.scalars(query) if item.title or item.summary]


def entry_from_item(item: Item, section: str | None) -> DigestEntry:
    return DigestEntry(
        url_raw=fetch_url_of(item),
        title_raw=item.title or fetch_url_of(item),
        separator="。" if item.summary else None,
        summary=item.summary,
        section=section,
    )


def assemble_week(store: Store, week: date, config: Config) -> Digest:
    """The week's digest: an imported one as it is, or a draft created and refreshed from candidates."""
    with store.session() as session:
        # Entries with their items and URLs in three queries, not two per entry (the week view
        # calls this on every load).
        digest = session.scalar(
            select(Digest)
            .where(Digest.week == week)
            .options(selectinload(Digest.entries).selectinload(DigestEntryRow.item).selectinload(Item.urls))
        )
        if digest is not None and digest.status != "draft":
            return digest
        if digest is None:
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
            session.add(digest)
            session.flush()
        present = {entry.item_id: entry for entry in digest.entries}
        position = max((e.position for e in digest.entries), default=-1) + 1
        for item in candidates(session, week, config, digest):
            if item.id not in present:
                section = item.section or config.fallback_section
                digest.entries.append(DigestEntryRow(item_id=item.id, position=position, section=section))
                position += 1
        for entry in digest.entries:
            if not entry.edited and entry.item is not None and entry.section != entry.item.section:
                entry.section = entry.item.section or config.fallback_section
            if not entry.edited and entry.item is not None:
                part = entry_from_item(entry.item, entry.section)
                entry.url_raw, entry.title_raw = part.url_raw, part.title_raw
                entry.separator, entry.summary_raw = part.separator, part.summary
        return digest


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
            if item_id not in present:
                digest.entries.append(DigestEntryRow(item_id=item_id, position=position))
                position += 1
    assemble_week(store, week, config)


def load_doc(store: Store, week: date, config: Config) -> DigestDoc | None:
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == week))
        if digest is None:
            return None
        return doc_of(digest, config, order=section_order(store, config))


def section_order(store: Store, config: Config) -> list[str]:
    """Draft sections in the order the curator's own digests use, unless the config sets them."""
    from .classify import section_layout

    return [section.name for section in section_layout(store, config)]


def doc_of(digest: Digest, config: Config, order: list[str] | None = None) -> DigestDoc:
    parts: list[tuple[int, RawBlock | DigestEntry]] = []
    for block in digest.blocks:
        parts.append((block.position, RawBlock(text=block.text, section=block.section, role=block.role)))
    for row in digest.entries:
        title = row.title_override if row.title_override is not None else row.title_raw
        summary = row.summary_override if row.summary_override is not None else row.summary_raw
        entry = DigestEntry(
            url_raw=row.url_raw,
            title_raw=title,
            separator=row.separator,
            summary=summary,
            section=row.section,
            marker=row.marker,
            verbatim=row.verbatim,
            edited=row.edited,
            kept=row.kept,
        )
        parts.append((row.position, entry))
    parts.sort(key=lambda pair: pair[0])
    cover = None
    if digest.cover_image:
        cover = Cover(
            image=digest.cover_image,
            alt=digest.cover_alt or "",
            label=digest.cover_label or config.digest.cover_label,
            caption=digest.cover_caption or "",
        )
    meta = {k: v for k, v in (digest.meta or {}).items() if not k.startswith("_")}
    sections = digest.sections or config.section_names
    if digest.front_matter_raw is None:
        # Drafts render in the learned (or configured) section order; an entry filed elsewhere goes last.
        sections = list(order or config.section_names)
        for _, part in parts:
            if isinstance(part, DigestEntry) and part.section and part.section not in sections:
                sections.append(part.section)
    return DigestDoc(
        meta=meta,
        front_matter_raw=digest.front_matter_raw,
        cover=cover,
        sections=sections,
        blocks=[part for _, part in parts],
        week=digest.week,
    )


# --- edits (the week view and the CLI) -----------------------------------------------------


def edit_entry(session: Session, entry: DigestEntryRow, *, title: str | None = None, summary: str | None = None) -> None:
    for name, value in (("title", title), ("summary", summary)):
        if value is None:
            continue
        current = getattr(entry, f"{name}_override")
        if current is None:
            current = entry.title_raw if name == "title" else entry.summary_raw
        if value == current:
            continue
        session.add(Edit(item_id=entry.item_id, entry_id=entry.id, field=name, old=current, new=value))
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
        session.add(Edit(item_id=entry.item_id, entry_id=entry.id, field="section", old=entry.section, new=section))
        if entry.item is not None:
            entry.item.section, entry.item.section_origin, entry.item.section_confidence = section, "human", 1.0
        entry.section = section
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
        session.add(Edit(item_id=entry.item_id, entry_id=entry.id, field="kept", old=str(entry.kept), new=str(kept)))
        entry.kept = kept


def write_digest(text: str, out_dir: Path, week: date) -> Path:
    target = out_dir / "blog" / week.isoformat() / "index.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target
