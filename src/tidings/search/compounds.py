"""The compound forms (multi-word synonym forms, :func:`.index.compound_forms`) found in an item's
segmented fields, for the index build: each occurrence is also indexed as one word
(:func:`.terms.compound_term`).

A word starts the forms whose first word it is; an English (ASCII) word that starts none starts those
whose first word it stems to. The next words must equal or stem to the form's next ones: what a
phrase query over stemmed words matches.

Most words start no form, so the walk is over the few that do: each English word is stemmed once
per build (a set of those met), the words that start a form are one small dict, a field is looked up
in it with one ``map`` in C, and ``itertools.compress`` hands Python only the positions that start
a form. Over the 100k-item benchmark, each field checked right after it is segmented as the build
does, that is ~0.8 s of CPU against ~1.2 s for the walk it replaces (``index.CompoundFinder``: a Python
loop over every word, calling the stemmer's cache for each English word); a dict of every word met
was hardly faster (~0.9 s): its look-ups miss the CPU's caches."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress

from ..textutil import Memo
from .terms import FIELDS, WORD_FIELDS, compound_term, stem

Form = tuple[str, ...]


class CompoundFinder:
    """``CompoundFinder(forms).row(fields)``: per field, the compound words of the forms it holds."""

    MAX_WORDS = 500_000
    """A bound on the English words remembered as classified by one finder: a build over millions of
    items starts afresh past it, at the cost of stemming the common words again."""

    def __init__(self, forms: Sequence[Form]) -> None:
        self.by_first: dict[str, list[Form]] = {}
        for form in forms:
            self.by_first.setdefault(form[0], []).append(form)
        self._starts: dict[str, tuple[tuple[Form, str], ...]] = {
            first: self._entries(forms) for first, forms in self.by_first.items()
        }
        """The words that start a form (the forms' first words, and the English words met so far
        that stem to one), with (the rest of, the compound word of) each form, in ``forms`` order."""
        self._ascii_seen: set[str] = set()
        """The English (ASCII) words met so far: each is stemmed once, to see if it starts a form."""
        self._stems: Memo[str, str] = Memo(stem)
        """The stem of each word met after a form's first word (a dict hit, where the stemmer's cache is a call)."""

    @staticmethod
    def _entries(forms: list[Form]) -> tuple[tuple[Form, str], ...]:
        return tuple((form[1:], compound_term(form)) for form in forms)

    def row(self, fields: Sequence[Sequence[str]]) -> list[str]:
        """Per field (in :data:`.terms.FIELDS` order, word fields only), the compound words of the
        forms it holds, one per occurrence (a phrase's frequency is the compound's), in order."""
        return [
            self._field(words) if name in WORD_FIELDS and words else ""
            for name, words in zip(FIELDS, fields, strict=True)
        ]

    def _field(self, words: Sequence[str]) -> str:
        if not self._ascii_seen.issuperset(filter(str.isascii, words)):
            self._learn(words)
        starts = self._starts
        stems = self._stems
        last = len(words) - 1
        found: list[str] = []
        for i, word in compress(enumerate(words), map(starts.__contains__, words)):
            for rest, term in starts[word]:
                if i + len(rest) > last:
                    continue
                j = i
                for following in rest:  # the next words must be the form's, as they stand or stemmed
                    j += 1
                    if words[j] != following and stems[words[j]] != following:
                        break
                else:
                    found.append(term)
        return " ".join(found)

    def _learn(self, words: Sequence[str]) -> None:
        """Stems the field's English words not met yet: an inflected one may stem to a first word
        (only English words are stemmed there; any other word starts a form only as it stands)."""
        seen = self._ascii_seen
        if len(seen) > self.MAX_WORDS:
            seen.clear()
            self._stems.clear()
        by_first = self.by_first
        for word in set(filter(str.isascii, words)).difference(seen):
            seen.add(word)
            if word not in by_first:
                forms = by_first.get(stem(word))
                if forms:
                    self._starts[word] = self._entries(forms)
