"""Section classification behind one small Protocol, so the keyword rules, the learned model and an
LLM are interchangeable for callers; plus the sections as the digests have them, and tag suggestions.

- :class:`KeywordClassifier`, the cold start, scores each configured section by the keywords found
  in an item's title, summary and text (title counting most) plus a few domain hints, and falls back
  to the configured fallback section when nothing scores enough.
- :class:`LearnedClassifier` is trained on the curator's own past digests and corrections
  (:func:`train_section_model`, stored versioned in ``classifier_models``); once one is stored,
  :func:`section_classifier` returns it instead of the rules.
- :func:`section_layout` gives the sections, their emoji and order as the latest digest has them,
  unless the config names them; :class:`TagSuggester` suggests tags from the user's own vocabulary.
- An LLM is only ever consulted for what the local classifier is unsure of (:func:`with_llm` here,
  and the LLM layer's own ``classify_stage``).
"""

from __future__ import annotations

import logging
import math
import pickle
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..config import SectionConfig
from ..textutil import CJK_CHAR_RE, nfkc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..config import Config
    from ..store import Item, Store

__all__ = [
    "DEFAULT_DOMAIN_HINTS",
    "Classifier",
    "Doc",
    "Example",
    "KeywordClassifier",
    "LearnedClassifier",
    "LowConfidenceRouter",
    "ModelParams",
    "Prediction",
    "SectionInfo",
    "TagSuggester",
    "TrainReport",
    "section_classifier",
    "section_layout",
    "suggest_tags",
    "train_section_model",
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
    return nfkc(s)


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


_ASCII_LETTERS = re.compile(r"[A-Za-z]+")
_ASCII_RUNS = re.compile(r"[a-z0-9]+")


def _needles_anchor_matches(folded: str, lowered: str) -> bool:
    """Whether every match of a keyword in ``folded`` starts where ``lowered`` holds its needle.

    True when the text holds no cased letter outside ASCII: then ``lower()`` keeps every position,
    and case-insensitive matching can only pair an ASCII letter of a keyword with that same letter in
    either case (Python's ``re`` also pairs "K" with the Kelvin sign, "s" with "ſ", "i" with "İ":
    all cased and non-ASCII). Otherwise the patterns scan the whole field as they always did."""
    if folded.isascii():
        return True
    rest = _ASCII_LETTERS.sub("", folded)
    return len(lowered) == len(folded) and rest.lower() == rest == rest.upper()


def _anchored_matches(rule: _Rule, folded: str, lowered: str) -> list[tuple[int, int]]:
    """``[(m.start(), m.end()) for m in rule.pattern.finditer(folded)]``, trying the pattern only
    where the needle stands (see :func:`_needles_anchor_matches` for when that finds them all).

    Like finditer: the leftmost match, then the leftmost one from where it ended. ``match`` at a
    position still sees the text before it, so the left-edge look-behind judges as in a scan."""
    found: list[tuple[int, int]] = []
    needle, match = rule.needle, rule.pattern.match
    pos = lowered.find(needle)
    while pos >= 0:
        m = match(folded, pos)
        if m is None:
            pos = lowered.find(needle, pos + 1)
            continue
        found.append((pos, m.end()))
        pos = lowered.find(needle, max(m.end(), pos + 1))
    return found


@dataclass
class _Rule:
    section: int
    keyword: str
    pattern: re.Pattern[str]
    needle: str
    """A lower-cased piece the keyword can't match without: a cheap substring test first."""
    alnum_needle: bool = False
    """The needle is ASCII letters and digits only (then the field's ASCII words suffice to find it)."""


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
                alnum = needle.isascii() and needle.isalnum()
                self._rules.append(_Rule(idx, kw, _keyword_pattern(kw), needle, alnum))
        hints = DEFAULT_DOMAIN_HINTS if domain_hints is None else domain_hints
        index = {name: i for i, name in enumerate(self.sections)}
        self._hints = {host.lower().lstrip("."): index[name] for host, name in hints.items() if name in index}

    def _field_scores(self, value: str, weight: float, scores: list[float]) -> None:
        folded = _fold(value)
        lowered = folded.lower()
        # Where a keyword can only match where its needle stands, jump from needle to needle instead
        # of letting each pattern scan the whole field (most of the classifier's time went there).
        anchored = _needles_anchor_matches(folded, lowered)
        matches: list[tuple[int, int, int]] = []  # start, end, section
        words = "\x00".join(set(_ASCII_RUNS.findall(lowered)))
        for rule in self._rules:
            # An alphanumeric ASCII needle stands inside one run of ASCII letters and digits: the
            # distinct runs are a far shorter haystack than the field (a few words in Chinese text).
            if rule.needle not in (words if rule.alnum_needle else lowered):
                continue
            if anchored:
                matches.extend((start, end, rule.section) for start, end in _anchored_matches(rule, folded, lowered))
            else:
                matches.extend((m.start(), m.end(), rule.section) for m in rule.pattern.finditer(folded))
        # Longest first, then leftmost; a match inside an already claimed span is dropped.
        matches.sort(key=lambda m: (-(m[1] - m[0]), m[0], m[2]))
        hits: dict[int, int] = {}
        claimed: list[tuple[int, int]] = []
        # Which positions some claimed span covers: a match with an end outside every span cannot lie
        # inside one, and most matches are such; only the others are checked against the spans.
        covered = bytearray(len(folded))
        for start, end, section in matches:
            if covered[start] and covered[end - 1] and any(start >= a and end <= b for a, b in claimed):
                continue
            claimed.append((start, end))
            covered[start:end] = b"\x01" * (end - start)
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


# --- the learned classifier ---------------------------------------------------------------------
#
# Trained on the curator's own history: every digest entry filed under a section is an example,
# and a correction (an entry moved in the week view) overrides the digest's label for its item.
# scikit-learn and jieba are imported inside the functions that need them, so importing this module
# (and running the keyword rules) stays cheap.

SECTION_MODEL = "section"

log = logging.getLogger("tidings")


@dataclass(frozen=True)
class Doc:
    """What the classifiers see of an item."""

    title: str | None = None
    summary: str | None = None
    text: str | None = None
    url: str | None = None


@dataclass
class Example:
    """One labelled item for training or evaluation."""

    doc: Doc
    section: str
    """The label: the digest's section with aliases applied, or the latest correction."""
    week: date
    """The digest week the example comes from: what the time split cuts on, and what its recency
    weight is counted from (a correction counts as of the newest week)."""
    item_id: int | None = None
    raw_section: str | None = None
    origin: str = "digest"
    """``digest`` or ``correction``."""
    candidates: tuple[str, ...] = ()
    """Non-empty for a partial label: the digest had fewer sections than today's, so the item may
    belong to one of today's sections that did not exist yet (backend topics sat under
    "Golang 相关" before 2023-12-24). Training picks among these."""


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters of the section model.

    Chosen by rolling-origin validation inside the evaluation's training weeks (three folds: train up
    to 2023-12-24 / 2024-01-14 / 2024-03-10, validate on the weeks after each, up to 2024-03-31),
    never on the test weeks. Accuracy there was flat (0.88–0.89) across C, half-life, n-gram range,
    title repetition and block scaling; what mattered was the rule features (0.66 without them),
    resolving partial labels (0.83 without) and balanced class weights (0.86 without). C was then
    picked for the best log-loss, so that the confidence means something to the LLM routing.
    Tried and left out, no better on validation: self-training on the unsectioned 2022–2023 digests,
    an LSA space over all the store's text, LinearSVC and ridge, prior re-estimation per week.
    Leave-one-week-out within the training weeks (no drift at all) reaches 0.89 too: the rest is
    items the curator could have filed either way.

    Second round, same folds plus leave-one-week-out (LOWO) over the eight fully labelled training
    weeks; figures are rolling accuracy / macro-F1, LOWO accuracy / macro-F1, rolling log-loss.
    The previous defaults: 0.882 / 0.837, 0.884 / 0.867, 0.386. Kept: character 2–4-grams and a
    ComplementNB soft-voted in at 0.3, 0.882 / 0.841, 0.887 / 0.874, 0.354 (the neighbours,
    NB share 0.2 / 0.4, are within 0.01 of it). That is within noise on accuracy (one validation
    item is 0.002–0.008); it was kept because it is no worse on any figure and better calibrated.
    Tried and left out: class weights ∝ (balanced) ** 0.5 / 1.5 / 2 (0.861 / 0.872 / 0.869 rolling;
    no class weights 0.745, fold one collapses: its training weeks hold 7 AI items); word
    bigrams, repeated rounds of partial-label resolution, half-life 13 or 52 weeks (identical
    predictions); a separate title-only n-gram block (0.880, at double scale 0.745); the rules'
    per-section score shares as extra features (0.880); rule weight 2 (0.872); C = 0.5 / 2 / 3
    (same accuracy, C ≥ 2 worse log-loss); screening label noise by leaving out examples whose
    label a model trained on the other weeks gives < 5 % (0.874 rolling with the NB mix, 0.884
    without; it does find the five Rust articles filed under front-end on 2023-12-24)."""

    C: float = 1.0
    """Inverse regularisation strength of the logistic regression (C=10: same accuracy, overconfident)."""
    half_life_weeks: float = 26.0
    """Recency weighting: an example this many weeks older than the newest counts half."""
    partial_weight: float = 0.5
    """Extra weight factor for examples whose label had to be resolved from candidates."""
    correction_weight: float = 2.0
    """A correction is the curator's latest word: it counts this much more than a digest entry."""
    char_ngrams: tuple[int, int] = (2, 4)
    """Single characters carry little in Chinese titles; 4-grams catch whole terms ("性能优化")."""
    title_repeat: int = 2
    """The title is the strongest signal (most digest links have no summary): it is repeated."""
    summary_chars: int = 200
    """Only the head of a summary is used: the topic is in its first sentences, and segmenting long
    human summaries was most of the prediction time."""
    text_chars: int = 300
    """Only the head of an extracted text is used, when there is one."""
    rule_weight: float = 1.0
    """Scale of the keyword-rule scores given to the model as features (0 turns them off)."""
    class_weight: str | None = "balanced"
    """Sections grow and shrink (AI was tiny before 2024): balanced weights keep a section that was
    small in the past from being drowned by the big ones."""
    min_confidence: float = 0.4
    """Below this top probability nothing fits with confidence and the fallback section is used
    (with four sections, 0.25 is a blind guess; on validation every pick under 0.5 was wrong)."""
    relabel: bool = True
    """Resolve partial labels with a first model trained on the fully labelled examples."""
    solver: str = "newton-cg"
    """lbfgs gives the same model but took 5× longer on these sparse features."""
    nb_weight: float = 0.3
    """Share of a ComplementNB (fitted on the same features and weights) soft-voted into the
    regression's probabilities (0: the regression alone). Naive Bayes trusts rare but telling
    n-grams more than a regularised regression does; the mix is better calibrated on validation."""
    nb_alpha: float = 0.3
    """ComplementNB's additive smoothing."""


