"""Precision and recall of the story grouper on labelled item pairs (``evals/stories.jsonl``).

One JSON object per line::

    {"id": "s001", "split": "calibration", "kind": "post-link", "same": true,
     "a": {"url": "post:607df83b079a5b7d"}, "b": {"url_endswith": "html/zhihu_….html"}, "note": "…"}

An item is named by its URL (canonical or as first seen; ``post:``/``note:`` ids too) or by the end
of its URL (pages imported from files, whose path depends on where the corpus lives). The pairs were
labelled by reading the corpus before any grouper existed; thresholds are chosen on the
``calibration`` half only, and the ``heldout`` half is what is reported.

The grouping is recomputed from the store's items (all of them, as if none had a story yet), so the
figures measure the grouper and not the curator's hand edits.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..errors import UsageError
from ..store import Item, ItemUrl, Store
from .dedupe import canonicalize_url
from .stories import THRESHOLDS, ItemSignals, Thresholds, group, load_signals

SPLITS = ("calibration", "heldout")


@dataclass
class LabelledPair:
    id: str
    split: str
    kind: str
    same: bool
    a: dict[str, str]
    b: dict[str, str]
    note: str = ""


def load_pairs(path: Path) -> list[LabelledPair]:
    if not path.is_file():
        raise UsageError(f"no such pair file: {path}")
    pairs: list[LabelledPair] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pair = LabelledPair(
                id=str(row["id"]), split=str(row["split"]), kind=str(row.get("kind", "")), same=bool(row["same"]),
                a=dict(row["a"]), b=dict(row["b"]), note=str(row.get("note", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}:{number}: not a labelled pair ({exc})") from None
        if pair.split not in SPLITS:
            raise UsageError(f"{path}:{number}: split must be calibration or heldout, not {pair.split!r}")
        pairs.append(pair)
    return pairs


def _resolve(store: Store, ref: dict[str, str]) -> int | None:
    """The item a reference names, or None when the store has no such item or more than one."""
    with store.session() as session:
        if "url" in ref:
            wanted = {ref["url"], canonicalize_url(ref["url"])}
            own, seen = Item.url.in_(wanted), ItemUrl.url.in_(wanted)
        elif "url_endswith" in ref:
            own = Item.url.endswith(ref["url_endswith"], autoescape=True)
            seen = ItemUrl.url.endswith(ref["url_endswith"], autoescape=True)
        else:
            raise UsageError(f"an item reference needs url or url_endswith, got {sorted(ref)}")
        # An item's own URL first: a near-duplicate folded into another keeps its own row (and its
        # story is the keeper's) while its original URL moved to the keeper.
        found = set(session.scalars(select(Item.id).where(own)))
        if not found:
            found = set(session.scalars(select(ItemUrl.item_id).where(seen)))
        return found.pop() if len(found) == 1 else None


@dataclass
class Figures:
    pairs: int = 0
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0
    precision: float | None = None
    recall: float | None = None
    wrong: list[str] = field(default_factory=list)

    def add(self, pair: LabelledPair, predicted: bool) -> None:
        self.pairs += 1
        if predicted and pair.same:
            self.true_positive += 1
        elif predicted:
            self.false_positive += 1
            self.wrong.append(f"{pair.id} (grouped, labelled apart: {pair.note})")
        elif pair.same:
            self.false_negative += 1
            self.wrong.append(f"{pair.id} (apart, labelled same: {pair.note})")
        else:
            self.true_negative += 1

    def finish(self) -> Figures:
        grouped = self.true_positive + self.false_positive
        same = self.true_positive + self.false_negative
        self.precision = round(self.true_positive / grouped, 3) if grouped else None
        self.recall = round(self.true_positive / same, 3) if same else None
        return self


def _story_of_each(signals: list[ItemSignals], thresholds: Thresholds) -> dict[int, Any]:
    fresh = [ItemSignals(**{**s.__dict__, "story_id": None}) for s in signals]
    grouping = group(fresh, [], thresholds=thresholds)
    story: dict[int, Any] = {}
    for number, members in enumerate(grouping.new_stories):
        for item_id in members:
            story[item_id] = number
    return story


def evaluate_stories(
    store: Store, pairs: list[LabelledPair], *, thresholds: Thresholds = THRESHOLDS
) -> dict[str, Any]:
    """Figures per split for the grouper with ``thresholds``; pairs the store cannot resolve are
    listed, not counted."""
    resolved: dict[str, tuple[int, int]] = {}
    unresolved: list[str] = []
    for pair in pairs:
        a, b = _resolve(store, pair.a), _resolve(store, pair.b)
        if a is None or b is None:
            unresolved.append(pair.id)
        else:
            resolved[pair.id] = (a, b)
    with store.session() as session:
        signals = load_signals(session, None)
    story = _story_of_each(signals, thresholds)
    figures = {split: Figures() for split in SPLITS}
    for pair in pairs:
        if pair.id not in resolved:
            continue
        a, b = resolved[pair.id]
        predicted = a == b or (a in story and story.get(a) == story.get(b))
        figures[pair.split].add(pair, predicted)
    return {
        "thresholds": asdict(thresholds),
        "items": len(signals),
        "unresolved": unresolved,
        **{split: asdict(figures[split].finish()) for split in SPLITS},
    }


def sweep(store: Store, pairs: list[LabelledPair]) -> list[dict[str, Any]]:
    """The calibration half's figures over a small grid of thresholds (the held-out half is never
    looked at here): what the defaults in :data:`tidings.stages.stories.THRESHOLDS` were chosen from."""
    calibration = [pair for pair in pairs if pair.split == "calibration"]
    rows = []
    grid = itertools.product((0.3, 0.5, 0.7), (1, 2, 3, 5), (6, 8, 10, 14), (False, True))
    for near, roundup, title, first in grid:
        thresholds = Thresholds(near_duplicate=near, roundup_links=roundup, title_min_chars=title, first_link_only=first)
        report = evaluate_stories(store, calibration, thresholds=thresholds)
        rows.append({"thresholds": asdict(thresholds), **{k: report["calibration"][k] for k in
                     ("precision", "recall", "true_positive", "false_positive", "false_negative")}})
    return rows


__all__ = ["Figures", "LabelledPair", "evaluate_stories", "load_pairs", "sweep"]
