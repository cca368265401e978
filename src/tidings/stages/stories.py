"""Stories: the items about one story, grouped across sources (issue 17).

A WeChat repost of an English article, a post that links it, its translation on juejin and the same
URL in several feeds are one story: a digest lists it once (its best item) and the week view shows
"seen in N sources". Signals, strongest first:

1. a near-duplicate (``duplicate_of``): the duplicate is in its keeper's story;
2. the same story URL (:func:`story_url`: canonical URL without ``www.`` and with ``http`` =
   ``https``) among two items' own URLs;
3. near-duplicate text below dedupe's merge threshold (MinHash, :attr:`Thresholds.near_duplicate`);
4. a post or note about a link: its story link (:func:`story_links`) is another item's URL or story
   link. A post that lists many links is a roundup and gives no link signal;
5. the same title (:func:`title_key`, long titles only) on two articles, e.g. a repost of a
   WeChat article under another account, or a translation whose curator-given title is the same.

Two items listed apart in one imported digest are never put in one story (the curator listed them
apart), and a run only adds items that have no story yet: it never moves an item between stories
nor joins two existing stories, so a curator's split or merge is never undone.
Cross-language title similarity needs a model and is not used offline.

The grouping itself (:func:`group`) is pure; :func:`assign_stories` is the pipeline stage, and
:func:`split`, :func:`merge` and :func:`choose_best` are the curator's hand edits, each recorded as
a :class:`tidings.store.StoryEvent`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import UsageError
from ..store import (
    SET_ASIDE,
    Digest,
    DigestEntryRow,
    Item,
    ItemLink,
    ItemSource,
    ItemUrl,
    Source,
    Store,
    Story,
    StoryEvent,
)
from .dedupe import canonicalize_url

if TYPE_CHECKING:
    from datasketch import LeanMinHash

__all__ = [
    "THRESHOLDS",
    "Grouping",
    "ItemSignals",
    "StoryView",
    "assign_stories",
    "choose_best",
    "group",
    "merge",
    "one_per_story",
    "see_also",
    "split",
    "story_links",
    "story_of",
    "story_sizes",
    "story_url",
    "Thresholds",
    "title_key",
]

# --- thresholds (chosen on the calibration half of evals/stories.jsonl only) ----------------------
# `tidings eval stories --sweep` prints the grid. On calibration, "first link only" removed the one
# false grouping (a post citing an article as an example vs a post recommending it); a roundup limit
# of 3 kept the Mixtral posts that link the release and two asides; titles of 8 and 10 tied, and 10
# is the stricter; the near-duplicate threshold changed nothing on this set (0.3 to 0.7).



@dataclass(frozen=True)
class Thresholds:
    near_duplicate: float = 0.5
    """Estimated Jaccard similarity from which two texts are one story (dedupe merges from 0.8)."""
    roundup_links: int = 3
    """A post or note with more distinct story links than this is a roundup: its links are no signal."""
    title_min_chars: int = 10
    """Shorter titles (after :func:`title_key`) are too generic ("相关文章汇总") to name one story."""
    first_link_only: bool = True
    """A post is about its first story link only (the others are asides), not about all of them."""


THRESHOLDS = Thresholds()

# Edge strengths: which signal wins when a new item could join two stories.
_DUPLICATE, _SAME_URL, _LINK, _TITLE = 4.0, 3.0, 2.0, 1.0
_NEAR_BASE = 2.0  # plus the similarity, so a near-duplicate ranks between a shared URL and a link

# Hosts whose links name a person, a picture or a redirect, never a story.
_NO_STORY_HOSTS = frozenset({
    "t.co", "bit.ly", "pbs.twimg.com", "video.twimg.com", "x.com", "twitter.com", "weibo.com", "weibo.cn",
    "chat.openai.com", "chatgpt.com", "youtu.be",
})
_KIND_PREFERENCE = {"article": 3, "blog": 2, "note": 1, "post": 0}
"""Between items with texts of equal length, an article is the better entry than a post about it."""

_TAG_PREFIX_RE = re.compile(r"^\s*(?:【[^】]{0,20}】|\[[^\]]{0,20}\]|「[^」]{0,20}」)\s*")
_TRANSLATED_RE = re.compile(r"[\[（(【]\s*(?:译|翻译|转载|转)\s*[\]）)】]\s*$")


# --- pure signals ----------------------------------------------------------------------------------


def story_url(url: str | None) -> str | None:
    """The form of a URL under which two items are the same story, or None for anything that is not
    an http(s) link. Beyond :func:`tidings.stages.dedupe.canonicalize_url` (tracking parameters,
    WeChat's ``__biz/mid/idx/sn``, trailing slashes), ``www.`` and the scheme are dropped: dedupe
    keeps them apart because two hosts may serve different things, but for a story the risk is small
    and the text signals still decide the rest."""
    if not url:
        return None
    canonical = canonicalize_url(url)
    if not canonical.lower().startswith(("http://", "https://")):
        return None
    rest = canonical.split("://", 1)[1]
    return rest[4:] if rest.startswith("www.") else rest


def _is_story_link(key: str) -> bool:
    """A link that can name a story: not a site's home page, a profile, a picture or a shortener."""
    host, _, path = key.partition("/")
    host = host.split(":", 1)[0]
    return bool(path.strip("/")) and host not in _NO_STORY_HOSTS


def story_links(
    links: Iterable[str], labelled: Sequence[dict[str, str]] = (), *, roundup: int = THRESHOLDS.roundup_links,
    first_only: bool = THRESHOLDS.first_link_only,
) -> list[str]:
    """The story keys a post or note points at, or [] for a roundup of more than
    ``roundup`` of them. Links the author labelled (原文 / 译文) stand for the post."""
    chosen = [entry.get("url", "") for entry in labelled] or list(links)
    keys: list[str] = []
    for link in chosen:
        key = story_url(link)
        if key and _is_story_link(key) and key not in keys:
            keys.append(key)
    if len(keys) > roundup:
        return []
    return keys[:1] if first_only else keys


def title_key(title: str | None, *, min_chars: int = THRESHOLDS.title_min_chars) -> str | None:
    """A title reduced to its words (NFKC, lower case, no punctuation, no ``【第2804期】``-style tag
    in front or ``[译]`` behind), or None when it is too short to name one story."""
    if not title:
        return None
    text = unicodedata.normalize("NFKC", title).strip().strip("《》")
    text = _TAG_PREFIX_RE.sub("", text)
    text = _TRANSLATED_RE.sub("", text)
    words = re.sub(r"[\W_]+", "", text.lower())
    return words if len(words) >= min_chars else None


@dataclass
class ItemSignals:
    """What the grouper knows of one item (plain values, no ORM)."""

    id: int
    kind: str
    urls: list[str]
    links: list[str] = field(default_factory=list)
    labelled: list[dict[str, str]] = field(default_factory=list)
    title: str | None = None
    title_derived: bool = False
    fingerprint: LeanMinHash | None = None
    duplicate_of: int | None = None
    digests: frozenset[int] = frozenset()
    story_id: int | None = None

    def keys(self, thresholds: Thresholds = THRESHOLDS) -> dict[str, float]:
        """Story keys and their strengths: own URLs, story links (posts and notes), title."""
        found: dict[str, float] = {}
        for url in self.urls:
            key = story_url(url)
            if key:
                found["u:" + key] = _SAME_URL
        if self.kind in ("post", "note"):
            for key in story_links(self.links, self.labelled, roundup=thresholds.roundup_links,
                                   first_only=thresholds.first_link_only):
                found.setdefault("u:" + key, _LINK)
        elif not self.title_derived:
            key = title_key(self.title, min_chars=thresholds.title_min_chars)
            if key:
                found["t:" + key] = _TITLE
        return found


class _Components:
    """Union-find over new items and existing stories, with the two rules a join must keep: at most
    one existing story per component, and no two items of one imported digest."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}
        self.story: dict[Any, int | None] = {}
        self.digests: dict[Any, frozenset[int]] = {}

    def add(self, node: Any, story: int | None, digests: frozenset[int]) -> None:
        if node not in self.parent:
            self.parent[node], self.story[node], self.digests[node] = node, story, digests

    def find(self, node: Any) -> Any:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def join(self, a: Any, b: Any) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self.story[ra] is not None and self.story[rb] is not None:
            return False
        if self.digests[ra] & self.digests[rb]:
            return False
        self.parent[rb] = ra
        self.story[ra] = self.story[ra] if self.story[ra] is not None else self.story[rb]
        self.digests[ra] = self.digests[ra] | self.digests[rb]
        return True


def _near_duplicate_edges(
    new: Sequence[ItemSignals], known: Sequence[ItemSignals], threshold: float
) -> list[tuple[float, int, int]]:
    """(strength, new id, other id) for texts at least ``threshold`` similar (LSH, then verified)."""
    printed_new = [s for s in new if s.fingerprint is not None]
    if not printed_new:
        return []
    from .dedupe import NearDuplicateIndex

    index = NearDuplicateIndex(threshold)
    for signals in (*known, *printed_new):
        if signals.fingerprint is not None:
            index.add(signals.id, signals.fingerprint)
    edges = []
    for signals in printed_new:
        for other, similarity in index.query(signals.fingerprint):
            if other != signals.id:
                edges.append((_NEAR_BASE + similarity, signals.id, other))
    return edges


@dataclass
class Grouping:
    """Where :func:`group` puts the new items."""

    joins: dict[int, int] = field(default_factory=dict)
    """New item id -> the existing story it joins."""
    new_stories: list[list[int]] = field(default_factory=list)
    """New items that start a story together (one list per story, ids ascending)."""
    signal: dict[int, str] = field(default_factory=dict)
    """New item id -> the signal that first put it with another item ("" when alone)."""


def group(
    new: Sequence[ItemSignals], known: Sequence[ItemSignals], *, thresholds: Thresholds = THRESHOLDS
) -> Grouping:
    """Put each new item in an existing story or a new one.

    ``known`` are items that already have a story (``story_id`` set); they are never moved, and two
    existing stories are never joined. Edges are taken strongest first, so a new item that could
    join two stories joins the one its strongest signal names."""
    by_id = {s.id: s for s in (*known, *new)}
    new_ids = {s.id for s in new}
    edges = _key_edges(new, known, new_ids, thresholds)
    for signals in new:
        if signals.duplicate_of is not None and signals.duplicate_of in by_id:
            edges.append((_DUPLICATE, signals.id, signals.duplicate_of, "duplicate"))
    for strength, a, b in _near_duplicate_edges(new, known, thresholds.near_duplicate):
        edges.append((strength, a, b, "near-duplicate text"))
    edges.sort(key=lambda e: (-e[0], min(e[1], e[2]), max(e[1], e[2])))

    def node(item_id: int) -> Any:
        return item_id if item_id in new_ids else ("story", by_id[item_id].story_id)

    components = _Components()
    for signals in new:
        components.add(signals.id, None, signals.digests)
    for signals in known:
        # The items of one existing story are one node, holding the digests of all of them.
        story_node = node(signals.id)
        components.add(story_node, signals.story_id, frozenset())
        components.digests[story_node] = components.digests[story_node] | signals.digests
    grouping = Grouping()
    for _strength, a, b, signal in edges:
        if components.join(node(a), node(b)):
            for item_id in (a, b):
                if item_id in new_ids:
                    grouping.signal.setdefault(item_id, signal)
    fresh: dict[Any, list[int]] = {}
    for signals in sorted(new, key=lambda s: s.id):
        root = components.find(signals.id)
        story_id = components.story[root]
        grouping.signal.setdefault(signals.id, "")
        if story_id is not None:
            grouping.joins[signals.id] = story_id
        else:
            fresh.setdefault(root, []).append(signals.id)
    grouping.new_stories = list(fresh.values())
    return grouping


def _key_edges(
    new: Sequence[ItemSignals], known: Sequence[ItemSignals], new_ids: set[int], thresholds: Thresholds
) -> list[tuple[float, int, int, str]]:
    """Edges between items sharing a story key, at least one of them new; a pair's strength is the
    weaker side's (a post linking an article is a link signal, not a same-URL one).

    Linear in the holders of a key, however many share it: each new holder is linked to one item
    of every story that holds the key and to the new holder before it (a chain connects them all)."""
    story_of = {s.id: s.story_id for s in known}
    holders: dict[str, list[tuple[int, float]]] = {}
    for signals in (*known, *new):
        for key, strength in signals.keys(thresholds).items():
            holders.setdefault(key, []).append((signals.id, strength))
    edges: list[tuple[float, int, int, str]] = []
    for members in holders.values():
        fresh = [(item_id, strength) for item_id, strength in members if item_id in new_ids]
        if len(members) < 2 or not fresh:
            continue
        one_per_story: dict[int | None, tuple[int, float]] = {}
        for item_id, strength in members:
            if item_id not in new_ids:
                one_per_story.setdefault(story_of[item_id], (item_id, strength))
        for index, (a, strength_a) in enumerate(fresh):
            partners = list(one_per_story.values()) + ([fresh[index - 1]] if index else [])
            for b, strength_b in partners:
                strength = min(strength_a, strength_b)
                signal = {_SAME_URL: "same url", _LINK: "shared link"}.get(strength, "same title")
                edges.append((strength, a, b, signal))
    return edges


# --- the store side: loading signals, the stage, the curator's edits -------------------------------


def eligible() -> Any:
    """Items that can be in a story: not set aside (rejected or failed)."""
    return Item.status.not_in([str(status) for status in SET_ASIDE])


def load_signals(session: Session, item_ids: list[int] | None) -> list[ItemSignals]:
    """Signals of the eligible items (all when ``item_ids`` is None), fingerprints decoded."""
    from .dedupe import is_current, minhash_from_bytes

    where = [eligible()]
    if item_ids is not None:
        where.append(Item.id.in_(item_ids))
    rows = session.execute(
        select(Item.id, Item.kind, Item.url, Item.title, Item.extra, Item.fingerprint, Item.duplicate_of_id,
               Item.story_id).where(*where).order_by(Item.id)
    ).all()
    ids = [row[0] for row in rows]
    urls: dict[int, list[str]] = {}
    links: dict[int, list[str]] = {}
    digests: dict[int, set[int]] = {}
    for chunk in _chunks(ids):
        for item_id, url in session.execute(select(ItemUrl.item_id, ItemUrl.url).where(ItemUrl.item_id.in_(chunk))):
            urls.setdefault(item_id, []).append(url)
        for item_id, url in session.execute(
            select(ItemLink.item_id, ItemLink.url).where(ItemLink.item_id.in_(chunk)).order_by(ItemLink.id)
        ):
            links.setdefault(item_id, []).append(url)
        for item_id, digest_id in session.execute(
            select(DigestEntryRow.item_id, DigestEntryRow.digest_id)
            .join(Digest, Digest.id == DigestEntryRow.digest_id)
            .where(DigestEntryRow.item_id.in_(chunk), Digest.status != "draft")
        ):
            digests.setdefault(item_id, set()).add(digest_id)
    found = []
    for item_id, kind, url, title, extra, blob, duplicate_of, story_id in rows:
        extra = extra or {}
        fingerprint = None
        # Only fingerprints of the current scheme compare (dedupe recomputes older ones from the text; a
        # stories run on a store not yet deduped leaves those items without a text signal this time).
        if blob and is_current(blob):
            try:
                fingerprint = minhash_from_bytes(blob)
            except ValueError:
                fingerprint = None  # a fingerprint written by something else: no text signal, no crash
        labelled = extra.get("labelled_links")
        found.append(ItemSignals(
            id=item_id, kind=kind, urls=[url, *urls.get(item_id, [])], links=links.get(item_id, []),
            labelled=labelled if isinstance(labelled, list) else [], title=title,
            title_derived=bool(extra.get("title_derived")), fingerprint=fingerprint, duplicate_of=duplicate_of,
            digests=frozenset(digests.get(item_id, ())), story_id=story_id,
        ))
    return found


def _chunks(ids: list[int], size: int = 900) -> Iterable[list[int]]:
    # SQLite caps the number of bound parameters in one statement.
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


Progress = Callable[[int, int, str], None]


def _silent(_done: int, _total: int, _label: str) -> None:
    pass


@dataclass
class StoriesOutcome:
    """What one run of the stage did."""

    assigned: int = 0
    joined: int = 0
    """Of ``assigned``, how many joined a story that already had items."""
    new_stories: int = 0
    item_ids: list[int] = field(default_factory=list)


def assign_stories(
    store: Store, *, item_ids: Iterable[int] | None = None, progress: Progress = _silent,
    thresholds: Thresholds = THRESHOLDS,
) -> StoriesOutcome:
    """The stage: give every eligible item without a story one (limited to ``item_ids`` when given).

    Items already in a story stay where they are, so a re-run assigns nothing and a curator's split
    or merge stands. Commits per story."""
    outcome = StoriesOutcome()
    wanted = None if item_ids is None else set(item_ids)
    with store.session() as session:
        pending = select(func.count()).select_from(Item).where(eligible(), Item.story_id.is_(None))
        if wanted is not None:
            pending = pending.where(Item.id.in_(list(wanted)))
        if not session.scalar(pending):
            return outcome
        everything = load_signals(session, None)
    new = [s for s in everything if s.story_id is None and (wanted is None or s.id in wanted)]
    known = [s for s in everything if s.story_id is not None]
    grouping = group(new, known, thresholds=thresholds)
    by_story: dict[int, list[int]] = {}
    for item_id, story_id in grouping.joins.items():
        by_story.setdefault(story_id, []).append(item_id)
    total = len(new)
    for story_id, members in sorted(by_story.items()):
        with store.session() as session:
            story = session.get(Story, story_id)
            if story is None:  # deleted by a merge since the signals were read: start a new one
                story = Story()
                session.add(story)
                session.flush()
            _put(session, story, members, grouping.signal)
        outcome.joined += len(members)
        outcome.assigned += len(members)
        outcome.item_ids.extend(members)
        progress(outcome.assigned, total, f"story {story.id}")
    # Most items start a story of their own: those are written in batches (one commit each), so a
    # first run over a large store costs one transaction per batch, not one per item.
    for start in range(0, len(grouping.new_stories), NEW_STORY_BATCH):
        batch = grouping.new_stories[start : start + NEW_STORY_BATCH]
        with store.session() as session:
            spread = _spread(session, item_ids=[members[0] for members in batch if len(members) == 1])
            for members in batch:
                if len(members) > 1:
                    story = Story()
                    session.add(story)
                    session.flush()
                    _put(session, story, members, grouping.signal)
                else:
                    _put_alone(session, members[0], spread)
        for members in batch:
            outcome.new_stories += 1
            outcome.assigned += len(members)
            outcome.item_ids.extend(members)
        progress(outcome.assigned, total, f"{outcome.new_stories} new stories")
    return outcome


NEW_STORY_BATCH = 500


def _put_alone(session: Session, item_id: int, spread: dict[Any, int]) -> None:
    """A story of one item, its sources counted beforehand for the whole batch (``spread``)."""
    item = session.get(Item, item_id)
    if item is None or item.story_id is not None:
        return
    story = Story(size=1, sources_count=spread.get(("item", item_id), 1), chosen_by="auto",
                  best_item_id=item.id if item.duplicate_of_id is None else None)
    session.add(story)
    session.flush()
    item.story_id = story.id


def _put(session: Session, story: Story, item_ids: list[int], signal: dict[int, str]) -> None:
    """Put items that have no story yet into ``story``; a join of an item another process has
    placed meanwhile is skipped. Joins of a story that had items are recorded as events."""
    had_items = bool(story.size) and session.scalar(select(func.count()).where(Item.story_id == story.id))
    for item_id in item_ids:
        item = session.get(Item, item_id)
        if item is None or item.story_id is not None:
            continue
        item.story_id = story.id
        if had_items or len(item_ids) > 1:
            session.add(StoryEvent(story_id=story.id, item_id=item_id, action="join", by="auto",
                                   detail={"signal": signal.get(item_id, "")}))
    session.flush()
    refresh_story(session, story)


def _origin(item_id: int, kind: str, account: str | None, url: str, feeds: list[int]) -> set[str]:
    """Where an item was seen, for "seen in N sources": each feed it came from, else the account
    that posted it, else its site."""
    if feeds:
        return {f"feed:{feed}" for feed in feeds}
    if kind == "post":
        return {"account:" + (account or "?").lower()}
    key = story_url(url)
    return {"site:" + key.split("/", 1)[0]} if key else {f"{kind}:{item_id}"}


def _spread(session: Session, *, story_ids: Iterable[int] = (), item_ids: Iterable[int] = ()) -> dict[Any, int]:
    """"Seen in N sources", read now (so a feed that later lists an item counts at once): per story
    id for ``story_ids``, and per item id (``("item", id)`` keys) for ``item_ids`` with no story."""
    rows: list[Any] = []
    for chunk in _chunks(list(story_ids)):
        rows += session.execute(
            select(Item.id, Item.story_id, Item.kind, func.coalesce(Item.author_handle, Item.author), Item.url)
            .where(Item.story_id.in_(chunk), eligible())
        ).all()
    for chunk in _chunks(list(item_ids)):
        rows += session.execute(
            select(Item.id, Item.story_id, Item.kind, func.coalesce(Item.author_handle, Item.author), Item.url)
            .where(Item.id.in_(chunk), Item.story_id.is_(None))
        ).all()
    feeds: dict[int, list[int]] = {}
    for chunk in _chunks([row[0] for row in rows]):
        for item_id, source_id in session.execute(
            select(ItemSource.item_id, ItemSource.source_id).join(Source, Source.id == ItemSource.source_id)
            .where(ItemSource.item_id.in_(chunk), Source.kind == "feed")
        ):
            feeds.setdefault(item_id, []).append(source_id)
    members: dict[Any, list[Any]] = {}
    for row in rows:
        members.setdefault(row[1] if row[1] is not None else ("item", row[0]), []).append(row)
    spread: dict[Any, int] = {}
    for key, group in members.items():
        if len(group) == 1:
            # One item is seen in its feeds, else in one place (its account or site): counted without
            # canonicalizing its URL, which was most of the time for a list of 1,000 lone items.
            spread[key] = max(1, len(set(feeds.get(group[0][0], []))))
            continue
        origins: set[str] = set()
        for item_id, _, kind, account, url in group:
            origins.update(_origin(item_id, kind, account, url, feeds.get(item_id, [])))
        spread[key] = max(1, len(origins))
    return spread


def _best(members: list[Item]) -> Item | None:
    """Longest text, then the kind of item (an article before a post about it), then the oldest."""
    shown = [item for item in members if item.status not in SET_ASIDE and item.duplicate_of_id is None]
    if not shown:
        return None
    return max(shown, key=lambda item: (len(item.text or ""), _KIND_PREFERENCE.get(item.kind, 0), -item.id))


def refresh_story(session: Session, story: Story) -> None:
    """Size, "seen in N sources" and the best item, from the story's items. A curator's choice of
    best item stands while it is still in the story and not set aside."""
    members = list(session.scalars(select(Item).where(Item.story_id == story.id).order_by(Item.id)))
    story.size = len(members)
    story.sources_count = _spread(session, story_ids=[story.id]).get(story.id, 0) if members else 0
    chosen = next((item for item in members if item.id == story.best_item_id), None)
    if story.chosen_by == "curator" and chosen is not None and chosen.status not in SET_ASIDE:
        return
    best = _best(members)
    story.best_item_id = best.id if best is not None else None
    story.chosen_by = "auto"



@dataclass
class StoryView:
    """A story as the web and the CLI show it."""

    id: int
    best_item_id: int | None
    chosen_by: str
    pinned: bool
    sources_count: int
    item_ids: list[int]

    @property
    def size(self) -> int:
        return len(self.item_ids)


def _view(session: Session, story: Story) -> StoryView:
    ids = list(session.scalars(select(Item.id).where(Item.story_id == story.id).order_by(Item.id)))
    spread = _spread(session, story_ids=[story.id]).get(story.id, 1)
    return StoryView(story.id, story.best_item_id, story.chosen_by, story.pinned, spread, ids)


def story_of(store: Store, item_id: int) -> StoryView | None:
    """The story an item is in, or None when the stories stage has not placed it yet."""
    with store.session() as session:
        item = session.get(Item, item_id)
        if item is None:
            raise UsageError(f"no item {item_id}")
        story = session.get(Story, item.story_id) if item.story_id is not None else None
        return _view(session, story) if story is not None else None


def story_sizes(store: Store, item_ids: Iterable[int]) -> dict[int, int]:
    """"Seen in N sources" for each item id (the triage score's spread): the distinct feeds, accounts
    and sites of its story (of the item alone when it has no story yet), counted now. Unknown ids
    are left out; the order is the order asked."""
    ids = list(dict.fromkeys(item_ids))
    with store.session() as session:
        story_of_item: dict[int, int | None] = {}
        for chunk in _chunks(ids):
            story_of_item.update(session.execute(select(Item.id, Item.story_id).where(Item.id.in_(chunk))).all())
        placed = {story for story in story_of_item.values() if story is not None}
        alone = [item_id for item_id, story in story_of_item.items() if story is None]
        spread = _spread(session, story_ids=placed, item_ids=alone)
    found = {}
    for item_id in ids:
        if item_id in story_of_item:
            story = story_of_item[item_id]
            found[item_id] = spread.get(story if story is not None else ("item", item_id), 1)
    return found


def _member(session: Session, item_id: int) -> tuple[Item, Story]:
    item = session.get(Item, item_id)
    if item is None:
        raise UsageError(f"no item {item_id}")
    story = session.get(Story, item.story_id) if item.story_id is not None else None
    if story is None:
        raise UsageError(f"item {item_id} is in no story yet (run the stories stage first)")
    return item, story


def split(store: Store, item_id: int, *, by: str = "curator") -> int:
    """Take an item out of its story into a story of its own; returns the new story's id. Both
    stories are pinned: later runs add new items to them but never put this item back."""
    with store.session() as session:
        item, old = _member(session, item_id)
        if (session.scalar(select(func.count()).where(Item.story_id == old.id)) or 0) <= 1:
            raise UsageError(f"item {item_id} is alone in story {old.id}: there is nothing to split")
        new = Story(pinned=True)
        session.add(new)
        session.flush()
        item.story_id = new.id
        old.pinned = True
        session.add(StoryEvent(story_id=new.id, other_story_id=old.id, item_id=item_id, action="split", by=by,
                               detail={"from_story": old.id}))
        session.flush()
        refresh_story(session, old)
        refresh_story(session, new)
        return new.id


def merge(store: Store, a: int, b: int, *, by: str = "curator") -> int:
    """Merge story ``b`` into story ``a`` (story ids, see :func:`story_of`); returns ``a``. ``b`` is
    deleted; its items and its curator-chosen best item, if ``a`` has none, move over."""
    if a == b:
        raise UsageError(f"story {a} cannot be merged with itself")
    with store.session() as session:
        keep, gone = session.get(Story, a), session.get(Story, b)
        if keep is None or gone is None:
            raise UsageError(f"no story {a if keep is None else b}")
        moved = list(session.scalars(select(Item.id).where(Item.story_id == gone.id)))
        for item in session.scalars(select(Item).where(Item.story_id == gone.id)):
            item.story_id = keep.id
        if gone.chosen_by == "curator" and keep.chosen_by != "curator":
            keep.best_item_id, keep.chosen_by = gone.best_item_id, "curator"
        keep.pinned = True
        session.add(StoryEvent(story_id=keep.id, other_story_id=gone.id, action="merge", by=by,
                               detail={"items": moved}))
        for event in session.scalars(select(StoryEvent).where(StoryEvent.story_id == gone.id)):
            event.detail = {**(event.detail or {}), "story_merged_into": keep.id}
        session.flush()
        session.delete(gone)
        session.flush()
        refresh_story(session, keep)
        return keep.id


def choose_best(store: Store, story_id: int, item_id: int, *, by: str = "curator") -> None:
    """Make ``item_id`` the entry a digest shows for the story; later runs keep the choice."""
    with store.session() as session:
        story = session.get(Story, story_id)
        if story is None:
            raise UsageError(f"no story {story_id}")
        item = session.get(Item, item_id)
        if item is None or item.story_id != story_id:
            raise UsageError(f"item {item_id} is not in story {story_id}")
        if item.status in SET_ASIDE:
            raise UsageError(f"item {item_id} was set aside ({item.status}); it cannot stand for the story")
        previous = story.best_item_id
        story.best_item_id, story.chosen_by = item_id, "curator"
        session.add(StoryEvent(story_id=story_id, item_id=item_id, action="choose", by=by,
                               detail={"previous": previous}))


def story_events(store: Store, story_id: int) -> list[dict[str, Any]]:
    """Every recorded change of a story, oldest first, as plain values."""
    with store.session() as session:
        rows = session.scalars(
            select(StoryEvent).where(
                (StoryEvent.story_id == story_id) | (StoryEvent.other_story_id == story_id)
            ).order_by(StoryEvent.id)
        )
        return [
            {"id": e.id, "action": e.action, "by": e.by, "at": e.at.isoformat(), "story_id": e.story_id,
             "other_story_id": e.other_story_id, "item_id": e.item_id, "detail": e.detail}
            for e in rows
        ]


# --- digests: one entry per story, and the other sources ------------------------------------------


class InStory(Protocol):
    """An item as one per story needs it: an item object, or a row of just these two columns (the
    draft's column-only freshness check)."""

    @property
    def id(self) -> int: ...

    @property
    def story_id(self) -> int | None: ...


Candidate = TypeVar("Candidate", bound=InStory)


def one_per_story(session: Session, candidates: list[Candidate], listed: Sequence[InStory] = ()) -> list[Candidate]:
    """``candidates`` with one item per story: none when a ``listed`` item (already in the draft)
    tells the story, else the story's best item if it is a candidate, else the first candidate."""
    told = {item.story_id for item in listed if item.story_id is not None}
    listed_ids = {item.id for item in listed}
    story_ids = {item.story_id for item in candidates if item.story_id is not None}
    best: dict[int, int | None] = {}
    if story_ids:
        best = dict(session.execute(select(Story.id, Story.best_item_id).where(Story.id.in_(list(story_ids)))).all())
    by_story: dict[int, list[Candidate]] = {}
    for item in candidates:
        if item.story_id is not None:
            by_story.setdefault(item.story_id, []).append(item)
    kept: list[Candidate] = []
    for item in candidates:
        if item.story_id is None or item.id in listed_ids:
            kept.append(item)
            continue
        if item.story_id in told:
            continue
        members = by_story[item.story_id]
        chosen = next((m for m in members if m.id == best.get(item.story_id)), members[0])
        if item is chosen:
            kept.append(item)
    return kept


def see_also(session: Session, item_ids: Iterable[int]) -> dict[int, list[tuple[str, str]]]:
    """For each item, the other items of its story as (label, URL): the account for a post, else the
    site. Items with no http(s) URL to point to, duplicates and set-aside items are left out."""
    items = list(session.scalars(select(Item).where(Item.id.in_(list(item_ids)), Item.story_id.is_not(None))))
    if not items:
        return {}
    story_ids = {item.story_id for item in items}
    members: dict[int, list[Item]] = {}
    for member in session.scalars(
        select(Item).where(Item.story_id.in_(list(story_ids)), eligible(), Item.duplicate_of_id.is_(None))
        .order_by(Item.id)
    ):
        members.setdefault(member.story_id or 0, []).append(member)
    found: dict[int, list[tuple[str, str]]] = {}
    for item in items:
        lines: list[tuple[str, str]] = []
        for other in members.get(item.story_id or 0, []):
            link = _link_of(other)
            if other.id == item.id or link is None or any(url == link for _, url in lines):
                continue
            label = f"@{other.author_handle}" if other.kind == "post" and other.author_handle else None
            lines.append((label or (story_url(link) or link).split("/", 1)[0], link))
        if lines:
            found[item.id] = lines
    return found


def _link_of(item: Item) -> str | None:
    for url in (*(row.url for row in item.urls), item.url):
        if story_url(url):
            return url
    author_url = (item.extra or {}).get("author_url")
    return author_url if isinstance(author_url, str) and story_url(author_url) else None