@dataclass
class TrainReport:
    trained: bool
    message: str
    examples: int
    version: int | None = None
    sections: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    corrections: int = 0
    relabelled: int = 0
    tag_vocabulary: int = 0
    """Distinct tags the suggester can choose from."""


def _host(url: str | None) -> str:
    if not url:
        return ""
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""


def domain_tokens(url: str | None) -> list[str]:
    """``mp.weixin.qq.com/s/…`` → the host, each parent domain, and host + first path segment
    (on shared hosts such as x.com or github.com the account says more than the host)."""
    host = _host(url)
    if not host:
        return ["host:none"]
    tokens = []
    parts = host.split(".")
    for i in range(len(parts) - 1):
        tokens.append("host:" + ".".join(parts[i:]))
    try:
        segment = urlsplit(url.strip()).path.strip("/").split("/")[0] if url else ""
    except ValueError:
        segment = ""
    if segment:
        tokens.append(f"path:{host}/{segment.lower()}")
    return tokens


def _word_tokens(text: str) -> list[str]:
    from ..textutil import tokenize

    return tokenize(text, drop_stopwords=True)


def _given(tokens: list[str]) -> list[str]:
    """The analyzer of vectorizers fed token lists: jieba runs once per document, not per vectorizer."""
    return tokens


def _doc_tokens(doc: Doc, params: ModelParams) -> list[str]:
    """The words of :func:`_doc_text`, segmenting the repeated title once (jieba is the slow part)."""
    tokens = _word_tokens(doc.title) * params.title_repeat if doc.title else []
    if doc.summary:
        tokens += _word_tokens(doc.summary[: params.summary_chars])
    if doc.text:
        tokens += _word_tokens(doc.text[: params.text_chars])
    return tokens


