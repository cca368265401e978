"""Offline extractive summaries: sentence splitting for Chinese and English, TextRank scoring,
redundancy removal and a length budget.

The summary is made of sentences copied verbatim from the text, in their original order. Only when
the single best sentence is longer than the budget is it cut, at a clause boundary, ending in ``…``.
Whether a summary may be replaced at all (a human one never is) is the pipeline's decision.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from operator import mul

import numpy as np

from ..textutil import (
    CJK_CHAR_RE,
    CJK_RUN_RE,
    count_chars,
    count_word_chars,
    fast_tokenize,
    is_chinese,
    is_word_char,
    nfkc,
    normalize_text,
    normalize_whitespace,
)

__all__ = ["has_prose", "prose_sentences", "split_sentences", "summarize"]

# ------------------------------------------------------------------------------------------
# Sentence splitting
# ------------------------------------------------------------------------------------------

# Chinese / full-width terminators end a sentence wherever they stand. ASCII ! and ? do too unless
# glued to a word character (`!=`, `a?b`); the ASCII full stop is the hard case and is decided in
# _dot_ends_sentence. Semicolons end "sentences" only in their full-width form: an ASCII ; in
# English prose joins clauses, and in code it is everywhere.
_CJK_TERMINATORS = "。！？；．｡︒﹒﹔﹖﹗"
_TERMINATOR_RUN_RE = re.compile(f"(?:[{_CJK_TERMINATORS}!?]|…+|\\.+)+")
# Closing quotes and brackets that belong to the sentence they close: 他说：“好。”
_CLOSERS = "\"'”’」』）)]】》〉〗﹂﹄"
# Words whose full stop is (almost) never a sentence end. "etc." and "Inc." are left out: they end
# sentences more often than they precede a capitalised name.
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st vs al e.g i.e cf fig figs eq eqs no nos vol vols pp approx ca
    dept est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k e.u a.m p.m ph.d""".split()
)
_WORD_BEFORE_DOT_RE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def _dot_ends_sentence(line: str, start: int, end: int) -> bool:
    """Whether the run of full stops at line[start:end] ends a sentence."""
    nxt = end
    while nxt < len(line) and line[nxt] in _CLOSERS:
        nxt += 1
    if nxt >= len(line):
        return True
    if not line[nxt].isspace():
        # URLs, decimals, file names, versions, "Node.js": no space after the dot.
        return False
    rest = line[nxt:].lstrip()
    if not rest:
        return True
    following = rest[0]
    if not (following.isupper() or following.isdigit() or following in "\"'“‘([" or CJK_CHAR_RE.match(following)):
        return False
    if end - start >= 2:  # an ellipsis followed by a capital starts a new sentence
        return True
    # Only the word before the dot matters: searching the whole prefix made long lines quadratic.
    m = _WORD_BEFORE_DOT_RE.search(line[max(0, start - 32):start])
    if m:
        word = m.group(1).lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and line[start - 1].isupper()):
            return False  # "Dr. Smith", "e.g. This", "J. R. R. Tolkien"
    return True


