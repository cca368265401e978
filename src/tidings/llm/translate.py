"""The 3-step translation of Markdown (literal; the problems, each naming where; a free
re-translation from both), chunk by chunk along section boundaries. Code blocks, inline code, link
targets, URLs and HTML are swapped for ``⟦n⟧`` placeholders and never reach the model; every step is
validated (placeholders kept, target language) and regenerated once, and a chunk that still fails
keeps its best valid step, or its source text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Config
from ..errors import LLMError
from ..textutil import CJK_CHAR_RE
from .gateway import LLM, Message, estimate_tokens
from .tasks import data_rule, fence, language_name, language_problem

LITERAL_PROMPT = "translate-literal.1"
CRITIQUE_PROMPT = "translate-critique.1"
FREE_PROMPT = "translate-free.1"

_FENCED_RE = re.compile(r"^([ \t]*)(`{3,}|~{3,})[^\n]*\n.*?^\1\2[ \t]*$", re.M | re.S)
_PROTECT_RES = [
    # Each pattern stops at the start of the next construct of its kind ("<!--", "[", "<"): unclosed
    # openers repeated along a line would otherwise each scan to its end, time growing with the square.
    re.compile(r"<!--(?:(?!<!--).)*?-->", re.S),
    re.compile(r"`[^`\n]+`"),
    re.compile(r"!\[[^\[\]\n]*\]\([^)\[\]\n]*\)"),  # images: alt text and all
    re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*\S+.*$", re.M),  # reference definitions
    re.compile(r"<https?://[^>\s]+>"),
    re.compile(r"</?[A-Za-z][^<>\n]*>"),  # inline HTML tags
]
_LINK_TARGET_RE = re.compile(r"(\]\()([^)\[\]\n]+)(\))")
_BARE_URL_RE = re.compile(r"(?<![(<⟦])\bhttps?://[^\s)<>\]]+")
_PLACEHOLDER_RE = re.compile(r"⟦\s*(\d+)\s*⟧")


@dataclass
class Protected:
    text: str
    pieces: list[str]


def protect(markdown: str) -> Protected:
    """Code blocks, inline code, images, link targets, bare URLs and HTML replaced by ``⟦n⟧``
    markers, so that no translation step can touch them."""
    pieces: list[str] = []

    def keep(match: re.Match[str]) -> str:
        pieces.append(match.group(0))
        return f"⟦{len(pieces)}⟧"

    text = _FENCED_RE.sub(keep, markdown)
    for pattern in _PROTECT_RES:
        text = pattern.sub(keep, text)

    def keep_target(match: re.Match[str]) -> str:
        if _PLACEHOLDER_RE.fullmatch(match.group(2).strip()):
            return match.group(0)
        pieces.append(match.group(2))
        return f"{match.group(1)}⟦{len(pieces)}⟧{match.group(3)}"

    text = _LINK_TARGET_RE.sub(keep_target, text)
    text = _BARE_URL_RE.sub(keep, text)
    return Protected(text, pieces)


def restore(text: str, pieces: Sequence[str]) -> str:
    def put(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return pieces[index - 1] if 1 <= index <= len(pieces) else match.group(0)

    # Repeat: a piece may itself have been protected inside another (a link inside a comment is not).
    return _PLACEHOLDER_RE.sub(put, text)


def markers_in(text: str) -> list[int]:
    return [int(m.group(1)) for m in _PLACEHOLDER_RE.finditer(text)]


_HEADING_RE = re.compile(r"^#{1,6}\s", re.M)


def chunk_markdown(text: str, limit_tokens: int) -> list[str]:
    """Split along section boundaries (headings), packing whole sections up to ``limit_tokens``;
    an over-long section is split between paragraphs. Joining the chunks with "\\n\\n" gives the text back
    (up to blank lines at the joins)."""
    sections: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if _HEADING_RE.match(line) and current and any(x.strip() for x in current):
            sections.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    if current and any(x.strip() for x in current):
        sections.append("\n".join(current).strip("\n"))
    pieces: list[str] = []
    for section in sections:
        if estimate_tokens(section) <= limit_tokens:
            pieces.append(section)
        else:
            pieces.extend(p for p in re.split(r"\n\s*\n", section) if p.strip())
    chunks: list[str] = []
    for piece in pieces:
        if chunks and estimate_tokens(chunks[-1]) + estimate_tokens(piece) <= limit_tokens:
            chunks[-1] += "\n\n" + piece  # small sections and paragraphs share a chunk
        else:
            chunks.append(piece)
    return chunks


def _glossary_lines(glossary: dict[str, str], text: str) -> str:
    used = [(term, target) for term, target in glossary.items() if term.casefold() in text.casefold()]
    if not used:
        return ""
    return "Glossary (always translate these terms so): " + "; ".join(f"{t} → {g}" for t, g in used) + ".\n"


def _translator_system() -> str:
    return (
        "You are a professional technical translator. " + data_rule("<source>", "</source>")
        + " Markers like ⟦3⟧ stand for code, links or URLs: copy every marker unchanged to the same place."
    )


def literal_messages(chunk: str, language: str, glossary: dict[str, str]) -> list[Message]:
    name = language_name(language)
    user = (
        f"Translate the Markdown text in the source block into {name}, literally and completely: keep every "
        "sentence, keep the Markdown markup (headings, lists, emphasis, line breaks) exactly as it is, and "
        "copy every ⟦n⟧ marker unchanged.\n" + _glossary_lines(glossary, chunk) + "\n"
        + fence(chunk, "source") + f"\n\nReply with the {name} translation only."
    )
    return [{"role": "system", "content": _translator_system()}, {"role": "user", "content": user}]


def critique_messages(chunk: str, literal: str, language: str) -> list[Message]:
    name = language_name(language)
    user = (
        f"Below are a source text and its literal translation into {name}. List the specific problems of the "
        f"translation: phrases that are unidiomatic, awkward or obscure in {name}, wrong terms, anything left "
        "untranslated. One problem per line, each naming where it is, as: \"<phrase quoted from the "
        "translation>\": <the problem>; <a better wording>. If there are no problems, reply NONE.\n\n"
        + fence(chunk, "source") + "\n\n" + fence(literal, "translation")
    )
    return [{"role": "system", "content": _translator_system()}, {"role": "user", "content": user}]


def free_messages(chunk: str, literal: str, problems: str, language: str, glossary: dict[str, str]) -> list[Message]:
    name = language_name(language)
    user = (
        f"Re-translate the source text into natural, fluent {name}, starting from the literal translation and "
        "fixing every problem listed. Keep the meaning, the Markdown markup and every ⟦n⟧ marker unchanged.\n"
        + _glossary_lines(glossary, chunk) + "\n"
        + fence(chunk, "source") + "\n\n" + fence(literal, "translation") + "\n\n" + fence(problems, "problems")
        + f"\n\nReply with the new {name} translation only."
    )
    return [{"role": "system", "content": _translator_system()}, {"role": "user", "content": user}]


def translation_problem(source: str, translated: str, language: str) -> str | None:
    if not translated.strip():
        return "the answer is empty"
    want = sorted(markers_in(source))
    got = sorted(markers_in(translated))
    if want != got:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        parts = []
        if missing:
            parts.append("it lost the markers " + ", ".join(f"⟦{n}⟧" for n in missing))
        if extra or len(got) != len(set(got)):
            parts.append("it added or repeated markers")
        return "; ".join(parts) + "; copy every ⟦n⟧ marker exactly once"
    if len(_HEADING_RE.findall(source)) != len(_HEADING_RE.findall(translated)):
        return "it changed the number of Markdown headings; keep the markup as it is"
    prose = _PLACEHOLDER_RE.sub(" ", source)
    if len(CJK_CHAR_RE.findall(prose)) + len(re.findall(r"[A-Za-z]", prose)) >= 20:
        wrong = language_problem(_PLACEHOLDER_RE.sub(" ", translated), language)
        if wrong:
            return wrong
    return None


@dataclass
class ChunkSteps:
    source: str
    literal: str = ""
    problems: str = ""
    final: str = ""
    fallback: str | None = None


@dataclass
class Translation:
    text: str
    chunks: list[ChunkSteps] = field(default_factory=list)
    language: str = "zh"
    pieces: list[str] = field(default_factory=list)
    """What the ⟦n⟧ markers stand for."""

    @property
    def fallbacks(self) -> list[str]:
        return [c.fallback for c in self.chunks if c.fallback]


def _checked_step(
    llm: LLM, messages: list[Message], prompt_version: str, source: str, language: str
) -> tuple[str, str | None]:
    """One translation step with one regeneration when markers or language are wrong."""
    answer = llm.call("translate", messages, prompt_version=prompt_version)
    text = answer.text.strip()
    problem = translation_problem(source, text, language)
    if problem:
        retry = [*messages, {"role": "assistant", "content": answer.text},
                 {"role": "user", "content": f"That translation cannot be used: {problem}. Reply again with the "
                                             "translation only."}]
        text = llm.call("translate", retry, prompt_version=prompt_version).text.strip()
        problem = translation_problem(source, text, language)
    return text, problem


def translate_markdown(llm: LLM, config: Config, markdown: str, *, language: str | None = None) -> Translation:
    """The 3-step translation (literal; a list of problems, each naming where; a free
    re-translation from both) chunk by chunk along section boundaries. Code blocks and link
    targets never reach the model. A chunk whose steps fail keeps the best valid step, or its
    source text, and is reported in ``fallbacks``."""
    language = language or config.llm.translate_language
    route = llm.route("translate")
    if route is None:
        raise LLMError("no model for the task 'translate': configure [models] and routes.translate", fatal=True)
    protected = protect(markdown)
    # Step 3 carries the source, the literal translation and the problems, and must answer in max_tokens.
    room = (route.config.context_tokens - route.config.max_tokens - 500) // 3
    limit = max(30, min(config.llm.translate_chunk_tokens, int(route.config.max_tokens * 0.6), room))
    result = Translation("", language=language, pieces=protected.pieces)
    outputs: list[str] = []
    for chunk in chunk_markdown(protected.text, limit):
        steps = ChunkSteps(chunk)
        result.chunks.append(steps)
        try:
            literal, problem = _checked_step(
                llm, literal_messages(chunk, language, config.glossary), LITERAL_PROMPT, chunk, language
            )
            steps.literal = literal
            if problem:
                steps.fallback = f"literal translation: {problem}"
                steps.final = chunk
                outputs.append(chunk)
                continue
            steps.problems = llm.call(
                "translate", critique_messages(chunk, literal, language), prompt_version=CRITIQUE_PROMPT
            ).text.strip()
            if not steps.problems or steps.problems.strip(" .").upper() == "NONE":
                steps.final = literal  # nothing to fix: the literal translation stands
            else:
                final, problem = _checked_step(
                    llm, free_messages(chunk, literal, steps.problems, language, config.glossary),
                    FREE_PROMPT, chunk, language,
                )
                if problem:
                    steps.fallback = f"free translation: {problem}; kept the literal one"
                    final = literal
                steps.final = final
        except LLMError as exc:
            if exc.fatal:
                raise
            steps.fallback = f"error: {exc}"
            steps.final = steps.literal if steps.literal and not translation_problem(chunk, steps.literal, language) else chunk
        outputs.append(steps.final)
    result.text = restore("\n\n".join(outputs), protected.pieces)
    if markdown.endswith("\n"):
        result.text += "\n"
    return result



def dumps_steps(translation: Translation) -> str:
    """``--show-steps``: every chunk's three steps, then the result."""
    parts: list[str] = []
    def shown(text: str) -> str:
        return restore(text, translation.pieces)

    for number, chunk in enumerate(translation.chunks, start=1):
        parts.append(f"<!-- chunk {number}: step 1, literal translation -->\n{shown(chunk.literal)}")
        parts.append(f"<!-- chunk {number}: step 2, problems -->\n{shown(chunk.problems)}")
        parts.append(f"<!-- chunk {number}: step 3, free translation -->\n{shown(chunk.final)}")
        if chunk.fallback:
            parts.append(f"<!-- chunk {number}: fallback: {chunk.fallback} -->")
    parts.append("<!-- result -->\n" + translation.text)
    return "\n\n".join(parts) + "\n"


__all__ = ["Translation", "dumps_steps", "protect", "restore", "translate_markdown"]
