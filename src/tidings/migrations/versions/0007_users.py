"""users: named curators, who made each edit, version counters on digests and their entries

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 02:00:00

Issue 15.4, several curators on one web app. ``users`` keeps a name and the SHA-256 of its token
(never the token). ``edits.by`` names who made an edit (NULL for edits made before). ``version``
on ``digests`` and ``digest_entries`` is the optimistic-concurrency counter every edit form sends
back: existing rows start at 1.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("edits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("by", sa.String(length=64), nullable=True))
    for table in ("digests", "digest_entries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    for table in ("digest_entries", "digests"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("version")
    with op.batch_alter_table("edits", schema=None) as batch_op:
        batch_op.drop_column("by")
    op.drop_table("users")
