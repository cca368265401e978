"""The ranking engine: tantivy (Rust, in-process), its index in a directory beside the store file.

Why tantivy: FTS5's ``bm25()`` scores every row that matches an OR query before ``ORDER BY ...
LIMIT`` can cut, so a question made of common words walks most of the archive (issue 16: p95 140 ms
at 100k items). tantivy skips whole blocks of postings that cannot reach the top k (block-max
WAND), runs in the process (no service to start), and keeps fields apart, so the title still weighs
more than the body. The FTS5 table stays: it holds the segmented text that snippets and ``ask``
read, and it answers the exact-phrase and exclusion constraints.

The text is segmented by tidings (:mod:`.segment`) and handed over as words joined by spaces;
tantivy's ``whitespace`` tokenizer only splits on those spaces, so a query word and an indexed word
compare equal exactly as they do in FTS5.

Consistency with the store: the directory holds ``tidings-index.json`` with an id and the store's
index ``generation`` (``search_meta``) it matches. :mod:`.index` writes a batch to tantivy and
commits it *before* the SQLite transaction that clears the batch from the ``search_dirty`` queue
commits; a crash in between leaves the items queued, and indexing them again is idempotent (delete
by id, add). Any mismatch of id or generation (the directory deleted, copied from elsewhere, or
older than the store) re-queues every item.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

FIELDS = ("title", "summary", "text", "note", "tags", "author", "section", "kind")
"""The indexed fields, in the order of the FTS5 columns and of the field weights."""
WORD_FIELDS = ("title", "summary", "text", "note", "tags", "author")
"""The fields free words match: section and kind are reached only by ``section:`` and ``kind:``
filters (issue 16.3), as in the FTS5 match expressions."""
ENGINE_VERSION = "4"
"""Bumped whenever the schema below changes: an index of another version is built again."""
_MARKER = "tidings-index.json"
_WRITER_HEAP = 64_000_000


_TOKENIZER = "tidings"
"""Split on the spaces tidings put between words, then stem English words (Snowball), as FTS5's
``porter`` does for the same text: "embeddings" finds "embedding". Words of other scripts pass
through the stemmer unchanged."""


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=False, indexed=True, fast=True)
    # The item's date (:func:`.storage.item_date`) as YYYYMMDD, for since:/until: as a range over a fast
    # field. A date filter checked by SQL on the engine's hits had to widen to thousands of hits when
    # the range was narrow (a month of three years: 47 ms at 100k items).
    builder.add_integer_field("date", stored=False, indexed=True, fast=True)
    # author: compares the handle whole and the name by SQL's LIKE (query.filter_sql): the handle
    # lower-cased as SQLite does, the name as it is; the names are few, and matched in Python.
    builder.add_text_field("author_name", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("author_handle", stored=False, tokenizer_name="raw", index_option="basic")
    for name in FIELDS:
        if name == "kind":  # reached only by kind:, which compares the whole value (SQL's kind IN (...))
            builder.add_text_field(name, stored=False, tokenizer_name="raw", index_option="basic")
        else:
            builder.add_text_field(name, stored=False, tokenizer_name=_TOKENIZER, index_option="position")
    return builder.build()


def date_number(value: str | None) -> int | None:
    """An ISO date (``2024-03-10``, or the start of a timestamp) as the integer 20240310, or None."""
    if not value or len(value) < 10 or not (value[:4] + value[5:7] + value[8:10]).isdigit():
        return None
    return int(value[:4] + value[5:7] + value[8:10])


def _analyzer() -> Any:
    import tantivy

    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).filter(tantivy.Filter.stemmer("english")).build()


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(value: str) -> str:
    """``value`` lower-cased in ASCII only, as SQLite's ``lower()`` does."""
    return value.translate(_ASCII_LOWER)


class EngineDoc(NamedTuple):
    """What the engine indexes of one item."""

    fields: Sequence[str]
    """The segmented fields, in :data:`FIELDS` order (:func:`.storage.fts_row`)."""
    compounds: Sequence[str]
    """Per field, the :func:`compound_term` of each multi-word synonym form it holds, once per occurrence."""
    date: str | None
    """The item's date (ISO, :func:`.storage.item_date`), for since:/until:."""
    author: str | None
    handle: str | None

    def document(self, item_id: int) -> Any:
        import tantivy

        doc = tantivy.Document()
        doc.add_integer("id", item_id)
        day = date_number(self.date)
        if day is not None:
            doc.add_integer("date", day)
        for name, value in zip(FIELDS, self.fields, strict=True):
            if value:
                doc.add_text(name, value)
        for name, value in zip(FIELDS, self.compounds, strict=False):
            if value:  # a second value of the field: its words count in the field's length, as in FTS5's
                doc.add_text(name, value)
        if self.author:
            doc.add_text("author_name", self.author)
        if self.handle:
            doc.add_text("author_handle", ascii_lower(self.handle))
        return doc


