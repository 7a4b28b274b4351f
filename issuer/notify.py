"""Change notifications: PostgreSQL ``LISTEN issuer_keys`` wakes this worker's key schedule,
``LISTEN issuer_clients`` drops a changed client from its client cache.

Every key-schedule transaction sends ``NOTIFY issuer_keys`` on commit (see
``store/postgres.py``), so a rotation or revocation made through any worker or
replica reaches every other one's JWKS and signer in milliseconds, not on the
next timer tick; a disabled client is likewise refused everywhere at once
(``store/postgres_sessions.py`` notifies with its id). The LISTEN needs a
connection of its own (a pooled one would be handed to queries); when it drops,
this reconnects with backoff, logging the outage once, while the periodic
re-read covers the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from issuer.store.postgres import KEYS_CHANNEL
from issuer.store.postgres_sessions import CLIENTS_CHANNEL

log = logging.getLogger(__name__)
PING_INTERVAL = 30.0
CONNECT_TIMEOUT = 10.0
BACKOFF = (0.5, 30.0)
# What a lost or unreachable server looks like through asyncpg.
_DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def follow_key_changes(
    dsn: str,
    on_change: Callable[[], None],
    on_client_change: Callable[[str | None], None] | None = None,
) -> None:
    """Run until cancelled: LISTEN, and call ``on_change()`` on every key notification and
    ``on_client_change(client_id)`` on every client one (``None``: any may have changed)."""
    delay, down = BACKOFF[0], False
    while True:
        conn: Any = None
        try:
            conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
            lost = asyncio.Event()
            # Bound now: a late callback from an old connection must not flag the new one.
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await conn.add_listener(KEYS_CHANNEL, lambda *_args: on_change())
            if on_client_change is not None:
                await conn.add_listener(
                    CLIENTS_CHANNEL,
                    lambda _c, _pid, _channel, payload: on_client_change(payload or None),
                )
            if down:
                log.info("listening for key changes again")
            delay, down = BACKOFF[0], False
            on_change()  # whatever changed while we were not listening
            if on_client_change is not None:
                on_client_change(None)
            while not lost.is_set():
                # asyncio.timeout, not wait_for, which can swallow a cancellation on 3.11.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_INTERVAL):
                        await lost.wait()
                if not lost.is_set():
                    # A half-open TCP connection raises no event: ask it something.
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        await conn.execute("SELECT 1")
        except _DOWN as exc:
            if not down:
                log.warning(
                    "key-change notifications are down (%s: %s); re-reading keys on the timer "
                    "and reconnecting",
                    type(exc).__name__,
                    exc,
                )
                down = True
        finally:
            if conn is not None:
                conn.terminate()
        if not down:
            log.warning("the key-change connection closed; reconnecting")
            down = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF[1])