def _doc_text(doc: Doc, params: ModelParams) -> str:
    parts = [doc.title or ""] * params.title_repeat
    parts.append((doc.summary or "")[: params.summary_chars])
    if doc.text:
        parts.append(doc.text[: params.text_chars])
    return "\n".join(p for p in parts if p)


class SectionFeatures:
    """Title/summary character n-grams and jieba words (TF-IDF), URL domain tokens, and the keyword
    rules' per-section scores, side by side in one sparse matrix.

    Character n-grams catch what word segmentation misses in mixed Chinese/English titles ("K8s部署"),
    words catch what characters blur, the rules carry curated prior knowledge into sections that had
    few examples yet (without them, validation accuracy fell from 0.89 to 0.66). Module-level
    callables only, so the whole thing pickles."""

    def __init__(self, params: ModelParams, rules: KeywordClassifier | None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.params = params
        self.rules = rules if params.rule_weight > 0 else None
        self.chars = TfidfVectorizer(
            analyzer="char_wb", ngram_range=params.char_ngrams, sublinear_tf=True, lowercase=True
        )
        self.words = TfidfVectorizer(analyzer=_given, sublinear_tf=True)
        self.domains = TfidfVectorizer(analyzer=domain_tokens)

    def _rule_matrix(self, docs: Sequence[Doc]) -> Any:
        import numpy as np
        from scipy.sparse import csr_matrix

        assert self.rules is not None
        values = [list(self.rules.scores(d.title, d.summary, d.text, d.url).values()) for d in docs]
        # log1p: a second keyword hit adds evidence, but less than the first.
        return csr_matrix(np.log1p(np.asarray(values, dtype=float).reshape(len(docs), -1)) * self.params.rule_weight)

    def fit_transform(self, docs: Sequence[Doc]) -> Any:
        texts = [_doc_text(d, self.params) for d in docs]
        tokens = [_doc_tokens(d, self.params) for d in docs]
        blocks = [
            self.chars.fit_transform(texts),
            self.words.fit_transform(tokens),
            self.domains.fit_transform([d.url for d in docs]),
        ]
        return self._stack(blocks, docs)

    def transform(self, docs: Sequence[Doc]) -> Any:
        texts = [_doc_text(d, self.params) for d in docs]
        tokens = [_doc_tokens(d, self.params) for d in docs]
        blocks = [self.chars.transform(texts), self.words.transform(tokens), self.domains.transform([d.url for d in docs])]
        return self._stack(blocks, docs)

    def _stack(self, blocks: list[Any], docs: Sequence[Doc]) -> Any:
        from scipy.sparse import hstack

        if self.rules is not None:
            blocks.append(self._rule_matrix(docs))
        return hstack(blocks).tocsr()


class LearnedClassifier:
    """A section model trained on past digests (a :class:`Classifier`).

    ``predict_many`` classifies a batch in one vectorised pass (10,000 items in seconds);
    ``predict`` is the one-item form the Protocol asks for."""

    method = "model"

    def __init__(self, features: SectionFeatures, model: Any, *, fallback: str, min_confidence: float) -> None:
        self.features = features
        self.model = model
        self.classes: list[str] = [str(c) for c in model.classes_]
        self.fallback = fallback
        self.min_confidence = min_confidence
        self.version: int | None = None
        self.allowed: set[str] | None = None
        """When the config names the sections explicitly, only those may be predicted."""

    def probabilities(self, docs: Sequence[Doc]) -> Any:
        """An array (len(docs) × len(classes)) of section probabilities."""
        return self.model.predict_proba(self.features.transform(docs))

    def predict_many(self, docs: Sequence[Doc]) -> list[Prediction]:
        if not docs:
            return []
        probs = self.probabilities(docs)
        usable = [i for i, c in enumerate(self.classes) if self.allowed is None or c in self.allowed]
        out: list[Prediction] = []
        for row in probs:
            if not usable:
                out.append(Prediction(self.fallback, 0.0, self.method))
                continue
            best = max(usable, key=lambda i: row[i])
            confidence = round(float(row[best]), 4)
            section = self.classes[best] if confidence >= self.min_confidence else self.fallback
            out.append(Prediction(section, confidence, self.method))
        return out

    def predict(
        self, title: str | None, summary: str | None, text: str | None, url: str | None
    ) -> Prediction:
        return self.predict_many([Doc(title, summary, text, url)])[0]


def item_doc(item: Item) -> Doc:
    url = item.urls[0].url if item.urls else item.url
    return Doc(item.title, item.summary, item.text, url if "://" in url else None)


def current_sections(store: Store, config: Config, *, until: date | None = None) -> list[str]:
    """Today's sections as the curator uses them: the latest imported or published digest's sections,
    aliases applied, in its order (``until``: the latest digest on or before that week)."""
    from sqlalchemy import select

    from ..store import Digest

    with store.session() as session:
        query = select(Digest).where(Digest.status != "draft").order_by(Digest.week.desc())
        if until is not None:
            query = query.where(Digest.week <= until)
        for digest in session.scalars(query):
            if digest.sections:
                names = [config.classify.aliases.get(s, s) for s in digest.sections]
                return list(dict.fromkeys(names))
    return []


def training_examples(store: Store, config: Config, *, until: date | None = None) -> list[Example]:
    """Every item that sits under a section in a past (non-draft) digest, one example per item and
    week, with aliases applied and the latest correction of an item overriding its digest labels.

    Draft digests are skipped: their sections came from a classifier, not from the curator.
    ``until`` keeps only digests up to that week (the evaluation's training side); the corrections
    table is then ignored, as made after any cut-off (an entry moved within a digest still shows
    its new section: the move changed the entry)."""
    from sqlalchemy import select

    from ..store import Correction, Digest, DigestEntryRow, Item

    aliases = config.classify.aliases
    today_sections = set(current_sections(store, config, until=until))
    examples: dict[tuple[int, date], Example] = {}
    with store.session() as session:
        latest: dict[int, Correction] = {}
        if until is None:
            for corr in session.scalars(select(Correction).order_by(Correction.at, Correction.id)):
                latest[corr.item_id] = corr
        query = (
            select(DigestEntryRow, Digest)
            .join(Digest, Digest.id == DigestEntryRow.digest_id)
            .where(DigestEntryRow.section.is_not(None), DigestEntryRow.item_id.is_not(None), Digest.status != "draft")
            .order_by(Digest.week, DigestEntryRow.position)
        )
        if until is not None:
            query = query.where(Digest.week <= until)
        for entry, digest in session.execute(query):
            item = entry.item
            if item is None or item.duplicate_of_id is not None or (entry.item_id, digest.week) in examples:
                continue
            label = aliases.get(entry.section or "", entry.section or "")
            present = {aliases.get(s, s) for s in (digest.sections or [])} | {label}
            missing = tuple(s for s in sorted(today_sections - present))
            examples[(item.id, digest.week)] = Example(
                doc=item_doc(item),
                section=label,
                week=digest.week,
                item_id=item.id,
                raw_section=entry.section,
                candidates=(label, *missing) if missing else (),
            )
        by_item: dict[int, list[Example]] = {}
        for ex in examples.values():
            by_item.setdefault(ex.item_id or 0, []).append(ex)
        for item_id, corr in latest.items():
            label = aliases.get(corr.to_section, corr.to_section)
            found = by_item.get(item_id)
            if found:
                # One example per corrected item, however many digests listed it: the correction
                # replaces the old labels rather than multiplying its own weight.
                keep = found[-1]
                keep.section, keep.origin, keep.candidates = label, "correction", ()
                for ex in found[:-1]:
                    del examples[(item_id, ex.week)]
                continue
            item = session.get(Item, item_id)
            if item is None or item.duplicate_of_id is not None:
                continue
            digest = session.get(Digest, corr.digest_id) if corr.digest_id else None
            week = digest.week if digest is not None else corr.at.date()
            examples[(item_id, week)] = Example(
                doc=item_doc(item), section=label, week=week, item_id=item_id,
                raw_section=corr.to_section, origin="correction",
            )
    return sorted(examples.values(), key=lambda e: (e.week, e.item_id or 0))


def _weights(examples: Sequence[Example], params: ModelParams) -> list[float]:
    """Recency weights, counted in digest weeks back from the newest digest (not from today: a
    store imported today with digests from 2024 must not make every example "old"). A correction
    is the curator's latest word and counts as of the newest week."""
    newest = max(e.week for e in examples)
    weights = []
    for ex in examples:
        age_weeks = 0.0 if ex.origin == "correction" else max(0, (newest - ex.week).days) / 7
        w = 0.5 ** (age_weeks / params.half_life_weeks)
        if ex.candidates:
            w *= params.partial_weight
        if ex.origin == "correction":
            w *= params.correction_weight
        weights.append(w)
    return weights


def _balanced(labels: Sequence[str], weights: Sequence[float]) -> dict[str, float]:
    """W / (k · W_class), W the summed sample weights: scikit-learn's "balanced" class weights."""
    mass: dict[str, float] = {}
    for label, w in zip(labels, weights, strict=True):
        mass[label] = mass.get(label, 0.0) + w
    total, k = sum(mass.values()), len(mass)
    return {c: total / (k * m) for c, m in mass.items()}


class SoftVote:
    """A logistic regression's and a ComplementNB's probabilities mixed ``(1 - share) : share``, with
    the ``classes_`` / ``predict_proba`` face of one scikit-learn classifier. Module-level, so the
    model pickles."""

    def __init__(self, main: Any, other: Any, share: float) -> None:
        if list(main.classes_) != list(other.classes_):
            raise ValueError("soft-voted models must share their classes, in the same order")
        self.main, self.other, self.share = main, other, share
        self.classes_ = main.classes_

    def predict_proba(self, matrix: Any) -> Any:
        return (1 - self.share) * self.main.predict_proba(matrix) + self.share * self.other.predict_proba(matrix)


def _fit(examples: Sequence[Example], labels: Sequence[str], params: ModelParams, rules: KeywordClassifier | None,
         fallback: str) -> LearnedClassifier:
    import warnings

    from sklearn.linear_model import LogisticRegression

    features = SectionFeatures(params, rules)
    matrix = features.fit_transform([e.doc for e in examples])
    weights = _weights(examples, params)
    model: Any = LogisticRegression(C=params.C, class_weight=params.class_weight, solver=params.solver, max_iter=3000)
    with warnings.catch_warnings():
        # A convergence note on a few hundred examples is noise; the fit is still usable.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*converge.*")
        model.fit(matrix, list(labels), sample_weight=weights)
    if params.nb_weight > 0:
        from sklearn.naive_bayes import ComplementNB

        # The same class balance as the regression's: "balanced" counts the sample weights too.
        class_weights = _balanced(labels, weights) if params.class_weight == "balanced" else None
        nb_weights = [w * class_weights[y] for w, y in zip(weights, labels, strict=True)] if class_weights else weights
        nb = ComplementNB(alpha=params.nb_alpha).fit(matrix, list(labels), sample_weight=nb_weights)
        model = SoftVote(model, nb, params.nb_weight)
    return LearnedClassifier(features, model, fallback=fallback, min_confidence=params.min_confidence)


def fit_section_model(
    examples: Sequence[Example], config: Config, params: ModelParams | None = None
) -> tuple[LearnedClassifier, int]:
    """Train on ``examples``; returns the classifier and how many partial labels were resolved.

    Partial labels (an old digest lacking some of today's sections) are resolved first: a model fitted
    on the fully labelled examples picks, among each partial example's candidates, the likeliest
    section. Then the final model is fitted on everything, old examples weighted down by age."""
    params = params or ModelParams()
    rules = KeywordClassifier(config.sections, config.fallback_section) if params.rule_weight > 0 else None
    labels = [e.section for e in examples]
    relabelled = 0
    partial = [i for i, e in enumerate(examples) if e.candidates]
    full = [i for i, e in enumerate(examples) if not e.candidates]
    if params.relabel and partial and full and len({labels[i] for i in full}) >= 2:
        first = _fit([examples[i] for i in full], [labels[i] for i in full], params, rules, config.fallback_section)
        probs = first.probabilities([examples[i].doc for i in partial])
        index = {c: k for k, c in enumerate(first.classes)}
        for row, i in zip(probs, partial, strict=True):
            options = [c for c in examples[i].candidates if c in index]
            if not options:
                continue
            best = max(options, key=lambda c: row[index[c]])
            if best != labels[i]:
                labels[i] = best
                relabelled += 1
    model = _fit(examples, labels, params, rules, config.fallback_section)
    return model, relabelled


def _next_version(session: Session, kind: str) -> int:
    from sqlalchemy import func, select

    from ..store import ClassifierModel

    return int(session.scalar(select(func.max(ClassifierModel.version)).where(ClassifierModel.kind == kind)) or 0) + 1


def save_model(store: Store, kind: str, obj: object, metrics: dict[str, Any]) -> int:
    """Store ``obj`` pickled as the next version of ``kind``; returns the version."""
    import sklearn

    from ..store import ClassifierModel

    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with store.session() as session:
        version = _next_version(session, kind)
        session.add(
            ClassifierModel(
                kind=kind, version=version, blob=blob, metrics={**metrics, "sklearn": sklearn.__version__}
            )
        )
    return version


def load_model(store: Store, kind: str) -> tuple[Any, int, dict[str, Any]] | None:
    """The newest stored model of ``kind`` as (object, version, metrics), or None.

    The blob is a pickle this store wrote itself. One that no longer loads (a scikit-learn upgrade
    changed its internals) is reported and skipped: the caller falls back to the rules."""
    from sqlalchemy import select

    from ..store import ClassifierModel

    with store.session() as session:
        row = session.scalar(
            select(ClassifierModel)
            .where(ClassifierModel.kind == kind)
            .order_by(ClassifierModel.version.desc(), ClassifierModel.id.desc())
            .limit(1)
        )
        if row is None:
            return None
        blob, version, metrics = row.blob, row.version, dict(row.metrics or {})
    try:
        return pickle.loads(blob), version, metrics  # noqa: S301 - our own store's blob
    except Exception as exc:  # unpickling can raise almost anything
        log.warning("the stored %s model v%d no longer loads (%s); retrain with `tidings classify --train`",
                    kind, version, exc)
        return None


def sections_explicit(config: Config) -> bool:
    """Whether the user set ``sections`` in the config (rather than relying on the defaults)."""
    return "sections" in config.model_fields_set


def load_section_model(store: Store, config: Config) -> LearnedClassifier | None:
    found = load_model(store, SECTION_MODEL)
    if found is None:
        return None
    model, version, _metrics = found
    if not isinstance(model, LearnedClassifier):
        return None
    model.version = version
    model.fallback = config.fallback_section
    model.allowed = set(config.section_names) if sections_explicit(config) else None
    return model


def train_section_model(store: Store, config: Config, params: ModelParams | None = None) -> TrainReport:
    """Train the section model on the store's digests and corrections and store it as the next
    version. Below ``classify.min_training_items`` examples nothing is trained: the keyword rules
    stay in charge and the report says so. (The tag suggester needs no training run; the report
    gives the size of its vocabulary.)"""
    params = params or ModelParams()
    examples = training_examples(store, config)
    counts: dict[str, int] = {}
    for ex in examples:
        counts[ex.section] = counts.get(ex.section, 0) + 1
    corrections = sum(1 for e in examples if e.origin == "correction")
    minimum = config.classify.min_training_items
    report = TrainReport(False, "", len(examples), counts=counts, corrections=corrections)
    tags = train_tag_suggester(store)
    report.tag_vocabulary = len(tags.vocabulary) if tags is not None else 0
    if len(examples) < minimum or len(counts) < 2:
        why = f"{len(examples)} sectioned items" if len(examples) < minimum else "only one section"
        report.message = (
            f"not enough training data ({why}; classify.min_training_items = {minimum}): "
            "keeping the keyword rules"
        )
        log.warning("%s", report.message)
        return report
    model, relabelled = fit_section_model(examples, config, params)
    metrics: dict[str, Any] = {
        "examples": len(examples),
        "counts": counts,
        "corrections": corrections,
        "relabelled": relabelled,
        "newest_week": max(e.week for e in examples).isoformat(),
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
    }
    report.version = save_model(store, SECTION_MODEL, model, metrics)
    report.trained = True
    report.sections = model.classes
    report.relabelled = relabelled
    report.message = (
        f"trained section model v{report.version} on {len(examples)} items "
        f"({corrections} corrected, {relabelled} old labels resolved)"
    )
    return report


def section_classifier(store: Store, config: Config) -> Classifier:
    """The learned classifier when a model is stored, else the keyword rules (with a logged note)."""
    model = load_section_model(store, config)
    if model is not None:
        return model
    log.info("no trained section model in the store: using the keyword rules (train with `tidings classify --train`)")
    return KeywordClassifier(config.sections, config.fallback_section)


# --- the LLM hook -------------------------------------------------------------------------------

LLMSectionClassifier = Callable[[Doc, Sequence[str]], "Prediction | None"]
"""``llm(doc, sections)``: an LLM's pick among ``sections`` (method "llm"), or None when it has none.
The LLM layer provides it; this module only decides when to ask."""


class LowConfidenceRouter:
    """The learned classifier decides first; an item it is less sure of than ``threshold`` goes to
    the LLM, whose answer is kept only if it names one of the sections."""

    def __init__(self, base: Classifier, llm: LLMSectionClassifier, sections: Sequence[str], threshold: float) -> None:
        self.base = base
        self.llm = llm
        self.sections = list(sections)
        self.threshold = threshold
        self.asked = 0

    def predict(
        self, title: str | None, summary: str | None, text: str | None, url: str | None
    ) -> Prediction:
        first = self.base.predict(title, summary, text, url)
        if first.confidence >= self.threshold:
            return first
        self.asked += 1
        answer = self.llm(Doc(title, summary, text, url), self.sections)
        if answer is None or answer.section not in self.sections:
            return first
        return answer


def with_llm(
    classifier: Classifier, llm: LLMSectionClassifier | None, sections: Sequence[str], *, threshold: float
) -> Classifier:
    """``classifier`` as is without an LLM; else routed so that only low-confidence items reach it."""
    if llm is None:
        return classifier
    return LowConfidenceRouter(classifier, llm, sections, threshold)


# --- sections that follow the data --------------------------------------------------------------

_HEADING = re.compile(r"^(?P<emoji>[^\w\s]+)\s*(?P<label>.*)$")


@dataclass(frozen=True)
class SectionInfo:
    name: str
    """The heading as rendered, emoji included."""
    emoji: str
    label: str
    items: int = 0
    """How many digest entries sit under it (aliases applied)."""
    source: str = "digests"
    """``digests`` (learned), ``config`` (set by the user) or ``defaults`` (no digests yet)."""


def split_heading(name: str) -> tuple[str, str]:
    """``"⭐️ Go & 云原生 & Rust 相关"`` → ``("⭐️", "Go & 云原生 & Rust 相关")``; no emoji → ``("", name)``."""
    m = _HEADING.match(name.strip())
    if m is None or not m["label"]:
        return "", name.strip()
    return m["emoji"], m["label"]


def section_layout(store: Store, config: Config) -> list[SectionInfo]:
    """The sections, their emoji and order: as the user set them in the config, else as the latest
    past digest has them (aliases applied), else the built-in defaults."""
    from sqlalchemy import func, select

    from ..store import Digest, DigestEntryRow

    counts: dict[str, int] = {}
    with store.session() as session:
        rows = session.execute(
            select(DigestEntryRow.section, func.count(DigestEntryRow.id))
            .join(Digest, Digest.id == DigestEntryRow.digest_id)
            .where(DigestEntryRow.section.is_not(None), Digest.status != "draft")
            .group_by(DigestEntryRow.section)
        )
        for name, n in rows:
            canonical = config.classify.aliases.get(name, name)
            counts[canonical] = counts.get(canonical, 0) + int(n)
    if sections_explicit(config):
        names, source = config.section_names, "config"
    else:
        names, source = current_sections(store, config), "digests"
        if not names:
            names, source = config.section_names, "defaults"
    return [SectionInfo(n, *split_heading(n), items=counts.get(n, 0), source=source) for n in names]


def effective_sections(store: Store, config: Config) -> list[str]:
    return [s.name for s in section_layout(store, config)]


# --- tags ---------------------------------------------------------------------------------------

_TAG_TEXT_CHARS = 600
_URL_RE = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)
TAG_SOURCE_KINDS = ("blog", "post")
"""Item kinds whose tags are the user's vocabulary: blog posts and social posts (hashtags)."""


