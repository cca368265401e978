"""Snippets: the query's words are marked in the item's segmented text (as stored in FTS5); the
marks are mapped back onto the original text, and a window around the densest cluster of matches
is cut from it."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterator

from .query import CompiledQuery, phrase_expr
from .segment import MAX_INDEXED_CHARS, normalize, segment

_OPEN, _CLOSE = "\x02", "\x03"  # highlight() markers: control characters never occur in segmented text
MARK_OPEN, MARK_CLOSE = "**", "**"
"""How snippets mark matched words: Markdown bold, readable raw and rendered alike."""
SNIPPET_COLUMNS = ("title", "summary", "text", "note")
"""The fields a snippet may come from: the first four FTS5 columns, in their order there, which
is the order :func:`highlights` returns and :func:`build_snippet` takes them in."""


def highlight_expr(compiled: CompiledQuery) -> str | None:
    """What to highlight: the positive words and phrases (never the excluded ones)."""
    parts = [g.fts() for g in compiled.groups]
    parts += [p for p in (phrase_expr(x) for x in compiled.parsed.phrases) if p]
    return " OR ".join(parts) if parts else None


def _wanted_forms(compiled: CompiledQuery) -> list[tuple[str, ...]]:
    """Every positive form of the query (each synonym, each phrase), stemmed word by word."""
    forms = [tuple(form) for g in compiled.groups for form in g.forms if form]
    forms += [tuple(w for w, _s, _e in segment(p)) for p in compiled.parsed.phrases]
    return [tuple(_stem(w) for w in form) for form in forms if form]


class FormFinder:
    """Finds the occurrences of a set of (stemmed) forms in segmented text. Words compare after
    stemming, and a multi-word form must occur as consecutive words.

    A regular expression finds the candidate words (a form's first word as it is, or an ASCII word
    sharing its first two letters, which stemming may turn into it); only those are stemmed and
    compared, instead of every word of a long text in a Python loop. Made once per set of forms (a
    query's, or the index's compound forms) and used on every field."""

    def __init__(self, forms: tuple[tuple[str, ...], ...]) -> None:
        firsts = frozenset(form[0] for form in forms)
        self.prefixes = frozenset(first[:2] for first in firsts if first.isascii())
        self.by_first: dict[str, list[tuple[str, ...]]] = {}
        for form in dict.fromkeys(forms):
            self.by_first.setdefault(form[0], []).append(form)
        self.candidates = _candidates(firsts, self.prefixes)

    def _stemmed(self, word: str) -> str:
        return word if not word.isascii() or word[:2] not in self.prefixes else _stem(word)

    def occurrences(self, segmented_text: str) -> Iterator[tuple[int, tuple[str, ...], list[str]]]:
        """Each occurrence: where it starts, the form, and its words as they stand in the text."""
        for match in self.candidates.finditer(segmented_text):
            first = self._stemmed(match.group())
            forms = self.by_first.get(first)
            if forms is None:
                continue
            longest = max(len(form) for form in forms)
            following = segmented_text[match.end() + 1 :].split(" ", longest - 1)[: longest - 1] if longest > 1 else []
            for form in forms:
                n = len(form)
                if n > 1 and (len(following) < n - 1 or tuple(self._stemmed(w) for w in following[: n - 1]) != form[1:]):
                    continue
                yield match.start(), form, [match.group(), *following[: n - 1]]

    def found(self, segmented_text: str) -> list[tuple[str, ...]]:
        """The forms ``segmented_text`` holds, once per occurrence, in order."""
        return [form for _at, form, _words in self.occurrences(segmented_text)] if segmented_text else []


@functools.lru_cache(maxsize=256)
def _finder(forms: tuple[tuple[str, ...], ...]) -> FormFinder:
    return FormFinder(forms)


def mark_words(segmented_text: str, forms: list[tuple[str, ...]]) -> str:
    """``segmented_text`` with every occurrence of a form (:class:`FormFinder`) wrapped in the
    highlight markers, the way FTS5's ``highlight()`` marks a match (porter stems there)."""
    if not segmented_text or not forms:
        return segmented_text or ""
    marked: dict[int, int] = {}  # start -> end of each marked word
    for at, _form, words in _finder(tuple(forms)).occurrences(segmented_text):
        for word in words:
            marked[at] = at + len(word)
            at += len(word) + 1
    if not marked:
        return segmented_text
    pieces: list[str] = []
    pos = 0
    for start in sorted(marked):
        pieces += [segmented_text[pos:start], _OPEN, segmented_text[start : marked[start]], _CLOSE]
        pos = marked[start]
    pieces.append(segmented_text[pos:])
    return "".join(pieces)


