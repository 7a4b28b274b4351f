"""The Store contract: every method, the same expectations, on SQLite and PostgreSQL.

The races live in ``test_races.py``; this module pins what each method returns and
writes, and that a unit of work commits all of its rows or none.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from issuer.clock import SettableClock
from issuer.errors import ConflictError
from issuer.lifecycle import AnyStore
from issuer.store.base import (
    AuditEvent,
    ClientRecord,
    FamilyRecord,
    KeyRecord,
    RefreshTokenRecord,
    Rotated,
    Rotation,
    Store,
    UserRecord,
)
from issuer.store.postgres import PostgresStore
from issuer.store.sqlite import SQLiteStore

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    opened: AnyStore
    if database_url.startswith("postgresql"):
        opened = await PostgresStore.open(database_url)
    else:
        opened = await SQLiteStore.open(database_url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


def _client(name: str = "app", **kw: object) -> ClientRecord:
    values: dict[str, object] = {
        "client_id": f"id-{name}",
        "name": name,
        "secret_hash": "h" * 64,
        "scopes": ("read", "write"),
        "first_party": True,
        "created_at": T0,
    }
    values.update(kw)
    return ClientRecord(**values)  # type: ignore[arg-type]


def _user(name: str = "ann") -> UserRecord:
    return UserRecord(f"u-{name}", name.title(), name, "argon-hash", ("reader",), False, T0, T0)


async def _family(store: Store, family_id: str = "f1", user: str = "u-ann") -> str:
    async with store.transaction() as tx:
        await tx.insert_family(FamilyRecord(family_id, user, "id-app", T0, T0 + timedelta(days=1)))
        await tx.insert_refresh(
            RefreshTokenRecord(
                f"t-{family_id}", family_id, 0, None, ("read",), T0, T0 + timedelta(hours=1)
            )
        )
        await tx.record_access_token(f"jti-{family_id}", family_id, T0 + timedelta(minutes=10))
    return family_id


async def test_ping_and_clients(store: Store) -> None:
    await store.ping()
    await store.create_client(_client("b"))
    await store.create_client(_client("a", secret_hash=None, created_at=T0 + timedelta(1)))
    with pytest.raises(ConflictError):
        await store.create_client(_client("b", client_id="other"))
    got = await store.get_client("id-b")
    assert got == _client("b")
    assert await store.get_client("nope") is None
    assert [c.name for c in await store.list_clients()] == ["b", "a"]
    disabled = await store.set_client_disabled("id-b", True)
    assert disabled is not None
    assert disabled.disabled
    assert await store.set_client_disabled("nope", True) is None


async def test_audit_pages_by_id(store: Store) -> None:
    for i in range(3):
        await store.add_audit(AuditEvent(T0, "test", f"a.{i}", "x", {"i": i}))
    first = await store.list_audit(limit=2)
    assert [(e.action, e.detail) for e in first] == [("a.0", {"i": 0}), ("a.1", {"i": 1})]
    assert first[0].at == T0
    rest = await store.list_audit(after=first[-1].id or 0)
    assert [e.action for e in rest] == ["a.2"]


async def test_key_schedule(store: Store) -> None:
    key = KeyRecord("k1", "RS256", {"kty": "RSA"}, b"wrapped", "kek1", T0, T0)
    async with store.key_schedule() as tx:
        await tx.insert_key(key)
        await tx.replace_wrapped_key("k1", b"rewrapped", "kek2")
    [got] = await store.list_keys()
    assert (got.private_wrapped, got.kek_id) == (b"rewrapped", "kek2")
    async with store.key_schedule() as tx:
        assert await tx.revoke_key("k1", T0)
        assert not await tx.revoke_key("k1", T0)
        await tx.destroy_private_key("k1")
    [got] = await store.list_keys()
    assert (got.revoked_at, got.private_wrapped) == (T0, None)


async def test_users(store: Store) -> None:
    await store.create_user(_user("bob"))
    await store.create_user(_user("ann"))
    with pytest.raises(ConflictError):
        await store.create_user(_user("ann"))
    assert await store.get_user("u-ann") == _user("ann")
    assert await store.get_user_by_key("bob") == _user("bob")
    assert await store.get_user("nope") is None
    assert [u.username_key for u in await store.list_users()] == ["ann", "bob"]
    assert [u.username_key for u in await store.list_users(after="ann")] == ["bob"]
    later = T0 + timedelta(hours=1)
    updated = await store.update_user("u-ann", later, roles=("admin",), disabled=True)
    assert updated is not None
    assert (updated.roles, updated.disabled, updated.updated_at) == (("admin",), True, later)
    assert updated.password_hash == "argon-hash"
    assert await store.update_user("nope", later, disabled=True) is None


async def test_a_unit_of_work_commits_all_or_nothing(store: Store) -> None:
    async def create_twice() -> None:
        async with store.transaction() as tx:
            await tx.create_user(_user("cat"))
            await tx.add_audit(AuditEvent(T0, "test", "user.create", "u-cat"))
            await tx.create_user(_user("cat"))  # the unique key fails: all of it goes

    with pytest.raises(ConflictError):
        await create_twice()
    assert await store.get_user("u-cat") is None
    assert await store.list_audit() == []
    async with store.transaction() as tx:
        await tx.create_client(_client())
        await tx.add_audit(AuditEvent(T0, "test", "client.create", "id-app"))
    assert await store.get_client("id-app") is not None
    assert [e.action for e in await store.list_audit()] == ["client.create"]


async def test_refresh_rotation_rows(store: Store) -> None:
    await store.create_client(_client())
    await store.create_user(_user())
    await _family(store)
    found = await store.find_refresh("t-f1")
    assert found is not None
    assert found[1].family_id == "f1"
    assert found[1].user_id == "u-ann"
    assert found[0].spent_at is None
    assert await store.find_refresh("nope") is None
    async with store.transaction() as tx:
        assert await tx.lock_refresh("nope") is None
        locked = await tx.lock_refresh("t-f1")
        assert locked == found
        assert await tx.get_user("u-ann") == _user()
        assert await tx.spend_refresh("t-f1", T0)
        assert not await tx.spend_refresh("t-f1", T0)
        await tx.insert_refresh(
            RefreshTokenRecord("t-f1b", "f1", 1, "t-f1", ("read",), T0, T0 + timedelta(hours=1))
        )
        child = await tx.spend_child_of("f1", "t-f1", T0)
        assert child is not None
        assert child.token_hash == "t-f1b"
        assert await tx.spend_child_of("f1", "t-f1", T0) is None
        assert await tx.family_of_access_token("jti-f1") == "f1"
        assert await tx.family_of_access_token("nope") is None
    spent = await store.find_refresh("t-f1")
    assert spent is not None
    assert spent[0].spent_at == T0


def _rotation(token: str, new: str, jti: str, **kw: object) -> Rotation:
    values: dict[str, object] = {
        "token_hash": token,
        "new_hash": new,
        "client_id": "id-app",
        "scope": None,
        "idle_ttl": timedelta(hours=1),
        "jti": jti,
        "access_exp": T0 + timedelta(minutes=20),
    }
    values.update(kw)
    return Rotation(**values)  # type: ignore[arg-type]


async def test_a_rotation_in_one_write(store: Store) -> None:
    await store.create_client(_client())
    await store.create_user(_user())
    await _family(store)  # t-f1, scope read: idle until T0 + 1 h, family until T0 + 1 day
    found = await store.find_refresh("t-f1")
    assert found is not None
    assert await store.find_refresh_grant("t-f1") == (*found, _user())
    assert await store.find_refresh_grant("nope") is None
    clock = SettableClock(T0 + timedelta(minutes=10))

    async def refused(rotation: Rotation) -> None:
        assert await store.rotate_refresh(rotation, clock) is None
        assert await store.find_refresh("t-f1") == found
        assert await store.find_refresh(rotation.new_hash) is None
        async with store.transaction() as tx:
            assert await tx.family_of_access_token(rotation.jti) is None

    await refused(_rotation("t-f1", "n", "j", client_id="id-other"))
    await refused(_rotation("nope", "n", "j"))
    await refused(_rotation("t-f1", "n", "j", scope=("read", "write")))
    await store.update_user("u-ann", T0, disabled=True)
    await refused(_rotation("t-f1", "n", "j"))
    await store.update_user("u-ann", T0, disabled=False)
    clock.set(T0 + timedelta(hours=1))  # the token's idle deadline
    await refused(_rotation("t-f1", "n", "j"))

    clock.set(T0 + timedelta(minutes=10))
    rotated = await store.rotate_refresh(_rotation("t-f1", "t-f1b", "jti-b"), clock)
    assert rotated == Rotated("f1", "u-ann", ("reader",), ("read",))
    spent = await store.find_refresh("t-f1")
    assert spent is not None
    assert spent[0].spent_at == clock.now()
    assert await store.find_refresh("t-f1b") == (
        RefreshTokenRecord(
            "t-f1b", "f1", 1, "t-f1", ("read",), clock.now(), clock.now() + timedelta(hours=1)
        ),
        found[1],
    )
    async with store.transaction() as tx:
        assert await tx.family_of_access_token("jti-b") == "f1"
    # Spent: only the locked path may decide what presenting it again means.
    assert await store.rotate_refresh(_rotation("t-f1", "n", "j"), clock) is None
    # A narrower scope; the idle deadline never outlives the family.
    narrower = _rotation("t-f1b", "t-f1c", "jti-c", scope=(), idle_ttl=timedelta(days=30))
    assert await store.rotate_refresh(narrower, clock) == Rotated("f1", "u-ann", ("reader",), ())
    third = await store.find_refresh("t-f1c")
    assert third is not None
    assert (third[0].generation, third[0].scope) == (2, ())
    assert third[0].idle_expires_at == T0 + timedelta(days=1)

    await _family(store, "f2")
    clock.set(T0 + timedelta(days=1))  # the family's end (the token's idle deadline is past too)
    assert await store.rotate_refresh(_rotation("t-f2", "n", "j"), clock) is None
    clock.set(T0 + timedelta(minutes=10))
    async with store.transaction() as tx:
        await tx.revoke_family("f2", T0, 30)
    assert await store.rotate_refresh(_rotation("t-f2", "n", "j"), clock) is None


async def test_rotations_asked_together_each_get_their_own_answer(store: Store) -> None:
    """Refreshes that reach the store at once (PostgreSQL: one statement for all of them)
    are judged one by one: the good ones rotate, each into its own family, and the others
    change nothing."""
    await store.create_client(_client())
    await store.create_client(_client("other"))
    await store.create_user(_user())
    await store.create_user(_user("bob"))
    for family_id in ("f1", "f2", "f3", "f4", "f5", "f6"):
        await _family(store, family_id)
    await _family(store, "fb", user="u-bob")
    await store.update_user("u-bob", T0, disabled=True)
    async with store.transaction() as tx:
        await tx.revoke_family("f6", T0, 30)
        assert await tx.spend_refresh("t-f5", T0)
    clock = SettableClock(T0 + timedelta(minutes=10))
    asked = [
        _rotation("t-f1", "n1", "j1"),
        _rotation("t-f2", "n2", "j2", client_id="id-other"),  # not its client
        _rotation("t-f3", "n3", "j3", scope=()),
        _rotation("t-f4", "n4", "j4", scope=("read", "write")),  # wider than the token's
        _rotation("t-f5", "n5", "j5"),  # spent
        _rotation("t-f6", "n6", "j6"),  # revoked family
        _rotation("t-fb", "nb", "jb"),  # disabled user
        _rotation("nope", "nn", "jn"),
        _rotation("t-f1", "n1x", "j1x"),  # the same token again, at the same time
    ]
    before = {r.token_hash: await store.find_refresh(r.token_hash) for r in asked}
    got = await asyncio.gather(*(store.rotate_refresh(r, clock) for r in asked))
    first, again = got[0], got[-1]
    # One of the two presentations of t-f1 rotated it, the other found it taken.
    assert [first is None, again is None].count(True) == 1
    assert (first or again) == Rotated("f1", "u-ann", ("reader",), ("read",))
    assert got[2] == Rotated("f3", "u-ann", ("reader",), ())
    assert got[1] is None
    assert got[3:8] == [None] * 5
    now = clock.now()
    for r, result in zip(asked, got, strict=True):
        successor = await store.find_refresh(r.new_hash)
        async with store.transaction() as tx:
            family = await tx.family_of_access_token(r.jti)
        if result is None:
            assert successor is None
            assert family is None
            if r.token_hash != "t-f1":
                assert await store.find_refresh(r.token_hash) == before[r.token_hash]
            continue
        assert successor is not None
        assert (successor[0].parent_hash, successor[0].generation) == (r.token_hash, 1)
        assert successor[0].scope == result.scope
        assert successor[0].issued_at == now
        assert family == result.family_id == successor[1].family_id
        spent = await store.find_refresh(r.token_hash)
        assert spent is not None
        assert spent[0].spent_at == now


async def test_a_rotation_gives_up_a_family_another_transaction_holds(store: Store) -> None:
    """PostgreSQL: at once, changing nothing, so the caller waits in its locked path and
    reads the clock after the wait (SQLite's write lock makes every writer wait)."""
    if store.dialect != "postgres":
        pytest.skip("SQLite: one writer at a time")
    await store.create_client(_client())
    await store.create_user(_user())
    await _family(store)
    clock = SettableClock(T0 + timedelta(minutes=10))
    async with store.transaction() as tx:
        await tx.lock_families({"f1"})
        assert await store.rotate_refresh(_rotation("t-f1", "t-f1b", "jti-b"), clock) is None
    assert await store.find_refresh("t-f1b") is None
    assert await store.rotate_refresh(_rotation("t-f1", "t-f1b", "jti-b"), clock) is not None


async def test_revocations_and_the_feed(store: Store) -> None:
    await store.create_client(_client())
    await store.create_user(_user())
    await _family(store, "f1")
    await _family(store, "f2")
    now = T0 + timedelta(minutes=1)
    async with store.transaction() as tx:
        await tx.lock_families({"f2", "f1"})
        assert await tx.revoke_family("f1", now, 30)
        assert not await tx.revoke_family("f1", now, 30)
    assert await store.is_revoked("jti-f1", "u-ann", 0)
    assert not await store.is_revoked("jti-f2", "u-ann", 0)
    async with store.transaction() as tx:
        assert await tx.revoke_user_families("u-ann", now) == 1  # f2; f1 already was
        await tx.add_revocation("sub", "u-ann", now, now + timedelta(minutes=10))
    assert await store.is_revoked("any", "u-ann", now.timestamp())
    assert not await store.is_revoked("any", "u-ann", now.timestamp() + 1)
    entries, top = await store.list_revocations(0, now, 10)
    assert [(e.kind, e.subject) for e in entries] == [("jti", "jti-f1"), ("sub", "u-ann")]
    assert top == entries[-1].seq
    page, _ = await store.list_revocations(entries[0].seq, now, 10)
    assert [e.subject for e in page] == ["u-ann"]
    # Past drop_after an entry leaves the feed, and the purge deletes it.
    late = T0 + timedelta(days=2)
    assert (await store.list_revocations(0, late, 10))[0] == []
    assert await store.purge_expired(late, timedelta(minutes=30)) > 0
    assert await store.find_refresh("t-f1") is None


async def test_login_counters(store: Store) -> None:
    window, later = T0, T0 + timedelta(hours=1)
    assert await store.login_failures("pair", "ann:a", window) == 0
    async with store.transaction() as tx:
        assert await tx.add_login_failure("pair", "ann:a", window) == 1
        assert await tx.add_login_failure("pair", "ann:a", window) == 2
        assert await tx.add_login_failure("pair", "bob:a", window) == 1
        assert await tx.login_failures("pair", "ann:a", window) == 2
    assert await store.login_failures("pair", "ann:a", window) == 2
    async with store.transaction() as tx:
        await tx.clear_login_failures("pair", "ann:a")
    assert await store.login_failures("pair", "ann:a", window) == 0
    assert await store.login_failures("pair", "bob:a", window) == 1  # only that key
    # A new window starts from one and drops the key's old ones.
    async with store.transaction() as tx:
        assert await tx.add_login_failure("pair", "bob:a", later) == 1
    assert await store.login_failures("pair", "bob:a", window) == 0
    assert await store.login_failures("pair", "bob:a", later) == 1
