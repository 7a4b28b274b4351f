"""Both stores implement the UserStore protocol: checked by mypy --strict and at run time."""

from __future__ import annotations

from issuer.store.base import SessionTx, UserStore
from issuer.store.postgres import PostgresStore
from issuer.store.postgres_sessions import PostgresSessionTx
from issuer.store.sqlite import SQLiteStore
from issuer.store.sqlite_sessions import SQLiteSessionTx


# mypy checks these assignments structurally: a missing or mistyped method fails the build.
def _sqlite(store: SQLiteStore, tx: SQLiteSessionTx) -> tuple[UserStore, SessionTx]:
    return store, tx


def _postgres(store: PostgresStore, tx: PostgresSessionTx) -> tuple[UserStore, SessionTx]:
    return store, tx


def members(protocol: type) -> list[str]:
    return [name for name in vars(protocol) if not name.startswith("_")]


def test_every_protocol_method_exists_on_both_stores() -> None:
    for store in (SQLiteStore, PostgresStore):
        for name in members(UserStore):
            assert callable(getattr(store, name, None)), (store.__name__, name)
    for tx in (SQLiteSessionTx, PostgresSessionTx):
        for name in members(SessionTx):
            assert callable(getattr(tx, name, None)), (tx.__name__, name)