@functools.lru_cache(maxsize=256)
def _candidates(firsts: frozenset[str], prefixes: frozenset[str]) -> re.Pattern[str]:
    """Whole words (between spaces) that may stem to one of ``firsts``: one of them as it is, or any
    word starting with one of the ASCII ``prefixes``."""
    literal = sorted((re.escape(f) for f in firsts if f[:2] not in prefixes or not f.isascii()), key=len, reverse=True)
    started = [re.escape(p) + "[^ ]*" for p in sorted(prefixes)]
    return re.compile(r"(?<![^ ])(?:" + "|".join([*literal, *started]) + r")(?![^ ])")


def highlights(conn: sqlite3.Connection, ids: list[int], compiled: CompiledQuery) -> dict[int, tuple[str, ...]]:
    """The snippet columns of each item's indexed (segmented) text, the query's positive words
    marked. The rows are read by rowid and marked here rather than by FTS5's ``highlight()``, which
    would run the whole MATCH (every posting of every query word in the archive) to mark ten items."""
    forms = _wanted_forms(compiled)
    if not forms or not ids:
        return {}
    marks = ",".join("?" * len(ids))
    cols = ", ".join(SNIPPET_COLUMNS)
    return {
        row[0]: tuple(mark_words(col or "", forms) for col in row[1:])
        for row in conn.execute(f"SELECT rowid, {cols} FROM search_fts WHERE rowid IN ({marks})", ids)
    }


_MARKED_RE = re.compile(f"{_OPEN}([^{_CLOSE}]*){_CLOSE}")
"""A marked run of :func:`mark_words`' output (it marks word by word, never part of a word)."""


def matched_spans(original: str, highlighted: str) -> list[tuple[int, int]]:
    """Offsets in ``original`` of the words :func:`mark_words` marked. The indexed words are, in
    order, substrings of the normalized original, so a forward search aligns them without
    re-running the segmenter. Words after the last marked one are not walked: they add no span.
    The walk is the cost of a long text's snippet (one ``find`` a word), so it is kept tight."""
    norm, origin = normalize(original[:MAX_INDEXED_CHARS])
    spans: list[tuple[int, int]] = []
    pos = 0
    find = norm.find
    for index, piece in enumerate(_MARKED_RE.split(highlighted[: highlighted.rfind(_CLOSE) + 1])):
        marked = index % 2 == 1  # split() alternates unmarked text and the marked runs
        for word in piece.split(" "):
            if not word:
                continue
            at = find(word, pos)
            if at < 0:
                return spans  # the index is out of date for this text; keep what aligned
            pos = at + len(word)
            if marked:
                spans.append((at, pos) if origin is None else (origin[at], origin[pos - 1] + 1))
    return spans


def _fallback_spans(original: str, compiled: CompiledQuery) -> list[tuple[int, int]]:
    """Without a highlight (the text matched nowhere), mark exact query words if present."""
    wanted = {tuple(form) for g in compiled.groups for form in g.forms if len(form) == 1}
    return [(s, e) for w, s, e in segment(original[:20_000]) if (w,) in wanted]


@functools.lru_cache(maxsize=8192)  # a snippet stems every match of its field; the words repeat
def _stem(word: str) -> str:
    from .terms import stem  # the engine's English stemmer: "embeddings" and "embedding" agree

    return stem(word)


