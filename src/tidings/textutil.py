"""Text helpers shared by dedupe, summarize, classify and the parsers: CJK detection, normalisation,
tokenisation, and reading a calendar day.

jieba is loaded lazily, once, into a private tokenizer with its console logging silenced: importing
this module costs nothing, and the first call that needs Chinese word segmentation pays the ~1 s
dictionary load. Words from ``Config.user_dictionary`` are added with :func:`add_user_words`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import jieba
    import rjieba

# Han ideographs (basic, extension A, compatibility) plus kana and hangul: all are written without
# spaces, so they get character-based treatment rather than whitespace word splitting.
_CJK_RANGES = (
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\u3040-\u30ff"  # hiragana, katakana
    "\uac00-\ud7af"  # hangul syllables
)
CJK_CHAR_RE = re.compile(f"[{_CJK_RANGES}]")
CJK_RUN_RE = re.compile(f"[{_CJK_RANGES}]+")
# A "word" outside CJK: letters/digits joined by the connectors that keep tech terms whole
# (C++, C#, Node.js, gpt-4o, k8s, v1.2.3, __biz).
LATIN_WORD_RE = re.compile(r"[A-Za-z0-9_\u00c0-\u024f]+(?:[.+#'\-][A-Za-z0-9_\u00c0-\u024f]+)*[+#]*")
_WS_RE = re.compile(r"\s+")
_LATIN_LETTER_RUN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_TOKEN_SPLIT_RE = re.compile(f"([{_CJK_RANGES}]+)")
_COMPOUND_RE = re.compile(r"[.+#'\-]")

# Function words that carry no topic. Kept short on purpose: TextRank and MinHash only need the
# commonest glue words removed, and an over-long list would drop real terms.
ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    """a an the and or but if then else of to in on at by for with from as into onto over under about
    is are was were be been being am do does did doing have has had having can could will would shall
    should may might must this that these those it its it's they them their there here we us our you your
    i me my he him his she her not no nor so than too very just also only such what which who whom whose
    when where why how all any both each few more most other some own same s t don't doesn't isn't
    aren't wasn't weren't let's via""".split()
)
CHINESE_STOPWORDS: frozenset[str] = frozenset(
    """的 了 和 是 就 都 而 及 与 着 或 一个 没有 我们 你们 他们 它们 这 那 这个 那个 这些 那些 在 也 有 对
    为 以 于 上 下 中 之 被 把 让 从 到 等 个 并 但 又 还 很 更 最 所 其 该 此 将 会 能 可以 可 要 已 已经
    如果 因为 所以 但是 然后 而且 以及 通过 进行 使用 我 你 他 她 它 吗 呢 吧 啊 么 什么 怎么 如何 自己
    本文 文章 一些 一种 这种 那种 不 没""".split()
)
STOPWORDS: frozenset[str] = ENGLISH_STOPWORDS | CHINESE_STOPWORDS

_lock = threading.Lock()
_tokenizer: jieba.Tokenizer | None = None
_user_words: set[str] = set()
_fast_segmenter: rjieba.Jieba | None = None


def _get_tokenizer() -> jieba.Tokenizer:
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                import jieba

                # jieba prints "Building prefix dict ..." at DEBUG through its own stderr handler;
                # raising its logger's level keeps CLI output clean without touching the root logger.
                jieba.setLogLevel(logging.WARNING)
                logging.getLogger("jieba").setLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                tok.initialize()
                for word in sorted(_user_words):
                    tok.add_word(word)
                _tokenizer = tok
    return _tokenizer


def add_user_words(words: Iterable[str]) -> None:
    """Teach the segmenter words it must keep whole (product names, jargon). Idempotent.

    Words are remembered, so calling this before the dictionary is loaded is cheap and still applies.
    """
    new = {w.strip() for w in words if w and w.strip()} - _user_words
    if not new:
        return
    with _lock:
        _user_words.update(new)
        tok = _tokenizer
        fast = _fast_segmenter
    if tok is not None:
        for word in sorted(new):
            tok.add_word(word)
    if fast is not None:
        for word in sorted(new):
            fast.add_word(word, None, None)


def user_words() -> list[str]:
    """The words taught with :func:`add_user_words`, for handing to worker processes."""
    with _lock:
        return sorted(_user_words)


def _get_fast_segmenter() -> rjieba.Jieba:
    """jieba-rs (``rjieba``), the summarizer's segmenter: the same dictionary and algorithm as
    jieba, in Rust, ~20× faster (``bench/segmenters.py``). Search keeps jieba itself: its index
    and evaluation were built with jieba's segmentation and must not shift under them."""
    global _fast_segmenter
    if _fast_segmenter is None:
        with _lock:
            if _fast_segmenter is None:
                import rjieba

                seg = rjieba.Jieba()
                for word in sorted(_user_words):
                    seg.add_word(word, None, None)
                _fast_segmenter = seg
    return _fast_segmenter


