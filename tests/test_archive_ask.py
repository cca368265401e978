"""Questions about the archive (issue 18.3): guardrails, templates against independent answers,
dispatch beside the content ask, the CLI's JSON, and model-written SQL (a scripted OpenAI-compatible
server on loopback for the retry loop; llama.cpp's server on SmolLM2 for the real model).

The corpus is imported once per module, through the CLI, the way a user would."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpusdb import copy_store
from loopback import LoopbackServer, Reply, Request
from typer.testing import CliRunner

import tidings
from tidings.cli import app
from tidings.config import Config
from tidings.llm.gateway import LLM
from tidings.search.archive import ArchiveAnswer, answer_archive
from tidings.search.archive_eval import _host, evaluate_archive, expected_answer, load_questions
from tidings.search.archive_questions import looks_like_archive_question
from tidings.search.archive_sql import MAX_ROWS, ArchiveSQLError, archive_connection, check_sql, run_sql
from tidings.search.ask import Answer
from tidings.store import Store, open_store

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "evals" / "archive.jsonl"
CONFIG = Config()


def invoke(db: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--db", str(db), *args])


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, indexed_corpus_db: Path) -> Path:
    db = copy_store(indexed_corpus_db, tmp_path_factory.mktemp("archive") / "corpus.db")
    # A few feed files are broken on purpose (exit 1: some files failed); the rest import.
    result = invoke(db, "import", "--format", "feed", str(corpus_dir / "feeds"))
    assert result.exit_code in (0, 1), result.output
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


@pytest.fixture(scope="module")
def store(corpus_db: Path) -> Iterator[Store]:
    st = open_store(corpus_db)
    yield st
    st.close()


# --- guardrails -------------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "message"), [
    ("DELETE FROM items", "only a SELECT"),
    ("UPDATE archive_items SET title = 'x'", "only a SELECT"),
    ("SELECT count(*) FROM archive_items; DROP TABLE items", "exactly one statement"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT name FROM sqlite_master", "unknown table 'sqlite_master'"),
    ("SELECT * FROM items", "unknown table 'items'"),
    ("SELECT * FROM main.archive_items", "without a schema"),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH"),
    ("PRAGMA table_info(items)", "PRAGMA"),
    ("SELECT load_extension('evil') FROM archive_items", "load_extension"),
    ("SELECT randomblob(1000000000) FROM archive_items", "randomblob"),
    ("SELECT title FROM archive_items LIMIT (SELECT 5)", "LIMIT must be a whole number"),
    ("SELEC count(*) FROM archive_items", "does not parse near"),
    ("", "empty"),
])
def test_guardrails_refuse_with_a_clear_message(sql: str, message: str) -> None:
    with pytest.raises(ArchiveSQLError) as refused:
        check_sql(sql)
    assert message.lower() in str(refused.value).lower()


def test_limit_is_added_or_clamped() -> None:
    assert check_sql("SELECT title FROM archive_items").endswith(f"LIMIT {MAX_ROWS}")
    assert check_sql("SELECT title FROM archive_items LIMIT 100000").endswith(f"LIMIT {MAX_ROWS}")
    assert check_sql("SELECT title FROM archive_items LIMIT 5").endswith("LIMIT 5")
    # CTEs over the views are fine; their own names count as tables.
    checked = check_sql("WITH m AS (SELECT month, count(*) AS n FROM archive_items GROUP BY month) SELECT * FROM m")
    assert checked.endswith(f"LIMIT {MAX_ROWS}")


def test_runaway_recursive_cte_is_stopped_by_the_time_limit(store: Store) -> None:
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with archive_connection(store) as conn:
        started = time.monotonic()
        with pytest.raises(ArchiveSQLError, match=r"longer than 300 ms and was stopped"):
            run_sql(conn, runaway, time_limit_ms=300)
        assert time.monotonic() - started < 5
        # The connection is still usable afterwards.
        assert run_sql(conn, "SELECT count(*) FROM archive_digests").rows == [[87]]


def test_connection_is_read_only_and_checks_functions_itself(store: Store, corpus_db: Path) -> None:
    """The second wall: what reaches SQLite without the parser is still refused by SQLite."""
    before = sqlite3.connect(corpus_db).execute("SELECT count(*) FROM items").fetchone()[0]
    with archive_connection(store) as conn:
        for sql in ("DELETE FROM items", "SELECT randomblob(10)", "INSERT INTO item_tags(item_id, tag) VALUES (1, 'x')"):
            with pytest.raises(sqlite3.DatabaseError):
                conn.execute(sql)
    assert sqlite3.connect(corpus_db).execute("SELECT count(*) FROM items").fetchone()[0] == before


def test_a_store_in_memory_is_refused_clearly() -> None:
    st = open_store(":memory:")
    with pytest.raises(ArchiveSQLError, match="SQLite store file"):
        answer_archive(st, "2024 年有多少期？")


# --- templates against independent answers -----------------------------------------------------


def test_independent_answers_agree_with_the_corpus_files(store: Store, corpus_dir: Path) -> None:
    """The eval's hand-written SQL over the store's tables matches counts read off the files."""
    weeks = [p.name for p in (corpus_dir / "digests" / "blog").iterdir() if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name)]
    per_year = Counter(w[:4] for w in weeks)
    per_month_2024 = Counter(w[:7] for w in weeks if w.startswith("2024"))
    questions = {q.id: q for q in load_questions(QUESTIONS)}
    conn = sqlite3.connect(f"{Path(str(store.engine.url.database)).resolve().as_uri()}?mode=ro", uri=True)
    conn.create_function("host", 1, _host)
    try:
        assert expected_answer(conn, questions["a29"], CONFIG) == dict(per_year)
        assert expected_answer(conn, questions["a03"], CONFIG) == dict(per_month_2024)
        assert expected_answer(conn, questions["a05"], CONFIG) == per_year["2023"]
        assert expected_answer(conn, questions["a15"], CONFIG) == 45  # README: 45 blog posts
        notes = (corpus_dir / "notes" / "ainotes-part1.md").read_text(encoding="utf-8")
        assert expected_answer(conn, questions["a14"], CONFIG) >= 49  # 49 notes in that file alone
        assert notes.count("\n# ") >= 49
    finally:
        conn.close()


def test_templates_answer_the_labelled_questions(store: Store) -> None:
    questions = load_questions(QUESTIONS)
    assert len(questions) >= 30
    report = evaluate_archive(store, questions, config=CONFIG)
    # Every calibration question (the half the templates were written against) is answered exactly.
    assert report["calibration"]["misses"] == []
    # The held-out half is reported, not tuned to; a regression below this is a real loss.
    assert report["heldout"]["exact_match"] >= 0.9, report["heldout"]["misses"]


def test_answer_carries_sql_rows_and_value(store: Store) -> None:
    answer = answer_archive(store, "2024 年每个月各有几期？", config=CONFIG)
    assert isinstance(answer, ArchiveAnswer)
    assert answer.kind == "series" and answer.method == "template"
    assert "archive_digests" in answer.sql and "LIMIT" in answer.sql
    assert answer.value == {row[0]: row[1] for row in answer.rows}
    assert sum(answer.value.values()) == 11


def test_a_topic_narrows_to_titles_and_wins_over_a_section_word(store: Store, corpus_db: Path) -> None:
    conn = sqlite3.connect(corpus_db)
    titled = conn.execute(
        "SELECT count(*) FROM items WHERE status <> 'duplicate' AND lower(title) LIKE '%rust%'").fetchone()[0]
    conn.close()
    answer = answer_archive(store, "how many articles about Rust?", config=CONFIG)
    assert isinstance(answer, ArchiveAnswer) and answer.value == titled > 0
    assert "section" not in answer.sql  # "Rust" also names the Go & Rust section; the topic is narrower


# --- dispatch ---------------------------------------------------------------------------------

CONTENT_QUESTIONS = [
    "哪些文章讨论过 RAG 的评估指标？",
    "What did Karpathy say about tokenization?",
    "How many parameters does Llama 3 have?",
    "Go 的 GC 是怎么工作的？",
    "大模型有多少参数？",
    "RAG 有哪些评估指标？",
]


@pytest.mark.parametrize("question", CONTENT_QUESTIONS)
def test_content_questions_are_not_hijacked(store: Store, question: str) -> None:
    assert not looks_like_archive_question(question)
    assert answer_archive(store, question, config=CONFIG) is None
    assert isinstance(tidings.ask(store, question, config=CONFIG), Answer)


def test_archive_questions_go_to_the_archive(store: Store) -> None:
    answer = tidings.ask(store, "2023 年每个月收了多少篇文章？", config=CONFIG)
    assert isinstance(answer, ArchiveAnswer) and answer.kind == "series"
    assert answer.value and all(key.startswith("2023-") for key in answer.value)
    total = tidings.ask(store, "2023 年一共收了多少篇文章？", config=CONFIG)
    assert isinstance(total, ArchiveAnswer) and total.value == sum(answer.value.values())


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_json_shape_and_text_evidence(corpus_db: Path) -> None:
    result = invoke(corpus_db, "ask", "how many Go articles in 2024?", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"answer", "sql", "rows", "confidence"} <= set(payload)
    assert payload["sql"].startswith("SELECT") and "LIMIT" in payload["sql"]
    assert isinstance(payload["rows"], list) and isinstance(payload["rows"][0], dict)
    assert payload["value"] == next(iter(payload["rows"][0].values())) > 0
    text = invoke(corpus_db, "ask", "哪个网站出现得最多？")
    assert text.exit_code == 0 and "sql: SELECT" in text.stdout and "mp.weixin.qq.com" in text.stdout
    assert "Traceback" not in text.output


def test_cli_eval_archive(corpus_db: Path) -> None:
    result = invoke(corpus_db, "eval", "archive", "--questions", str(QUESTIONS), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["calibration"]["exact_match"] == 1.0 and report["heldout"]["questions"] >= 15


def test_cli_eval_ask_reports_the_archive_questions_too(corpus_db: Path) -> None:
    result = invoke(corpus_db, "eval", "ask", "--archive", str(QUESTIONS), "--json")
    assert result.exit_code == 0, result.output
    archive = json.loads(result.stdout)["archive"]
    assert archive["heldout"]["questions"] >= 15 and 0.0 <= archive["heldout"]["exact_match"] <= 1.0
    assert archive["calibration"]["exact_match"] == 1.0


# --- model-written SQL ------------------------------------------------------------------------


def chat(content: str) -> Reply:
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}}
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


class ScriptedModel:
    """An OpenAI-compatible endpoint on loopback that replies with the given texts in turn."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []
        self.server = LoopbackServer({"/v1/chat/completions": self._handle})

    def _handle(self, request: Request) -> Reply:
        self.bodies.append(json.loads(request.body))
        return chat(self.replies.pop(0) if len(self.replies) > 1 else self.replies[0])

    def config(self) -> Config:
        return Config.model_validate({
            "models": {"scripted": {"provider": "openai", "base_url": self.server.url("/v1"), "model": "scripted",
                                     "timeout": 5, "max_retries": 0}},
            "routes": {"ask": "scripted"},
        })


