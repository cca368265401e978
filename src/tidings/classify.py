"""Section classification behind one small Protocol, so the cold-start keyword rules here can later
be swapped for a learned model or an LLM without touching callers.

The keyword classifier scores each configured section by the keywords found in an item's title,
summary and text (title counting most) plus a few domain hints, and falls back to the configured
fallback section when nothing scores enough.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from .config import SectionConfig

__all__ = [
    "DEFAULT_DOMAIN_HINTS",
    "Classifier",
    "KeywordClassifier",
    "Prediction",
]


@dataclass
class Prediction:
    section: str
    confidence: float
    """In [0, 1]. 0 means "no evidence" (the fallback was chosen because nothing matched)."""
    method: str
    """Who decided: "rules" here; "model" or "llm" for later classifiers."""


@runtime_checkable
class Classifier(Protocol):
    def predict(
        self, title: str | None, summary: str | None, text: str | None, url: str | None
    ) -> Prediction: ...


# Host (or parent domain) -> default section name. Small on purpose: only sites whose every article
# belongs to one section. Hints naming a section that is not configured are ignored.
DEFAULT_DOMAIN_HINTS: Mapping[str, str] = {
    "go.dev": "⭐️ Go & 云原生 & Rust 相关",
    "golang.org": "⭐️ Go & 云原生 & Rust 相关",
    "gocn.vip": "⭐️ Go & 云原生 & Rust 相关",
    "rust-lang.org": "⭐️ Go & 云原生 & Rust 相关",
    "kubernetes.io": "⭐️ Go & 云原生 & Rust 相关",
    "cncf.io": "⭐️ Go & 云原生 & Rust 相关",
    "openai.com": "🌟 AI 相关",
    "huggingface.co": "🌟 AI 相关",
    "arxiv.org": "🌟 AI 相关",
    "react.dev": "📒 前端相关",
    "reactjs.org": "📒 前端相关",
    "vuejs.org": "📒 前端相关",
    "nextjs.org": "📒 前端相关",
    "web.dev": "📒 前端相关",
    "css-tricks.com": "📒 前端相关",
    "developer.mozilla.org": "📒 前端相关",
}

TITLE_WEIGHT = 3.0
SUMMARY_WEIGHT = 1.5
TEXT_WEIGHT = 0.5
DOMAIN_WEIGHT = 3.0
# Repeats add evidence with diminishing returns (1, 1.69, 2.1, … for 1, 2, 3 … hits); the cap
# keeps one keyword repeated all over a long text from outvoting everything else.
_MAX_HITS = 10
# The text is only a tie-breaker and can be a whole article: its head is enough.
_TEXT_CHARS = 5000

_ASCII_WORD = re.compile(r"[A-Za-z0-9]")


def _fold(s: str) -> str:
    # NFKC only, not casefold: the camel-case boundary below needs the original letter case.
    # Matching itself is case-insensitive.
    return unicodedata.normalize("NFKC", s)


# Left edge: no ASCII letter or digit before the keyword, or a lower->upper camel-case step, so
# "RAG" is found in "GraphRAG" and "LLM" in "vLLM" (but "Go" never in "Google").
_LEFT_EDGE = r"(?:(?<![A-Za-z0-9])|(?-i:(?<=[a-z])(?=[A-Z])))"


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """ASCII-edged keywords must stand alone ("Go" not in "Google", "GC" not in "GCC", "Java" not in
    "JavaScript"), judged against ASCII letters and digits only, so "AI大模型" still counts: Python's
    ``\\b`` would see no boundary between "I" and "大". A keyword ending in a letter may be followed
    by digits ("Go1.22", "Vue3", "GPT4") and by a plural "s" ("Goroutines", "LLMs").
    CJK keywords match as substrings."""
    kw = _fold(keyword.strip())
    body = re.escape(kw).replace(r"\ ", r"\s+")
    left = _LEFT_EDGE if _ASCII_WORD.match(kw[0]) else ""
    if kw[-1].isascii() and kw[-1].isalpha():
        right = r"(?:e?s)?(?![A-Za-z])"
    elif _ASCII_WORD.match(kw[-1]):
        right = r"(?![A-Za-z0-9])"
    else:
        right = ""
    return re.compile(left + body + right, re.IGNORECASE)


@dataclass
class _Rule:
    section: int
    keyword: str
    pattern: re.Pattern[str]
    needle: str
    """A lower-cased piece the keyword can't match without: a cheap substring test first."""


