"""The engine's segments: one batch's documents as postings with per-field term frequencies, built
(:class:`SegmentBuilder`), saved and loaded (:class:`Segment`), scored (:func:`impacts`) and merged
(:func:`merge_segments`); which documents of a list of segments are live (:func:`live_masks`).
How segments are kept, read and ranked with is :mod:`.engine`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .terms import FIELDS, WORD_FIELDS, ascii_lower, date_number, stem

K1, B = 1.2, 0.75
"""BM25's parameters, as tantivy and FTS5 use them."""
_TF = np.uint8
"""A term's frequency in a field, capped at 255: BM25 saturates long before (255 occurrences score
99.5 % of infinitely many with k1 1.2), and the frequencies are most of a segment's bytes."""
_TF_MAX = np.iinfo(_TF).max


class EngineDoc(NamedTuple):
    """What the engine indexes of one item."""

    fields: Sequence[Sequence[str]]
    """The segmented fields' words, in :data:`FIELDS` order (:func:`.storage.field_words`)."""
    compounds: Sequence[str]
    """Per field, the :func:`compound_term` of each multi-word synonym form it holds, once per occurrence."""
    date: str | None
    """The item's date (ISO, :func:`.storage.item_date`), for since:/until:."""
    author: str | None
    handle: str | None


class Numbering(dict[str, int]):
    """Name -> number, numbering a new name as it is first asked for (``map(numbering.__getitem__, …)``
    stays in C for the names already seen)."""

    def __missing__(self, word: str) -> int:
        number = self[word] = len(self)
        return number


# ------------------------------------------------------------------------------------------
# Segments
# ------------------------------------------------------------------------------------------


@dataclass
class Segment:
    """One batch's documents, immutable once written. Postings are (term, document) pairs sorted by
    term then document, with the term's frequency in each word field (``tf``, [pairs, fields])."""

    name: str
    ids: np.ndarray  # int64 [n]: item ids
    dates: np.ndarray  # int32 [n]: YYYYMMDD, 0 without a date
    kinds: np.ndarray  # int32 [n]: index into kind_names
    authors: np.ndarray  # int32 [n]: index into author_names (-1: none)
    handles: np.ndarray  # int32 [n]: index into handle_names (-1: none)
    lengths: np.ndarray  # float32 [fields, n]: words per field (compounds included)
    terms: list[str]  # the segment's terms (stemmed), numbered by position
    indptr: np.ndarray  # int64 [terms + 1]
    docs: np.ndarray  # int32 [pairs]
    tf: np.ndarray  # uint8 [pairs, fields]
    touched: np.ndarray  # int64: every item id this batch indexed or removed
    kind_names: list[str]
    author_names: list[str]
    handle_names: list[str]
    impacts: np.ndarray | None = None  # float32 [pairs]: a base's scores, with its own statistics
    stats: dict[str, Any] | None = None  # a base's: documents, average lengths, df per field [fields, terms]

    _ARRAYS = ("ids", "dates", "kinds", "authors", "handles", "lengths", "indptr", "docs", "tf", "touched")

    def save(self, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in self._ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(self, name))
        if self.impacts is not None and self.stats is not None:
            np.save(tmp / "impacts.npy", self.impacts)
            np.save(tmp / "df.npy", self.stats["df"])
        meta = {"terms": self.terms, "kind_names": self.kind_names, "author_names": self.author_names,
                "handle_names": self.handle_names,
                "stats": None if self.stats is None else {"documents": self.stats["documents"],
                                                          "average": self.stats["average"]}}
        (tmp / "segment.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        tmp.rename(directory)

    @staticmethod
    def size(directory: Path) -> tuple[int, bool]:
        """How many documents the segment in ``directory`` holds, and whether it is a base (has impacts)."""
        return len(np.load(directory / "ids.npy", mmap_mode="r")), (directory / "impacts.npy").exists()

    @classmethod
    def load(cls, directory: Path) -> Segment:
        meta = json.loads((directory / "segment.json").read_text(encoding="utf-8"))
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in cls._ARRAYS}
        stats = None
        impacts = None
        if meta["stats"] is not None:
            impacts = np.load(directory / "impacts.npy", mmap_mode="r")
            stats = {**meta["stats"], "df": np.load(directory / "df.npy", mmap_mode="r")}
        return cls(name=directory.name, terms=meta["terms"], kind_names=meta["kind_names"],
                   author_names=meta["author_names"], handle_names=meta["handle_names"], impacts=impacts,
                   stats=stats, **arrays)