def is_cjk_char(ch: str) -> bool:
    return bool(CJK_CHAR_RE.fullmatch(ch))


def has_cjk(text: str) -> bool:
    return CJK_CHAR_RE.search(text) is not None


def cjk_ratio(text: str) -> float:
    """CJK characters as a share of CJK characters plus Latin letters (digits, spaces and
    punctuation count for neither, so code snippets and numbers don't tip the balance)."""
    cjk = count_chars(CJK_RUN_RE, text)
    latin = count_chars(_LATIN_LETTER_RUN_RE, text)
    total = cjk + latin
    return cjk / total if total else 0.0


def is_chinese(text: str, threshold: float = 0.2) -> bool:
    """Whether ``text`` reads as Chinese (or another CJK language).

    The threshold is low because Chinese tech writing is full of English terms: a Chinese sentence
    about "LLaMA Factory 的 Agent Tuning" still has a minority of Han characters by letter count.
    """
    return cjk_ratio(text) >= threshold


def normalize_whitespace(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def normalize_text(text: str) -> str:
    """NFKC (full-width Latin and digits become ASCII, compatibility forms fold) and collapsed
    whitespace: the form in which two copies of the same text compare equal."""
    return normalize_whitespace(nfkc(text))


# Characters NFKC treats one at a time: ASCII and Latin up to the combining diacritics, general
# punctuation, CJK symbols and punctuation (less the ideographic tone marks), kana (less the combining
# voiced-sound marks), Han, Hangul syllables and full-width ASCII. None of them is ever the second half
# of a composition, nor decomposes to something starting with a mark (tests/test_extract.py checks
# it), so NFKC of a text made of them is the NFKC of each character in turn, whatever stands around
# it (a line break between blocks included).
NFKC_SAFE_RANGES = ((0x0000, 0x02FF), (0x2000, 0x206F), (0x3000, 0x3029), (0x3030, 0x303F), (0x3041, 0x3096),
                    (0x309B, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF),
                    (0xFF01, 0xFF5E))
NFKC_SAFE_RE = re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in NFKC_SAFE_RANGES) + "]*")
"""Fully matches a text made only of those characters."""
_nfkc_changes: tuple[re.Pattern[str], dict[str, str]] | None = None


