"""What a word is to the engine: the indexed fields and their weights, the English stemmer, the
one word a synonym phrase is also indexed as, and the values filters compare (dates, handles).

The lowest floor of the engine (:mod:`.segments` and :mod:`.engine` build on it; :mod:`.compounds`,
:mod:`.snippets` and PostgreSQL's :mod:`.pg` use the same stemmer, so both stores and the snippets
compare words alike)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..config import Config

FIELDS = ("title", "summary", "text", "note", "tags", "author", "section", "kind")
"""The indexed fields, in the order of the FTS5 columns and of the field weights."""
WORD_FIELDS = ("title", "summary", "text", "note", "tags", "author")
"""The fields free words match: section and kind are reached only by ``section:`` and ``kind:``
filters (issue 16.3), as in the FTS5 match expressions."""


def field_weights(config: Config | None) -> list[float]:
    """Each field's weight (:data:`FIELDS` order): ``search.weights`` over the defaults."""
    configured = config.search.weights if config else {}
    # Tuned on the calibration halves of evals/queries.jsonl and evals/natural.jsonl (issue 16): with
    # coordination doing the balancing, a heavy title weight (it was 10) let a title holding one
    # common word outrank the item that answers a question in its body (natural r@5 0.66 -> 0.89).
    defaults = {"title": 1.0, "summary": 1.0, "text": 1.0, "note": 1.0, "tags": 1.0, "author": 1.0,
                "section": 0.3, "kind": 0.3}
    return [float(configured.get(f, defaults[f])) for f in FIELDS]


def date_number(value: str | None) -> int | None:
    """An ISO date (``2024-03-10``, or the start of a timestamp) as the integer 20240310, or None."""
    if not value or len(value) < 10 or not (value[:4] + value[5:7] + value[8:10]).isdigit():
        return None
    return int(value[:4] + value[5:7] + value[8:10])


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(value: str) -> str:
    """``value`` lower-cased in ASCII only, as SQLite's ``lower()`` does."""
    return value.translate(_ASCII_LOWER)


_shared_analyzer: Any = None


@functools.lru_cache(maxsize=262_144)
def stem(word: str) -> str:
    """``word`` as the index stores it: English stemmed (Snowball, through tantivy's analyzer, the
    same stemmer FTS5's ``porter`` approximates and PostgreSQL's index is given), anything else as it is."""
    global _shared_analyzer
    if _shared_analyzer is None:
        import tantivy

        _shared_analyzer = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).filter(
            tantivy.Filter.stemmer("english")).build()
    analyzed = _shared_analyzer.analyze(word)
    return analyzed[0] if analyzed else word


def compound_term(stemmed_form: Sequence[str]) -> str:
    """The one word a multi-word synonym form is also indexed as (its stemmed words joined by ``_``,
    which no segmented word holds between letters): a query scores it as the phrase, without positions."""
    return "_".join(stemmed_form)
