"""postgresql: the procrastinate job queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 02:00:00

On PostgreSQL the stages run as procrastinate jobs (``tidings worker``, ``src/tidings/queue.py``).
procrastinate's own schema (its tables, functions and triggers, as the installed version ships it)
is applied here, so one Alembic history owns the whole database. (Per-host fetch politeness
across workers needs no table: it takes PostgreSQL advisory locks, see ``queue.py``.) ``llm_budgets``
holds each queued run's token budget, spent by all workers together (``llm.gateway.SharedBudget``).
SQLite is untouched: there the in-process pool runs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    from procrastinate.schema import SchemaManager

    # The raw driver cursor: the schema is many statements with ``%`` and ``::`` in them, which
    # neither SQLAlchemy's text() nor a parameterised execute may touch.
    cursor = bind.connection.driver_connection.cursor()
    cursor.execute(SchemaManager.get_schema())
    # One row per queued run that has a token budget: every worker's LLM calls spend from it.
    op.create_table(
        "llm_budgets",
        sa.Column("run", sa.Text, primary_key=True),
        sa.Column("token_limit", sa.BigInteger, nullable=True),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("exceeded", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.drop_table("llm_budgets")
    # procrastinate names every object it creates procrastinate_*: its tables (with their triggers),
    # then its functions and types.
    for (table,) in bind.execute(sa.text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'procrastinate%'")):
        op.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    functions = bind.execute(sa.text(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname LIKE 'procrastinate%'")).all()
    for (signature,) in functions:
        op.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
    for (name,) in bind.execute(sa.text("SELECT typname FROM pg_type WHERE typname LIKE 'procrastinate%'")):
        op.execute(f'DROP TYPE IF EXISTS "{name}" CASCADE')
