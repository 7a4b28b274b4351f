"""PostgreSQL: refreshes asked for in one turn of the event loop share one statement.

What each rotation decides is pinned by the contract tests (``test_contract.py``,
both databases, one at a time and together); here, that they do share it, and
that a failure or a cancellation reaches only the callers it concerns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from issuer.clock import Clock, SettableClock
from issuer.errors import DatabaseUnavailableError, InvalidRequestError
from issuer.store.base import (
    ClientRecord,
    FamilyRecord,
    RefreshTokenRecord,
    Rotated,
    Rotation,
    UserRecord,
)
from issuer.store.postgres import PostgresStore
from issuer.store.postgres_rotation import RotationBatcher

T0 = datetime(2030, 1, 1, tzinfo=UTC)
FAMILIES = ("f1", "f2", "f3", "f4")


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    opened = await PostgresStore.open(postgres_url)
    await opened.migrate()
    try:
        await opened.create_client(
            ClientRecord("id-app", "app", "h" * 64, ("read", "write"), True, T0)
        )
        await opened.create_user(
            UserRecord("u-ann", "Ann", "ann", "argon-hash", ("reader",), False, T0, T0)
        )
        for family_id in FAMILIES:
            async with opened.transaction() as tx:
                await tx.insert_family(
                    FamilyRecord(family_id, "u-ann", "id-app", T0, T0 + timedelta(days=1))
                )
                await tx.insert_refresh(
                    RefreshTokenRecord(
                        f"t-{family_id}", family_id, 0, None, ("read",), T0, T0 + timedelta(hours=1)
                    )
                )
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0 + timedelta(minutes=10))


@pytest.fixture
def statements(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rotations each statement made, in order."""
    made: list[int] = []
    batcher = store.rotations
    one, many = batcher.rotate_one, batcher.rotate_many

    async def rotate_one(rotation: Rotation, clock: Clock) -> Rotated | None:
        made.append(1)
        return await one(rotation, clock)

    async def rotate_many(rotations: list[Rotation], clock: Clock) -> list[Rotated | None]:
        made.append(len(rotations))
        return await many(rotations, clock)

    monkeypatch.setattr(batcher, "rotate_one", rotate_one)
    monkeypatch.setattr(batcher, "rotate_many", rotate_many)
    return made


def _rotation(family_id: str, **kw: Any) -> Rotation:
    values: dict[str, Any] = {
        "token_hash": f"t-{family_id}",
        "new_hash": f"n-{family_id}",
        "client_id": "id-app",
        "scope": None,
        "idle_ttl": timedelta(hours=1),
        "jti": f"j-{family_id}",
        "access_exp": T0 + timedelta(minutes=20),
    }
    values.update(kw)
    return Rotation(**values)


async def _spent(store: PostgresStore, family_id: str) -> bool:
    found = await store.find_refresh(f"t-{family_id}")
    assert found is not None
    return found[0].spent_at is not None


async def test_rotations_in_one_turn_share_one_statement(
    store: PostgresStore, clock: SettableClock, statements: list[int]
) -> None:
    got = await asyncio.gather(*(store.rotate_refresh(_rotation(f), clock) for f in FAMILIES))
    assert got == [Rotated(f, "u-ann", ("reader",), ("read",)) for f in FAMILIES]
    assert statements == [len(FAMILIES)]
    # One asked alone: the one-rotation statement, as on a quiet service.
    assert await store.rotate_refresh(
        _rotation("f1", token_hash="n-f1", new_hash="m", jti="j-m"), clock
    )
    assert statements == [len(FAMILIES), 1]


async def test_a_family_held_elsewhere_is_skipped_and_the_others_rotate_at_once(
    store: PostgresStore, clock: SettableClock, statements: list[int]
) -> None:
    async with store.transaction() as tx:
        await tx.lock_families({"f2"})
        async with asyncio.timeout(5):  # SKIP LOCKED: no wait for the holder
            got = await asyncio.gather(
                *(store.rotate_refresh(_rotation(f), clock) for f in FAMILIES)
            )
    assert [r is not None for r in got] == [True, False, True, True]
    assert statements == [len(FAMILIES)]
    assert not await _spent(store, "f2")


async def test_a_value_postgresql_refuses_fails_only_the_rotation_that_carries_it(
    store: PostgresStore, clock: SettableClock, statements: list[int]
) -> None:
    asked = [_rotation("f1"), _rotation("f2", scope=("re\x00ad",)), _rotation("f3")]
    got = await asyncio.gather(
        *(store.rotate_refresh(r, clock) for r in asked), return_exceptions=True
    )
    assert got[0] == Rotated("f1", "u-ann", ("reader",), ("read",))
    assert isinstance(got[1], InvalidRequestError)
    assert got[2] == Rotated("f3", "u-ann", ("reader",), ("read",))
    # The shared statement failed whole (nothing written), then each ran alone.
    assert statements[0] == 3
    assert sorted(statements[1:]) == [1, 1, 1]
    assert [await _spent(store, f) for f in ("f1", "f2", "f3")] == [True, False, True]


async def test_a_database_fault_reaches_every_rotation_of_the_statement(
    store: PostgresStore, clock: SettableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(rotations: list[Rotation], clock: Clock) -> list[Rotated | None]:
        raise DatabaseUnavailableError()

    monkeypatch.setattr(store.rotations, "rotate_many", unavailable)
    got = await asyncio.gather(
        *(store.rotate_refresh(_rotation(f), clock) for f in FAMILIES), return_exceptions=True
    )
    assert all(isinstance(r, DatabaseUnavailableError) for r in got), got


async def test_a_rotation_cancelled_before_its_statement_spends_nothing(
    store: PostgresStore, clock: SettableClock, statements: list[int]
) -> None:
    batcher: RotationBatcher = store.rotations
    gone = asyncio.create_task(batcher.rotate(_rotation("f1"), clock))
    kept = asyncio.create_task(batcher.rotate(_rotation("f2"), clock))
    await asyncio.sleep(0)  # both have asked; the statement starts in the next turn
    gone.cancel()
    assert await kept == Rotated("f2", "u-ann", ("reader",), ("read",))
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert statements == [1]
    assert not await _spent(store, "f1")
    assert await store.find_refresh("n-f1") is None
