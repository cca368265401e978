"""The triage score: how likely this curator is to keep a candidate, 0 to 10, with its reasons.

Learned from the curator's own verdicts: every keep, drop and move in the week view
(``curator_actions``, the latest per item wins; a move counts as kept) and every entry of an
imported or published digest (kept). The model is deliberately simple so that it can explain
itself: for each feature (source, domain, account, section, title words, age) the keep rate of its
value is smoothed towards the overall keep rate, and the score adds up how far each rate moves the
log-odds. "From a domain you keep 0 % of (0 of 12)" is then literally the term that put an item at
the bottom. Cold start (no verdicts yet): spread (seen in N sources) and the section classifier's
confidence. A candidate's own verdict is left out of its own score (leave-one-out), so a kept item
is not ranked up by the fact of being kept."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from threading import Lock
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .htmltext import tokens
from .store import CuratorAction, Digest, DigestEntryRow, Item, ItemSource, Source, Store

SMOOTHING = 4.0
"""Pseudo-verdicts at the overall keep rate added to every feature value: one drop of a new
domain moves its rate a little, ten move it a lot."""

WEIGHTS = {"source": 1.0, "domain": 1.0, "account": 1.0, "section": 0.6, "words": 0.8, "age": 0.4}
"""How much each feature's log-odds shift counts. Source, domain and account overlap (a feed is
mostly one domain), so none is trusted alone past its own evidence; words are averaged first."""

MIN_WORD_SUPPORT = 2
"""A title word counts only once the curator has judged it at least this often."""

SPREAD_WEIGHT = 0.8
CONFIDENCE_WEIGHT = 1.2
KEPT_ACTIONS = ("keep", "move")
NOT_A_SOURCE = ("digest",)
"""Source kinds that are the curator's own output, not where news came from: every imported item
has one, so as a feature it would only say "you keep what you kept"."""

_CHUNK = 900  # ids per IN (...), well under SQLite's variable limit
_SCORES_KEPT = 50_000  # a model's remembered scores: a few weeks of 1,000-candidate lists


@dataclass(frozen=True)
class Facts:
    """What the score looks at for one item."""

    item_id: int
    sources: tuple[str, ...]
    domain: str
    account: str
    section: str
    words: tuple[str, ...]
    age: str
    confidence: float | None
    """The section classifier's own confidence (None when a human or an LLM filed it)."""

    def values(self) -> Iterator[tuple[str, str]]:
        for source in self.sources:
            yield "source", source
        for kind, value in (("domain", self.domain), ("account", self.account), ("section", self.section),
                            ("age", self.age)):
            if value:
                yield kind, value
        for word in self.words:
            yield "words", word


@dataclass(frozen=True)
class Reason:
    text: str
    weight: float
    """The reason's shift of the log-odds: above 0 raises the score."""


@dataclass(frozen=True)
class Score:
    value: float
    """0 to 10; 5 is a candidate as likely to be kept as the curator's average one."""
    reasons: list[Reason]
    spread: int

    @property
    def top_reasons(self) -> list[Reason]:
        return sorted(self.reasons, key=lambda r: -abs(r.weight))[:3]


