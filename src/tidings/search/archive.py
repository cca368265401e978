"""Questions about the archive itself: counts, rankings and series over items, sources, sections,
tags and digests ("上个月收了多少篇 AI 文章？", "2024 年每个月各有几期？", "how many Go articles
in 2024?"), answered with SQL over the documented read-only views (``archive_sql``).

With a model routed for ``ask``, the model writes the SQL from the schema; the guardrails check it
and an error goes back to it, up to ``retries`` times. Offline, or when the model never gets a
query through, the templates of ``archive_questions`` write it. Either way the SQL is the evidence
shown with the answer. Questions that are not about the archive get None here and go to the
content ask (``search.ask``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import LLMError
from ..store import Store
from ..textutil import has_cjk
from .archive_questions import (
    Intent,
    Vocabulary,
    build_sql,
    looks_like_archive_question,
    parse_question,
    question_kind,
    section_words,
)
from .archive_sql import (
    SCHEMA_DOC,
    ArchiveSQLError,
    QueryResult,
    archive_connection,
    column_values,
    run_sql,
    sql_from_reply,
)

if TYPE_CHECKING:
    import sqlite3

    from ..llm.gateway import LLM

log = logging.getLogger(__name__)

ARCHIVE_PROMPT = "archive_sql.2"
MODEL_RETRIES = 2
"""A refused or failing query goes back to the model with the error this many times."""
TEMPLATE_CONFIDENCE = 0.9
MODEL_CONFIDENCE = 0.6
"""The model's SQL passed the guardrails and ran, but nothing checks that it means the question."""


@dataclass
class ArchiveAnswer:
    question: str
    answer: str
    sql: str
    columns: list[str]
    rows: list[list[Any]]
    confidence: float
    kind: str
    """count | top | series | breakdown."""
    value: Any
    """What the answer states, for comparison: a number, the top labels, or label -> count."""
    method: str
    """``template`` or ``llm:<model>``."""
    errors: list[str] = field(default_factory=list)
    """The guardrails' refusals on the way (a model's rejected queries)."""
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        rows = [dict(zip(self.columns, row, strict=False)) for row in self.rows]
        return {"answer": self.answer, "sql": self.sql, "rows": rows, "confidence": round(self.confidence, 4),
                "kind": self.kind, "value": self.value, "method": self.method, "errors": self.errors,
                "refused": self.refused}


def today_in(config: Config) -> date:
    if config.timezone:
        from zoneinfo import ZoneInfo

        return datetime.now(ZoneInfo(config.timezone)).date()
    return date.today()


def vocabulary(conn: sqlite3.Connection, config: Config) -> Vocabulary:
    return Vocabulary(
        sections=section_words(config.section_names, config.classify.aliases),
        tags=column_values(conn, "SELECT DISTINCT tag FROM archive_tags"),
        authors=column_values(conn, "SELECT DISTINCT author FROM archive_items UNION SELECT DISTINCT handle FROM archive_items"),
    )


def answer_archive(
    store: Store, question: str, *, config: Config | None = None, llm: LLM | None = None, today: date | None = None,
    retries: int = MODEL_RETRIES,
) -> ArchiveAnswer | None:
    """The answer to a question about the archive, or None when it is not one (or, offline, when
    no template fits it): the caller then asks the content ask."""
    if not looks_like_archive_question(question):
        return None
    config = config or Config()
    today = today or today_in(config)
    with archive_connection(store, config.classify.aliases) as conn:
        intent = parse_question(question, vocabulary(conn, config), today)
        errors: list[str] = []
        # A ranking with no dimension we know ("which article explains X the most clearly?") is
        # about content: the model is not asked to force it into SQL.
        model_may_answer = intent is not None or question_kind(question) != "top"
        if llm is not None and llm.available("ask") and model_may_answer:
            answer = _model_answer(conn, llm, question, config, today, intent, retries, errors)
            if answer is not None:
                return answer
        if intent is None:
            return None
        result = run_sql(conn, build_sql(intent))
        return _answer(question, result, intent.kind, intent, "template", TEMPLATE_CONFIDENCE, errors)


def schema_prompt(config: Config, today: date) -> str:
    sections = ", ".join(repr(s) for s in config.section_names)
    return (
        "Write one SQLite SELECT query that answers a question about a reading archive.\n"
        f"Use only these read-only views:\n{SCHEMA_DOC}\n"
        f"Sections: {sections}.\nToday is {today.isoformat()}.\n"
        "Reply with the SQL only: no explanation, no code in another language."
    )