def test_model_errors_go_back_for_bounded_retries(store: Store) -> None:
    model = ScriptedModel("DELETE FROM items", "```sql\nSELECT count(*) FROM sqlite_master\n```",
                          "SELECT count(*) FROM archive_digests WHERE year = '2023'")
    with model.server:
        config = model.config()
        answer = answer_archive(store, "2023 年有多少期？", config=config, llm=LLM(config, None))
    assert isinstance(answer, ArchiveAnswer)
    assert answer.method == "llm:scripted" and answer.value == 24
    assert len(answer.errors) == 2 and "only a SELECT" in answer.errors[0] and "sqlite_master" in answer.errors[1]
    last_messages = model.bodies[-1]["messages"]
    assert "only a SELECT" in last_messages[-3]["content"] and "sqlite_master" in last_messages[-1]["content"]
    assert last_messages[-4]["content"] == "DELETE FROM items"  # the refused reply is shown back with its error
    assert "archive_items(" in last_messages[0]["content"]  # the documented schema is in the prompt


def test_model_that_never_gets_through_falls_back_to_the_templates(store: Store) -> None:
    model = ScriptedModel("SELECT * FROM items")
    with model.server:
        config = model.config()
        answer = answer_archive(store, "2023 年有多少期？", config=config, llm=LLM(config, None), retries=2)
        assert len(model.bodies) == 3  # one try and two retries, no more
    assert isinstance(answer, ArchiveAnswer)
    assert answer.method == "template" and answer.value == 24 and len(answer.errors) == 3




def test_real_model_writes_sql_through_the_guardrails(store: Store, llama_base: str) -> None:
    """SmolLM2-135M is tiny: asserted is that its SQL goes through the guardrails and the loop
    ends with an answer (its own, or the templates' after bounded retries), never its quality."""
    config = Config.model_validate({
        "models": {"smol": {"provider": "openai", "model": "smollm2", "base_url": llama_base, "max_tokens": 200,
                            "temperature": 0.0, "context_tokens": 2048, "timeout": "2m", "max_concurrency": 1}},
        "routes": {"ask": "smol"},
    })
    llm = LLM(config, None)
    for question in ("2023 年有多少期？", "How many notes are in the archive?"):
        answer = answer_archive(store, question, config=config, llm=llm)
        assert isinstance(answer, ArchiveAnswer)
        assert answer.method in ("template", "llm:smollm2")
        if answer.method == "template":
            assert len(answer.errors) == 3
        assert "LIMIT" in answer.sql
    assert llm.stats.calls >= 2
