"""Everything a request handler or a CLI command needs, opened once per process."""

from __future__ import annotations

from dataclasses import dataclass

from issuer.clock import Clock
from issuer.config import Settings
from issuer.keyring import Keyring
from issuer.services.clients import ClientCache
from issuer.services.keys import KeyService
from issuer.store.base import Store


@dataclass(frozen=True, slots=True)
class Opened:
    """What start-up opens: the store, the key cache (read) and the key commands (write),
    and the client cache."""

    store: Store
    keyring: Keyring
    keys: KeyService
    clients: ClientCache


class Context:
    """Settings and clock from the start; the opened parts once, at start-up.

    Set once by :func:`issuer.app.start` and cleared by :func:`issuer.app.stop`;
    nothing else changes it.
    """

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._opened: Opened | None = None

    def __repr__(self) -> str:
        return f"Context(issuer={self.settings.issuer!r}, started={self.started})"

    def attach(self, opened: Opened) -> None:
        if self._opened is not None:
            raise RuntimeError("the context is already started")
        self._opened = opened

    def detach(self) -> None:
        self._opened = None

    @property
    def _parts(self) -> Opened:
        if self._opened is None:
            raise RuntimeError("the store is not open (the app has not started)")
        return self._opened

    @property
    def store(self) -> Store:
        return self._parts.store

    @property
    def keyring(self) -> Keyring:
        return self._parts.keyring

    @property
    def keys(self) -> KeyService:
        return self._parts.keys

    @property
    def clients(self) -> ClientCache:
        return self._parts.clients

    @property
    def started(self) -> bool:
        return self._opened is not None
