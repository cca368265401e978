"""Evaluation of the section classifier on a time split: train on the weeks up to a cut-off, test on
the weeks after it, next to the keyword rules on the same test items.

A time split, never a random one: the model is used on next week's links, and topics drift (AI was
a handful of links a week in 2023 and the biggest section by mid-2024), so a random split would
flatter it. The cut-off is fixed (2024-03-31) so that figures stay comparable between versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from ..config import Config
from ..store import Store
from .classify import (
    Example,
    KeywordClassifier,
    ModelParams,
    Prediction,
    current_sections,
    fit_section_model,
    training_examples,
)

DEFAULT_CUTOFF = date(2024, 3, 31)


@dataclass
class Scores:
    accuracy: float
    macro_f1: float
    """Unweighted mean of the per-section F1 over the sections the test items belong to."""
    labels: list[str]
    """Row order of ``confusion`` (true sections); columns add any other predicted section."""
    columns: list[str]
    confusion: list[list[int]]
    per_section: dict[str, dict[str, float]] = field(default_factory=dict)
    fallback: int = 0
    """Test items filed under the fallback section (nothing fitted with confidence)."""


@dataclass
class ClassifyEval:
    cutoff: date
    train_items: int
    test_items: int
    train_weeks: int
    test_weeks: int
    relabelled: int
    model: Scores
    rules: Scores
    confidence: list[dict[str, float]] = field(default_factory=list)
    """The model's accuracy on the test items it is at least this sure of, and their share
    (coverage): what a curator checking only the unsure ones can expect."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cutoff"] = self.cutoff.isoformat()
        return data


def score(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str], fallback: str) -> Scores:
    """Accuracy, macro-F1 over ``labels`` and the confusion matrix (rows true, columns predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(labels)
    columns = labels + sorted({p for p in predicted if p not in labels})
    matrix = confusion_matrix(list(truth), list(predicted), labels=columns)
    precision, recall, f1, support = precision_recall_fscore_support(
        list(truth), list(predicted), labels=labels, zero_division=0
    )
    per_section = {
        name: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
               "support": int(s)}
        for name, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    return Scores(
        accuracy=round(float(accuracy_score(list(truth), list(predicted))), 4),
        macro_f1=round(float(sum(f1) / len(labels)) if labels else 0.0, 4),
        labels=labels,
        columns=columns,
        confusion=[[int(v) for v in row] for row in matrix[: len(labels)]],
        per_section=per_section,
        fallback=sum(1 for p in predicted if p == fallback),
    )


def split_examples(store: Store, config: Config, cutoff: date) -> tuple[list[Example], list[Example]]:
    """Training examples from the digests up to ``cutoff`` (as the store would have held them then:
    no later corrections, partial labels judged against the sections of that time), and test
    examples from the weeks after it, labelled by the curator's latest word."""
    train = training_examples(store, config, until=cutoff)
    test = [e for e in training_examples(store, config) if e.week > cutoff]
    return train, test


def evaluate_classifier(
    store: Store, config: Config, cutoff: date = DEFAULT_CUTOFF, params: ModelParams | None = None
) -> ClassifyEval:
    from ..errors import UsageError

    train, test = split_examples(store, config, cutoff)
    if not train or not test:
        raise UsageError(
            f"nothing to evaluate: {len(train)} sectioned items up to {cutoff} and {len(test)} after it "
            "(import past digests first: tidings import --format digest DIR)"
        )
    model, relabelled = fit_section_model(train, config, params)
    docs = [e.doc for e in test]
    truth = [e.section for e in test]
    # Rows in the digests' own section order, as the curator sees them.
    order = list(dict.fromkeys([*current_sections(store, config, until=cutoff), *model.classes, *truth]))
    labels = [name for name in order if name in set(truth)]
    predictions = model.predict_many(docs)
    learned = [p.section for p in predictions]
    rules = KeywordClassifier(config.sections, config.fallback_section)
    baseline = [rules.predict(d.title, d.summary, d.text, d.url).section for d in docs]
    return ClassifyEval(
        cutoff=cutoff,
        train_items=len(train),
        test_items=len(test),
        train_weeks=len({e.week for e in train}),
        test_weeks=len({e.week for e in test}),
        relabelled=relabelled,
        model=score(truth, learned, labels, config.fallback_section),
        rules=score(truth, baseline, labels, config.fallback_section),
        confidence=confidence_bands(truth, predictions),
    )


CONFIDENCE_BANDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


def confidence_bands(truth: Sequence[str], predictions: Sequence[Prediction]) -> list[dict[str, float]]:
    """For each threshold: the share of items predicted at least that confidently, and how many of
    those are right (accuracy 0 when none are)."""
    bands = []
    for threshold in CONFIDENCE_BANDS:
        sure = [(t, p) for t, p in zip(truth, predictions, strict=True) if p.confidence >= threshold]
        right = sum(1 for t, p in sure if t == p.section)
        bands.append({
            "threshold": threshold,
            "coverage": round(len(sure) / len(truth), 4) if truth else 0.0,
            "accuracy": round(right / len(sure), 4) if sure else 0.0,
        })
    return bands


def format_eval(result: ClassifyEval) -> str:
    """A plain-text report: the two methods side by side, then each one's confusion matrix."""
    lines = [
        f"time split at {result.cutoff}: train {result.train_items} items ({result.train_weeks} weeks), "
        f"test {result.test_items} items ({result.test_weeks} later weeks); "
        f"{result.relabelled} old partial labels resolved",
        "",
        f"{'method':<8} {'accuracy':>9} {'macro-F1':>9} {'fallback':>9}",
    ]
    for name, s in (("model", result.model), ("rules", result.rules)):
        lines.append(f"{name:<8} {s.accuracy:>9.3f} {s.macro_f1:>9.3f} {s.fallback:>9d}")
    if result.confidence:
        lines += ["", "model accuracy on the items it is at least this sure of (coverage: their share)"]
        lines.append(f"{'confidence':>10} {'coverage':>9} {'accuracy':>9}")
        for band in result.confidence:
            lines.append(f"{'>= ' + format(band['threshold'], '.1f'):>10} {band['coverage']:>9.3f} {band['accuracy']:>9.3f}")
    for name, s in (("model", result.model), ("rules", result.rules)):
        lines += ["", f"confusion matrix, {name} (rows: true section, columns: predicted)"]
        heads = [f"[{i}]" for i in range(len(s.columns))]
        lines.append(" " * 34 + " ".join(f"{h:>5}" for h in heads) + f" {'F1':>6}")
        for i, row in enumerate(s.confusion):
            label = f"[{i}] {s.labels[i]}"[:32]
            f1 = s.per_section[s.labels[i]]["f1"]
            lines.append(f"{label:<34}" + " ".join(f"{v:>5d}" for v in row) + f" {f1:>6.3f}")
        extra = [f"[{i}] {c}" for i, c in enumerate(s.columns) if i >= len(s.labels)]
        if extra:
            lines.append("predicted only: " + ", ".join(extra))
    return "\n".join(lines) + "\n"
