"""Segmentation: mixed Chinese/English text cut into the words the index stores and queries use.

FTS5 cannot segment Chinese, so tidings does: every indexed field is cut into words by jieba
(English lower-cased, compound tech terms such as ``node.js`` kept whole) and stored as words
joined by spaces; FTS5's ``unicode61`` tokenizer then only splits on those spaces, and ``porter``
stems English words the same way on both sides. Queries are segmented by the same function, so a
query word and an indexed word always compare equal.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterator

from ..config import Config
from ..textutil import CJK_CHAR_RE, Memo, add_user_words, has_cjk

SEGMENTER_VERSION = "2"
"""Bumped whenever :func:`segment` changes: a store indexed with another version is re-indexed."""
MAX_INDEXED_CHARS = 200_000
"""Longer texts are indexed up to here: enough for any article, bounded for pathological pages."""

# Outside CJK text any Unicode word counts (Cyrillic, Greek …), with the connectors that keep tech
# terms whole (C++, C#, Node.js, gpt-4o).
_WORD_RE = re.compile(r"[^\W_]+(?:[.+#'\-][^\W_]+)*[+#]*")


# The characters NFKC changes that Chinese text is full of, with their NFKC forms: replacing a
# character by its own NFKC form leaves the NFKC of the whole text unchanged (both decompose to the
# same characters), and str.replace is a fast C scan where unicodedata.normalize costs ~60 ns a
# character (0.7 s of a 100k-item build).
_COMMON_NFKC = tuple((ch, unicodedata.normalize("NFKC", ch)) for ch in "，：（）？！；％～｜\u3000")


def _nfkc_lower(text: str) -> str:
    """``unicodedata.normalize("NFKC", text).lower()``, without normalizing a text NFKC cannot
    change (most titles) or whose only changes are full-width punctuation (most Chinese text)."""
    if not unicodedata.is_normalized("NFKC", text):
        for full_width, folded in _COMMON_NFKC:
            text = text.replace(full_width, folded)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
    return text.lower()


_char_fold: Memo[int, str] = Memo(lambda code: unicodedata.normalize("NFKC", chr(code)).lower())
"""Each character's NFKC form, lower-cased, by code point, filled as characters come: the table
``str.translate`` folds a text with character by character."""


def _normalized_text(text: str) -> str:
    """``normalize(text)[0]``, without the map."""
    lowered = _nfkc_lower(text)
    return lowered if len(lowered) == len(text) else text.translate(_char_fold)


def normalize(text: str) -> tuple[str, list[int] | None]:
    """NFKC + lower case, and the map from each normalized character back to the original.

    ``None`` means the identity map. When normalizing keeps the length (full-width punctuation
    and letters map one to one, as in nearly all Chinese text) the map is taken as the identity
    without a per-character loop; only a text with ligatures or similar expansions pays for it, and
    is then folded character by character (so a final sigma stays σ, and a letter and a following
    combining accent are not composed: the index has always stored these texts so)."""
    lowered = _nfkc_lower(text)
    if len(lowered) == len(text):
        return lowered, None
    origin: list[int] = []
    for i, ch in enumerate(text):
        origin.extend([i] * len(_char_fold[ord(ch)]))
    return text.translate(_char_fold), origin


_CJK_RUN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
_mixed_words: re.Pattern[str] | None = None
"""User-dictionary words that mix scripts ("大模型Agent"): found first and kept whole."""


def _segment_latin(norm: str, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    for m in _WORD_RE.finditer(norm, start, end):
        yield m.group(), m.start(), m.end()


def _segment_plain(norm: str, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """jieba sees only the runs of CJK characters: on Latin text it walks its dictionary graph
    character by character, several times slower than a regex, and splits ``node.js``.

    The jieba is jieba-rs (``rjieba``, the summarizer's): the same dictionary and HMM, 99.9 % token
    agreement with jieba on the shared corpus, and about 12× faster on it (0.05 s against 0.6 s for
    the corpus's 0.5 M characters), which makes the index build cheap enough to need no process pool."""
    from ..textutil import _get_fast_segmenter  # the project's one jieba-rs instance, with the user words

    tokenize = _get_fast_segmenter().tokenize
    pos = start
    for m in _CJK_RUN_RE.finditer(norm, start, end):
        yield from _segment_latin(norm, pos, m.start())
        run = m.group()
        if len(run) == 1:
            yield run, m.start(), m.end()
        else:
            base = m.start()
            for word, s, e in tokenize(run, "default", True):
                yield word, base + s, base + e
        pos = m.end()
    yield from _segment_latin(norm, pos, end)


def _segment_normalized(norm: str) -> Iterator[tuple[str, int, int]]:
    """Words of already-normalized text with their offsets in it."""
    if not has_cjk(norm):
        yield from _segment_latin(norm, 0, len(norm))
        return
    pos = 0
    if _mixed_words is not None:
        for m in _mixed_words.finditer(norm):
            yield from _segment_plain(norm, pos, m.start())
            yield m.group(), m.start(), m.end()
            pos = m.end()
    yield from _segment_plain(norm, pos, len(norm))


def segment(text: str) -> list[tuple[str, int, int]]:
    """Words of mixed Chinese/English text, lower-cased and NFKC-normalized, each with its
    ``(start, end)`` offsets in the *original* text. Punctuation and spaces are dropped."""
    if not text:
        return []
    norm, origin = normalize(text)
    words = list(_segment_normalized(norm))
    if origin is None:
        return words
    return [(w, origin[s], origin[e - 1] + 1) for w, s, e in words]


_cut: Callable[[str, bool], list[str]] | None = None


def _load_cut() -> Callable[[str, bool], list[str]]:
    """jieba-rs's ``cut``, looked up once: the build calls it for every field of every item."""
    global _cut
    from ..textutil import _get_fast_segmenter  # one instance; user words are added to it in place

    _cut = _get_fast_segmenter().cut
    return _cut


_gap_words: Memo[str, list[str]] = Memo(_WORD_RE.findall, limit=50_000)
"""The words of the text between two CJK runs, by that text: nearly every gap is a punctuation mark
or a space, seen a million times over a build; a dict hit costs a fifth of ``findall``. Callers copy
what they get (the lists are shared)."""
_CJK_SPLIT_RE = re.compile(f"({_CJK_RUN_RE.pattern})")
"""Splits normalized text into [gap, run, gap, run, ..., gap], gaps possibly empty."""


def segmented(text: str | None) -> str:
    """The form stored in the index: words joined by single spaces (:func:`segmented_words`)."""
    return " ".join(segmented_words(text))


def segmented_words(text: str | None) -> list[str]:
    """The words the index stores for ``text``.

    The same words as :func:`segment`, without the offsets: the index build segments every field of
    every item, so this path splits the text once into CJK runs and the gaps between them, calls
    jieba-rs's ``cut`` once per run and looks each gap's words up in :data:`_gap_words` instead of
    walking generators of tuples. An ASCII text (NFKC leaves it as it is, it has no CJK) is one
    ``findall``."""
    if not text:
        return []
    text = text[:MAX_INDEXED_CHARS]
    if text.isascii():
        return _WORD_RE.findall(text.lower())
    norm = _normalized_text(text)
    if not has_cjk(norm):
        return _WORD_RE.findall(norm)  # what _segment_normalized does without CJK, in one call
    if _mixed_words is not None:
        return [w for w, _s, _e in _segment_normalized(norm)]
    cut = _cut or _load_cut()
    gap_words = _gap_words
    parts = iter(_CJK_SPLIT_RE.split(norm))
    words = list(gap_words[next(parts)])
    for run, gap in zip(parts, parts, strict=True):
        words += cut(run, True)
        if gap:
            words += gap_words[gap]
    return words


def segmenter_signature(config: Config | None) -> str:
    """Identifies how text is segmented: a change of version or user dictionary re-indexes."""
    return _signature(tuple(sorted(set(config.user_dictionary))) if config else ())


@functools.lru_cache(maxsize=64)
def _signature(words: tuple[str, ...]) -> str:
    return hashlib.sha1(json.dumps([SEGMENTER_VERSION, list(words)], ensure_ascii=False).encode()).hexdigest()[:16]


def prepare(config: Config | None) -> None:
    """Teach jieba the configured user dictionary before anything is segmented."""
    global _mixed_words
    if config is None:
        return
    add_user_words(config.user_dictionary)
    mixed = sorted(
        {w.strip().lower() for w in config.user_dictionary if has_cjk(w) and re.search(r"[^\W_]", CJK_CHAR_RE.sub("", w))},
        key=len, reverse=True,
    )
    _mixed_words = re.compile("|".join(re.escape(w) for w in mixed)) if mixed else None