def _tag_text(doc: Doc) -> str:
    return "\n".join(p for p in (doc.title, doc.title, doc.summary, (doc.text or "")[:_TAG_TEXT_CHARS]) if p)


def _mentionable(tag: str) -> bool:
    """Whether a mention of ``tag`` in a title is evidence: not a bare number ("2022"), not a single
    Chinese character, which would match inside any word ("译" in "编译")."""
    if not any(c.isalpha() for c in tag):
        return False
    return not (len(tag.strip()) < 2 and CJK_CHAR_RE.search(tag))


class TagSuggester:
    """Suggests tags from the user's own vocabulary: the tags their items carry (blog-post tags, social
    hashtags, tags they set). A digest's front-matter tags describe the digest, not its items, and
    are not used.

    Two kinds of evidence: a tag named in the title (or summary / text head) as a whole word, and the
    tags of the most similar tagged items (cosine over character n-gram TF-IDF). The vocabulary is
    small and mostly one item per tag, too thin for one model per tag; neighbours and mentions are
    what it supports. Only vocabulary tags are ever suggested."""

    neighbours = 5
    min_similarity = 0.3
    """A tagged item less similar than this is no neighbour (below it, feed boilerplate matches)."""
    min_score = 0.5
    """A title mention alone qualifies; neighbours must agree (two at 0.3) or be near-copies."""

    def __init__(self, docs: Sequence[Doc], doc_tags: Sequence[Sequence[str]]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        spellings: dict[str, dict[str, int]] = {}
        for tags in doc_tags:
            for tag in tags:
                spellings.setdefault(tag.casefold(), {}).setdefault(tag, 0)
                spellings[tag.casefold()][tag] += 1
        # "Kubernetes" and "kubernetes" are one tag, spelt the way it is used most (ties: first seen;
        # dicts keep insertion order and max() keeps the first of equals).
        self.canonical = {fold: max(forms, key=lambda f: forms[f]) for fold, forms in spellings.items()}
        self.vocabulary: dict[str, int] = {self.canonical[f]: sum(forms.values()) for f, forms in spellings.items()}
        self.doc_tags = [list(dict.fromkeys(self.canonical[t.casefold()] for t in tags)) for tags in doc_tags]
        self.patterns = {tag: _keyword_pattern(tag) for tag in self.vocabulary if _mentionable(tag)}
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3), sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform([_tag_text(d) for d in docs]) if docs else None

    def scores(self, doc: Doc) -> dict[str, float]:
        found: dict[str, float] = {}
        # URLs out first: "https://…/blog/…" mentions neither "http" nor "blog".
        title = _URL_RE.sub(" ", _fold(doc.title or ""))
        rest = _URL_RE.sub(" ", _fold("\n".join(p for p in (doc.summary, (doc.text or "")[:_TAG_TEXT_CHARS]) if p)))
        for tag, pattern in self.patterns.items():
            if pattern.search(title):
                found[tag] = found.get(tag, 0.0) + 1.0
            elif rest and pattern.search(rest):
                found[tag] = found.get(tag, 0.0) + 0.5
        if self.matrix is not None and self.matrix.shape[0]:
            query = self.vectorizer.transform([_tag_text(doc)])
            sims = (self.matrix @ query.T).toarray().ravel()
            for i in sims.argsort()[::-1][: self.neighbours]:
                if sims[i] < self.min_similarity:
                    break
                for tag in self.doc_tags[i]:
                    found[tag] = found.get(tag, 0.0) + float(sims[i])
        return found

    def suggest(self, doc: Doc, limit: int) -> list[str]:
        scores = self.scores(doc)
        ranked = sorted((t for t, s in scores.items() if s >= self.min_score), key=lambda t: (-scores[t], t))
        return ranked[: max(0, limit)]