# Two worked examples as earlier turns of the chat: small models follow a shown turn far better
# than a rule. Neither is a question of evals/archive.jsonl.
EXAMPLE_TURNS = [
    {"role": "user", "content": "2021 年有多少期？"},
    {"role": "assistant", "content": "SELECT count(*) FROM archive_digests WHERE year = '2021'"},
    {"role": "user", "content": "Which domain has the most items in 2020?"},
    {"role": "assistant", "content": "SELECT domain, count(*) AS n FROM archive_items WHERE year = '2020' "
                                     "AND domain IS NOT NULL GROUP BY domain ORDER BY n DESC LIMIT 5"},
]


def _model_answer(
    conn: sqlite3.Connection, llm: LLM, question: str, config: Config, today: date, intent: Intent | None,
    retries: int, errors: list[str],
) -> ArchiveAnswer | None:
    messages: list[dict[str, str]] = [
        {"role": "system", "content": schema_prompt(config, today)},
        *EXAMPLE_TURNS,
        {"role": "user", "content": question},
    ]
    kind = intent.kind if intent else (question_kind(question) or "count")
    for _attempt in range(1 + retries):
        try:
            reply = llm.call("ask", messages, prompt_version=ARCHIVE_PROMPT, max_tokens=150, temperature=0.0)
        except LLMError as exc:
            if exc.fatal:
                raise
            errors.append(f"model: {exc}")
            return None
        sql = sql_from_reply(reply.text)
        try:
            result = run_sql(conn, sql)
        except ArchiveSQLError as exc:
            errors.append(str(exc))
            messages = [*messages, {"role": "assistant", "content": reply.text},
                        {"role": "user", "content": f"That query was refused: {exc}. Reply with a corrected SQL query only."}]
            continue
        return _answer(question, result, kind, intent, f"llm:{reply.model}", MODEL_CONFIDENCE, errors)
    log.info("archive question: the model's SQL was refused %d times; using the templates", 1 + retries)
    return None


# --- the answer from the rows ---------------------------------------------------------------


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 2)
    return None


def answer_value(kind: str, rows: list[list[Any]]) -> Any:
    """What rows say for a question of ``kind``: the first number for a count; the labels tied
    first for a ranking (label first, count last in each row); label -> count for a series."""
    if kind == "count":
        for row in rows[:1]:
            for cell in row:
                if _number(cell) is not None:
                    return _number(cell)
        return 0 if not rows else None
    if kind == "top":
        if not rows:
            return []
        best = rows[0][-1]
        return sorted(str(r[0]) for r in rows if r[-1] == best and r[0] is not None)
    return {str(r[0]): _number(r[-1]) for r in rows if r and r[0] is not None}


def _scope(intent: Intent | None, english: bool) -> str:
    if intent is None:
        return ""
    parts = []
    if intent.period:
        parts.append(intent.period.label_en if english else intent.period.label_zh)
    parts.extend(value for _what, value in intent.filters)
    return " · ".join(parts)


def _answer(
    question: str, result: QueryResult, kind: str, intent: Intent | None, method: str, confidence: float,
    errors: list[str],
) -> ArchiveAnswer:
    english = not has_cjk(question)
    value = answer_value(kind, result.rows)
    scope = _scope(intent, english)
    prefix = f"{scope}: " if scope else ""
    if kind == "count":
        text = f"{prefix}{value}" if english else f"{prefix}共 {value}。"
    elif not result.rows:
        text = f"{prefix}nothing in the archive matches." if english else f"{prefix}存档里没有符合条件的记录。"
        if intent is not None and intent.dimension == "account":
            text += (" WeChat accounts are known only for fetched articles." if english
                     else "公众号名称只有抓取过的文章才有。")
    elif kind == "top":
        top = result.rows[: intent.n if intent else 5]
        shown = ", ".join(f"{r[0]} ({r[-1]})" for r in top) if english else "、".join(f"{r[0]}（{r[-1]}）" for r in top)
        lead = " / ".join(value)
        text = f"{prefix}{lead}; top: {shown}" if english else f"{prefix}最多的是 {lead}。排名：{shown}"
    else:
        pairs = [f"{label}: {count}" for label, count in value.items()]
        text = prefix + ("; ".join(pairs) if english else "；".join(pairs))
    return ArchiveAnswer(question, text, result.sql, result.columns, result.rows, confidence, kind, value, method,
                         list(errors))