class KeywordClassifier:
    """The cold-start classifier: per-section keyword rules from the configuration.

    Scoring: every keyword hit in the title counts :data:`TITLE_WEIGHT`, in the summary
    :data:`SUMMARY_WEIGHT`, in the text :data:`TEXT_WEIGHT` (repeats with diminishing returns); a
    domain hint adds :data:`DOMAIN_WEIGHT`. When keywords overlap, the longest match wins the span
    ("神经网络" is AI, and its "网络" doesn't also count for back-end). The best section wins if it
    scores at least ``min_score``; ties go to the section listed first. Confidence combines how much
    of the total evidence the winner holds with how much evidence there is.
    """

    method = "rules"

    def __init__(
        self,
        sections: Iterable[SectionConfig],
        fallback: str,
        *,
        min_score: float = 1.5,
        domain_hints: Mapping[str, str] | None = None,
    ) -> None:
        sections = list(sections)
        self.sections = [s.name for s in sections]
        self.fallback = fallback
        self.min_score = min_score
        self._rules: list[_Rule] = []
        for idx, section in enumerate(sections):
            for kw in dict.fromkeys(k for k in section.keywords if k and k.strip()):
                needle = _fold(kw).lower().split()[0]
                self._rules.append(_Rule(idx, kw, _keyword_pattern(kw), needle))
        hints = DEFAULT_DOMAIN_HINTS if domain_hints is None else domain_hints
        index = {name: i for i, name in enumerate(self.sections)}
        self._hints = {host.lower().lstrip("."): index[name] for host, name in hints.items() if name in index}

    def _field_scores(self, value: str, weight: float, scores: list[float]) -> None:
        folded = _fold(value)
        lowered = folded.lower()
        matches: list[tuple[int, int, int]] = []  # start, end, section
        for rule in self._rules:
            if rule.needle not in lowered:
                continue
            matches.extend((m.start(), m.end(), rule.section) for m in rule.pattern.finditer(folded))
        # Longest first, then leftmost; a match inside an already claimed span is dropped.
        matches.sort(key=lambda m: (-(m[1] - m[0]), m[0], m[2]))
        claimed: list[tuple[int, int]] = []
        hits: dict[int, int] = {}
        for start, end, section in matches:
            if any(start >= a and end <= b for a, b in claimed):
                continue
            claimed.append((start, end))
            hits[section] = hits.get(section, 0) + 1
        for section, n in hits.items():
            scores[section] += weight * (1 + math.log(min(n, _MAX_HITS)))

    def _domain_section(self, url: str | None) -> int | None:
        if not url:
            return None
        try:
            host = (urlsplit(url.strip()).hostname or "").lower()
        except ValueError:
            return None
        while host:
            if host in self._hints:
                return self._hints[host]
            _, _, host = host.partition(".")
        return None

    def scores(
        self, title: str | None, summary: str | None, text: str | None, url: str | None
    ) -> dict[str, float]:
        """Each section's raw score, for explaining a prediction."""
        values = [0.0] * len(self.sections)
        if title:
            self._field_scores(title, TITLE_WEIGHT, values)
        if summary:
            self._field_scores(summary, SUMMARY_WEIGHT, values)
        if text:
            self._field_scores(text[:_TEXT_CHARS], TEXT_WEIGHT, values)
        hinted = self._domain_section(url)
        if hinted is not None:
            values[hinted] += DOMAIN_WEIGHT
        return dict(zip(self.sections, values, strict=True))

    def predict(
        self, title: str | None, summary: str | None, text: str | None, url: str | None
    ) -> Prediction:
        scores = self.scores(title, summary, text, url)
        total = sum(scores.values())
        if not scores or total <= 0:
            return Prediction(self.fallback, 0.0, self.method)
        # max() keeps the first of equal scores, i.e. the section configured first.
        best = max(scores, key=lambda name: scores[name])
        top = scores[best]
        if top < self.min_score:
            return Prediction(self.fallback, 0.0, self.method)
        share = top / total
        strength = 1 - math.exp(-top / (2 * TITLE_WEIGHT))  # one title hit ~0.39, three ~0.78
        return Prediction(best, round(share * strength, 4), self.method)