@dataclass
class TriageModel:
    """Keep and total counts per (feature, value), and the overall keep rate."""

    labels: dict[int, bool] = field(default_factory=dict)
    facts: dict[int, Facts] = field(default_factory=dict)
    kept: Counter[tuple[str, str]] = field(default_factory=Counter)
    total: Counter[tuple[str, str]] = field(default_factory=Counter)
    _shifts: dict[tuple[str, str], tuple[float, float, float]] = field(default_factory=dict, repr=False)
    _scores: dict[tuple[Facts, int], Score] = field(default_factory=dict, repr=False)
    """Scores given, by what they were worked out from: a model is not changed once trained (a new
    verdict trains a new one), so a list view seen again scores nothing again."""
    _kept_count: int = 0

    @property
    def has_drops(self) -> bool:
        """False while the only verdicts are digests' entries (all kept): rates then say nothing."""
        return self._kept_count < len(self.labels)

    @property
    def base_rate(self) -> float:
        if not self.labels:
            return 0.5
        share = self._kept_count / len(self.labels)
        return min(max(share, 0.05), 0.95)  # history of imported digests alone is all "kept"

    def add(self, facts: Facts, kept: bool) -> None:
        if facts.item_id in self.labels:
            raise ValueError(f"item {facts.item_id} already has a verdict")
        self._shifts.clear()
        self._scores.clear()
        self._kept_count += kept
        self.labels[facts.item_id] = kept
        self.facts[facts.item_id] = facts
        for key in set(facts.values()):
            self.total[key] += 1
            self.kept[key] += kept

    def remove(self, item_id: int) -> None:
        """Take an item's verdict out again (it was judged anew)."""
        kept, facts = self.labels.pop(item_id), self.facts.pop(item_id)
        self._shifts.clear()
        self._scores.clear()
        self._kept_count -= kept
        for key in set(facts.values()):
            self.total[key] -= 1
            self.kept[key] -= kept
            if not self.total[key]:  # as if never counted, like a model trained without it
                del self.total[key], self.kept[key]

    def copy(self) -> TriageModel:
        """The same counts in a model of its own: one being served is never changed under a reader."""
        return TriageModel(labels=dict(self.labels), facts=dict(self.facts), kept=Counter(self.kept),
                           total=Counter(self.total), _kept_count=self._kept_count)

    def counts(self, key: tuple[str, str], own: bool | None) -> tuple[float, float]:
        """(kept, total) for a feature value, without the scored item's own verdict ``own``."""
        kept, total = float(self.kept[key]), float(self.total[key])
        if own is not None:
            kept, total = kept - own, total - 1
        return kept, total

    def shift(self, key: tuple[str, str], own: bool | None) -> tuple[float, float, float]:
        """(log-odds shift, kept, total) of one feature value against the overall keep rate."""
        if own is None:
            found = self._shifts.get(key)
            if found is None:
                found = self._shifts[key] = self._shift(key, None)
            return found
        return self._shift(key, own)

    def _shift(self, key: tuple[str, str], own: bool | None) -> tuple[float, float, float]:
        kept, total = self.counts(key, own)
        base = self.base_rate
        rate = (kept + SMOOTHING * base) / (total + SMOOTHING)
        return _logit(rate) - _logit(base), kept, total

    def score(self, facts: Facts, spread: int) -> Score:
        found = self._scores.get((facts, spread))
        if found is None:
            if len(self._scores) >= _SCORES_KEPT:
                self._scores.clear()
            found = self._scores[(facts, spread)] = self._score(facts, spread)
        return found

    def _score(self, facts: Facts, spread: int) -> Score:
        own = self.labels.get(facts.item_id)
        reasons: list[Reason] = []
        for key in set(facts.values()):
            kind = key[0]
            if kind == "words":  # averaged below, not one reason each
                continue
            weight, kept, total = self.shift(key, own)
            if total >= 1 and abs(weight) > 0.01:
                text = _feature_text(kind, key[1], kept, total, self.has_drops)
                reasons.append(Reason(text, WEIGHTS[kind] * weight))
        reasons.extend(self._words_reason(facts, own))
        reasons.extend(_cold_reasons(facts, spread))
        log_odds = sum(r.weight for r in reasons)
        value = round(10 / (1 + math.exp(-log_odds)), 1)
        return Score(value, reasons, spread)

    def _words_reason(self, facts: Facts, own: bool | None) -> list[Reason]:
        judged = []
        for word in set(facts.words):
            weight, kept, total = self.shift(("words", word), own)
            if total >= MIN_WORD_SUPPORT:
                judged.append((weight, word, kept, total))
        if not judged:
            return []
        mean = sum(w for w, *_ in judged) / len(judged)
        if abs(mean) <= 0.01:
            return []
        kept = sum(k for _, _, k, _ in judged)
        total = sum(t for *_, t in judged)
        strongest = sorted(judged, key=lambda j: -abs(j[0]))[:3]
        shown = ", ".join(w for _, w, _, _ in strongest)
        text = (f"title words ({shown}) you keep {_percent(kept, total)} of" if self.has_drops
                else f"title words ({shown}) of items you kept")
        return [Reason(text, WEIGHTS["words"] * mean)]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _percent(kept: float, total: float) -> str:
    return f"{round(100 * kept / total)} %" if total else "—"


def _feature_text(kind: str, value: str, kept: float, total: float, has_drops: bool) -> str:
    if not has_drops:  # nothing was ever dropped: a count of keeps, not a rate
        return {
            "source": f"from a source you kept {int(kept)} items of: {value}",
            "domain": f"from a domain you kept {int(kept)} items of: {value}",
            "account": f"by an author you kept {int(kept)} items of: {value}",
            "section": f"in a section you kept {int(kept)} items in: {value}",
            "age": f"{value} old, like {int(kept)} items you kept",
        }[kind]
    counted = f"{_percent(kept, total)} of ({int(kept)} of {int(total)})"
    return {
        "source": f"from a source you keep {counted}: {value}",
        "domain": f"from a domain you keep {counted}: {value}",
        "account": f"by an author you keep {counted}: {value}",
        "section": f"in a section you keep {counted}: {value}",
        "age": f"{value} old when judged: you keep {counted}",
    }[kind]