def train_tag_suggester(store: Store) -> TagSuggester | None:
    """A suggester over every tagged item in the store, or None when no item has tags."""
    from sqlalchemy import or_, select
    from sqlalchemy.orm import selectinload

    from ..store import Edit, Item, ItemTag

    with store.session() as session:
        tagged = select(ItemTag.item_id).distinct()
        edited = select(Edit.item_id).where(Edit.field == "tags", Edit.item_id.is_not(None))
        # Blog posts' tags and social hashtags are the user's own words, and so are tags they set.
        # Feed categories ("chinese_simplified", "TC") and an LLM's picks are not, until edited.
        own = or_(Item.kind.in_(TAG_SOURCE_KINDS), Item.id.in_(edited))
        items = session.scalars(
            select(Item)
            .where(Item.id.in_(tagged), Item.duplicate_of_id.is_(None), own)
            .options(selectinload(Item.tag_rows), selectinload(Item.urls))
            .order_by(Item.id)
        ).all()
        docs = [item_doc(i) for i in items]
        tags = [i.tags for i in items]
    if not docs:
        return None
    return TagSuggester(docs, tags)


def tag_suggester(store: Store) -> TagSuggester | None:
    """A suggester over the store's tagged items as they are now. It is rebuilt rather than stored:
    building takes about a second, and a tag the user set a minute ago is then already known."""
    return train_tag_suggester(store)


