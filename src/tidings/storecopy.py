"""Move a whole store between SQLite and PostgreSQL (either way, or to another file or database).

Every table of the models is copied in foreign-key order with its ids, in batches read by id
(keyset paging), so memory stays bounded however large the store. The target is written in one
transaction: a failed copy leaves it as it was. Two tables point at each other (an item's story,
a story's best item); those columns are written as NULL first and filled in once both tables are
in. On PostgreSQL the id sequences are moved past the copied ids afterwards, so the next insert
does not collide. The search index is not copied: it is derived, and the target rebuilds it
(SQLite's change-queue triggers fire on every copied item)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Table, bindparam, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import sort_tables_and_constraints
from sqlalchemy.sql.schema import ForeignKeyConstraint

from .errors import StoreError
from .store import Base, Store, open_store

BATCH_ROWS = 500
"""Rows read and written at a time: large blobs (raw pages) make a row up to a few MB."""

Progress = Callable[[str, int, int], None]
"""Called as ``progress(table, rows copied so far, rows in the table)`` after every batch."""


@dataclass
class CopyReport:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    """Rows copied, per table, in the order they were copied."""

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def copy_order() -> tuple[list[Table], dict[str, list[Column[Any]]]]:
    """The model tables parents first, and per table the columns that close a foreign-key cycle or
    point into their own table (written after every table is in)."""
    ordered: list[Table] = []
    cyclic: list[ForeignKeyConstraint] = []
    for table, constraints in sort_tables_and_constraints(Base.metadata.tables.values()):
        if table is not None:
            ordered.append(table)
        else:
            cyclic.extend(constraints)
    # A row may also point at a later row of its own table (an item folded into a newer one).
    cyclic += [fk for table in ordered for fk in table.foreign_key_constraints
               if fk.referred_table is table and fk not in cyclic]
    deferred: dict[str, list[Column[Any]]] = {}
    for constraint in cyclic:
        deferred.setdefault(constraint.table.name, []).extend(constraint.columns)
    return ordered, deferred


def _batches(connection: Connection, table: Table, size: int) -> Iterator[list[dict[str, Any]]]:
    """The table's rows in id order, ``size`` at a time (keyset paging: no growing OFFSET scans)."""
    key = table.c.id
    last: Any = None
    while True:
        query = select(table).order_by(key).limit(size)
        if last is not None:
            query = query.where(key > last)
        rows = [dict(row._mapping) for row in connection.execute(query)]
        if not rows:
            return
        yield rows
        last = rows[-1]["id"]


def _row_count(connection: Connection, table: Table) -> int:
    return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def _non_empty_tables(connection: Connection, tables: list[Table]) -> list[str]:
    return [t.name for t in tables if connection.execute(select(t.c.id).limit(1)).first() is not None]


def _clear(connection: Connection, tables: list[Table]) -> None:
    """Empty the target's tables (children first), for ``--force``."""
    if connection.dialect.name == "postgresql":
        names = ", ".join(connection.dialect.identifier_preparer.quote(t.name) for t in tables)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    for table, columns in copy_order()[1].items():  # break the cycle before deleting
        target = Base.metadata.tables[table]
        connection.execute(update(target).values({column.name: None for column in columns}))
    for table in reversed(tables):
        connection.execute(table.delete())


def _reset_sequences(connection: Connection, tables: list[Table]) -> None:
    """Move each PostgreSQL id sequence past the copied ids (explicit ids do not advance it)."""
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        connection.execute(
            text("SELECT setval(pg_get_serial_sequence(:table, 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) "
                 f"FROM {connection.dialect.identifier_preparer.quote(table.name)}"),
            {"table": table.name},
        )


def _copy_table(source: Connection, target: Connection, table: Table, deferred: list[Column[Any]],
                batch: int, progress: Progress | None) -> int:
    total = _row_count(source, table)
    copied = 0
    deferred_names = [column.name for column in deferred]
    for rows in _batches(source, table, batch):
        written = [{**row, **dict.fromkeys(deferred_names)} for row in rows] if deferred_names else rows
        target.execute(insert(table), written)
        copied += len(rows)
        if progress:
            progress(table.name, copied, total)
    return copied


def _fill_deferred(source: Connection, target: Connection, table: Table, deferred: list[Column[Any]],
                   batch: int) -> None:
    """Write the cycle-closing columns once both ends of every reference exist."""
    names = [column.name for column in deferred]
    # Columns with an update default (updated_at) are written from the source too, or the fill-in
    # would stamp them with the time of the copy.
    names += [column.name for column in table.columns if column.onupdate is not None and column.name not in names]
    statement = (update(table).where(table.c.id == bindparam("row_id"))
                 .values({name: bindparam(f"new_{name}") for name in names}))
    for rows in _batches(source, table, batch):
        changes = [{"row_id": row["id"], **{f"new_{name}": row[name] for name in names}}
                   for row in rows if any(row[column.name] is not None for column in deferred)]
        if changes:
            target.execute(statement, changes)


def copy_store(source: Store, target: Store, *, force: bool = False, batch: int = BATCH_ROWS,
               progress: Progress | None = None) -> CopyReport:
    """Copy every row of ``source`` into ``target`` (both open, so both at the newest schema).

    Refuses a target that holds any row unless ``force``, which empties it first. Raises
    :class:`StoreError` with the table and the database's reason when a row cannot be written."""
    tables, deferred = copy_order()
    report = CopyReport(source=source.engine.url.render_as_string(hide_password=True),
                        target=target.engine.url.render_as_string(hide_password=True))
    if source.engine.url == target.engine.url:
        raise StoreError("the source and the target are the same store")
    with source.engine.connect() as reader, target.engine.begin() as writer:
        filled = _non_empty_tables(writer, tables)
        if filled and not force:
            raise StoreError(f"the target store is not empty ({', '.join(filled)}); "
                             "copy into an empty store, or pass --force to replace its contents")
        if filled:
            _clear(writer, tables)
        for table in tables:
            try:
                report.rows[table.name] = _copy_table(reader, writer, table, deferred.get(table.name, []),
                                                      batch, progress)
            except DBAPIError as exc:
                raise StoreError(f"cannot copy table {table.name}: {exc.orig}") from exc
        for name, columns in deferred.items():
            _fill_deferred(reader, writer, Base.metadata.tables[name], columns, batch)
        _reset_sequences(writer, tables)
    return report


def copy_stores(source: str, target: str, *, force: bool = False, batch: int = BATCH_ROWS,
                progress: Progress | None = None) -> CopyReport:
    """:func:`copy_store` between two stores given as ``--db`` values (paths or URLs)."""
    if source == target:
        raise StoreError("the source and the target are the same store")
    if "://" not in source and not Path(source).expanduser().is_file():
        raise StoreError(f"no store at {source}")  # opening it would create an empty one
    from_store = open_store(source)
    try:
        to_store = open_store(target)
        try:
            return copy_store(from_store, to_store, force=force, batch=batch, progress=progress)
        finally:
            to_store.close()
    finally:
        from_store.close()