def _cold_reasons(facts: Facts, spread: int) -> list[Reason]:
    """What counts before any verdict and keeps counting after: spread and the classifier's certainty."""
    reasons = []
    if spread > 1:
        reasons.append(Reason(f"seen in {spread} sources", SPREAD_WEIGHT * math.log(spread)))
    # 0.0 is "no rule matched", not a low confidence: no reason either way.
    if facts.confidence:
        weight = CONFIDENCE_WEIGHT * (facts.confidence - 0.5)
        how = "sure" if facts.confidence >= 0.5 else "unsure"
        reasons.append(Reason(f"the classifier is {how} of its section ({facts.confidence:.2f})", weight))
    return reasons


# --- facts from the store ------------------------------------------------------------------------


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


@lru_cache(maxsize=65_536)
def domain_of(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


@lru_cache(maxsize=65_536)
def title_words(title: str) -> tuple[str, ...]:
    """A title's search tokens of two characters or more, each once: the same titles are read on
    every view of a week, and tokenizing 1,000 of them was a tenth of the list's time."""
    return tuple(dict.fromkeys(t for t in tokens(title) if len(t) > 1))


def age_bucket(published: datetime | None, week: date | None) -> str:
    if published is None or week is None:
        return ""
    days = (week - published.date()).days
    if days <= 3:
        return "≤ 3 days"
    if days <= 8:
        return "4–8 days"
    if days <= 31:
        return "9–31 days"
    return "over a month"


def item_facts(session: Session, weeks: dict[int, date | None]) -> dict[int, Facts]:
    """Facts of the items in ``weeks`` (item id → the week it was judged or is a candidate in)."""
    ids = sorted(weeks)
    sources: dict[int, list[str]] = defaultdict(list)
    rows: list[tuple[int, str, str | None, str | None, str | None, str | None, float | None, str | None,
                     datetime | None]] = []
    for chunk in _chunks(ids):
        for item_id, kind, title, locator in session.execute(
            select(ItemSource.item_id, Source.kind, Source.title, Source.locator)
            .join(Source, Source.id == ItemSource.source_id)
            .where(ItemSource.item_id.in_(chunk))
        ):
            if kind not in NOT_A_SOURCE:
                sources[item_id].append(title or locator)
        rows.extend(session.execute(  # type: ignore[arg-type]
            select(Item.id, Item.url, Item.title, Item.author, Item.author_handle, Item.section,
                   Item.section_confidence, Item.section_origin, Item.published_at)
            .where(Item.id.in_(chunk))
        ))
    facts = {}
    for item_id, url, title, author, handle, section, confidence, origin, published in rows:
        machine = origin in ("model", "rules")
        facts[item_id] = Facts(
            item_id=item_id, sources=tuple(sorted(set(sources[item_id]))), domain=domain_of(url),
            account=(handle or author or "").strip().lower(), section=section or "",
            words=title_words(title or ""),
            age=age_bucket(published, weeks[item_id]), confidence=confidence if machine else None,
        )
    return facts


def verdicts(session: Session) -> dict[int, tuple[bool, date | None]]:
    """Every judged item: kept or not, and the week it was judged in. Entries of imported and
    published digests are kept; an item's latest week-view action overrides that."""
    found: dict[int, tuple[bool, date | None]] = {}
    for item_id, week in session.execute(
        select(DigestEntryRow.item_id, Digest.week)
        .join(Digest, Digest.id == DigestEntryRow.digest_id)
        .where(Digest.status != "draft", DigestEntryRow.item_id.is_not(None), DigestEntryRow.kept.is_(True))
    ):
        found[item_id] = (True, week)
    for item_id, action, week in session.execute(
        select(CuratorAction.item_id, CuratorAction.action, CuratorAction.week).order_by(CuratorAction.id)
    ):
        found[item_id] = (action in KEPT_ACTIONS, week)
    return found


def _signature(session: Session) -> tuple[object, ...]:
    """Changes whenever a verdict could have: a new action, or a digest imported or published."""
    actions = session.execute(select(func.count(CuratorAction.id), func.max(CuratorAction.id))).one()
    digests = session.execute(
        select(func.count(Digest.id), func.max(Digest.updated_at)).where(Digest.status != "draft")
    ).one()
    return (*actions, *digests)


_models: dict[tuple[int, str], tuple[tuple[object, ...], TriageModel]] = {}
_models_lock = Lock()


def train(session: Session) -> TriageModel:
    model = TriageModel()
    judged = verdicts(session)
    facts = item_facts(session, {item_id: week for item_id, (_, week) in judged.items()})
    for item_id, (kept, _) in judged.items():
        if item_id in facts:
            model.add(facts[item_id], kept)
    return model


def current_model(store: Store, session: Session) -> TriageModel:
    """The model for the store's verdicts as they are now: the cached one while they are unchanged,
    the cached one plus the actions recorded since when that is all that changed, else trained again."""
    key = (id(store.engine), str(store.engine.url))
    signature = _signature(session)
    with _models_lock:
        cached = _models.get(key)
    if cached is not None and cached[0] == signature:
        return cached[1]
    model = _with_new_actions(session, *cached, signature) if cached is not None else None
    if model is None:
        model = train(session)
    with _models_lock:
        _models[key] = (signature, model)
    return model


def _with_new_actions(session: Session, trained_at: tuple[object, ...], model: TriageModel,
                      signature: tuple[object, ...]) -> TriageModel | None:
    """``model`` (trained at signature ``trained_at``) with the keeps, drops and moves recorded
    since, or None when anything else changed (a digest imported or published, an action deleted):
    a view after a verdict then reads the facts of the few items judged anew, not of every item
    ever judged. The result is the model ``train`` would give (tests/test_triage.py checks it)."""
    old_count, old_last, *old_digests = trained_at
    count, _, *digests = signature
    if digests != old_digests or not isinstance(old_count, int) or not isinstance(count, int):
        return None
    since = old_last if isinstance(old_last, int) else 0
    new = session.execute(
        select(CuratorAction.item_id, CuratorAction.action, CuratorAction.week)
        .where(CuratorAction.id > since).order_by(CuratorAction.id)
    ).all()
    if old_count + len(new) != count:
        return None
    latest = {item_id: (action in KEPT_ACTIONS, week) for item_id, action, week in new}  # the last one wins
    facts = item_facts(session, {item_id: week for item_id, (_, week) in latest.items()})
    updated = model.copy()
    for item_id, (kept, _) in latest.items():
        if item_id in updated.labels:
            updated.remove(item_id)
        if item_id in facts:
            updated.add(facts[item_id], kept)
    return updated


def spreads(store: Store, item_ids: list[int]) -> dict[int, int]:
    """Seen in how many sources, from the stories stage when it is there; 1 until then."""
    try:
        from .stages.stories import story_sizes  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return dict.fromkeys(item_ids, 1)
    sizes: dict[int, int] = story_sizes(store, item_ids)
    return {item_id: max(1, sizes.get(item_id, 1)) for item_id in item_ids}


def score_items(store: Store, item_ids: Iterable[int], week: date) -> dict[int, Score]:
    """The triage score of each item as a candidate of ``week``."""
    ids = sorted(set(item_ids))
    if not ids:
        return {}
    with store.session() as session:
        model = current_model(store, session)
        facts = item_facts(session, dict.fromkeys(ids, week))
    spread = spreads(store, ids)
    return {item_id: model.score(facts[item_id], spread.get(item_id, 1)) for item_id in ids if item_id in facts}


def last_published_end(store: Store, week: date) -> date | None:
    """The week of the newest imported or published digest before ``week``: items seen after its
    window are "new since the last published digest"."""
    with store.session() as session:
        found: date | None = session.scalar(
            select(func.max(Digest.week)).where(Digest.status != "draft", Digest.week < week)
        )
    return found


def new_item_ids(store: Store, item_ids: list[int], since: datetime) -> set[int]:
    """Those of ``item_ids`` first seen at or after ``since``."""
    found: set[int] = set()
    with store.session() as session:
        for chunk in _chunks(sorted(set(item_ids))):
            found.update(session.scalars(select(Item.id).where(Item.id.in_(chunk), Item.seen_at >= since)))
    return found


@dataclass(frozen=True)
class Line:
    """One candidate of a week as the list mode shows it: only the columns it needs, read in one
    query (no item text, raw page or relationship loads for 1,000 candidates)."""

    entry_id: int
    item_id: int | None
    title: str
    url: str | None
    section: str | None
    kept: bool
    version: int = 1
    """The entry's edit counter, sent back by the line's forms (a stale one is refused)."""


def week_lines(store: Store, week: date) -> list[Line]:
    """The entries of the week's digest in digest order, titles as shown (the curator's override,
    else the entry's own text, else the item's)."""
    with store.session() as session:
        rows = session.execute(
            select(DigestEntryRow.id, DigestEntryRow.item_id, DigestEntryRow.title_override, DigestEntryRow.title_raw,
                   DigestEntryRow.url_raw, Item.title, Item.url, DigestEntryRow.section, DigestEntryRow.kept,
                   DigestEntryRow.version)
            .join(Digest, Digest.id == DigestEntryRow.digest_id)
            .outerjoin(Item, Item.id == DigestEntryRow.item_id)
            .where(Digest.week == week)
            .order_by(DigestEntryRow.position)
        ).all()
    return [Line(entry_id, item_id, override or raw_title or item_title or url_raw or item_url or "(untitled)",
                 url_raw or item_url, section, bool(kept), version or 1)
            for entry_id, item_id, override, raw_title, url_raw, item_title, item_url, section, kept, version in rows]