def _split_line(line: str) -> list[str]:
    out: list[str] = []
    begin = 0
    for m in _TERMINATOR_RUN_RE.finditer(line):
        start, end = m.span()
        run = m.group()
        if set(run) <= {"."}:
            if not _dot_ends_sentence(line, start, end):
                continue
        elif not any(c in _CJK_TERMINATORS or c == "…" for c in run):
            # ASCII ! or ? (maybe mixed with dots): a boundary unless glued to code or words.
            after = line[end] if end < len(line) else " "
            before = line[start - 1] if start > 0 else ""
            if after not in _CLOSERS and is_word_char(after) and not CJK_CHAR_RE.match(after):
                continue  # "a?b", "Yes!No"
            if before and not (is_word_char(before) or before in _CLOSERS):
                continue  # "!=" style operators and "(!x)"
            rest = line[end:].lstrip()
            if rest[:1].isascii() and rest[:1].islower() and "." not in run:
                # An English sentence after "!" or "?" starts with a capital: "using the macro_rules!
                # macro" and "println! prints" name Rust macros mid-sentence.
                continue
            if line[end:].lstrip(_CLOSERS).lstrip()[:1] in (",", ";", ":") and "." not in run:
                # No sentence starts with a comma: 'will print “In trait impl!”, because …' (the Rust
                # Reference) goes on past the quoted exclamation.
                continue
        while end < len(line) and line[end] in _CLOSERS:
            end += 1
        piece = line[begin:end].strip()
        if piece:
            out.append(piece)
        begin = end
    tail = line[begin:].strip()
    if tail:
        out.append(tail)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of Chinese and/or English text, each stripped, none empty.

    Boundaries: line breaks (a paragraph or list item never runs into the next; a hard-wrapped
    English line that continues in lower case on the next line is re-joined), ``。！？；`` and
    their full-width/small-form variants, ``…``/``……``, ASCII ``!``/``?``, and a full stop followed by
    white space and a capital, digit, quote or CJK character — except after common abbreviations
    (``e.g.``, ``Dr.``, ``vs.``) and initials. Closing quotes and brackets stay with their sentence.
    Decimals, versions, URLs and file names are never split because their dots have no space after.
    """
    return list(_sentences(text))


def _sentences(text: str) -> Iterator[str]:
    """:func:`split_sentences` one at a time, for a caller that may stop early."""
    for line in _unwrap(text.splitlines()):
        if line.strip():
            yield from _split_line(line)


_CONTINUES_RE = re.compile(r"[A-Za-z0-9,)'’]$")


_DANGLING_RE = re.compile(
    r"(?:^|\s)(?:a|an|the|to|of|in|on|at|for|with|by|from|into|onto|and|or|is|are|was|were|as|than)$",
    re.IGNORECASE,
)
"""A last word no English sentence or heading ends with: the line goes on, whatever case the next
line starts in ("… is added to a" / "Cargo.toml that already defines …", Cargo's book)."""


def _unwrap(lines: Iterable[str]) -> Iterator[str]:
    """Re-join hard-wrapped English lines: a line that stops mid-sentence (ends in a word or a
    comma) followed directly by one starting in lower case is the same sentence, and so is one
    ending in an article, preposition or conjunction followed by any ASCII word. Chinese lines are
    left alone: a line without closing punctuation there is far more often a heading."""
    pending: str | None = None
    for line in lines:
        stripped = line.strip()
        if (
            pending is not None
            and stripped
            and stripped[0].isascii()
            and (stripped[0].islower() or (stripped[0].isalnum() and _DANGLING_RE.search(pending.rstrip())))
            and pending.strip()
            and _CONTINUES_RE.search(pending.rstrip())
        ):
            pending = pending.rstrip() + " " + stripped
        else:
            if pending is not None:
                yield pending
            pending = line
    if pending is not None:
        yield pending


# ------------------------------------------------------------------------------------------
# Sentence selection
# ------------------------------------------------------------------------------------------

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_CODE_HINT_RE = re.compile(
    r"^\s*(?:\$ |>>> |# |#include|import |from \S+ import|package |func |def |class |const |let |var |"
    r"return\b|public |private |SELECT |INSERT |//|/\*|<\w+[^>]*>)"
)
# A line that starts like a shell command. Case-sensitive on purpose: prose starts with a capital
# ("Go is …", "Make sure …"), commands don't.
_SHELL_RE = re.compile(
    r"^(?:sudo\s+)?(?:docker|podman|kubectl|helm|git|npm|npx|yarn|pnpm|pip3?|go|cargo|rustup|curl|wget|"
    r"apt(?:-get)?|yum|dnf|brew|make|cd|ls|cat|echo|export|mkdir|rm|cp|mv|chmod|chown|systemctl|"
    r"python3?|node|java|mvn|gradle)\s+[-\w./~$]"
)
_CODE_CHARS_RE = re.compile(r"[{}\[\]();=<>|&`\\]")
_CODE_TOKEN_RE = re.compile(r"&&|\|\||=>|->|::|\s--?[a-z]|\w\(|\)\s*\{|\w\.\w+\(|;\s*$|[{(\\]\s*$|^\s*[})\]]")
_LIST_MARKER_RE = re.compile(r"^(?:[-*+•·>]|\d{1,2}[.)、]|[（(]\d{1,2}[)）])\s+")
_CLAUSE_MARKS = "，、：,;；:"
_CJK_JOIN_END = _CJK_TERMINATORS + "…」』）】》〉〗”’"

# English carries about a third of the information per character that Chinese does; this bounds
# English fallbacks and sentence lengths in terms of the one configured budget.
_ENGLISH_LENGTH_FACTOR = 3
_MAX_SENTENCES = 600  # the graph is quadratic; later sentences of a very long text rarely win
_DAMPING = 0.85
_REDUNDANT = 0.6  # cosine similarity above which a sentence repeats one already picked
_LEAD_BONUS = 0.3
_TITLE_BONUS = 0.5


@dataclass
class _Candidate:
    index: int
    text: str
    tokens: list[str]
    weight: float = 1.0
    counts: Counter[str] = field(init=False)
    """Term counts, made once: the redundancy check compares every pick with every candidate."""
    norm: float = field(init=False)
    """The length of :attr:`counts` as a vector, made once: the title and redundancy checks each
    compare it with others. (Made with the counts: a ``cached_property`` takes a lock per read.)"""

    def __post_init__(self) -> None:
        self.counts = Counter(self.tokens)
        self.norm = _length(self.counts)


# An English sentence that opens by leaning on the one before it ("However, …", "This will …", "They …")
# reads as the middle of an argument when a summary shows it without that sentence.
_LEANS_BACK_RE = re.compile(
    r"^(?:However|But|And|Or|So|Also|Thus|Hence|Therefore|Furthermore|Moreover|Instead|Otherwise|Still|Yet|"
    r"Besides|Likewise|Similarly|This|That|These|Those|It|They|Such)\b"
)
_LEANS_BACK = 0.6


def _weight(sentence: str, chinese: bool) -> float:
    """Down-weights for sentences that are probably not prose."""
    if chinese and sentence[-1] not in _CJK_JOIN_END and sentence[-1] not in "!?.":
        return 0.5  # no closing punctuation: a heading, caption or label
    if not chinese and sentence[0].islower():
        return 0.5  # usually the tail of a sentence whose link text the extractor dropped
    return 1.0


# Markup anywhere in a sentence: a tag, a JSP/ASP directive, an HTML entity. Prose about HTML names
# tags in backticks or words; a literal `<br>` in extracted text is a page's source leaking through.
_MARKUP_RE = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>|<%|%>|<!|&(?:nbsp|lt|gt|amp|quot|#\d+);", re.I)
# Code that reads almost like prose: a trailing // comment, a bare call, a doc-comment line.
_CODE_SHAPE_RE = re.compile(
    r"(?:^|[;)}]\s*)//\s|^[\w.$]+\s*\(.*\)\s*;?$|^\s*(?:/\*|\*/|\*\s*@\w)|\*/\s*$"
    # A compiler's or linter's report: its gutter, arrows and labelled notes ("= note:", "error[E0382]:").
    r"|^\s*(?:\||-->|=\s*(?:note|help):|(?:error|warning)(?:\[\w+\])?:)"
    # A condition opening a block: "if beverage == "lemonade" {", "while n != 0 {".
    r"|(?:==|!=|<=|>=)\s*\S+\s*\{"
)
# A caption that ran into the text: "Listing 8-3: Using the push method ...", "图 2：架构".
_CAPTION_RE = re.compile(r"^(?:Listing|Figure|Fig\.|Table|Example|图|表|代码|清单)\s*[\dA-Z][\d.-]*\s*[:：]")
# Navigation and chrome: short pieces joined by separators ("首页 | 新闻 | 博问", "Home > Blog > Go").
_NAV_RE = re.compile(r"^(?:[^|>»/·]{1,16}\s*[|>»·/]\s*){2,}[^|>»/·]{0,16}$")


@lru_cache(maxsize=4096)  # prose_sentences and _is_junk ask about the same sentences
def _looks_like_code(sentence: str) -> bool:
    if _CODE_HINT_RE.match(sentence) or _SHELL_RE.match(sentence):
        return True
    if _MARKUP_RE.search(sentence) or _NAV_RE.match(sentence.strip()) or _CODE_SHAPE_RE.search(sentence):
        return True
    if len(_CODE_TOKEN_RE.findall(sentence)) >= 2 or re.search(r"[{(\\]\s*$", sentence):
        return True  # pipelines, calls, an unclosed brace or a line continuation at the end
    code = len(_CODE_CHARS_RE.findall(sentence))
    return code >= 4 and code > 0.08 * len(sentence)


def prose_sentences(text: str) -> list[str]:
    """The sentences of ``text`` that read as prose: not code, markup or navigation, mostly words."""
    return _prose_of(split_sentences(text))


def _prose_of(sentences: Iterable[str]) -> list[str]:
    return [s for s in sentences if _is_prose(s)]


@lru_cache(maxsize=4096)  # has_prose, summarize and _is_junk ask about the same sentences
def _is_prose(sentence: str) -> bool:
    words = count_word_chars(sentence)
    return words >= 2 and words >= 0.5 * len(sentence.replace(" ", "")) and not _looks_like_code(sentence)


_ENOUGH_PROSE = 60


def has_prose(text: str) -> bool:
    """Whether a page has something to read besides code: a short paragraph of prose, or prose making up
    a tenth of it. A listing with a stray comment or two has neither.

    Stops splitting at the first paragraph's worth of prose: an article (nearly every page) is judged
    on its first lines, and the summarizer splits the whole text later anyway."""
    prose = 0
    for sentence in _sentences(text):
        if _is_prose(sentence):
            prose += len(sentence)
            if prose >= _ENOUGH_PROSE:
                return True
    return prose >= 0.1 * len(text.strip())


def _is_junk(sentence: str, chinese: bool, max_len: int) -> bool:
    if len(sentence) > max_len:
        return True  # no prose sentence is this long: a code listing or a run-together table
    if sentence.rstrip().endswith((":", "：")):
        return True  # it announces what follows (a listing, a command): alone in a summary it says nothing
    # (Most sentences hold no address: a substring test spares them the regex.)
    visible = _URL_RE.sub("", sentence) if "://" in sentence or "www." in sentence.lower() else sentence
    if chinese:
        if count_chars(CJK_RUN_RE, visible) < 6 and count_word_chars(visible) < 20:
            return True
    elif len(visible.split()) < 5:
        return True
    elif sentence[-1] not in _CJK_JOIN_END and sentence[-1] not in ".!?:;)\"'’”":
        return True  # an English line with no closing punctuation: a heading, label or caption
    elif sentence.endswith(")") and sentence[-2:-1] not in (".", "!", "?", ")", "”", '"'):
        return True  # "Ignore the failed items with filter_map()": a heading naming a call, no sentence
    if _CAPTION_RE.match(sentence):
        return True
    if visible is sentence:
        # What is left to ask is whether it reads as prose, which summarize() has asked already:
        # past the checks above it has at least two word characters, the one extra condition there.
        return not _is_prose(sentence)
    if count_word_chars(visible) < 0.5 * len(sentence.replace(" ", "")):
        return True  # mostly punctuation, symbols or URL
    return _looks_like_code(sentence)


def _similarity_matrix(counts: Sequence[Counter[str]]) -> np.ndarray:
    """Cosine similarity of log-scaled term-frequency vectors, from each sentence's term counts."""
    vocab: dict[str, int] = {}
    # A Counter keeps its terms in order of first occurrence, so the columns come in the order a
    # token-by-token scan gives them (the order the dot products sum in, which fixes the last bit).
    # One comprehension per sentence rather than three appends per term: this loop was a sixth of
    # a summary's cost.
    cols = [[vocab.setdefault(t, len(vocab)) for t in terms] for terms in counts]
    n = len(counts)
    if not vocab:
        return np.zeros((n, n))
    # The counts land in a dense matrix, which at these sizes (≤ 600 sentences × a few thousand
    # words) beats a sparse one.
    tf = np.zeros((n, len(vocab)))
    rows = np.repeat(np.arange(n), [len(terms) for terms in counts])
    tf[rows, np.fromiter(chain.from_iterable(cols), dtype=np.intp, count=len(rows))] = np.fromiter(
        chain.from_iterable(terms.values() for terms in counts), dtype=np.float64, count=len(rows))
    tf = np.log1p(tf)
    norms = np.linalg.norm(tf, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit = tf / norms
    sim = unit @ unit.T
    np.fill_diagonal(sim, 0.0)
    return np.clip(sim, 0.0, 1.0)


def _pagerank(weights: np.ndarray, personalization: np.ndarray) -> np.ndarray:
    """PageRank of the sentence graph, solved as the linear system it is rather than iterated: at a
    few hundred sentences a direct solve costs a fraction of the ~50 matrix-vector products that the
    power method needs to converge, and gives the fixed point itself."""
    n = weights.shape[0]
    p = personalization / personalization.sum()
    out = weights.sum(axis=1)
    dangling = out == 0
    transition = np.divide(weights, out[:, None], out=np.zeros_like(weights), where=~dangling[:, None])
    if dangling.any():  # a sentence like no other spreads its rank as the walk restarts: by p
        transition[dangling] = p
    # rank = damping * rank @ transition + (1 - damping) * p, with the ranks summing to 1
    system = np.eye(n) - _DAMPING * transition.T
    try:
        return np.linalg.solve(system, (1 - _DAMPING) * p)
    except np.linalg.LinAlgError:  # cannot happen for damping < 1; the plain walk's answer then
        return p


def _length(counts: Counter[str]) -> float:
    values = counts.values()
    return math.sqrt(sum(map(mul, values, values)))  # integers: exact, as a generator's sum was


def _cosine(
    a: Counter[str], b: Counter[str], a_length: float | None = None, b_length: float | None = None
) -> float:
    """Cosine similarity of two term-count vectors (their lengths, when the caller has them)."""
    if not a or not b:
        return 0.0
    # Integer counts: the dot product is exact in any order, so only the shared terms are visited.
    dot = sum([a[k] * b[k] for k in a.keys() & b.keys()])
    if not dot:
        return 0.0
    na = _length(a) if a_length is None else a_length
    nb = _length(b) if b_length is None else b_length
    return dot / (na * nb)


def _rank(cands: list[_Candidate], title: str | None) -> list[int]:
    """Candidate positions, best first."""
    sim = _similarity_matrix([c.counts for c in cands])
    n = len(cands)
    personalization = np.ones(n)
    scores = _pagerank(sim, personalization) * n  # ~1.0 on average, so the bonuses below are relative
    # The title is tokenized once per text, not once per candidate.
    title_counts = Counter(fast_tokenize(title, drop_stopwords=True)) if title else Counter()
    title_length = _length(title_counts)
    for i, c in enumerate(cands):
        # A small lead bias: the opening of an article usually states its point.
        bonus = _LEAD_BONUS / (1 + i)
        if title_counts:
            bonus += _TITLE_BONUS * _cosine(c.counts, title_counts, c.norm, title_length)
        scores[i] *= (1 + bonus) * c.weight
    return sorted(range(n), key=lambda i: (-scores[i], i))


def _cut_at_clause(sentence: str, max_chars: int) -> str:
    """The longest clause-bounded prefix that fits in ``max_chars`` with a trailing ``…``."""
    limit = max_chars - 1
    if limit <= 0:
        return "…"[:max_chars]
    head = sentence[:limit + 1]
    cut = max((head.rfind(m, 0, limit + 1) for m in _CLAUSE_MARKS), default=-1)
    if cut >= max(1, limit // 3):
        prefix = sentence[:cut]
    else:
        # No clause mark early enough: cut at a word boundary for Latin text, anywhere for CJK.
        prefix = sentence[:limit]
        space = prefix.rfind(" ")
        if not CJK_CHAR_RE.search(prefix) and space > limit // 2:
            prefix = prefix[:space]
    return prefix.rstrip(" ，、：,;；:。.") + "…"


def _join(sentences: list[str]) -> str:
    # Chinese sentences abut; anything else (a heading-like line, an English sentence) gets a space
    # so that two sentences never fuse into one word.
    out = ""
    for s in sentences:
        if out and out[-1] not in _CJK_JOIN_END:
            out += " "
        out += s
    return out


def _fallback(text: str, limit: int) -> str:
    flat = normalize_whitespace(text)
    return flat if len(flat) <= limit else _cut_at_clause(flat, limit)


def _candidates(sentences: list[str], chinese: bool, max_len: int, title_key: str | None = None) -> list[_Candidate]:
    """The sentences worth ranking, tokenized: list markers dropped, junk (see :func:`_is_junk`), exact
    repeats and a repeat of the title (``title_key``, normalized) left out."""
    cands: list[_Candidate] = []
    seen: set[str] = set()
    for i, raw in enumerate(sentences[:_MAX_SENTENCES]):
        s = _LIST_MARKER_RE.sub("", raw, count=1) or raw
        normal = nfkc(s)  # once: the key and the tokens both start from it
        key = normalize_whitespace(normal)
        if key in seen or (title_key and key.rstrip("。.!?！？") == title_key) or _is_junk(s, chinese, max_len):
            continue
        seen.add(key)  # an exact repeat keeps only its first occurrence
        tokens = fast_tokenize(normal, drop_stopwords=True, normalized=True)
        if tokens:
            weight = _weight(s, chinese)
            if not chinese and i > 0 and _LEANS_BACK_RE.match(s):
                weight *= _LEANS_BACK
            cands.append(_Candidate(i, s, tokens, weight))
    return cands


def summarize(
    text: str,
    *,
    title: str | None = None,
    min_chars: int = 80,
    max_chars: int = 200,
    english_sentences: int = 3,
) -> str:
    """An extractive summary of ``text``.

    Chinese text: whole sentences, best first, until the summary reaches ``min_chars``, never beyond
    ``max_chars`` (sentences that would overflow are passed over for shorter ones); if even the best
    sentence is too long, it is cut at a clause boundary and ends in ``…``. English text: the
    ``english_sentences`` best sentences. Either way the result keeps the text's order, skips
    junk (fragments, URLs, code) and near-repeats of already chosen sentences, and is deterministic.
    Text that is already short enough comes back whitespace-collapsed; empty text gives ``""``.
    """
    if not text or not text.strip():
        return ""
    sentences = split_sentences(text)
    # Decide the language on the prose only: a Chinese post that is mostly shell commands and
    # config listings is still a Chinese post. (Split once: prose_sentences would split again.)
    prose = _prose_of(sentences)
    chinese = is_chinese("\n".join(prose) if prose else text)
    limit = max_chars if chinese else _ENGLISH_LENGTH_FACTOR * max_chars
    if not prose:
        return ""  # code, markup or navigation only: no summary beats a summary of markup
    title_key = normalize_text(title).rstrip("。.!?！？") if title else None
    flat = normalize_whitespace(text)
    if len(flat) <= limit and len(prose) == len(sentences) and (chinese or len(sentences) <= english_sentences):
        # A short text that opens with its own title (a chapter page: "Design Patterns", then one
        # sentence) is summarized by what follows the title: the reader sees the title beside it.
        if len(sentences) > 1 and title_key and normalize_text(sentences[0]).rstrip("。.!?！？") == title_key:
            return normalize_whitespace(text[text.find(sentences[0]) + len(sentences[0]) :])
        return flat

    cands = _candidates(sentences, chinese, _ENGLISH_LENGTH_FACTOR * max_chars, title_key)
    if not cands:
        untitled = [s for s in prose if normalize_text(s).rstrip("。.!?！？") != title_key]
        return _fallback("\n".join(untitled or prose), limit)

    order = _rank(cands, title)
    picked: list[_Candidate] = []

    def redundant(c: _Candidate) -> bool:
        return any(_cosine(c.counts, p.counts, c.norm, p.norm) >= _REDUNDANT for p in picked)

    if chinese:
        result = ""
        for pos in order:
            c = cands[pos]
            if len(c.text) > max_chars or redundant(c):
                continue
            trial = _join([p.text for p in sorted([*picked, c], key=lambda p: p.index)])
            if len(trial) > max_chars:
                continue  # a shorter, lower-ranked sentence may still fit
            picked.append(c)
            result = trial
            if len(result) >= min_chars:
                break
        return result or _cut_at_clause(cands[order[0]].text, max_chars)

    for pos in order:
        c = cands[pos]
        if not redundant(c):
            picked.append(c)
            if len(picked) >= english_sentences:
                break
    return " ".join(p.text for p in sorted(picked, key=lambda p: p.index))


def ranked_sentences(text: str, *, title: str | None = None, max_len: int = 600) -> list[tuple[int, str]]:
    """The prose sentences of ``text`` as ``(position, sentence)``, best first, ranked as
    :func:`summarize` ranks them (junk such as code, URLs and fragments left out). The LLM layer uses
    it to shrink an over-long article to the sentences worth a model's context."""
    sentences = split_sentences(text or "")
    prose = [s for s in sentences if not _looks_like_code(s)]
    chinese = is_chinese("\n".join(prose) if prose else text or "")
    cands = _candidates(sentences, chinese, max_len)
    if not cands:
        return []
    return [(cands[pos].index, cands[pos].text) for pos in _rank(cands, title)]
