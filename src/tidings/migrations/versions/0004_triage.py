"""triage: the curator's actions in the week view (keep, drop, move), the triage score's labels

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 01:30:00

One row per action, never updated: the triage model reads an item's latest action as its label
(keep or move: kept; drop: dropped), and the history stays for explaining a score later.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "curator_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("week", sa.Date(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("section", sa.String(length=256), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("curator_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_curator_actions_item_id"), ["item_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("curator_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_curator_actions_item_id"))
    op.drop_table("curator_actions")
