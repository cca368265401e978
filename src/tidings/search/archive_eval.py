"""Exact-match evaluation of archive questions (``evals/archive.jsonl``).

Each labelled question carries ``check``: SQL written by hand over the store's own tables (never
the archive views, never the templates) whose rows give the expected answer. ``it`` is the items
as the views define them, spelled out again here independently: duplicates left out, old section
names mapped, and the day an item belongs to: its first digest week, else its publication day,
else the day it was added. ``host(url)`` is Python's URL parser, not the views' SQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import Config
from ..errors import UsageError
from ..store import Store
from .archive import answer_archive, answer_value
from .archive_sql import ArchiveSQLError, store_file

if TYPE_CHECKING:
    from ..llm.gateway import LLM

SPLITS = ("calibration", "heldout")

_ITEMS = """WITH it AS (
  SELECT i.id, i.url, i.kind, i.author, i.author_handle,
         CASE i.section {aliases} ELSE i.section END AS section,
         coalesce((SELECT min(d.week) FROM digests d JOIN digest_entries e ON e.digest_id = d.id
                   WHERE e.item_id = i.id AND e.kept = 1),
                  date(i.published_at), date(i.seen_at)) AS day
  FROM items i WHERE i.status <> 'duplicate')
"""


@dataclass
class ArchiveQuestion:
    id: str
    question: str
    kind: str
    check: str
    split: str
    today: date | None = None


@dataclass
class Outcome:
    question: ArchiveQuestion
    expected: Any
    got: Any
    method: str | None
    sql: str | None
    errors: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.got == self.expected


def load_questions(path: Path) -> list[ArchiveQuestion]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    found = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            found.append(ArchiveQuestion(
                id=raw["id"], question=raw["question"], kind=raw["kind"], check=raw["check"],
                split=raw.get("split", "heldout"),
                today=date.fromisoformat(raw["today"]) if raw.get("today") else None,
            ))
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}:{number}: not an archive question ({exc})") from exc
    return found


def _host(url: str | None) -> str | None:
    if not url or not url.startswith(("http://", "https://")):
        return None
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host or None


def expected_answer(conn: sqlite3.Connection, question: ArchiveQuestion, config: Config) -> Any:
    aliases = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in config.classify.aliases.items()) or "WHEN NULL THEN NULL"
    rows = [list(r) for r in conn.execute(_ITEMS.format(aliases=aliases) + question.check)]
    if question.kind == "top":
        rows.sort(key=lambda r: (-r[-1], str(r[0])))
    elif question.kind in ("series", "breakdown"):
        rows.sort(key=lambda r: str(r[0]))
    return answer_value(question.kind, rows)


def evaluate_archive(
    store: Store, questions: Sequence[ArchiveQuestion], *, config: Config | None = None, llm: LLM | None = None,
) -> dict[str, Any]:
    """Exact-match rate per split (and the misses) of :func:`answer_archive` against the
    independently computed answers."""
    config = config or Config()
    path = store_file(store).resolve()
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    conn.create_function("host", 1, _host, deterministic=True)
    if not conn.execute("SELECT 1 FROM items LIMIT 1").fetchone():
        conn.close()
        # Over no items every count is 0 and every list empty on both sides: a match of nothing.
        raise UsageError("nothing to evaluate: the store holds no items (the archive questions are labelled "
                         "on the shared corpus; see the README's evaluation store)")
    outcomes: list[Outcome] = []
    try:
        for q in questions:
            expected = expected_answer(conn, q, config)
            try:
                answer = answer_archive(store, q.question, config=config, llm=llm, today=q.today)
            except ArchiveSQLError as exc:
                outcomes.append(Outcome(q, expected, None, None, None, [str(exc)]))
                continue
            if answer is None:
                outcomes.append(Outcome(q, expected, None, None, None, ["not recognised as an archive question"]))
            else:
                outcomes.append(Outcome(q, expected, answer.value, answer.method, answer.sql, answer.errors))
    finally:
        conn.close()
    report: dict[str, Any] = {"questions": len(outcomes), "model": None}
    if llm is not None and llm.available("ask"):
        route = llm.route("ask")
        report["model"] = route.model if route else None
    for split in (*SPLITS, "all"):
        chosen = [o for o in outcomes if split == "all" or o.question.split == split]
        by_model = [o for o in chosen if (o.method or "").startswith("llm:")]
        report[split] = {
            "questions": len(chosen),
            "exact_match": round(sum(o.exact for o in chosen) / len(chosen), 4) if chosen else None,
            "answered_by_model": len(by_model),
            "model_exact_match": round(sum(o.exact for o in by_model) / len(chosen), 4) if chosen else None,
            "misses": [{"id": o.question.id, "question": o.question.question, "expected": o.expected, "got": o.got,
                        "method": o.method, "sql": o.sql, "errors": o.errors} for o in chosen if not o.exact],
        }
    return report
