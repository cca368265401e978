"""Curation edits beyond ``curate``'s: tags, notes, reordering, covers, front matter, re-running
one stage on one item, and writing a digest to the blog directory.

Library functions like those in ``curate``: the web UI calls them, and nothing here knows about
HTTP. Every user edit leaves an ``Edit`` row, so an item's page can show its history."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from . import curate, pipeline
from .config import Config
from .errors import UsageError
from .sources.digest import split_front_matter, trailing_ws
from .store import Digest, DigestBlock, DigestEntryRow, Edit, Item, ItemTag, Store

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
    session.add(Edit(item_id=item.id, entry_id=entry.id if entry else None, field="tags",
                     old=", ".join(old), new=", ".join(tags)))
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
    session.add(Edit(item_id=item.id, entry_id=entry.id if entry else None, field="note", old=item.note, new=value))
    item.note = value
    return True


def tag_vocabulary(session: Session) -> list[str]:
    """Every tag in use, most used first: the week view offers these before any new one."""
    from sqlalchemy import func, select

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
    curate.move_entry(session, entry, entry.section, index=target)  # type: ignore[arg-type]
    session.add(Edit(item_id=entry.item_id, entry_id=entry.id, field="position", old=str(index), new=str(target)))
    return True


def show_item_summary(session: Session, entry: DigestEntryRow) -> None:
    """After a re-summarize, the entry shows the item's new summary, which keeps its origin."""
    item = entry.item
    if item is None or item.summary is None:
        return
    if entry.digest.status == "draft" and not entry.edited:
        return  # assemble_week copies it into the draft's entry
    origin = item.summary_origin
    curate.edit_entry(session, entry, summary=item.summary)
    item.summary_origin = origin


def resummarize(store: Store, config: Config, entry_id: int) -> str:
    """Re-run summarize on one entry's item; returns what happened, for the user."""
    with store.session() as session:
        entry = session.get(DigestEntryRow, entry_id)
        if entry is None or entry.item is None:
            raise UsageError("no such item")
        item = entry.item
        if not item.text:
            raise UsageError("no extracted text to summarize: the page has not been fetched")
        item_id, old = item.id, (item.summary, item.summary_origin)
        item.summary = None
    report = pipeline.summarize_items(store, config, item_ids=[item_id])
    with store.session() as session:
        entry = session.get(DigestEntryRow, entry_id)
        assert entry is not None and entry.item is not None
        if not report.done or entry.item.summary is None:
            entry.item.summary, entry.item.summary_origin = old
            raise UsageError("the text is too short for a summary; the old one was kept")
        show_item_summary(session, entry)
        return f"summary rewritten ({entry.item.summary_origin})"


def reclassify(store: Store, config: Config, entry_id: int) -> str:
    """Re-run classify on one entry's item. A draft's untouched entry follows the new section;
    an imported digest keeps showing the entry where it stood (that is where it was published)."""
    with store.session() as session:
        entry = session.get(DigestEntryRow, entry_id)
        if entry is None or entry.item is None:
            raise UsageError("no such item")
        item_id = entry.item.id
        old = (entry.item.section, entry.item.section_confidence, entry.item.section_origin)
        entry.item.section = None
    report = pipeline.classify_items(store, config, item_ids=[item_id])
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        if not report.done or item.section is None:
            item.section, item.section_confidence, item.section_origin = old
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
    image, alt, caption = image.strip(), alt.strip(), caption.strip()
    if label not in COVER_LABELS:
        raise UsageError(f"cover label must be one of {', '.join(COVER_LABELS)}")
    if any(_CONTROL_RE.search(v) for v in (image, alt, caption)) or any(c in image for c in " ()<>"):
        raise UsageError("cover image: a file name or URL without spaces, brackets or control characters")
    old = (digest.cover_image or "", digest.cover_alt or "", digest.cover_label or label, digest.cover_caption or "")
    new = (image, alt, label, caption)
    if old == new:
        return False
    session.add(Edit(field="cover", old=" | ".join(old), new=" | ".join(new)))
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
    meta = curate._jsonable(meta)
    if digest.front_matter_raw is not None and digest.front_matter_raw == found:
        return False
    old = digest.front_matter_raw if digest.front_matter_raw is not None else repr(digest.meta)
    session.add(Edit(field="front_matter", old=old, new=found))
    hidden = {k: v for k, v in (digest.meta or {}).items() if k.startswith("_")}
    digest.meta = {**meta, **hidden}
    if digest.front_matter_raw is not None:
        digest.front_matter_raw = found  # an imported digest renders its front matter verbatim
    digest.slug = str(meta["slug"]) if meta.get("slug") is not None else None
    digest.title = str(meta["title"]) if meta.get("title") is not None else None
    digest.authors = curate._as_list(meta.get("authors"))
    digest.tags = curate._as_list(meta.get("tags"))
    return True


def front_matter_text(rendered: str) -> str:
    """The front matter of a rendered digest, as the digest page shows it for editing."""
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
    from sqlalchemy import select

    target = blog_target(config, week)
    if not target.parent.parent.is_dir():
        raise UsageError(f"digest.blog_dir {target.parent.parent} is not a directory")
    changed = not target.is_file() or target.read_text(encoding="utf-8") != text
    if changed:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == week))
        if digest is not None and digest.status == "draft":
            session.add(Edit(field="status", old="draft", new="published"))
            digest.status = "published"
    return target, changed


def entry_summary(entry: DigestEntryRow) -> str | None:
    return entry.summary_override if entry.summary_override is not None else entry.summary_raw
