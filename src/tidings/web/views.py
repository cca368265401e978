"""What the templates show, made from store rows: a week's entries grouped by section, set-aside
items, search highlights. Plain dataclasses, so templates never reach into the ORM's lazy loads."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException

from ..config import Config, canonical_section
from ..htmltext import safe_href
from ..publish.docusaurus import doc_of
from ..records import DigestEntry, ItemView
from ..store import Digest, DigestEntryRow, Item
from ..triage import Line, Score


@dataclass
class EntryView:
    """One digest entry as the week view shows it: its item's fields come from ``item`` (the one
    :class:`~tidings.records.ItemView` every interface shares); only what belongs to the entry in
    this digest is here."""

    id: int
    item: ItemView | None
    """The entry's item; None for an imported entry that matched no stored item."""
    title: str
    """As shown in this digest: the curator's override, else the digest's text, else the item's."""
    url: str | None
    """The entry's link (http(s) only): the digest's own, else the item's canonical URL."""
    summary: str
    summary_origin: str
    """Where the shown summary came from: ``edited``, ``human (imported)`` or the item's origin."""
    section: str | None
    """The entry's section in this digest, which a curator's move may set apart from the item's."""
    kept: bool
    marker: str | None
    edited: bool
    unsure: float | None = None
    """The classifier's confidence when it filed this entry less surely than ``llm.classify_below``:
    the week view marks it for the curator to check."""
    index: int = 0
    count: int = 0
    version: int = 1
    """The row's edit counter, sent back by every edit form: a stale form is refused (409)."""

    @property
    def domain(self) -> str:
        return domain(self.url)


@dataclass
class SetAsideView:
    """An item of the week that failed or was judged not an article: listed apart, with its reason
    (``item.error_reason``, ``item.error``) and the URL it is fetched from (``item.link``)."""

    item: ItemView
    title: str
    """The item's title, or the URL it is fetched from when it has none."""


@dataclass(frozen=True, slots=True)
class ListRow:
    """One line of the week's list mode, every value it shows worked out once: the template's loop
    over 1,000 lines then calls no property or method (those calls were a third of its time)."""

    line: Line
    score: Score | None
    key: str = ""
    """The digit (1–9) that moves an entry to its section, when the section has one."""
    href: str | None = None
    domain: str = ""
    reasons: str = ""
    """The score's top reasons, joined."""
    spread: int = 1


def list_choices(digest_sections: list[str], lines: list[Line], config: Config) -> list[str]:
    """The sections a line may move to, as :func:`section_choices` gives them for the cards."""
    names = list(config.section_names)
    for name in [*digest_sections, *(line.section for line in lines)]:
        if name and name not in names:
            names.append(name)
    if config.fallback_section not in names:
        names.append(config.fallback_section)
    return names


def list_rows(lines: list[Line], scores: dict[int, Score], choices: list[str]) -> list[ListRow]:
    """Every entry of the week, best triage score first (entries without an item last)."""
    keys = {name: str(n) for n, name in enumerate(choices[:9], start=1)}
    rows = []
    for line in lines:
        score = scores.get(line.item_id) if line.item_id is not None else None
        href = safe_href(line.url)
        reasons = " · ".join(r.text for r in score.top_reasons) if score is not None else ""
        rows.append(ListRow(line, score, keys.get(line.section or "", ""), href, domain(href), reasons,
                            score.spread if score is not None else 1))
    rows.sort(key=lambda r: -(r.score.value if r.score else -1))
    return rows


@dataclass
class SectionView:
    name: str | None
    label: str
    entries: list[EntryView]


def set_aside_view(item: Item) -> SetAsideView:
    view = item.view(with_text=False)
    return SetAsideView(item=view, title=view.title or view.link)


def domain(url: str | None) -> str:
    """The host a link points to, without ``www.``: shown beside each entry's title."""
    if not url:
        return ""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


def unsure(row: DigestEntryRow, item: ItemView | None, threshold: float) -> float | None:
    # Only the local classifier's picks: a curator's move is sure, and an LLM's decision is recorded
    # with the threshold of its time as its confidence.
    origin = item.section_origin if item is not None else None
    if item is None or origin not in ("model", "rules") or not item.section_confidence:
        # 0.0 is "no keyword matched, filed under the fallback": not a low confidence, and showing
        # it on most cards made the badge noise. Only a classifier's real low confidence is shown.
        return None
    if row.section != item.section or item.section_confidence >= threshold:
        return None
    return round(item.section_confidence, 2)