LLMTagProposer = Callable[[Doc, Sequence[str], int], Sequence[str]]
"""``propose(doc, vocabulary, limit)``: new tags an LLM proposes when none of the vocabulary fits.
Only consulted with ``tags.allow_new``; the LLM layer provides it."""


def suggest_tags(
    suggester: TagSuggester | None, doc: Doc, config: Config, *, propose: LLMTagProposer | None = None
) -> list[str]:
    """At most ``classify.max_tags`` tags for ``doc``: vocabulary tags first; new ones only when
    ``tags.allow_new`` is on and an LLM proposer is given (nothing here invents a tag)."""
    limit = config.classify.max_tags
    tags = suggester.suggest(doc, limit) if suggester is not None else []
    if config.tags.allow_new and propose is not None and len(tags) < limit:
        vocabulary = list(suggester.vocabulary) if suggester is not None else []
        for tag in propose(doc, vocabulary, limit - len(tags)):
            if tag and tag not in tags:
                tags.append(tag)
    return tags[:limit]


def suggest_item_tags(store: Store, config: Config, item_ids: Iterable[int]) -> int:
    """Store tag suggestions in ``item.extra["suggested_tags"]`` for items that have no tags of their
    own. Suggestions are kept apart from the item's tags so they never feed the vocabulary until the
    user accepts them. Returns how many items got suggestions."""
    from ..store import Item

    suggester = tag_suggester(store)
    if suggester is None:
        return 0
    done = 0
    with store.session() as session:
        for item_id in item_ids:
            item = session.get(Item, item_id)
            if item is None or item.tags:
                continue
            tags = suggest_tags(suggester, item_doc(item), config)
            if tags:
                item.extra = {**(item.extra or {}), "suggested_tags": tags}
                done += 1
    return done
