"""Everything a request handler or a CLI command needs, opened once per process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from issuer.clock import Clock
from issuer.config import Settings
from issuer.keyring import Keyring
from issuer.store.base import Store


class Context:
    """Settings and clock from the start; store and keyring once the app has started."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._store: Store | None = None
        self._keyring: Keyring | None = None
        # Extended by later capabilities (public clients, revocation, introspection).
        self.auth_methods: set[str] = {"client_secret_basic", "client_secret_post"}
        self.extra_metadata: dict[str, Any] = {}
        # Checks on a verified bearer token's claims (e.g. the deny list); raise to refuse.
        self.token_checks: list[Callable[[Any, dict[str, Any]], Awaitable[None]]] = []

    def __repr__(self) -> str:
        return f"Context(issuer={self.settings.issuer!r}, started={self._store is not None})"

    def attach(self, store: Store, keyring: Keyring) -> None:
        self._store = store
        self._keyring = keyring

    def detach(self) -> None:
        self._store = None
        self._keyring = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the store is not open (the app has not started)")
        return self._store

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            raise RuntimeError("the keyring is not loaded (the app has not started)")
        return self._keyring

    @property
    def started(self) -> bool:
        return self._store is not None
