"""The compound forms (multi-word synonym forms, :func:`.index.compound_forms`) found in an item's
segmented fields, for the index build: each occurrence is also indexed as one word
(:func:`.engine.compound_term`).

A word starts a form when it is, as it stands or stemmed, the form's first word (only ASCII words
are stemmed there), and the next words must equal or stem to the form's next ones: what a phrase
query over stemmed words matches.

Most words start no form, so the walk is over the few that do: each word is classified once per
build (a dict from word to the forms it starts), a field's words are looked up with one ``map`` in
C, and ``itertools.compress`` hands Python only the positions that start a form. Over the 100k-item
benchmark that is ~0.3 s of CPU against ~1.0 s for a Python loop over every word that stems each
ASCII word again through the stemmer's cache."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress

from .engine import FIELDS, WORD_FIELDS, compound_term, stem

Form = tuple[str, ...]


class _Stems(dict[str, str]):
    """:func:`.engine.stem` of each word met after a form's first word, filled as words come (a dict
    hit, where the stemmer's own cache is a function call)."""

    def __missing__(self, word: str) -> str:
        stemmed = self[word] = stem(word)
        return stemmed


class CompoundFinder:
    """``CompoundFinder(forms).row(fields)``: per field, the compound words of the forms it holds."""

    MAX_WORDS = 500_000
    """A bound on the words classified (and kept alive) by one finder: a build over millions of items
    starts afresh past it, at the cost of classifying the common words again."""

    def __init__(self, forms: Sequence[Form]) -> None:
        self.by_first: dict[str, list[Form]] = {}
        for form in forms:
            self.by_first.setdefault(form[0], []).append(form)
        self._starts: dict[str, tuple[tuple[Form, str], ...]] = {}
        """Every word met so far, with (the rest of, the compound word of) each form it starts, in
        ``forms`` order: mostly none."""
        self._stems = _Stems()

    def row(self, fields: Sequence[Sequence[str]]) -> list[str]:
        """Per field (in :data:`.engine.FIELDS` order, word fields only), the compound words of the
        forms it holds, one per occurrence (a phrase's frequency is the compound's), in order."""
        return [
            self._field(words) if name in WORD_FIELDS and words else ""
            for name, words in zip(FIELDS, fields, strict=True)
        ]

    def _field(self, words: Sequence[str]) -> str:
        starts = self._starts
        try:
            forms_at = list(map(starts.__getitem__, words))
        except KeyError:  # a word not met yet: classify the field's new words, then look up again
            self._learn(words)
            forms_at = list(map(starts.__getitem__, words))
        stems = self._stems
        last = len(words) - 1
        found: list[str] = []
        for i, forms in compress(enumerate(forms_at), forms_at):
            for rest, term in forms:
                if i + len(rest) > last:
                    continue
                j = i
                for following in rest:  # the next words must be the form's, as they stand or stemmed
                    j += 1
                    word = words[j]
                    if word != following and stems[word] != following:
                        break
                else:
                    found.append(term)
        return " ".join(found)

    def _learn(self, words: Sequence[str]) -> None:
        starts = self._starts
        if len(starts) > self.MAX_WORDS:
            starts.clear()
            self._stems.clear()
        by_first = self.by_first
        for word in set(words).difference(starts):
            if word in by_first:
                forms = by_first[word]
            elif word.isascii():  # an inflected English word may stem to a first word
                forms = by_first.get(stem(word), [])
            else:
                forms = []
            starts[word] = tuple((form[1:], compound_term(form)) for form in forms)