def _changes() -> tuple[re.Pattern[str], dict[str, str]]:
    """The safe characters NFKC changes, and into what (found once per process, some 30 ms)."""
    global _nfkc_changes
    if _nfkc_changes is None:
        changes: dict[str, str] = {}
        for char in (chr(c) for first, last in NFKC_SAFE_RANGES for c in range(first, last + 1)):
            if (normal := unicodedata.normalize("NFKC", char)) != char:
                changes[char] = normal
        _nfkc_changes = (re.compile("[" + "".join(re.escape(c) for c in changes) + "]+"), changes)
    return _nfkc_changes


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, at half the cost on a text of safe characters
    (nearly every page): Chinese text is full of full-width punctuation ("，", "："), which makes
    NFKC decompose and recompose the whole string; here only those characters are replaced."""
    if not NFKC_SAFE_RE.fullmatch(text):
        return unicodedata.normalize("NFKC", text)
    pattern, changes = _changes()
    return pattern.sub(lambda run: "".join([changes[c] for c in run.group()]), text)


def is_word_char(ch: str) -> bool:
    """Letters, digits and CJK; everything else (punctuation, symbols, spaces) is a separator."""
    return ch.isalnum() or is_cjk_char(ch)


# One character that is_word_char accepts: [^\W_] is exactly str.isalnum(), plus the CJK ranges.
_WORD_CHAR_RE = re.compile(f"[^\\W_]|[{_CJK_RANGES}]")
_WORD_RUN_RE = re.compile(f"(?:{_WORD_CHAR_RE.pattern})+")


def count_word_chars(text: str) -> int:
    """How many characters of ``text`` are word characters (:func:`is_word_char`), in one regex pass
    rather than a Python call per character (the summarizer counts every sentence this way). Runs,
    not single characters: a sentence is a few runs, and a list of every character cost more."""
    return count_chars(_WORD_RUN_RE, text)


def count_chars(runs: re.Pattern[str], text: str) -> int:
    """How many characters of ``text`` the runs of ``runs`` (a ``[…]+`` pattern) cover."""
    return sum(map(len, runs.findall(text)))


def _is_token(tok: str) -> bool:
    # An alphanumeric token (most words) has a word character; only the rest needs the regex.
    return tok.isalnum() or _WORD_CHAR_RE.search(tok) is not None


def tokenize(text: str, *, lowercase: bool = True, drop_stopwords: bool = False) -> list[str]:
    """Words of mixed Chinese/English text. Punctuation and whitespace are dropped.

    Text with CJK goes through jieba as a whole, so that user words mixing scripts ("大模型Agent")
    are found, except compound tech terms ("Node.js", "C++", "gpt-4o"), which jieba would split
    at the punctuation and are kept whole instead. Text without CJK never loads jieba.
    """
    return _segment(text, None, lowercase=lowercase, drop_stopwords=drop_stopwords)


def fast_tokenize(
    text: str, *, lowercase: bool = True, drop_stopwords: bool = False, normalized: bool = False
) -> list[str]:
    """:func:`tokenize` with jieba-rs in place of jieba: the summarizer's tokenizer. Same rules
    (compound tech terms whole, punctuation dropped); the segmentations agree on ~98 % of tokens
    of the shared corpus (``bench/segmenters.py``). ``normalized``: the caller passes NFKC text
    already (the summarizer tokenizes every sentence, and NFKC was a tenth of that)."""
    return _segment(text, "fast", lowercase=lowercase, drop_stopwords=drop_stopwords, normalized=normalized)


K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """``compute(key)`` for each key asked for, computed once and kept: a hit is a plain dict look-up
    in C (``memo[key]``, ``map(memo.__getitem__, ...)``, ``str.translate(memo)``), where
    ``functools.lru_cache`` is a Python call per key. Past ``limit`` entries it starts afresh: the
    common keys come back at once."""

    def __init__(self, compute: Callable[[K], V], limit: int | None = None) -> None:
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, key: K) -> V:
        if self._limit is not None and len(self) >= self._limit:
            self.clear()
        value = self[key] = self._compute(key)
        return value


def _ranked_form(word: str) -> str:
    keep = word.isalnum() or _WORD_CHAR_RE.search(word) is not None
    form = word.lower() if keep else ""
    return "" if form in STOPWORDS else form


# The summarizer's form of each word jieba gives (lower-cased; "" for punctuation and stop words),
# remembered: a page repeats most of its words, and a dictionary look-up is a fraction of the
# checks it stands for (filter, lower(), stop list), which were a third of tokenizing a sentence.
_ranked_forms: Memo[str, str] = Memo(_ranked_form, limit=200_000)


def _compound_terms(text: str) -> list[re.Match[str]]:
    """The compound tech terms of ``text`` ("Node.js", "C++", "gpt-4o"), which are kept whole."""
    # Without a connector anywhere in the text no word is a compound term: skip the word scan.
    if not _COMPOUND_RE.search(text):
        return []
    return [m for m in LATIN_WORD_RE.finditer(text) if _COMPOUND_RE.search(m.group())]


def _around(text: str, compounds: list[re.Match[str]]) -> Iterator[tuple[str, str | None]]:
    """The text between compound terms, each with the term that follows it (None after the last)."""
    pos = 0
    for m in compounds:
        yield text[pos : m.start()], m.group()
        pos = m.end()
    yield text[pos:], None


def _segment(
    text: str, segmenter: str | None, *, lowercase: bool, drop_stopwords: bool, normalized: bool = False
) -> list[str]:
    if not text:
        return []
    if not normalized:
        text = nfkc(text)
    tokens: list[str] = []
    if has_cjk(text):
        cut = _get_fast_segmenter().cut if segmenter == "fast" else _get_tokenizer().lcut
        compounds = _compound_terms(text)
        if lowercase and drop_stopwords:
            # The summarizer's case, for every sentence it ranks: filter, lower-case and drop stop
            # words in one look-up per word.
            forms = _ranked_forms
            if not compounds:
                return [form for w in cut(text) if (form := forms[w])]
            for piece, compound in _around(text, compounds):
                tokens.extend([form for w in cut(piece) if (form := forms[w])])
                if compound and (form := forms[compound]):
                    tokens.append(form)
            return tokens
        for piece, compound in _around(text, compounds):
            tokens.extend([w for w in cut(piece) if _is_token(w)])
            if compound:
                tokens.append(compound)
    else:
        tokens = LATIN_WORD_RE.findall(text)
    if lowercase and drop_stopwords:
        return [low for t in tokens if (low := t.lower()) not in STOPWORDS]  # one lower() per token
    if lowercase:
        return [t.lower() for t in tokens]
    if drop_stopwords:
        return [t for t in tokens if t.lower() not in STOPWORDS]
    return tokens


def shingle_units(text: str) -> list[str]:
    """The unit stream near-duplicate shingles are built from: every CJK character on its own,
    every Latin word lower-cased; whitespace and punctuation vanish so that re-wrapping, spacing
    and full-/half-width punctuation differences between sites don't matter."""
    text = nfkc(text)
    units: list[str] = []
    for i, part in enumerate(_TOKEN_SPLIT_RE.split(text)):
        if not part:
            continue
        if i % 2 == 1:
            units.extend(part)
        else:
            units.extend(w.lower() for w in LATIN_WORD_RE.findall(part))
    return units