class EngineIndex:
    """One store's tantivy index: on disk beside a file store, in memory for an in-memory one."""

    def __init__(self, path: Path | None) -> None:
        import tantivy

        self.path = path
        self.schema = _schema()
        self.analyzer = _analyzer()
        self._terms: dict[str, str] = {}
        self._searcher: Any = None
        self._doc_frequencies: dict[tuple[tuple[str, ...], ...], int] = {}
        self._field_frequencies: dict[tuple[str, str], int] = {}
        self._author_names: list[str] | None = None
        self._memory_marker: dict[str, str] = {}
        self.seen_generation: str | None = None
        if path is None:
            self.index = tantivy.Index(self.schema)
            self.index.register_tokenizer(_TOKENIZER, self.analyzer)
            return
        marker = self._read_marker()
        if marker.get("version") != ENGINE_VERSION and path.exists():
            _remove_index_dir(path)  # another schema: rebuilt from the store (its marker no longer matches)
        path.mkdir(parents=True, exist_ok=True)
        try:
            self.index = tantivy.Index(self.schema, path=str(path), reuse=True)
        except ValueError:
            log.warning("search: the index in %s could not be opened; it is built again", path)
            _remove_index_dir(path)
            path.mkdir(parents=True)
            self.index = tantivy.Index(self.schema, path=str(path), reuse=True)
        self.index.register_tokenizer(_TOKENIZER, self.analyzer)

    def term(self, word: str) -> str:
        """A query word as the index stores it (stemmed as the fields' tokenizer stems)."""
        term = self._terms.get(word)
        if term is None:
            analyzed = self.analyzer.analyze(word)
            term = analyzed[0] if analyzed else word
            if len(self._terms) > 50_000:
                self._terms.clear()
            self._terms[word] = term
        return term

    # --- the marker that ties the index to the store ---------------------------------------

    def _read_marker(self) -> dict[str, str]:
        if self.path is None:
            return dict(self._memory_marker)
        try:
            data = json.loads((self.path / _MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_marker(self, index_id: str, generation: str) -> None:
        marker = {"version": ENGINE_VERSION, "id": index_id, "generation": generation}
        if self.path is None:
            self._memory_marker = marker
            return
        tmp = self.path / (_MARKER + ".tmp")
        tmp.write_text(json.dumps(marker), encoding="utf-8")
        tmp.replace(self.path / _MARKER)  # atomic: a reader sees the old marker or the new one

    def matches(self, index_id: str | None, generation: str | None) -> bool:
        """Whether this index holds what the store's index generation says.

        One generation ahead also matches: that batch reached tantivy but its SQLite transaction
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
        self, ids: Sequence[int], docs: dict[int, EngineDoc], *, clear: bool = False
    ) -> Iterator[Callable[[], None]]:
        """Delete ``ids`` (or everything, with ``clear``) and add ``docs``, in one tantivy commit,
        made when the block calls what it is given (left uncalled, or on an error, nothing is
        committed). The documents go to tantivy's indexing thread on
        entry, so their indexing (a quarter of a rebuild's time at 100k items) runs in Rust while the
        block does the SQLite side of the same batch, instead of after it."""

        writer = self.index.writer(heap_size=_WRITER_HEAP, num_threads=1)
        committed = False

        def commit() -> None:
            nonlocal committed
            writer.commit()
            committed = True

        try:
            if clear:
                writer.delete_all_documents()
            else:
                for item_id in ids:
                    writer.delete_documents_by_term("id", item_id)
            for item_id, engine_doc in docs.items():
                writer.add_document(engine_doc.document(item_id))
            yield commit
            if not committed:
                writer.rollback()
        except BaseException:
            if not committed:
                writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()  # releases the writer's lock on the directory
            if committed:
                self.reload()

    # --- reading ---------------------------------------------------------------------------

    def reload(self) -> None:
        """See the last commit (this process's or another's)."""
        self.index.reload()
        self._searcher = None
        self._doc_frequencies = {}  # they belong to the index state just left
        self._field_frequencies = {}
        self._author_names = None

    @property
    def searcher(self) -> Any:
        """One searcher per index state: taking one per call costs more than small queries do."""
        if self._searcher is None:
            self._searcher = self.index.searcher()
        return self._searcher

    def search(self, query: Any, limit: int) -> list[tuple[int, float]]:
        searcher = self.searcher
        hits = searcher.search(query, limit, count=False).hits
        if not hits:
            return []
        ids = searcher.fast_field_values("id", [address for _score, address in hits])
        found = [(int(item_id), float(score)) for (score, _address), item_id in zip(hits, ids, strict=True)
                 if item_id is not None]
        # Equal scores in item order: the engine orders them by where the documents sit in its segments,
        # which differs between an index built in batches and the same index rebuilt.
        found.sort(key=lambda hit: (-hit[1], hit[0]))
        return found

    def author_names(self) -> list[str]:
        """Every author name the index holds (a term of ``author_name``), kept until the next reload."""
        if self._author_names is None:
            self._author_names = [term for term, _count in self.searcher.terms_with_prefix("author_name", "")]
        return self._author_names

    def num_docs(self) -> int:
        return int(self.searcher.num_docs)

    def doc_frequency(self, forms: Sequence[Sequence[str]]) -> int:
        """About how many items hold any of ``forms``: the largest count of any form's rarest word
        in any one field (exact per term and field, read from the term dictionary, no postings
        walked). A concept that is common anywhere is common. Kept until the next :meth:`reload`
        (about 40 term-dictionary lookups for a concept with synonyms, each crossing into Rust)."""
        key = tuple(tuple(form) for form in forms)
        cached = self._doc_frequencies.get(key)
        if cached is not None:
            return cached
        if len(self._doc_frequencies) > 50_000:
            self._doc_frequencies = {}
        best = 0
        for form in forms:
            if not form:
                continue
            rarest = min(max(self.field_frequency(name, self.term(word)) for name in WORD_FIELDS) for word in form)
            best = max(best, rarest)
        self._doc_frequencies[key] = best
        return best

    def field_frequency(self, name: str, term: str) -> int:
        """How many items hold ``term`` (as stored: stemmed) in field ``name``, from the term
        dictionary; kept until the next :meth:`reload`."""
        key = (name, term)
        cached = self._field_frequencies.get(key)
        if cached is None:
            if len(self._field_frequencies) > 200_000:
                self._field_frequencies = {}
            cached = self._field_frequencies[key] = int(self.searcher.doc_freq(name, term))
        return cached


def compound_term(stemmed_form: Sequence[str]) -> str:
    """The one word a multi-word synonym form is also indexed as (its stemmed words joined by ``_``,
    which no segmented word holds between letters): a term query on it scores what the phrase query
    scores, without reading positions (see :mod:`.rank`)."""
    return "_".join(stemmed_form)


_shared_analyzer: Any = None


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """``word`` as the index's tokenizer turns it (English stemmed, anything else as it is)."""
    global _shared_analyzer
    if _shared_analyzer is None:
        _shared_analyzer = _analyzer()
    analyzed = _shared_analyzer.analyze(word)
    return analyzed[0] if analyzed else word


_engines: dict[str, EngineIndex] = {}
_lock = threading.Lock()


def engine_path(conn: sqlite3.Connection) -> Path | None:
    """``<store file>.search/``, or None for an in-memory store."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    return Path(f"{path}.search") if path else None


_resolved: dict[Path, str] = {}


def _key(conn: sqlite3.Connection) -> tuple[str, Path | None]:
    path = engine_path(conn)
    if path is None:
        return f"memory:{id(conn)}", None
    resolved = _resolved.get(path)
    if resolved is None:  # resolving walks the path's links on disk: once per path, not per search
        resolved = _resolved[path] = str(path.resolve())
    return resolved, path


def engine_for(conn: sqlite3.Connection) -> EngineIndex:
    """The store's engine index, opened once per process (tantivy readers are thread-safe)."""
    key, path = _key(conn)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = EngineIndex(path)
    return engine


def fresh_engine(conn: sqlite3.Connection) -> EngineIndex:
    """An empty engine index in place of the store's current one (whatever state that was in)."""
    key, path = _key(conn)
    with _lock:
        _engines.pop(key, None)
        if path is not None and path.exists():
            _remove_index_dir(path)
        engine = _engines[key] = EngineIndex(path)
    return engine


def _remove_index_dir(path: Path) -> None:
    """Delete an index directory that tantivy may still be touching (an old handle's last merge or lock
    file lands while the tree is removed: "Directory not empty"). A few tries; then the directory is moved
    aside under a unique name, so the new index never starts among an old one's files."""
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