def _codes(values: Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """Each value's number among the distinct values (-1 for none), and those values in number order."""
    names = Numbering()
    return np.array([-1 if v is None else names[v] for v in values], dtype=np.int32), list(names)


class SegmentBuilder:
    """Collects documents for one segment as they are segmented (:meth:`add`, in item order), keeping
    only word numbers: a batch of word lists kept alive until the segment is built slows Python's
    garbage collector (a rebuild of 100k items took 8 % longer)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self._words = Numbering()
        self._codes: list[int] = []
        self._counts: list[int] = []  # words per (document, word field), in that order
        self._dates: list[int] = []
        self._kinds: list[str] = []
        self._authors: list[str | None] = []
        self._handles: list[str | None] = []

    def add(self, item_id: int, doc: EngineDoc) -> None:
        if self.ids and item_id <= self.ids[-1]:
            raise ValueError("documents are added in item order")
        self.ids.append(item_id)
        lookup = self._words.__getitem__
        for f in range(len(WORD_FIELDS)):
            field_words = doc.fields[f]
            compound = doc.compounds[f] if f < len(doc.compounds) else ""
            if compound:
                field_words = [*field_words, *compound.split(" ")]
            self._codes.extend(map(lookup, field_words))
            self._counts.append(len(field_words))
        self._dates.append(date_number(doc.date) or 0)
        self._kinds.append(" ".join(doc.fields[FIELDS.index("kind")]).lower())
        self._authors.append(doc.author or None)
        self._handles.append(ascii_lower(doc.handle) if doc.handle else None)

    def build(self, name: str, touched: Sequence[int]) -> Segment:
        """The segment of the documents added, touching ``touched``: word -> term by :func:`stem`
        (each distinct word once), each word field's words and compound words counted per document."""
        n, nfields = len(self.ids), len(WORD_FIELDS)
        term_numbers = Numbering()
        word_term = np.fromiter((term_numbers[stem(w)] for w in self._words), dtype=np.int64, count=len(self._words))
        terms = list(term_numbers)
        token_terms = word_term[np.array(self._codes, dtype=np.int64)] if self._codes else np.zeros(0, np.int64)
        per_slot = np.array(self._counts, dtype=np.int64)
        slots = np.arange(n * nfields, dtype=np.int64)
        keys, tf_counts = np.unique(
            (token_terms * max(n, 1) + np.repeat(slots // nfields, per_slot)) * nfields + np.repeat(slots % nfields, per_slot),
            return_counts=True)
        pairs = keys // nfields
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = pairs[1:] != pairs[:-1]
        unique_pairs = pairs[first]
        tf = np.zeros((len(unique_pairs), nfields), dtype=_TF)
        tf[np.cumsum(first) - 1, keys % nfields] = np.minimum(tf_counts, _TF_MAX)
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(unique_pairs // max(n, 1), minlength=len(terms)), out=indptr[1:])
        kinds, kind_names = _codes(self._kinds)
        authors, author_names = _codes(self._authors)
        handles, handle_names = _codes(self._handles)
        return Segment(name=name, ids=np.array(self.ids, dtype=np.int64), dates=np.array(self._dates, dtype=np.int32),
                       kinds=kinds, authors=authors, handles=handles,
                       lengths=per_slot.reshape(n, nfields).T.astype(np.float32), terms=terms, indptr=indptr,
                       docs=(unique_pairs % max(n, 1)).astype(np.int32), tf=tf,
                       touched=np.array(sorted(set(touched)), dtype=np.int64), kind_names=kind_names,
                       author_names=author_names, handle_names=handle_names)


def _posting_terms(segment: Segment) -> np.ndarray:
    """Each posting's term number (the postings are grouped by term, ``indptr`` bounding each group)."""
    return np.repeat(np.arange(len(segment.terms)), np.diff(np.asarray(segment.indptr)))


def _document_frequencies(segment: Segment) -> np.ndarray:
    """Per word field and term, how many of the segment's documents hold the term there ([fields, terms])."""
    pair_terms = _posting_terms(segment)
    tf = np.asarray(segment.tf)
    return np.stack([np.bincount(pair_terms[tf[:, f] > 0], minlength=len(segment.terms))
                     for f in range(len(WORD_FIELDS))]) if len(segment.terms) else np.zeros((len(WORD_FIELDS), 0), np.int64)


def impacts(segment: Segment, documents: int, average: Sequence[float], df: np.ndarray,
             weights: Sequence[float]) -> np.ndarray:
    """Each posting's score: the fields' BM25 (``df``: per field, the document frequency of each of the
    segment's terms) times the fields' weights, summed."""
    pair_terms = _posting_terms(segment)
    docs = np.asarray(segment.docs)
    tf_all = np.asarray(segment.tf)
    lengths = np.asarray(segment.lengths)
    total = np.zeros(len(docs), dtype=np.float32)
    for f, weight in enumerate(weights[: len(WORD_FIELDS)]):
        if weight <= 0 or not len(docs):
            continue
        tf = tf_all[:, f].astype(np.float32)
        if not tf.any():
            continue
        idf = np.log1p((documents - df[f] + 0.5) / (df[f] + 0.5)).astype(np.float32)
        norm = K1 * (1 - B + B * lengths[f][docs] / max(average[f], 1e-9))
        total += weight * idf[pair_terms] * (tf * (K1 + 1) / (tf + norm))
    return total


def merge_segments(name: str, segments: Sequence[Segment], live: Sequence[np.ndarray], weights: Sequence[float],
                   *, base: bool = True) -> Segment:
    """One segment of the live documents of ``segments`` (``live``: each segment's live mask), in item
    order: a base, its impacts computed with its own statistics; or (``base=False``, newer segments
    merged among themselves) one that still touches every id they touched, so what they superseded in
    the base stays superseded."""
    nfields = len(WORD_FIELDS)
    vocabulary = Numbering()
    kind_vocab, author_vocab, handle_vocab = Numbering(), Numbering(), Numbering()
    ids_parts, date_parts, kind_parts, author_parts, handle_parts, length_parts = [], [], [], [], [], []
    term_parts, doc_parts, tf_parts = [], [], []
    offset = 0
    for segment, mask in zip(segments, live, strict=True):
        keep = np.flatnonzero(mask)
        if not len(keep):
            continue
        local = np.cumsum(mask) - 1 + offset  # each live document's place in the concatenation
        offset += len(keep)
        ids_parts.append(np.asarray(segment.ids)[keep])
        date_parts.append(np.asarray(segment.dates)[keep])
        kind_parts.append(recode(np.asarray(segment.kinds)[keep], segment.kind_names, kind_vocab))
        author_parts.append(recode(np.asarray(segment.authors)[keep], segment.author_names, author_vocab))
        handle_parts.append(recode(np.asarray(segment.handles)[keep], segment.handle_names, handle_vocab))
        length_parts.append(np.asarray(segment.lengths)[:, keep])
        term_map = np.fromiter((vocabulary[t] for t in segment.terms), dtype=np.int64, count=len(segment.terms))
        pair_terms = _posting_terms(segment)
        docs = np.asarray(segment.docs)
        alive = mask[docs]
        term_parts.append(term_map[pair_terms[alive]])
        doc_parts.append(local[docs[alive]])
        tf_parts.append(np.asarray(segment.tf)[alive])
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
    n = len(ids)
    positions = np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int64)
    pair_terms = np.concatenate(term_parts) if term_parts else np.zeros(0, np.int64)
    tf = np.concatenate(tf_parts).astype(_TF) if tf_parts else np.zeros((0, nfields), _TF)
    if n > 1 and not (ids[1:] > ids[:-1]).all():  # batches of a refresh come in item order: usually sorted already
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        place = np.empty(n, dtype=np.int64)
        place[order] = np.arange(n)
        positions = place[positions]
        by_key = np.argsort(pair_terms * n + positions, kind="stable")
    else:
        order = np.arange(n)
        # In item order already, each term's documents come in order within and across segments.
        by_key = np.argsort(pair_terms, kind="stable")
    indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_terms, minlength=len(vocabulary)), out=indptr[1:])

    def ordered(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts)[order] if parts else np.zeros(0, dtype)

    merged = Segment(
        name=name, ids=ids, dates=ordered(date_parts, np.int32), kinds=ordered(kind_parts, np.int32),
        authors=ordered(author_parts, np.int32), handles=ordered(handle_parts, np.int32),
        lengths=np.concatenate(length_parts, axis=1)[:, order] if length_parts else np.zeros((nfields, 0), np.float32),
        terms=list(vocabulary), indptr=indptr, docs=positions[by_key].astype(np.int32), tf=tf[by_key],
        touched=ids.copy() if base else np.unique(np.concatenate([np.asarray(s.touched) for s in segments])),
        kind_names=list(kind_vocab), author_names=list(author_vocab), handle_names=list(handle_vocab),
    )
    if not base:
        return merged
    df = _document_frequencies(merged)
    average = _average_lengths(merged)
    merged.stats = {"documents": n, "average": average, "df": df}
    merged.impacts = impacts(merged, n, average, df, weights)
    return merged


def recode(codes: np.ndarray, names: list[str], vocabulary: Numbering) -> np.ndarray:
    mapping = np.array([vocabulary[name] for name in names] + [-1], dtype=np.int32)
    return mapping[codes]  # -1 (no value) indexes the appended -1


def live_masks(segments: Sequence[Segment]) -> list[np.ndarray]:
    """Per segment, which of its documents are live: those whose id no newer segment touched (every
    segment touches its own documents' ids, and a batch also the ids it deleted)."""
    if not segments:
        return []
    touched = [np.asarray(s.touched) for s in segments]
    ids = np.concatenate(touched)
    numbers = np.repeat(np.arange(len(segments)), [len(t) for t in touched])
    order = np.lexsort((numbers, ids))  # by id, then segment: an id's last entry is its newest toucher
    ids, numbers = ids[order], numbers[order]
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[1:] != ids[:-1]
    ids, newest = ids[last], numbers[last]
    masks = []
    for number, segment in enumerate(segments):
        own = np.asarray(segment.ids)
        masks.append(newest[np.searchsorted(ids, own)] == number if len(own) else np.ones(0, dtype=bool))
    return masks


def _average_lengths(segment: Segment) -> list[float]:
    lengths = np.asarray(segment.lengths)
    return [float(lengths[f].sum()) / max(len(segment.ids), 1) for f in range(len(WORD_FIELDS))]


def statistics_for(segment: Segment, base: Segment | None, base_terms: dict[str, int] | None = None
                   ) -> tuple[int, list[float], np.ndarray]:
    """The statistics a newer segment is scored with: the base's documents and average lengths, and
    per term the base's document frequency plus the segment's own (``base_terms``: the base's term
    numbers, when the caller has them already)."""
    own = _document_frequencies(segment)
    if base is None or base.stats is None:
        return len(segment.ids), _average_lengths(segment), own
    if base_terms is None:
        base_terms = {t: i for i, t in enumerate(base.terms)}
    base_df = np.asarray(base.stats["df"])
    known = np.array([base_terms.get(t, -1) for t in segment.terms], dtype=np.int64)
    df = own.copy()
    hit = known >= 0
    if hit.any():
        df[:, hit] += base_df[:, known[hit]]
    base_documents = int(base.stats["documents"])
    documents = base_documents + len(segment.ids)
    lengths = np.asarray(segment.lengths)
    average = [(float(a) * base_documents + float(lengths[f].sum())) / max(documents, 1)
               for f, a in enumerate(base.stats["average"])]
    return documents, average, df