def entry_view(row: DigestEntryRow, entry: DigestEntry, unsure_below: float) -> EntryView:
    # The week view shows no item text: leave it out rather than carry every page's body around.
    item = row.item.view(with_text=False) if row.item is not None else None
    url = safe_href(entry.url) or (safe_href(item.url) if item is not None else None)
    if row.summary_override is not None:
        origin = "edited" if item is None or item.summary_origin == "human" else f"{item.summary_origin}"
    elif row.verbatim is not None:
        origin = "human (imported)"
    else:
        origin = (item.summary_origin if item is not None else None) or ""
    return EntryView(
        id=row.id,
        item=item,
        title=entry.title or (item.title if item is not None else "") or entry.url or "(untitled)",
        url=url,
        summary=entry.summary or "",
        summary_origin=origin if entry.summary else "",
        section=row.section,
        kept=row.kept,
        marker=row.marker,
        edited=row.edited,
        unsure=unsure(row, item, unsure_below),
        version=row.version or 1,
    )


def section_choices(digest: Digest | None, config: Config) -> list[str]:
    """The sections an entry may move to: the configured ones, then any the digest itself uses."""
    names = list(config.section_names)
    for name in [*(digest.sections if digest else []), *(e.section for e in (digest.entries if digest else []))]:
        if name and name not in names:
            names.append(name)
    if config.fallback_section not in names:
        names.append(config.fallback_section)
    return names


def group_entries(digest: Digest, config: Config) -> list[SectionView]:
    """Entries by section, in the configured order (old names sort by what they were renamed to)."""
    doc = doc_of(digest, config)
    unsure_below = config.llm.classify_below
    views = [entry_view(row, entry, unsure_below) for row, entry in zip(digest.entries, doc.entries, strict=True)]
    order = {name: i for i, name in enumerate(config.section_names)}
    own = {name: i for i, name in enumerate(digest.sections or [])}

    def rank(name: str | None) -> tuple[int, int, str]:
        if name is None:
            return (2, 0, "")
        canonical = canonical_section(name, config) or name
        if canonical in order:
            return (0, order[canonical], name)
        return (1, own.get(name, len(own)), name)

    names: list[str | None] = list(config.section_names)
    for view in views:
        if view.section not in names:
            names.append(view.section)
    groups = []
    for name in sorted(dict.fromkeys(names), key=rank):
        members = [v for v in views if v.section == name]
        for index, view in enumerate(members):
            view.index, view.count = index, len(members)
        if members or name in config.section_names:
            groups.append(SectionView(name, name or "No section", members))
    return groups


def shown_entry(row: DigestEntryRow, config: Config) -> DigestEntry:
    """The entry as the week view shows it (overrides applied), to tell what a form changed."""
    doc = doc_of(row.digest, config)
    for other, entry in zip(row.digest.entries, doc.entries, strict=True):
        if other.id == row.id:
            return entry
    raise HTTPException(404, "no such entry")


def marked(snippet: str) -> list[tuple[str, bool]]:
    """A search snippet's ``**word**`` highlights as (text, marked) parts, for escaped output."""
    parts = snippet.split("**")
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


@dataclass(frozen=True)
class Sparkline:
    """Items per week as SVG bars (inline, no script): x, y, height of each non-empty week."""

    bars: list[tuple[int, int, int]]
    width: int
    height: int
    label: str


def sparkline(weekly: list[int], *, bar: int = 4, height: int = 18) -> Sparkline:
    peak = max(weekly, default=0)
    bars = []
    for index, count in enumerate(weekly):
        if count:
            tall = max(2, round(height * count / peak))
            bars.append((index * bar, height - tall, tall))
    total = sum(weekly)
    label = f"{total} items in {len(weekly)} weeks, at most {peak} a week" if total else f"no items in {len(weekly)} weeks"
    return Sparkline(bars, bar * len(weekly), height, label)
