"""SQL over the archive with guardrails: the documented read-only views and the checks every query
passes before it runs, whoever wrote it (the offline templates or a model).

The views (``docs/ARCHIVE_SQL.md`` documents their columns) are TEMP VIEWs made on a private
read-only connection to the store file (``mode=ro``), so no migration and nothing is written.
A query is parsed with sqlglot and must be exactly one SELECT (CTEs allowed) over those views
only, with functions from :data:`ALLOWED_FUNCTIONS`; it gets a LIMIT (added, or clamped to
:data:`MAX_ROWS`). It then runs with ``PRAGMA query_only``, an SQLite authorizer that allows only
reads and the same functions (a second wall in case the parser and SQLite disagree), and a progress
handler that stops it after ``time_limit_ms``. Every refusal is an :class:`ArchiveSQLError` with
a message a model can act on.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TidingsError
from ..store import Store

MAX_ROWS = 200
"""The most rows a query returns; a larger or missing LIMIT becomes this."""
TIME_LIMIT_MS = 2000
"""A query running longer than this is stopped (a runaway recursive CTE, a cross join)."""
MAX_CELL_CHARS = 300
"""Long text cells (titles, tag lists) are cut in what is returned: rows are evidence, not content."""

VIEWS = ("archive_items", "archive_tags", "archive_digests", "archive_entries")

ALLOWED_FUNCTIONS = frozenset({
    "count", "sum", "total", "avg", "min", "max", "group_concat",
    "strftime", "date", "datetime", "julianday",
    "substr", "substring", "lower", "upper", "trim", "ltrim", "rtrim", "length", "instr", "replace",
    "coalesce", "ifnull", "nullif", "iif", "round", "abs", "cast", "like", "glob",
})
"""Aggregates, dates and plain string functions: nothing that reads files, loads code or makes
large values (``load_extension``, ``readfile``, ``randomblob``, ``zeroblob`` are absent)."""


class ArchiveSQLError(TidingsError):
    """A query was refused by the guardrails or failed when run; the message says why."""


# --- the views ---------------------------------------------------------------------------------

_HOST = "lower(CASE WHEN instr(rest, '/') > 0 THEN substr(rest, 1, instr(rest, '/') - 1) ELSE rest END)"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _section_case(column: str, aliases: Mapping[str, str]) -> str:
    """``column`` with old section names mapped to their current ones (``classify.aliases``)."""
    if not aliases:
        return column
    whens = " ".join(f"WHEN {_sql_text(old)} THEN {_sql_text(new)}" for old, new in sorted(aliases.items()))
    return f"CASE {column} {whens} ELSE {column} END"


def view_statements(aliases: Mapping[str, str]) -> list[str]:
    """The CREATE TEMP VIEW statements, with section aliases resolved."""
    item_section = _section_case("i.section", aliases)
    entry_section = _section_case("e.section", aliases)
    first_source = "SELECT {col} FROM item_sources x JOIN sources s ON s.id = x.source_id WHERE x.item_id = i.id ORDER BY x.id LIMIT 1"
    return [
        # The host is cut out of the URL in two steps (rest after "://", then up to the first "/").
        f"""CREATE TEMP VIEW archive_items AS
        SELECT id, title, url,
               CASE WHEN host LIKE 'www.%' THEN substr(host, 5) ELSE host END AS domain,
               kind, author, handle, source, source_kind, section, tags, status,
               published_on, added_on, week, dated_on,
               strftime('%Y-%m', dated_on) AS month, strftime('%Y', dated_on) AS year
        FROM (
          SELECT *, CASE WHEN url LIKE 'http%://%' THEN {_HOST} END AS host,
                 coalesce(week, published_on, added_on) AS dated_on
          FROM (
            SELECT i.id AS id, i.title AS title, i.url AS url,
                   substr(i.url, instr(i.url, '://') + 3) AS rest,
                   i.kind AS kind, i.author AS author, i.author_handle AS handle,
                   ({first_source.format(col="coalesce(s.title, s.locator)")}) AS source,
                   ({first_source.format(col="s.kind")}) AS source_kind,
                   {item_section} AS section,
                   (SELECT group_concat(t.tag, ', ') FROM item_tags t WHERE t.item_id = i.id) AS tags,
                   i.status AS status,
                   date(i.published_at) AS published_on, date(i.seen_at) AS added_on,
                   (SELECT min(d.week) FROM digest_entries e JOIN digests d ON d.id = e.digest_id
                     WHERE e.item_id = i.id AND e.kept) AS week
            FROM items i WHERE i.status != 'duplicate'
          )
        )""",
        """CREATE TEMP VIEW archive_tags AS
        SELECT t.item_id AS item_id, t.tag AS tag FROM item_tags t JOIN items i ON i.id = t.item_id
        WHERE i.status != 'duplicate'""",
        """CREATE TEMP VIEW archive_digests AS
        SELECT d.week AS week_end, d.title AS title, d.status AS status,
               (SELECT count(*) FROM digest_entries e WHERE e.digest_id = d.id AND e.kept) AS entries,
               strftime('%Y-%m', d.week) AS month, strftime('%Y', d.week) AS year
        FROM digests d""",
        f"""CREATE TEMP VIEW archive_entries AS
        SELECT d.week AS week_end, e.item_id AS item_id, {entry_section} AS section,
               coalesce(e.title_override, e.title_raw, i.title) AS title, coalesce(e.url_raw, i.url) AS url,
               strftime('%Y-%m', d.week) AS month, strftime('%Y', d.week) AS year
        FROM digest_entries e JOIN digests d ON d.id = e.digest_id LEFT JOIN items i ON i.id = e.item_id
        WHERE e.kept""",
    ]


SCHEMA_DOC = """\
archive_items(id, title, url, domain, kind, author, handle, source, source_kind, section, tags, status,
  published_on, added_on, week, dated_on, month, year): one row per item (duplicates left out).
  kind: 'article' | 'post' | 'note' | 'blog'. domain: host of url without 'www.' (NULL for posts/notes).
  author: writer, or the WeChat account (公众号) for mp.weixin.qq.com articles. handle: '@name' of a post.
  section: digest section. tags: 'a, b' (use archive_tags to count tags).
  published_on, added_on, week (end of the first digest week listing it), dated_on = coalesce(week,
  published_on, added_on): all 'YYYY-MM-DD' text. month 'YYYY-MM' and year 'YYYY' come from dated_on.
