"""stories: items about the same story grouped across sources, and a log of every change to a group

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 01:20:00

- ``stories``: one row per story; ``best_item_id`` is the entry a digest shows, ``chosen_by`` says
  whether the grouper ('auto') or the curator ('curator') picked it, ``pinned`` marks a story whose
  membership the curator set by hand (a split or merge), ``sources_count`` is "seen in N sources".
- ``items.story_id``: nullable, indexed; NULL means the stories stage has not looked at the item yet.
- ``story_events``: every split, merge, choice and automatic join (who, when, what).

On SQLite, ``items.story_id`` is added with a plain ``ALTER TABLE ... ADD COLUMN ... REFERENCES``,
which SQLite supports for a nullable column. Alembic's batch mode would "move and copy" the items
table to add the foreign key, and dropping the old table drops the search triggers of 0002 and, with
foreign keys on, deletes every row that cascades from items. Other databases use batch mode's
ordinary ALTERs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("best_item_id", sa.Integer(), nullable=True),
        sa.Column("chosen_by", sa.String(length=16), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("sources_count", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["best_item_id"], ["items.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "story_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=True),
        sa.Column("other_story_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["story_id"], ["stories.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("story_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_story_events_story_id"), ["story_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_story_events_item_id"), ["item_id"], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE items ADD COLUMN story_id INTEGER REFERENCES stories (id) ON DELETE SET NULL")
    else:
        with op.batch_alter_table("items", schema=None) as batch_op:
            batch_op.add_column(sa.Column("story_id", sa.Integer(), nullable=True))
            batch_op.create_foreign_key(
                "fk_items_story_id_stories", "stories", ["story_id"], ["id"], ondelete="SET NULL"
            )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_items_story_id"), ["story_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_items_story_id"))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite ≥ 3.35 drops a column in place; a referencing column must lose its index first (done above).
        op.execute("ALTER TABLE items DROP COLUMN story_id")
    else:
        with op.batch_alter_table("items", schema=None) as batch_op:
            batch_op.drop_constraint("fk_items_story_id_stories", type_="foreignkey")
            batch_op.drop_column("story_id")
    op.drop_table("story_events")
    op.drop_table("stories")
