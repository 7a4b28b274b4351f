"""LISTEN issuer_keys: a notification wakes the keyring; a dropped connection comes back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import pytest

from issuer.notify import follow_key_changes
from issuer.store.postgres import KEYS_CHANNEL

pytestmark = pytest.mark.postgres


class CountingKeyring:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


async def until(probe: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_notify_wakes_and_a_terminated_connection_reconnects(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    keyring = CountingKeyring()
    task = asyncio.create_task(follow_key_changes(postgres_url, keyring.wake))
    admin = await asyncpg.connect(postgres_url)
    try:

        async def listening() -> bool:
            n = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
                " AND datname = current_database()"
            )
            return bool(n)

        await until(listening)
        woken = keyring.wakes
        await admin.execute("SELECT pg_notify($1, '')", KEYS_CHANNEL)

        async def woke() -> bool:
            return keyring.wakes > woken

        await until(woke)

        with caplog.at_level(logging.INFO, logger="issuer.notify"):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            )
            await until(listening)
            woken = keyring.wakes
            await admin.execute("SELECT pg_notify($1, '')", KEYS_CHANNEL)
            await until(woke)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert any("again" in r.getMessage() for r in caplog.records)
    finally:
        await admin.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