def _typed_stems(compiled: CompiledQuery) -> set[str]:
    """The query's own words (not their synonyms), stemmed."""
    return {_stem(w) for g in compiled.groups for w in g.label.split(" ")}


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def render_snippet(original: str, spans: list[tuple[int, int]], width: int) -> str:
    """A window of about ``width`` characters around the densest cluster of matches, with the
    matched words wrapped in MARK_OPEN / MARK_CLOSE and the rest copied from the original."""
    if not spans:
        body = _clean(original).strip()
        return body[:width] + ("…" if len(body) > width else "")
    # Words count by their stem: a listing that says "borrow", "borrows" and "borrowed" shows one
    # query word, not three, and must not win over the sentence that shows "borrow checker".
    stems = [_stem(original[a:b].lower()) for a, b in spans]
    best_i, best_score = 0, -1.0
    for i, (s, _e) in enumerate(spans):
        inside = [stem for (_a, b), stem in zip(spans[i:], stems[i:], strict=True) if b <= s + width]
        score = len(set(inside)) + 0.01 * len(inside)
        if score > best_score:
            best_i, best_score = i, score
    first = spans[best_i][0]
    start = max(0, first - width // 4)
    # Start at a word or line boundary close to that point rather than mid-word, keeping the quarter
    # window of context before the first match (the nearest boundary to the match left none).
    marks = " \n，。,.；;：:、"
    boundary = max(original.rfind(c, max(0, start - 12), start + 1) for c in marks)
    if boundary < 0:
        boundary = min((i for i in (original.find(c, start, first) for c in marks) if i >= 0), default=-1)
    if 0 <= boundary < first:
        start = boundary + 1
    end = min(len(original), start + width)
    inside = [(max(a, start), min(b, end)) for a, b in spans if b > start and a < end]
    merged: list[list[int]] = []
    for a, b in inside:
        if merged and not original[merged[-1][1] : a].strip():
            merged[-1][1] = b
        else:
            merged.append([a, b])
    pieces: list[str] = []
    pos = start
    for a, b in merged:
        pieces.append(_clean(original[pos:a]))
        pieces.append(MARK_OPEN + _clean(original[a:b]) + MARK_CLOSE)
        pos = b
    pieces.append(_clean(original[pos:end]))
    text = "".join(pieces).strip()
    return ("…" if start > 0 else "") + text + ("…" if end < len(original) else "")


def build_snippet(
    originals: tuple[str | None, ...], highlighted: tuple[str, ...] | None, width: int, compiled: CompiledQuery
) -> str:
    """Pick the field that shows the most matched words (summary, text, note; the title as a last
    resort, since it is shown anyway), on a tie the one showing more of the words as typed rather
    than their synonyms, and render a highlighted window of it."""
    order = (1, 2, 3, 0)
    typed = _typed_stems(compiled)
    best: tuple[int, int, int] | None = None
    for rank, col in enumerate(order):
        if not originals[col] or not highlighted or not highlighted[col] or _OPEN not in highlighted[col]:
            continue
        # The marked words as indexed (the original's words normalized): only the chosen field's
        # marks are aligned back onto its text, the costly part for a long text.
        words = {w for run in _MARKED_RE.findall(highlighted[col]) for w in run.split(" ") if w}
        stems = {_stem(w) for w in words}  # "borrows" and "borrowed" are one word shown
        distinct, literal = len(stems), sum(stem in typed for stem in stems)
        if distinct and (best is None or (distinct, literal, -rank) > (best[0], best[1], -best[2])):
            best = (distinct, literal, rank)
    if best is not None:
        col = order[best[2]]
        assert highlighted is not None
        return render_snippet(originals[col] or "", matched_spans(originals[col] or "", highlighted[col]), width)
    for col in order:  # nothing highlighted (a tag or author matched): the start of the best field
        original = originals[col]
        if original:
            return render_snippet(original, _fallback_spans(original, compiled), width)
    return ""