archive_tags(item_id, tag): one row per tag of an item.
archive_digests(week_end, title, status, entries, month, year): one row per weekly digest (期);
  week_end 'YYYY-MM-DD'; entries = number of items it lists.
archive_entries(week_end, item_id, section, title, url, month, year): one row per item listed in a digest."""


# --- the guardrails ---------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```(?:sql|sqlite)?\s*(.*?)```", re.S | re.I)
_CALL_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


_STATEMENT_RE = re.compile(r"\b(?:WITH|SELECT)\b.*?(?=;|```|\n\s*\n|$)", re.S | re.I)


def sql_from_reply(reply: str) -> str:
    """The SQL in a model's reply: a fenced SQL block when there is one, else the first statement
    that starts with SELECT or WITH (small models wrap it in prose or a code block of another
    language), else the text itself, for the guardrails to refuse with a reason."""
    fenced = _FENCE_RE.search(reply)
    if fenced and re.match(r"\s*(?:WITH|SELECT)\b", fenced.group(1), re.I):
        return fenced.group(1).strip().rstrip(";").strip()
    statement = _STATEMENT_RE.search(reply)
    text = statement.group(0) if statement else reply
    return text.strip().rstrip(";").strip()


def _function_names(tree: Any) -> set[str]:
    from sqlglot import exp

    names: set[str] = set()
    for node in tree.find_all(exp.Func):
        if isinstance(node, exp.Anonymous):
            names.add(str(node.name).lower())
            continue
        # sqlglot turns known functions into classes (COUNT -> exp.Count, ...): the name SQLite
        # will see is the one it writes back in the SQLite dialect. A node written back as no call
        # at all is sqlglot's own wrapper (strftime's argument becomes a timestamp cast written as
        # the bare column): nothing runs for it, and the authorizer checks what does run.
        match = _CALL_RE.match(node.sql(dialect="sqlite"))
        if match:
            names.add(match.group(1).lower())
    return names


def check_sql(sql: str, *, max_rows: int = MAX_ROWS) -> str:
    """The query, checked and with its LIMIT set, as SQLite SQL; else :class:`ArchiveSQLError`."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    sql = sql.strip()
    if not sql:
        raise ArchiveSQLError("the query is empty")
    if len(sql) > 8000:
        raise ArchiveSQLError("the query is longer than 8000 characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except (ParseError, TokenError) as exc:
        details = (getattr(exc, "errors", None) or [{}])[0]
        near = f" near {details['highlight']!r}" if details.get("highlight") else ""
        raise ArchiveSQLError(f"the SQL does not parse{near}: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise ArchiveSQLError(f"exactly one statement is allowed, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Select):
        raise ArchiveSQLError(f"only a SELECT is allowed, not {tree.key.upper()}")
    forbidden = (exp.Insert, exp.Update, exp.Delete, exp.Drop, exp.Create, exp.Command, exp.Pragma,
                 exp.Attach, exp.Detach, exp.Alter, exp.Merge)
    for node in tree.walk():
        if isinstance(node, forbidden):
            raise ArchiveSQLError(f"{node.key.upper()} is not allowed: queries only read")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if table.args.get("db") or table.args.get("catalog"):
            raise ArchiveSQLError(f"{table.sql(dialect='sqlite')}: name views without a schema; use only {', '.join(VIEWS)}")
        if name not in VIEWS and name not in ctes:
            raise ArchiveSQLError(f"unknown table {table.name!r}: use only the views {', '.join(VIEWS)}")
    # sqlglot models EXISTS (subquery) as a function; SQLite does not, so only the parser sees it.
    unknown = sorted(_function_names(tree) - ALLOWED_FUNCTIONS - {"exists"})
    if unknown:
        raise ArchiveSQLError(f"function(s) not allowed: {', '.join(unknown)}; allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))}")
    limit = tree.args.get("limit")
    current = None
    if limit is not None:
        value = limit.expression
        if not (isinstance(value, exp.Literal) and value.is_int):
            raise ArchiveSQLError("LIMIT must be a whole number")
        current = int(value.this)
    if tree.args.get("offset") is not None and limit is None:
        raise ArchiveSQLError("OFFSET needs a LIMIT")
    if current is None or current > max_rows or current < 0:
        tree = tree.limit(max_rows)
    return tree.sql(dialect="sqlite")


# --- running ----------------------------------------------------------------------------------

_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}


