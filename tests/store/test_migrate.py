"""Migrations: applied once, recorded with a checksum, safe when two processes race."""

from __future__ import annotations

import asyncio

import pytest

from issuer.config import Settings
from issuer.errors import MigrationError
from issuer.lifecycle import open_store
from issuer.store.migrate import load_migrations, pending, sqlite_statements
from issuer.store.postgres import PostgresStore


@pytest.fixture
def settings_overrides() -> dict[str, bool]:
    return {"auto_migrate": False}


async def test_applies_once_and_records_checksums(settings: Settings) -> None:
    store = await open_store(settings)
    try:
        first = await store.migrate()
        assert first == [f"{m.version:04d}_{m.name}" for m in load_migrations(_dialect(store))]
        assert await store.migrate() == []
        assert await store.list_keys() == []
    finally:
        await store.close()


async def test_two_migrators_at_once_apply_each_migration_once(settings: Settings) -> None:
    a, b = await open_store(settings), await open_store(settings)
    try:
        results = await asyncio.gather(a.migrate(), b.migrate())
        applied = [name for r in results for name in r]
        assert sorted(applied) == sorted(
            f"{m.version:04d}_{m.name}" for m in load_migrations(_dialect(a))
        )
    finally:
        await a.close()
        await b.close()


def test_a_changed_applied_migration_is_refused() -> None:
    migrations = load_migrations("sqlite")
    first = migrations[0]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        pending(migrations, {first.version: "0" * 64})


async def test_changed_checksum_in_a_real_database_stops_migrate(settings: Settings) -> None:
    store = await open_store(settings)
    try:
        await store.migrate()
        if isinstance(store.dialect, str) and store.dialect == "sqlite":
            from issuer.store.sqlite import SQLiteStore

            assert isinstance(store, SQLiteStore)
            async with store.transaction() as tx:
                await tx.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        else:
            from issuer.store.postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            await store.pool.execute(
                "UPDATE schema_migrations SET checksum = 'x' WHERE version = 1"
            )
        with pytest.raises(MigrationError, match="0001_"):
            await store.migrate()
    finally:
        await store.close()


def test_sqlite_statement_splitting_keeps_semicolons_in_strings() -> None:
    script = (
        "CREATE TABLE t (a TEXT DEFAULT ';');\n-- comment; here\nINSERT INTO t VALUES ('x;y');\n"
    )
    assert len(sqlite_statements(script)) == 2


def _dialect(store: object) -> str:
    dialect = getattr(store, "dialect", "")
    assert isinstance(dialect, str)
    return dialect


async def test_postgres_pool_hands_out_no_connection_holding_the_migration_lock(
    postgres_url: str,
) -> None:
    """The pool skips asyncpg's reset query on release, except after a session lock."""
    store = await PostgresStore.open(postgres_url, max_size=1)
    try:
        await store.migrate()
        held = await store.pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert held == 0
    finally:
        await store.close()
