"""postgresql search: segmented fields in a weighted tsvector with a GIN index, a change queue fed by triggers

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 02:00:00

PostgreSQL only (on SQLite, 0002's FTS5 tables and triggers do this job and this revision does
nothing). See ``tidings.search.pg`` for how the tables are used:

- ``search_docs``: one row per indexed item, as on SQLite (``item_id``, ``indexed_at``,
  ``item_date``, so the filters' SQL is the same on both stores), plus the item's fields as the
  segmenter cut them (the snippets mark words in those) and ``words``, a ``tsvector`` of the
  free-word fields, weighted per field (title A, summary and note B, text C, tags and author D),
  under a GIN index.
- ``search_dirty``: items whose indexed fields changed, queued by triggers inside the writer's own
  transaction, whoever the writer is; search drains the queue before every query.
- ``search_meta``: key/value (the segmenter signature, the index generation).
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ITEM_COLUMNS = (
    "title, summary, text, note, author, author_handle, section, kind, published_at, duplicate_of_id, url"
)

UPGRADE = [
    """CREATE TABLE search_docs (
        item_id integer PRIMARY KEY,
        indexed_at text NOT NULL,
        item_date text,
        title text, summary text, text text, note text, tags text, author text, section text, kind text,
        words tsvector NOT NULL
    )""",
    "CREATE INDEX ix_search_docs_item_date ON search_docs (item_date)",
    "CREATE INDEX ix_search_docs_words ON search_docs USING gin (words)",
    "CREATE TABLE search_dirty (seq bigserial PRIMARY KEY, item_id integer NOT NULL)",
    "CREATE INDEX ix_search_dirty_item_id ON search_dirty (item_id)",
    "CREATE TABLE search_meta (key text PRIMARY KEY, value text)",
    """CREATE FUNCTION search_queue_item() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN INSERT INTO search_dirty (item_id) VALUES (OLD.id); END IF;
        IF TG_OP <> 'DELETE' THEN INSERT INTO search_dirty (item_id) VALUES (NEW.id); END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION search_queue_item_id() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.item_id IS NOT NULL THEN
            INSERT INTO search_dirty (item_id) VALUES (OLD.item_id);
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.item_id IS NOT NULL THEN
            INSERT INTO search_dirty (item_id) VALUES (NEW.item_id);
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER search_items_ai AFTER INSERT OR DELETE ON items "
    "FOR EACH ROW EXECUTE FUNCTION search_queue_item()",
    f"CREATE TRIGGER search_items_au AFTER UPDATE OF {_ITEM_COLUMNS} ON items "
    "FOR EACH ROW EXECUTE FUNCTION search_queue_item()",
    "CREATE TRIGGER search_tags_aiud AFTER INSERT OR UPDATE OR DELETE ON item_tags "
    "FOR EACH ROW EXECUTE FUNCTION search_queue_item_id()",
    # An item's date falls back to the week of the first digest that lists it.
    "CREATE TRIGGER search_entries_aiu AFTER INSERT OR UPDATE OF item_id ON digest_entries "
    "FOR EACH ROW EXECUTE FUNCTION search_queue_item_id()",
    "INSERT INTO search_dirty (item_id) SELECT id FROM items",
]

DOWNGRADE = [
    "DROP TRIGGER IF EXISTS search_entries_aiu ON digest_entries",
    "DROP TRIGGER IF EXISTS search_tags_aiud ON item_tags",
    "DROP TRIGGER IF EXISTS search_items_au ON items",
    "DROP TRIGGER IF EXISTS search_items_ai ON items",
    "DROP FUNCTION IF EXISTS search_queue_item_id()",
    "DROP FUNCTION IF EXISTS search_queue_item()",
    "DROP TABLE IF EXISTS search_meta",
    "DROP TABLE IF EXISTS search_dirty",
    "DROP TABLE IF EXISTS search_docs",
]


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
