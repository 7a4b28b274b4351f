"""Both stores implement the Store protocol and its unit of work: checked by mypy --strict
and at run time."""

from __future__ import annotations

from issuer.store.base import KeyScheduleTx, Store, StoreTx, _CoreStore, _UserStore
from issuer.store.postgres import PostgresStore, PostgresTx
from issuer.store.sqlite import SQLiteStore, SQLiteTx


# mypy checks these assignments structurally: a missing or mistyped method fails the build.
def _sqlite(store: SQLiteStore, tx: SQLiteTx) -> tuple[Store, StoreTx, KeyScheduleTx]:
    return store, tx, tx


def _postgres(store: PostgresStore, tx: PostgresTx) -> tuple[Store, StoreTx, KeyScheduleTx]:
    return store, tx, tx


def members(protocol: type) -> list[str]:
    return [name for name in vars(protocol) if not name.startswith("_")]


def test_every_protocol_method_exists_on_both_stores() -> None:
    for store in (SQLiteStore, PostgresStore):
        for name in members(_CoreStore) + members(_UserStore):
            assert callable(getattr(store, name, None)), (store.__name__, name)
    for tx in (SQLiteTx, PostgresTx):
        for name in members(StoreTx) + members(KeyScheduleTx):
            assert callable(getattr(tx, name, None)), (tx.__name__, name)
