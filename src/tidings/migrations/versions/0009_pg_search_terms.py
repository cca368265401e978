"""postgresql search: how many indexed items hold each word, per field weight

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 05:00:00

PostgreSQL only (on SQLite the search engine keeps its own term statistics). ``search_terms`` has
one row per lexeme of ``search_docs.words`` and weight (A title, B summary and note, C text, D
tags and author, ``*`` any of them): how many items hold it. Ranking reads its document
frequencies here: counting them from the index cost a pass over every row holding the word (a
weight is not in the GIN index), tens of milliseconds per search at 100,000 items. Kept by every
index batch in the batch's own transaction (``tidings.search.pg``); filled here from the rows
already indexed.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TERM_COUNTS = """SELECT t.lexeme, w.weight, count(*) FROM search_docs d, unnest(d.words) t,
    LATERAL (SELECT DISTINCT unnest(t.weights)::text AS weight UNION ALL SELECT '*') w"""
"""Each lexeme's items per weight over ``search_docs`` rows (``WHERE`` and ``GROUP BY 1, 2`` follow)."""

UPGRADE = [
    "CREATE TABLE search_terms (lexeme text NOT NULL, weight text NOT NULL, docs integer NOT NULL, "
    "PRIMARY KEY (lexeme, weight))",
    f"INSERT INTO search_terms (lexeme, weight, docs) {TERM_COUNTS} GROUP BY 1, 2",
]

DOWNGRADE = ["DROP TABLE IF EXISTS search_terms"]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in DOWNGRADE:
        op.execute(statement)
