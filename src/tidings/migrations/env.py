"""Alembic environment: run against the connection that ``store.migrate`` hands over."""

from alembic import context

from tidings.store import Base

connection = context.config.attributes["connection"]
# Batch mode lets ALTER-style migrations work on SQLite, which cannot alter most columns in place.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
