"""The ranking engine: impact-ordered postings in numpy arrays, in a directory beside the store file.

Why this engine (issue 16): a search ranks by BM25 per field, the fields summed with their weights,
each concept (a word or a synonym set) scoring the best of its forms, plus a constant bonus for
holding the concept at all (the coordination, :mod:`.rank`). tantivy ran that as nested queries and
had to evaluate every concept twice for the bonus (p95 3.5 ms at 100k items, ten times its own
plain queries). Here every posting already holds its document's score for the term, the fields'
BM25 summed with their weights (an *impact*, as in impact-ordered indexes and bm25s), so a concept
is one scatter of a few arrays into a score vector, the bonus is added to the same entries, and the
top k is one ``argpartition``: ~0.35 ms p50 at 100k items with the query parsing, and recall@10 of
the labelled queries a little above tantivy's nested query (``bench/search.py``).

Layout (``<store>.search/``): *segments*, each an immutable directory of ``.npy`` arrays and a JSON
file, and ``tidings-index.json``, the manifest naming the live segments with the store's index
``generation`` they match. Like Lucene's segments:

- every batch of :func:`.index.refresh_index` writes one segment with its documents' raw term
  frequencies per field, and lists the ids it touched: a document of an older segment whose id a
  newer segment touched is dead (changed or deleted);
- a *base* segment also holds its impacts, computed with its own statistics (documents, average
  field lengths, document frequencies); a newer segment's impacts are computed when it is loaded,
  with the base's statistics, so its few documents score as if they had been in the base;
- when the newer segments hold more documents than the base, or there are more than
  :data:`_MAX_SEGMENTS`, they are merged into a new base (the statistics made current); a rebuild
  ends with one base (:meth:`EngineIndex.optimize`).

Consistency with the store, as before: :mod:`.index` writes a batch's segment and the manifest
*before* the SQLite transaction that clears the batch from the ``search_dirty`` queue commits; a
crash in between leaves the items queued, and indexing them again supersedes them. Any mismatch of
id, version or generation (the directory deleted, copied from elsewhere, older than the store)
re-queues every item. Segments are written under new names and never changed, and the manifest is
replaced atomically, so a reader in another process sees the old state or the new one.

The field weights are part of the impacts: :func:`.index.index_signature` holds them, and a change
of ``search.weights`` re-indexes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .segments import (
    Numbering,
    Segment,
    SegmentBuilder,
    impacts,
    live_masks,
    merge_segments,
    recode,
    statistics_for,
)
from .terms import WORD_FIELDS

log = logging.getLogger(__name__)

ENGINE_VERSION = "5"
"""Bumped whenever the layout below changes: an index of another version is built again."""
_MARKER = "tidings-index.json"
_MAX_SEGMENTS = 8
"""More newer segments than this are merged among themselves: each costs a few array calls per query word."""
_MERGE_SHARE = 0.25
"""Newer segments scored with the base's statistics drift from what a rebuild would score; past this
share of the base's documents the base is merged again (the base grows by a quarter at least each time)."""

# ------------------------------------------------------------------------------------------
# Reading: the live documents of all segments as one score vector
# ------------------------------------------------------------------------------------------


@dataclass
class _Part:
    segment: Segment
    offset: int
    terms: dict[str, int]
    impacts: np.ndarray
    indptr: np.ndarray
    docs: np.ndarray


