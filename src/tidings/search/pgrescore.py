"""Per-field BM25 over a PostgreSQL store's best candidates, scored as the SQLite side's engine scores.

``ts_rank_cd`` scores a whole document, so a word in a short title weighs what it weighs in a long
text; the SQLite side's engine (:func:`.rank.concept_scores`) scores each field with BM25 (k1 1.2,
b 0.75, the field's own average length and document frequency), adds the fields up by their weights
and a concept's distinct forms up, and adds the presence bonus. This module
does the same over the few hundred candidates the tsvector query returns, from the segmented
fields ``search_docs`` keeps, so both stores rank alike.

Document frequencies per field are the counts ``search_terms`` keeps per lexeme and weight (``A``
is the title); summary and note share weight B, tags and author weight D, so those pairs share one
frequency.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .query import Group
from .terms import stem

K1, B = 1.2, 0.75
FIELD_CLASS = {"title": "A", "summary": "B", "note": "B", "text": "C", "tags": "D", "author": "D"}
_cache: dict[tuple[Any, ...], Any] = {}


def lexeme(word: str) -> str:
    """A segmented word as the PostgreSQL index holds it: English stemmed (as on SQLite), the rest as it is."""
    return stem(word) if word.isascii() else word


def quoted(value: str) -> str:
    """``value`` as one quoted lexeme of a tsvector or tsquery literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _cached(key: tuple[Any, ...], compute: Any) -> Any:
    if key not in _cache:
        if len(_cache) > 20_000:
            _cache.clear()
        _cache[key] = compute()
    return _cache[key]


def _idf(total: int, df: int) -> float:
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


LENGTHS_KEY = "field_lengths"
"""``search_meta`` key: the words each field holds over the whole index, kept by every index batch
(:func:`length_sums`), so the average lengths cost no scan of the texts."""


def word_count(value: str | None) -> int:
    return len([w for w in (value or "").split(" ") if w])


def length_sums_sql() -> str:
    """SQL summing each field's words over ``search_docs`` rows (``WHERE`` appended by the caller)."""
    return "SELECT " + ", ".join(
        f"coalesce(sum(coalesce(array_length(string_to_array(nullif({name}, ''), ' '), 1), 0)), 0)"
        for name in FIELD_CLASS
    ) + " FROM search_docs"


def _average_lengths(conn: Any, state: tuple[str, str]) -> dict[str, float]:
    def compute() -> dict[str, float]:
        total = conn.execute("SELECT count(*) FROM search_docs").fetchone()[0] or 1
        row = conn.execute("SELECT value FROM search_meta WHERE key = ?", (LENGTHS_KEY,)).fetchone()
        sums = json.loads(row[0]) if row else {}
        return {name: (float(sums.get(name, 0)) / total) or 1.0 for name in FIELD_CLASS}

    return _cached(("avg", *state), compute)


def _field_df(conn: Any, state: tuple[str, str], word: str, field: str) -> int:
    return field_frequencies(conn, state, [word])[word][field]


def field_frequencies(conn: Any, state: tuple[str, str], words: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each word's document frequency in each field (``search_terms``, kept by every index batch:
    migration 0009), the ones not yet cached read by one statement."""
    if len(_cache) > 20_000:
        _cache.clear()
    missing = sorted({w for w in words if ("df", *state, w, "A") not in _cache})
    if missing:
        found = {(lexeme, weight): docs for lexeme, weight, docs in conn.execute(
            "SELECT lexeme, weight, docs FROM search_terms WHERE lexeme = ANY(?)", (missing,)).fetchall()}
        for word in missing:
            for weight in {*FIELD_CLASS.values(), "*"}:
                _cache[("df", *state, word, weight)] = int(found.get((word, weight), 0))
    return {
        w: {name: _cache[("df", *state, w, weight)] for name, weight in (*FIELD_CLASS.items(), ("*", "*"))}
        for w in words
    }


class _FieldWords:
    """A segmented field's lexemes: how many, and how often a form occurs. Each distinct word is
    stemmed once (a long text repeats most of its words), the lexemes in order only for a phrase
    whose words the field all holds."""

    def __init__(self, value: str | None) -> None:
        self._words = (value or "").split(" ")
        raw = Counter(self._words)
        self.length = len(self._words) - raw.pop("", 0)
        self._lexemes: Counter[str] = Counter()
        for word, n in raw.items():
            self._lexemes[lexeme(word)] += n
        self._sequence: list[str] | None = None

    def count(self, form: Sequence[str]) -> int:
        if len(form) == 1:
            return self._lexemes[form[0]]
        if not all(self._lexemes[token] for token in form):
            return 0
        if self._sequence is None:
            self._sequence = [lexeme(w) for w in self._words if w]
        n, words = len(form), self._sequence
        return sum(1 for i in range(len(words) - n + 1) if tuple(words[i : i + n]) == tuple(form))


def rescore(
    conn: Any, state: tuple[str, str], total: int, groups: Sequence[Group], candidates: Sequence[int],
    weights: dict[str, float], presence_bonus: float, limit: int,
) -> list[tuple[int, float]]:
    """``candidates`` scored as :func:`.rank.concept_scores` scores items, best ``limit`` first."""
    if not candidates:
        return []
    average = _average_lengths(conn, state)
    forms = [list(dict.fromkeys(tuple(lexeme(w) for w in form if w) for form in g.forms if form)) for g in groups]
    field_frequencies(conn, state, [w for group_forms in forms for form in group_forms for w in form])
    fields = [name for name in FIELD_CLASS if weights.get(name, 0) > 0]
    idf: dict[tuple[str, tuple[str, ...]], float] = {}
    bonus: list[float] = []
    for group_forms in forms:
        for name in fields:
            for form in group_forms:
                idf[(name, form)] = sum(_idf(total, _field_df(conn, state, w, name)) for w in form)
        # The concept's document frequency, as the SQLite engine counts it (the items holding a form in
        # any field), as near as the counts per lexeme tell for a phrase: its rarest word's.
        df = max((min(_field_df(conn, state, w, "*") for w in form) for form in group_forms if form), default=0)
        bonus.append(presence_bonus * _idf(total, df))
    rows = conn.execute(
        f"SELECT item_id, {', '.join(FIELD_CLASS)} FROM search_docs WHERE item_id = ANY(?)", (list(candidates),)
    ).fetchall()
    scored: list[tuple[int, float]] = []
    for item_id, *values in rows:
        words = {name: _FieldWords(value) for name, value in zip(FIELD_CLASS, values, strict=True)}
        score = 0.0
        for group_forms, group_bonus in zip(forms, bonus, strict=True):
            concept = 0.0
            held = False
            for name in fields:
                field_words = words[name]
                norm = K1 * (1 - B + B * field_words.length / average[name])
                forms_score = 0.0
                for form in group_forms:
                    tf = field_words.count(form) if form else 0
                    if tf:
                        held = True
                        forms_score += idf[(name, form)] * tf * (K1 + 1) / (tf + norm)
                concept += weights[name] * forms_score
            if held:
                score += concept + group_bonus
        scored.append((int(item_id), score))
    scored.sort(key=lambda kv: (-kv[1], kv[0]))
    return scored[:limit]

