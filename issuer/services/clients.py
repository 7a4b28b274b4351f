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

    async def get_client(self, client_id: str) -> ClientRecord | None:
        now = self._clock.now()
        entry = self._entries.get(client_id)
        if entry is not None and now < entry[1]:
            return entry[0]
        epoch = self._epoch
        client = await self._store.get_client(client_id)
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
        else:
            self._entries.pop(client_id, None)