class Reader:
    """The live state of one manifest: every segment's documents at an offset of one score vector."""

    def __init__(self, segments: Sequence[Segment], weights: Sequence[float]) -> None:
        self.segments = list(segments)
        self.parts: list[_Part] = []
        base = next((s for s in segments if s.stats is not None), None)
        base_terms: dict[str, int] | None = None
        offset = 0
        for segment in segments:
            terms = {t: i for i, t in enumerate(segment.terms)}
            if segment.impacts is not None and segment is base:
                scored = np.asarray(segment.impacts)
                base_terms = terms  # the base comes first: its numbers serve every newer segment
            else:
                scored = impacts(segment, *statistics_for(segment, base, base_terms), weights)
            # Plain arrays over the mapped files (a memmap's slicing goes through Python), the positions as
            # numpy's own index type: gathering and scattering by int32 converts them first, 2.5x slower.
            self.parts.append(_Part(segment, offset, terms, scored, np.asarray(segment.indptr),
                                    np.asarray(segment.docs).astype(np.intp)))
            offset += len(segment.ids)
        self.size = offset
        masks = live_masks(self.segments)
        self.live = np.concatenate(masks) if masks else np.ones(0, dtype=bool)
        self.dead = np.flatnonzero(~self.live)
        self.ids = np.concatenate([np.asarray(p.segment.ids) for p in self.parts]) if self.parts else np.zeros(0, np.int64)
        self._frequencies: dict[str, int] = {}
        self._author_names: list[str] | None = None
        self._filter_columns: dict[str, Any] | None = None

    def num_docs(self) -> int:
        return int(self.size - len(self.dead))

    def postings(self, term: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """The term's (positions in the score vector, impacts), one pair per segment that holds it."""
        found = []
        for part in self.parts:
            number = part.terms.get(term)
            if number is None:
                continue
            start, end = part.indptr[number : number + 2].tolist()
            docs = part.docs[start:end]
            found.append((docs + part.offset if part.offset else docs, part.impacts[start:end]))
        return found

    def conjunction(self, terms: Sequence[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """The documents holding every one of ``terms``, each scoring the sum of their impacts (per
        segment), and how many they are."""
        found = []
        for part in self.parts:
            numbers = [part.terms.get(t) for t in terms]
            if any(n is None for n in numbers):
                continue
            indptr, docs = part.indptr, part.docs
            spans = [(int(indptr[n]), int(indptr[n + 1])) for n in numbers]  # type: ignore[index]
            common = docs[spans[0][0] : spans[0][1]]
            for start, end in spans[1:]:
                common = np.intersect1d(common, docs[start:end], assume_unique=True)
            if not len(common):
                continue
            total = np.zeros(len(common), dtype=np.float32)
            for start, end in spans:
                total += part.impacts[start:end][np.searchsorted(docs[start:end], common)]
            found.append((common + part.offset, total))
        return found, sum(len(c) for c, _t in found)

    def frequency(self, term: str) -> int:
        """How many documents hold ``term`` in any word field (dead ones included: they are few)."""
        cached = self._frequencies.get(term)
        if cached is None:
            cached = 0
            for part in self.parts:
                number = part.terms.get(term)
                if number is not None:
                    cached += int(part.indptr[number + 1] - part.indptr[number])
            if len(self._frequencies) > 200_000:
                self._frequencies = {}
            self._frequencies[term] = cached
        return cached

    def author_names(self) -> list[str]:
        if self._author_names is None:
            self._author_names = sorted({n for p in self.parts for n in p.segment.author_names})
        return self._author_names

    def _columns(self) -> dict[str, Any]:
        """The documents' filter values as arrays over the score vector, codes numbered across segments."""
        if self._filter_columns is None:
            kind_codes, author_codes, handle_codes = Numbering(), Numbering(), Numbering()
            parts = self.parts
            self._filter_columns = {
                "dates": np.concatenate([np.asarray(p.segment.dates) for p in parts]) if parts else np.zeros(0, np.int32),
                "kinds": _joined([recode(np.asarray(p.segment.kinds), p.segment.kind_names, kind_codes) for p in parts]),
                "authors": _joined([recode(np.asarray(p.segment.authors), p.segment.author_names, author_codes)
                                    for p in parts]),
                "handles": _joined([recode(np.asarray(p.segment.handles), p.segment.handle_names, handle_codes)
                                    for p in parts]),
                "kind_codes": dict(kind_codes), "author_codes": dict(author_codes), "handle_codes": dict(handle_codes),
            }
        return self._filter_columns

    def condition(self, kinds: Sequence[str] = (), since: int | None = None, until: int | None = None,
                  authors: Sequence[str] | None = None, handles: Sequence[str] | None = None) -> Condition:
        """Which of some positions pass ``kind:``/date/author filters (``authors``/``handles``: the
        names and lower-cased handles that pass; None: no author filter). Checked on the documents
        that scored, not on all: a month of three years selects a few thousand of 100k."""
        columns = self._columns()
        wanted_kinds = np.array([c for name, c in columns["kind_codes"].items() if name in {k.lower() for k in kinds}],
                                dtype=np.int32)
        named = np.array([c for name, c in columns["author_codes"].items() if name in set(authors or ())], np.int32)
        handled = np.array([c for name, c in columns["handle_codes"].items() if name in set(handles or ())], np.int32)
        by_author = authors is not None or handles is not None

        def passing(positions: np.ndarray) -> np.ndarray:
            ok = self.live[positions]
            if kinds:
                ok &= np.isin(columns["kinds"][positions], wanted_kinds)
            if since is not None or until is not None:
                dates = columns["dates"][positions]
                ok &= dates > 0
                if since is not None:
                    ok &= dates >= since
                if until is not None:
                    ok &= dates <= until
            if by_author:
                ok &= np.isin(columns["authors"][positions], named) | np.isin(columns["handles"][positions], handled)
            return ok

        return passing

    def among(self, item_ids: Sequence[int]) -> Condition:
        """Which of some positions are documents of ``item_ids``."""
        allowed = np.array(sorted(set(item_ids)), dtype=np.int64)
        return lambda positions: np.isin(self.ids[positions], allowed, assume_unique=False)

    def top(self, scores: np.ndarray, limit: int, conditions: Sequence[Condition] = (),
            likely: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``limit`` best ``(item id, score)`` of a score vector (dead documents set to zero in
        it) that pass every one of ``conditions``, equal scores in item order. ``likely``: distinct
        positions of documents likely to rank well (those holding the query's rarest concept); the
        k-th best score among those of them that pass is a floor no document below it can pass, so
        the search for the best is among the few above it instead of among every document that scored."""
        if len(self.dead):
            scores[self.dead] = 0.0
        if not self.size or limit <= 0:
            return []

        def passing(positions: np.ndarray) -> np.ndarray:
            for condition in conditions:
                positions = positions[condition(positions)]
            return positions

        # A few more than asked for, so that equal scores at the cut are ordered by item, not by
        # where the documents sit in the segments (which differs between an index built in batches
        # and the same index rebuilt).
        k = limit + 8
        floor = np.float32(0.0)
        if likely is not None and len(likely) >= k:
            sample = scores[passing(likely)]
            if len(sample) >= k:
                floor = np.partition(sample, len(sample) - k)[len(sample) - k]
        held = passing((scores >= floor).nonzero()[0] if floor > 0 else (scores > 0).nonzero()[0])
        chosen = scores[held]
        if k < len(held):
            # argpartition of the negated scores: partitioning for the largest k from the top end is
            # many times slower in numpy when many scores are equal.
            within = np.argpartition(-chosen, k - 1)[:k]
            held, chosen = held[within], chosen[within]
        found = list(zip(self.ids[held].tolist(), chosen.tolist(), strict=True))
        found.sort(key=lambda hit: (-hit[1], hit[0]))
        return found[:limit]


Condition = Callable[[np.ndarray], np.ndarray]
"""Positions in the score vector -> which of them pass (a boolean array)."""


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


# ------------------------------------------------------------------------------------------
# The index on disk (or in memory)
# ------------------------------------------------------------------------------------------


class EngineIndex:
    """One store's engine index: segments on disk beside a file store, in memory for an in-memory one."""

    def __init__(self, path: Path | None, weights: Sequence[float] | None = None) -> None:
        self.path = path
        self.weights = list(weights) if weights is not None else [1.0] * len(WORD_FIELDS)
        self._memory: dict[str, Segment] = {}
        self._memory_marker: dict[str, Any] = {}
        self._pending: list[str] | None = None
        self._reader: Reader | None = None
        self.seen_generation: str | None = None
        self._marker_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._marker_path = "" if path is None else str(path / _MARKER)
        if path is None:
            return
        marker = self._read_marker()
        if marker.get("version") != ENGINE_VERSION and path.exists():
            _remove_index_dir(path)  # another layout: rebuilt from the store (its marker no longer matches)
        path.mkdir(parents=True, exist_ok=True)

    # --- the manifest that ties the index to the store ---------------------------------------

    def _read_marker(self) -> dict[str, Any]:
        """The manifest as on disk now; parsed again only when its file changed (every search checks it)."""
        if self.path is None:
            return dict(self._memory_marker)
        marker = self._marker_path
        try:
            status = os.stat(marker)
            seen = (status.st_ino, status.st_mtime_ns, status.st_size)
            if self._marker_cache is not None and self._marker_cache[0] == seen:
                return dict(self._marker_cache[1])
            with open(marker, encoding="utf-8") as file:
                data = json.load(file)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        self._marker_cache = (seen, data)
        return dict(data)

    def write_marker(self, index_id: str, generation: str) -> None:
        """Make the segments written since (or the current ones) the index's state at ``generation``."""
        segments = self._pending if self._pending is not None else self._read_marker().get("segments", [])
        marker = {"version": ENGINE_VERSION, "id": index_id, "generation": generation, "segments": segments}
        self._pending = None
        if self.path is None:
            self._memory_marker = marker
            self._memory = {name: self._memory[name] for name in segments if name in self._memory}
        else:
            tmp = self.path / (_MARKER + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(marker), encoding="utf-8")
            tmp.replace(self.path / _MARKER)  # atomic: a reader sees the old manifest or the new one
            self._remove_unlisted(set(segments))
        self.reload()

    def matches(self, index_id: str | None, generation: str | None) -> bool:
        """Whether this index holds what the store's index generation says.

        One generation ahead also matches: that batch reached the engine but its SQLite transaction
        did not commit (a crash, or another process still committing it), so its items are still
        queued and indexing them again makes both sides equal."""
        marker = self._read_marker()
        current = int(generation or 0)
        return (
            index_id is not None and marker.get("version") == ENGINE_VERSION and marker.get("id") == index_id
            and marker.get("generation") in (str(current), str(current + 1))
        )

    # --- writing ---------------------------------------------------------------------------

    @contextmanager
    def replacing(
        self, ids: Sequence[int], docs: SegmentBuilder, *, merge: bool = True
    ) -> Iterator[Callable[[], None]]:
        """Supersede ``ids`` with ``docs``: the segment is built on entry and written when the block
        calls what it is given; :meth:`write_marker` then makes it live. Left uncalled, or on an
        error, nothing is written. Without ``merge`` (a bulk refresh, which ends with
        :meth:`optimize`) the segments only pile up."""
        segment = docs.build(_segment_name(), ids)
        listed = list(self._read_marker().get("segments", []))

        def commit() -> None:
            self._store(segment)
            names = [*listed, segment.name]
            self._pending = self._merged(names) if merge else names

        yield commit

    def optimize(self) -> None:
        """Merge every segment into one base (the end of a rebuild); the manifest keeps its id and generation."""
        marker = self._read_marker()
        names = list(marker.get("segments", []))
        if len(names) > 1 or (names and not self._size(names[0])[1]):
            self._pending = [self._merge(names)]
            self.write_marker(marker.get("id", ""), marker.get("generation", "0"))

    def _merged(self, names: list[str]) -> list[str]:
        """The segments after the merge policy: newer segments holding more than
        :data:`_MERGE_SHARE` of the base's documents are merged with it into a new base (the
        statistics made current); more than :data:`_MAX_SEGMENTS` newer ones are merged among
        themselves."""
        if len(names) < 2:
            return names
        base_documents, is_base = self._size(names[0])
        newer = sum(self._size(n)[0] for n in names[1:])
        if not is_base or newer > base_documents * _MERGE_SHARE:
            return [self._merge(names)]
        if len(names) - 1 > _MAX_SEGMENTS:
            return [names[0], self._merge(names[1:], base=False)]
        return names

    def _merge(self, names: Sequence[str], *, base: bool = True) -> str:
        segments = [self._load(n) for n in names]
        merged = merge_segments(_segment_name(), segments, live_masks(segments), self.weights, base=base)
        self._store(merged)
        return merged.name

    def _store(self, segment: Segment) -> None:
        if self.path is None:
            self._memory[segment.name] = segment
        else:
            segment.save(self.path / segment.name)

    def _size(self, name: str) -> tuple[int, bool]:
        """How many documents a segment holds, and whether it is a base, without loading its terms."""
        if self.path is None:
            segment = self._memory[name]
            return len(segment.ids), segment.stats is not None
        return Segment.size(self.path / name)

    def _load(self, name: str) -> Segment:
        if self.path is None:
            return self._memory[name]
        return Segment.load(self.path / name)

    def _remove_unlisted(self, listed: set[str]) -> None:
        """Segments no manifest lists any more (merged, or left by a run killed before its manifest).
        Another process's reader keeps the files it has mapped; one that reads the old manifest
        afterwards finds a segment gone and reads the manifest again (:meth:`reader`)."""
        assert self.path is not None
        for entry in self.path.iterdir():
            if entry.is_dir() and entry.name.startswith("seg-") and entry.name not in listed:
                shutil.rmtree(entry, ignore_errors=True)

    # --- reading ---------------------------------------------------------------------------

    def reload(self) -> None:
        """See the last manifest (this process's or another's)."""
        self._reader = None

    @property
    def reader(self) -> Reader:
        """One reader per index state: loading one per call costs more than queries do."""
        if self._reader is None:
            for attempt in range(5):
                names = self._read_marker().get("segments", [])
                try:
                    self._reader = Reader([self._load(n) for n in names], self.weights)
                    break
                except (FileNotFoundError, KeyError):
                    if attempt == 4:
                        raise
                    time.sleep(0.02 * (attempt + 1))  # a merge replaced them after the manifest was read
        assert self._reader is not None
        return self._reader



def _segment_name() -> str:
    return f"seg-{time.time_ns():x}-{uuid.uuid4().hex[:6]}"


_engines: dict[tuple[str, tuple[float, ...]], EngineIndex] = {}
_lock = threading.Lock()


def engine_path(conn: sqlite3.Connection) -> Path | None:
    """``<store file>.search/``, or None for an in-memory store."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    return Path(f"{path}.search") if path else None


_resolved: dict[Path, str] = {}


_by_connection: dict[int, tuple[sqlite3.Connection, str, Path | None]] = {}
"""Each pooled connection's engine key (the connection kept, so that its id is not another's)."""


def _key(conn: sqlite3.Connection) -> tuple[str, Path | None]:
    known = _by_connection.get(id(conn))
    if known is not None and known[0] is conn:  # asking SQLite for the file and resolving it: a tenth of a search
        return known[1], known[2]
    path = engine_path(conn)
    if path is None:
        key = f"memory:{id(conn)}"
    else:
        key = _resolved.get(path) or _resolved.setdefault(path, str(path.resolve()))
    if len(_by_connection) > 256:
        _by_connection.clear()
    _by_connection[id(conn)] = (conn, key, path)
    return key, path


def engine_for(conn: sqlite3.Connection, weights: Sequence[float]) -> EngineIndex:
    """The store's engine index, opened once per process and per set of field weights."""
    key, path = _key(conn)
    engine = _engines.get((key, tuple(weights)))
    if engine is None:
        with _lock:
            engine = _engines.get((key, tuple(weights)))
            if engine is None:
                engine = _engines[(key, tuple(weights))] = EngineIndex(path, weights)
    return engine


def fresh_engine(conn: sqlite3.Connection, weights: Sequence[float]) -> EngineIndex:
    """An empty engine index in place of the store's current one (whatever state that was in)."""
    key, path = _key(conn)
    with _lock:
        for stale in [k for k in _engines if k[0] == key]:
            _engines.pop(stale)
        if path is not None and path.exists():
            _remove_index_dir(path)
        engine = _engines[(key, tuple(weights))] = EngineIndex(path, weights)
    return engine


def _remove_index_dir(path: Path) -> None:
    """Delete an index directory; if that fails (a file held elsewhere), move it aside under a unique
    name first, so the new index never starts among an old one's files."""
    for attempt in range(5):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05 * (attempt + 1))
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    path.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)
    log.warning("search: %s could not be removed at once; moved aside to %s", path, aside)


def new_index_id() -> str:
    return uuid.uuid4().hex
