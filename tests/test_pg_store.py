"""The store on PostgreSQL, against a real server the session starts (tests/pg.py).

Migrations from one history on both dialects, values that round-trip identically, concurrent
ingest without UNIQUE races, a clear refusal for search, and ``tidings store copy`` both ways."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import inspect

from tidings.store import Base, Digest, Item, Source, current_revision, head_revision, open_store


def test_migrations_build_the_models_schema_on_both_dialects(db_url: str, pg_server) -> None:  # noqa: ANN001
    target = pg_server.fresh_database(migrated=False) if db_url.startswith("postgresql") else db_url
    store = open_store(target)
    try:
        assert current_revision(store.engine) == head_revision()
        tables = set(inspect(store.engine).get_table_names())
        assert {table.name for table in Base.metadata.sorted_tables} <= tables
    finally:
        store.close()


def test_values_round_trip_identically(db_url: str) -> None:
    published = datetime(2024, 6, 3, 8, 30, 15, 123456, tzinfo=UTC)
    store = open_store(db_url)
    try:
        with store.session() as session:
            session.add(Source(kind="feed", locator="https://example.org/feed", dead=True))
            session.add(Item(url="https://example.org/a", title="标题 ✓", published_at=published,
                             extra={"title_derived": True, "nested": {"n": [1, 2.5, None, "字"]}},
                             fingerprint=b"\x00\xff\x10", error_transient=True, section_confidence=0.25))
            session.add(Digest(week=date(2024, 6, 9), authors=["a", "b"], meta={"draft": False}))
        with store.session() as session:
            item = session.query(Item).one()
            assert item.id == 1
            assert item.published_at == published.replace(tzinfo=None)  # the wall clock, as SQLite always kept it
            assert item.extra == {"title_derived": True, "nested": {"n": [1, 2.5, None, "字"]}}
            assert item.fingerprint == b"\x00\xff\x10" and item.error_transient is True
            assert item.title == "标题 ✓" and item.section_confidence == 0.25
            assert session.query(Source).one().dead is True
            digest = session.query(Digest).one()
            assert digest.week == date(2024, 6, 9) and digest.authors == ["a", "b"] and digest.meta == {"draft": False}
    finally:
        store.close()
