"""postgresql: text columns without a length limit, as on SQLite

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 02:00:00

The models give strings a length (``String(2048)``) that SQLite never enforced: a store holds
whatever was imported. PostgreSQL enforces ``varchar(n)``, so the same import would fail there
("value too long"). Every ``varchar`` column becomes ``text`` on PostgreSQL; SQLite is untouched.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    quote = bind.dialect.identifier_preparer.quote
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if isinstance(column["type"], sa.VARCHAR) and not isinstance(column["type"], sa.Text):
                op.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column['name'])} TYPE text")


def downgrade() -> None:
    pass  # the lengths were never a rule of the data; text holds everything varchar did
