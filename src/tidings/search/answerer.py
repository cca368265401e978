"""The LLM answerer for ``ask``: the retrieved passages go to the model fenced and labelled as
data, the reply must be one JSON object of a fixed schema (validated with pydantic, retried with
the problem fed back), and :func:`tidings.search.ask.ask` then keeps only citations that are
verbatim, on topic and not from a passage that instructs its reader.

A passage is never an instruction: the system message says so, every passage sits in its own
``<passage>`` block with any marker inside it defused, and nothing the model writes is shown
unless it survives those checks (issue 16.4)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ..config import Config
from ..errors import LLMBadOutput
from ..llm.gateway import LLM, Message, estimate_tokens
from ..llm.tasks import _json_text, data_rule, fence
from .ask import Answerer, DraftAnswer, Passage

ASK_PROMPT = "ask-1"
"""Bumped whenever the prompt or schema changes, so cached answers of the old one are not reused."""
_MAX_ANSWER_CHARS = 1200
_MAX_CITATIONS = 6


class CitationReply(BaseModel):
    passage: int = Field(ge=1)
    quote: str = Field(min_length=1, max_length=600)


class AskReply(BaseModel):
    answer: str = Field(max_length=_MAX_ANSWER_CHARS)
    citations: list[CitationReply] = Field(max_length=_MAX_CITATIONS)


def ask_schema() -> dict[str, Any]:
    """The reply's shape for the server's JSON grammar. Bounds (lengths, counts, the passage range)
    are left to :func:`parse_reply`: llama.cpp's server dies converting ``maxLength``, ``maxItems``
    or ``minimum`` into a grammar (seen with SmolLM2 on llama-cpp-python's server)."""
    return {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "citations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"passage": {"type": "integer"}, "quote": {"type": "string"}},
                    "required": ["passage", "quote"],
                },
            },
        },
        "required": ["answer", "citations"],
    }


def ask_messages(question: str, passages: list[Passage]) -> list[Message]:
    system = (
        "You answer a reader's question from numbered passages of their reading archive, and from "
        "nothing else. " + data_rule("<passage>", "</passage>")
        + " Copy each supporting sentence exactly as it is written in its passage, with the passage's "
        "number, and mark each claim of your answer with [n], the number of its citation. If the "
        'passages do not answer the question, reply {"answer": "", "citations": []}. '
        "Answer with one JSON object and nothing else."
    )
    blocks = []
    for n, p in enumerate(passages, start=1):
        source = (p.title or p.url or "").replace("\n", " ")[:120]
        blocks.append(f"Passage {n} (data from the archive item {source!r}):\n" + fence(p.text, "passage"))
    user = (
        f"Question: {question}\n\n" + "\n\n".join(blocks)
        + '\n\nReply with JSON only, like {"answer": "… [1]", "citations": [{"passage": 1, "quote": "…"}]}.'
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_reply(raw: str, passages: int) -> DraftAnswer:
    """The reply as a DraftAnswer; ValueError (worded for the model) when it is not the schema."""
    try:
        reply = AskReply.model_validate_json(_json_text(raw))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"the answer is not the JSON object asked for ({problems})") from exc
    for c in reply.citations:
        if c.passage > passages:
            raise ValueError(f"citation of passage {c.passage}, but there are only {passages}")
    return DraftAnswer(reply.answer.strip(), [(c.passage - 1, c.quote) for c in reply.citations])


def _passage_tokens(llm: LLM, config: Config) -> int:
    """What the passages may take of the routed model's context: the rest holds the instructions,
    the question and the reply."""
    route = llm.route("ask")
    context = route.config.context_tokens if route is not None and route.config.context_tokens else 8192
    reply = route.config.max_tokens if route is not None and route.config.max_tokens else 512
    return max(200, context - reply - 500)


def fit_passages(passages: list[Passage], budget_tokens: int) -> list[Passage]:
    """Passages cut to share ``budget_tokens`` evenly. A cut passage is a prefix of the original,
    so a quote from it is still verbatim in the item."""
    share = budget_tokens // max(1, len(passages))
    fitted = []
    for p in passages:
        text = p.text
        while text and estimate_tokens(text) > share:
            text = text[: max(1, int(len(text) * 0.8))]
        fitted.append(replace(p, text=text))
    return fitted


def llm_answerer(llm: LLM, config: Config) -> Answerer:
    """An :data:`~tidings.search.ask.Answerer` over the model routed for ``ask``. It raises
    LLMBadOutput when the model never returns the schema, and ``ask`` then answers extractively."""

    def answer(question: str, passages: list[Passage]) -> DraftAnswer:
        passages = fit_passages(passages, _passage_tokens(llm, config))
        messages = ask_messages(question, passages)
        schema = ask_schema()
        problem = ""
        raw = ""
        for _attempt in range(1 + config.llm.json_retries):
            raw = llm.call("ask", messages, prompt_version=ASK_PROMPT, json_schema=schema).text
            try:
                return parse_reply(raw, len(passages))
            except ValueError as exc:
                problem = str(exc)
                messages = [
                    *messages,
                    {"role": "assistant", "content": raw},
                    {"role": "user", "content": f"That answer is invalid: {problem}. Reply again with the JSON object only."},
                ]
        raise LLMBadOutput(raw, problem)

    return answer


def answerer_from_config(config: Config | None, store: Any = None) -> tuple[Answerer | None, LLM | None]:
    """The configured answerer (a model routed for ``ask`` or the default), else (None, None)."""
    if config is None:
        return None, None
    llm = LLM(config, store)
    if not llm.available("ask"):
        llm.close()
        return None, None
    return llm_answerer(llm, config), llm