# One unit of :func:`shingle_units`: a CJK character or a Latin word. A Latin word never holds a CJK
# character, so one scan of the whole text finds the same units as splitting it into CJK runs first.
_SHINGLE_UNIT_RE = re.compile(f"[{_CJK_RANGES}]|{LATIN_WORD_RE.pattern}")


def joined_shingle_units(normalized: str) -> str:
    """``" ".join(shingle_units(text))`` for ``normalized = NFKC(text)``, in one regex pass and one
    ``lower()`` over the joined string (fingerprints hash every shingle of every page).

    Lower-casing the joined string equals lower-casing each word: units are Latin words and CJK
    characters, and no character there lower-cases differently by context (Greek final sigma is the
    only such case in Python, and Greek letters are not word characters here)."""
    return " ".join(_SHINGLE_UNIT_RE.findall(normalized)).lower()


def calendar_day(year: str | int, month: str | int, day: str | int) -> datetime | None:
    """Midnight of that day, or None when there is no such day ("2020-02-30", month 13): a date a
    user wrote by hand is data, and a wrong one must not stop an import."""
    try:
        return datetime(int(year), int(month), int(day))
    except ValueError:
        return None


def slugify(name: str) -> str:
    """A readable path segment: letters and digits of any script, joined by ``-``; emoji go.

    ``🌟 AI 相关`` → ``ai-相关``; ``⭐️ Go & 云原生 & Rust 相关`` → ``go-云原生-rust-相关``."""
    normal = unicodedata.normalize("NFKC", name).lower()
    words = re.findall(r"[^\W_]+", normal)
    slug = "-".join(words)[:80].strip("-")
    return slug or "x-" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