def _authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _inner: str | None) -> int:
    if action not in _READ_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in ALLOWED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@dataclass
class QueryResult:
    sql: str
    """The query as it ran (LIMIT set)."""
    columns: list[str]
    rows: list[list[Any]]
    ms: int


def store_file(store: Store) -> Path:
    """The SQLite file behind ``store``; archive questions need one (read-only, by path)."""
    url = store.engine.url
    if url.get_backend_name() == "postgresql":
        raise ArchiveSQLError("questions about the archive on PostgreSQL: not yet (they need a SQLite store file)")
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise ArchiveSQLError("questions about the archive need a SQLite store file")
    return Path(url.database)


@contextmanager
def archive_connection(store: Store, aliases: Mapping[str, str] | None = None) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the store file with the archive views defined."""
    path = store_file(store).resolve()
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise ArchiveSQLError(f"cannot open the store read-only: {exc}") from exc
    try:
        for statement in view_statements(aliases or {}):
            conn.execute(statement)  # TEMP views live in the connection's own temp schema
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorizer)
        yield conn
    finally:
        conn.close()


def run_sql(
    conn: sqlite3.Connection, sql: str, *, time_limit_ms: int = TIME_LIMIT_MS, max_rows: int = MAX_ROWS
) -> QueryResult:
    """Check ``sql`` and run it on ``conn`` (from :func:`archive_connection`) within the limits."""
    checked = check_sql(sql, max_rows=max_rows)
    started = time.monotonic()
    deadline = started + time_limit_ms / 1000

    def past_deadline() -> int:
        return 1 if time.monotonic() > deadline else 0

    conn.set_progress_handler(past_deadline, 1000)
    try:
        cursor = conn.execute(checked)
        fetched = cursor.fetchmany(max_rows)
        columns = [d[0] for d in cursor.description or ()]
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc):
            raise ArchiveSQLError(f"the query ran longer than {time_limit_ms} ms and was stopped") from None
        raise ArchiveSQLError(f"SQLite refused the query: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise ArchiveSQLError(f"SQLite refused the query: {exc}") from None
    finally:
        conn.set_progress_handler(None, 0)
    rows = [[_cell(v) for v in row] for row in fetched]
    return QueryResult(checked, columns, rows, int((time.monotonic() - started) * 1000))


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[:MAX_CELL_CHARS] + "…"
    return value


def rows_as_dicts(result: QueryResult) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=False)) for row in result.rows]


def column_values(conn: sqlite3.Connection, sql: str) -> list[str]:
    """Distinct non-empty strings a vocabulary query returns (authors, tags, domains), longest first."""
    values = {str(row[0]) for row in conn.execute(sql) if row[0]}
    return sorted(values, key=lambda v: (-len(v), v))


def quote(value: str) -> str:
    """A string literal for SQL the templates write (the values come from the archive or the question)."""
    return _sql_text(value)


__all__: Sequence[str] = (
    "ALLOWED_FUNCTIONS", "MAX_ROWS", "SCHEMA_DOC", "TIME_LIMIT_MS", "VIEWS", "ArchiveSQLError", "QueryResult",
    "archive_connection", "check_sql", "column_values", "quote", "rows_as_dicts", "run_sql", "sql_from_reply",
)
