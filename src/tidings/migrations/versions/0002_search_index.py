"""search index: FTS5 over pre-segmented text, a dirty queue fed by triggers, index metadata

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00

FTS5 and triggers are SQLite-only, so this revision is raw SQL and does nothing on other dialects
(a PostgreSQL store would get its own search backend). See ``tidings.search.index`` for how the tables
are used:

- ``search_fts``: one row per indexed item (rowid = items.id). Text is segmented by tidings
  (jieba + lower-cased English) and joined by spaces, so FTS5's own tokenizer only splits on
  spaces and punctuation; ``porter`` stems the English words on both the index and query side.
- ``search_docs``: per indexed item, when it was indexed and the date used for --since/--until.
- ``search_dirty``: items whose indexed fields changed since they were last indexed. Triggers
  fill it inside the writer's own transaction, whoever the writer is (ORM, raw SQL, another
  process), so the queue can never miss a change; search drains it before every query.
- ``search_meta``: key/value, e.g. the segmenter signature the index was built with.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Columns of ``items`` whose change must re-index the item. Fetch bookkeeping (status, raw,
# fingerprint, error) is left out on purpose so it does not cause needless re-segmentation.
_ITEM_COLUMNS = (
    "title, summary, text, note, author, author_handle, section, kind, published_at, duplicate_of_id, url"
)

UPGRADE = [
    """CREATE VIRTUAL TABLE search_fts USING fts5(
        title, summary, text, note, tags, author, section, kind,
        tokenize = 'porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TABLE search_docs (
        item_id INTEGER PRIMARY KEY,
        indexed_at TEXT NOT NULL,
        item_date TEXT
    )""",
    "CREATE INDEX ix_search_docs_item_date ON search_docs (item_date)",
    """CREATE TABLE search_dirty (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id INTEGER NOT NULL
    )""",
    "CREATE INDEX ix_search_dirty_item_id ON search_dirty (item_id)",
    "CREATE TABLE search_meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TRIGGER search_items_ai AFTER INSERT ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.id); END",
    f"CREATE TRIGGER search_items_au AFTER UPDATE OF {_ITEM_COLUMNS} ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.id); END",
    "CREATE TRIGGER search_items_ad AFTER DELETE ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.id); END",
    "CREATE TRIGGER search_tags_ai AFTER INSERT ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "CREATE TRIGGER search_tags_au AFTER UPDATE ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.item_id); "
    "INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "CREATE TRIGGER search_tags_ad AFTER DELETE ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.item_id); END",
    # An item's date falls back to the week of the first digest that lists it.
    "CREATE TRIGGER search_entries_ai AFTER INSERT ON digest_entries WHEN new.item_id IS NOT NULL BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "CREATE TRIGGER search_entries_au AFTER UPDATE OF item_id ON digest_entries BEGIN "
    "INSERT INTO search_dirty (item_id) SELECT old.item_id WHERE old.item_id IS NOT NULL; "
    "INSERT INTO search_dirty (item_id) SELECT new.item_id WHERE new.item_id IS NOT NULL; END",
    # Everything already in the store is indexed on first use.
    "INSERT INTO search_dirty (item_id) SELECT id FROM items",
]

DOWNGRADE = [
    "DROP TRIGGER IF EXISTS search_entries_au",
    "DROP TRIGGER IF EXISTS search_entries_ai",
    "DROP TRIGGER IF EXISTS search_tags_ad",
    "DROP TRIGGER IF EXISTS search_tags_au",
    "DROP TRIGGER IF EXISTS search_tags_ai",
    "DROP TRIGGER IF EXISTS search_items_ad",
    "DROP TRIGGER IF EXISTS search_items_au",
    "DROP TRIGGER IF EXISTS search_items_ai",
    "DROP TABLE IF EXISTS search_meta",
    "DROP TABLE IF EXISTS search_dirty",
    "DROP TABLE IF EXISTS search_docs",
    "DROP TABLE IF EXISTS search_fts",
]


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if not _is_sqlite():
        return
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    if not _is_sqlite():
        return
    for statement in DOWNGRADE:
        op.execute(statement)
