"""Client records cached in each worker, so a token request does not read the clients table.

What is cached is the row as the database had it; every check still runs on each
request against it (the secret compared in constant time, ``disabled``, the
scopes). How soon a change reaches a worker's cache:

- the worker that made the change (``set_client_disabled`` given the cache): at once;
- another worker or replica on PostgreSQL: at once, through ``NOTIFY issuer_clients``
  on commit (``issuer/notify.py``), which reaches every listener;
- otherwise (SQLite, or PostgreSQL while notifications are down): within
  ``ISSUER_KEY_REFRESH_INTERVAL``, the age past which an entry is read again: the
  bound the key schedule has too.

Only clients that exist are cached: an unknown id is looked up each time, so a
client created anywhere is usable at once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from issuer.clock import Clock
from issuer.store.base import ClientRecord, Store

# A worker holds as many entries as there are clients in use; past this, it starts over.
MAX_ENTRIES = 10_000


class ClientCache:
    def __init__(self, store: Store, clock: Clock, max_age: float) -> None:
        self._store = store
        self._clock = clock
        self._max_age = timedelta(seconds=max_age)
        self._entries: dict[str, tuple[ClientRecord, datetime]] = {}
        # Bumped by every invalidation: a lookup that began before one must not put back
        # the row it read, which may be the one the invalidation was about.
        self._epoch = 0
        # One read per client at a time: when an entry ages out under load, every
        # request for it would otherwise read the same row at once.
        self._reading: dict[str, asyncio.Future[ClientRecord | None]] = {}

    async def get_client(self, client_id: str) -> ClientRecord | None:
        now = self._clock.now()
        entry = self._entries.get(client_id)
        if entry is not None and now < entry[1]:
            return entry[0]
        reading = self._reading.get(client_id)
        if reading is None:
            # A task of its own: a caller that is cancelled (its client hung up) does
            # not cancel the read the others wait for.
            reading = asyncio.ensure_future(self._read(client_id))
            reading.add_done_callback(_retrieve)
            self._reading[client_id] = reading
        return await asyncio.shield(reading)

    async def _read(self, client_id: str) -> ClientRecord | None:
        epoch, now = self._epoch, self._clock.now()
        try:
            client = await self._store.get_client(client_id)
        finally:
            if self._reading.get(client_id) is asyncio.current_task():
                del self._reading[client_id]
        if client is not None and epoch == self._epoch:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (client, now + self._max_age)
        elif client is None:
            self._entries.pop(client_id, None)
        return client

    def forget(self, client_id: str | None = None) -> None:
        """Drop one client's entry, or (``None``) every entry."""
        self._epoch += 1
        if client_id is None:
            self._entries.clear()
            self._reading.clear()
        else:
            self._entries.pop(client_id, None)
            # A request from now on reads the row afresh rather than join a read that
            # may have begun before the change.
            self._reading.pop(client_id, None)


def _retrieve(task: asyncio.Future[ClientRecord | None]) -> None:
    # Every waiter may have gone: the error is theirs to see, not asyncio's to log.
    if not task.cancelled():
        task.exception()
