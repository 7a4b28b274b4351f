"""Races on both stores, with real concurrent connections and a forced interleaving.

Each test pins one interleaving: a task is held at a chosen point by an event the
test sets, or waits on a lock the test holds. On PostgreSQL the test waits until
the server itself reports the other session blocked on a lock (``pg_stat_activity``),
so the order is the one named, not one that a sleep made likely.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient

from issuer import metrics
from issuer.clock import SettableClock
from issuer.context import Context
from issuer.errors import InvalidGrantError
from issuer.lifecycle import AnyStore, open_store
from issuer.services import sessions
from issuer.services.revocation import revocation_feed
from issuer.store.base import FamilyRecord, Rotated, Store
from issuer.store.postgres_sessions import PG_REVOCATION_LOCK
from tests.conftest import Login, MakeClient, MakeUser, Refresh, RegisteredClient

_STORE_MODULES = (
    "issuer.store.sqlite",
    "issuer.store.sqlite_sessions",
    "issuer.store.postgres",
    "issuer.store.postgres_sessions",
)


def _classes_with(method: str) -> Iterator[type]:
    for name in _STORE_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and method in vars(value):
                yield value


def _task_name() -> str:
    task = asyncio.current_task()
    return "" if task is None else task.get_name()


@pytest.fixture
async def second_store(ctx: Context) -> AsyncIterator[AnyStore]:
    """The same database through its own connection(s), as another worker sees it."""
    store = await open_store(ctx.settings)
    try:
        yield store
    finally:
        await store.close()


def hold_at_entry(
    monkeypatch: pytest.MonkeyPatch,
    store: AnyStore,
    task: str,
    arrived: asyncio.Event,
    release: asyncio.Event,
) -> None:
    """Task ``task`` stops where it asks ``store`` for a transaction or a rotation, before
    it has a connection or any lock, and goes on when ``release`` is set."""
    real_rotate = store.rotate_refresh

    async def rotate_refresh(*args: Any, **kwargs: Any) -> Rotated | None:
        if _task_name() == task:
            arrived.set()
            await release.wait()
        return await real_rotate(*args, **kwargs)

    monkeypatch.setattr(store, "rotate_refresh", rotate_refresh)
    for method in ("sessions", "transaction"):
        real = getattr(store, method, None)
        if real is None:
            continue

        def entry(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            @asynccontextmanager
            async def held() -> AsyncIterator[Any]:
                if _task_name() == task:
                    arrived.set()
                    await release.wait()
                async with _real(*args, **kwargs) as tx:
                    yield tx

            return held()

        monkeypatch.setattr(store, method, entry)


async def wait_for_lock_waiters(ctx: Context, count: int, event: str | None = None) -> None:
    """PostgreSQL: until ``count`` sessions of this database wait on a lock (of kind
    ``event``, e.g. ``advisory``): a condition the server reports, polled; never a sleep
    standing in for an order."""
    conn = await asyncpg.connect(ctx.settings.database_url)
    try:
        for _ in range(2000):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND ($1::text IS NULL OR wait_event = $1)",
                event,
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{count} session(s) never waited on a lock")
    finally:
        await conn.close()


async def _session(
    ctx: Context, make_client: MakeClient, make_user: MakeUser, login: Login
) -> tuple[RegisteredClient, dict[str, Any]]:
    app = await make_client(first_party=True)
    return app, await login(app, await make_user())


def _refresh(
    ctx: Context, store: Store, app: RegisteredClient, token: str
) -> Callable[[], Coroutine[Any, Any, Any]]:
    async def run() -> Any:
        client = await store.get_client(app.client_id)
        assert client is not None
        return await sessions.refresh(
            store,
            ctx.keyring,
            ctx.settings,
            ctx.clock,
            client=client,
            presented=token,
            requested_scope=None,
        )

    return run


async def _family(ctx: Context, token: str) -> FamilyRecord:
    found = await ctx.store.find_refresh(sessions.hash_refresh_token(token))
    assert found is not None
    return found[1]


def _reuse_count() -> float:
    return float(metrics._metrics().refresh_reuse._value.get())


async def _assert_reuse_was_handled(
    ctx: Context, app: RegisteredClient, original: str, winner: Any, reuses_before: float
) -> None:
    """Family revoked, access tokens deny-listed, the reuse audited and counted, the new
    token refused."""
    assert _reuse_count() == reuses_before + 1
    family = await _family(ctx, original)
    assert family.revoked_at is not None
    claims = jwt.decode(winner.access_token, options={"verify_signature": False})
    assert await ctx.store.is_revoked(claims["jti"], claims["sub"], 0)
    actions = [e.action for e in await ctx.store.list_audit()]
    assert actions.count("refresh.reuse") == 1
    with pytest.raises(InvalidGrantError):
        await _refresh(ctx, ctx.store, app, winner.refresh_token)()


async def test_a_refresh_that_waited_for_the_family_lock_is_a_reuse(
    ctx: Context,
    second_store: AnyStore,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A holds the lock on the token's family (through ``lock_refresh``); B asks for it
    and waits; A commits.

    B's one-statement rotation must give the busy family up rather than wait with a clock
    read before the wait, and B's locked path must then see the token as spent
    (PostgreSQL READ COMMITTED hands a ``FOR UPDATE`` waiter the row as it was before
    the wait unless the token row is read afresh)."""
    app, tokens = await _session(ctx, make_client, make_user, login)
    reuses_before = _reuse_count()
    a_holds_lock, release_a = asyncio.Event(), asyncio.Event()
    b_entering = asyncio.Event()

    # A takes the locked path, as a request does when its rotation finds the family busy.
    real_rotate = ctx.store.rotate_refresh

    async def rotate_refresh(*args: Any, **kwargs: Any) -> Rotated | None:
        return None if _task_name() == "A" else await real_rotate(*args, **kwargs)

    monkeypatch.setattr(ctx.store, "rotate_refresh", rotate_refresh)
    for cls in _classes_with("lock_refresh"):
        real = vars(cls)["lock_refresh"]

        async def lock_refresh(self: Any, token_hash: str, _real: Any = real) -> Any:
            found = await _real(self, token_hash)
            if _task_name() == "A":
                a_holds_lock.set()
                await release_a.wait()
            return found

        monkeypatch.setattr(cls, "lock_refresh", lock_refresh)

    go = asyncio.Event()
    go.set()
    hold_at_entry(monkeypatch, second_store, "B", b_entering, go)
    a = asyncio.create_task(_refresh(ctx, ctx.store, app, tokens["refresh_token"])(), name="A")
    await a_holds_lock.wait()
    b = asyncio.create_task(_refresh(ctx, second_store, app, tokens["refresh_token"])(), name="B")
    if ctx.store.dialect == "postgres":
        await wait_for_lock_waiters(ctx, 1)
    else:
        # B asks for its transaction (another connection) while A holds SQLite's write
        # lock: B reads nothing until BEGIN IMMEDIATE gives it the lock after A commits.
        await b_entering.wait()
    release_a.set()
    winner = await a
    with pytest.raises(InvalidGrantError):
        await b
    await _assert_reuse_was_handled(ctx, app, tokens["refresh_token"], winner, reuses_before)


async def test_a_refresh_that_waited_for_a_one_statement_rotation_is_a_reuse(
    ctx: Context,
    second_store: AnyStore,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL. A's rotation statement holds the family's lock and is kept from
    finishing: the test holds an uncommitted row with the token hash A is about to
    insert, so A's insert waits for the test. B presents the same token meanwhile: its
    own rotation must not take the family, and its locked path waits for A. The test
    lets A go; A commits, and B is a reuse that deny-lists A's access token."""
    if ctx.store.dialect != "postgres":
        pytest.skip("SQLite: the write lock serializes the whole rotation (the test above)")
    app, tokens = await _session(ctx, make_client, make_user, login)
    _, other = await _session(ctx, make_client, make_user, login)
    reuses_before = _reuse_count()
    b_rotations: list[Rotated | None] = []
    real_rotate = second_store.rotate_refresh

    async def rotate_refresh(*args: Any, **kwargs: Any) -> Rotated | None:
        b_rotations.append(await real_rotate(*args, **kwargs))
        return b_rotations[-1]

    monkeypatch.setattr(second_store, "rotate_refresh", rotate_refresh)
    successor = "the-token-A-issues"
    real_new = sessions.new_refresh_token
    monkeypatch.setattr(
        sessions,
        "new_refresh_token",
        lambda: successor if _task_name() == "A" else real_new(),
    )
    blocker = await asyncpg.connect(ctx.settings.database_url)
    try:
        holding = blocker.transaction()
        await holding.start()
        # Another family's row: a row of A's family would take a key-share lock on it.
        await blocker.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, generation, scope, issued_at,"
            " idle_expires_at) VALUES ($1, $2, 99, '', now(), now())",
            sessions.hash_refresh_token(successor),
            (await _family(ctx, other["refresh_token"])).family_id,
        )
        a = asyncio.create_task(_refresh(ctx, ctx.store, app, tokens["refresh_token"])(), name="A")
        await wait_for_lock_waiters(ctx, 1)  # A, on the test's row, holding the family
        b = asyncio.create_task(
            _refresh(ctx, second_store, app, tokens["refresh_token"])(), name="B"
        )
        await wait_for_lock_waiters(ctx, 2)  # and B, on the family A holds
        # B waits in its locked path, which reads the clock after the wait: its rotation
        # gave the family up at once.
        assert b_rotations == [None]
        await holding.rollback()
    finally:
        await blocker.close()
    winner = await a
    assert winner.refresh_token == successor
    with pytest.raises(InvalidGrantError):
        await b
    await _assert_reuse_was_handled(ctx, app, tokens["refresh_token"], winner, reuses_before)


async def test_a_refresh_that_waited_gets_no_grace_from_a_clock_read_before_the_wait(
    ctx: Context,
    second_store: AnyStore,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    clock: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B starts at t0 and is held before it gets a connection/the lock; A refreshes at
    t0 + 1 s and commits; then B goes on. With grace 0 (the default) B is a reuse."""
    app, tokens = await _session(ctx, make_client, make_user, login)
    reuses_before = _reuse_count()
    assert ctx.settings.refresh_reuse_grace == 0
    b_waiting, release_b = asyncio.Event(), asyncio.Event()

    hold_at_entry(monkeypatch, second_store, "B", b_waiting, release_b)

    b = asyncio.create_task(_refresh(ctx, second_store, app, tokens["refresh_token"])(), name="B")
    await b_waiting.wait()
    clock.advance(1)
    winner = await _refresh(ctx, ctx.store, app, tokens["refresh_token"])()
    release_b.set()
    with pytest.raises(InvalidGrantError):
        await b
    await _assert_reuse_was_handled(ctx, app, tokens["refresh_token"], winner, reuses_before)


async def test_a_feed_page_and_its_cursor_come_from_one_snapshot(
    ctx: Context,
    second_store: AnyStore,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another worker commits a revocation after the feed read its rows and before it
    read the cursor: the entry must be on this page or after its ``next``."""
    _, first = await _session(ctx, make_client, make_user, login)
    _, second = await _session(ctx, make_client, make_user, login)
    await sessions.deny_access_token(
        second_store,
        ctx.settings,
        ctx.clock,
        jwt.decode(first["access_token"], options={"verify_signature": False}),
        actor="test",
    )
    late = jwt.decode(second["access_token"], options={"verify_signature": False})
    injected = False

    async def commit_late_revocation() -> None:
        nonlocal injected
        if injected:
            return
        injected = True
        await sessions.deny_access_token(second_store, ctx.settings, ctx.clock, late, actor="test")

    # The point between "rows read" and "cursor read" is inside the store: hook the
    # statement that reads the page's rows.
    import aiosqlite

    real_sqlite = aiosqlite.Connection.execute

    def sqlite_execute(self: Any, sql: str, *args: Any) -> Any:
        cursor = real_sqlite(self, sql, *args)
        if "FROM revocation_events" not in sql or "seq >" not in sql or injected:
            return cursor

        class After:
            async def __aenter__(self) -> Any:
                cur = await cursor.__aenter__()
                rows = await cur.fetchall()
                await commit_late_revocation()

                class Rows:
                    async def fetchall(self) -> list[Any]:
                        return list(rows)

                return Rows()

            async def __aexit__(self, *exc: Any) -> None:
                await cursor.__aexit__(*exc)

            def __await__(self) -> Any:
                return cursor.__await__()

        return After()

    real_pg = asyncpg.connection.Connection.fetch

    async def pg_fetch(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        rows = await real_pg(self, query, *args, **kwargs)
        if "FROM revocation_events" in query and "seq >" in query:
            await commit_late_revocation()
        return rows

    monkeypatch.setattr(aiosqlite.Connection, "execute", sqlite_execute)
    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", pg_fetch)
    page = await revocation_feed(ctx.store, ctx.clock, None)
    monkeypatch.undo()
    assert injected
    seen = {item.get("jti") for item in page.items}
    if late["jti"] not in seen:
        after = await revocation_feed(ctx.store, ctx.clock, page.next)
        seen |= {item.get("jti") for item in after.items}
    assert late["jti"] in seen, "the feed's cursor skipped an entry"


@pytest.mark.parametrize("racer", ["revoke", "reuse"])
async def test_logout_of_two_sessions_racing_a_revocation_of_the_second_does_not_deadlock(
    ctx: Context,
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    racer: str,
) -> None:
    """PostgreSQL. A logout names a second session (families 1 and 2) while ``/revoke``
    of session 2, or a reuse detection in it, runs. The test holds family 1's row, then
    the revocation lock, so the logout queues for that lock first and the racer
    behind it; then the test lets go."""
    if ctx.store.dialect != "postgres":
        pytest.skip("SQLite serializes every writer on its one write lock")
    app = await make_client(first_party=True)
    user = await make_user()
    first = await login(app, user)
    second = await login(app, user)
    # The logout revokes its families in sorted order; make the second family sort last.
    fam_1 = (await _family(ctx, first["refresh_token"])).family_id
    fam_2 = (await _family(ctx, second["refresh_token"])).family_id
    if fam_2 < fam_1:
        first, second = second, first
        fam_1, fam_2 = fam_2, fam_1
    if racer == "reuse":
        assert (await refresh(app, second["refresh_token"])).status == 200  # now spent

    row_holder = await asyncpg.connect(ctx.settings.database_url)
    lock_holder = await asyncpg.connect(ctx.settings.database_url)
    try:
        # 1. The test holds the first family's row: the logout waits for it.
        holding_row = row_holder.transaction()
        await holding_row.start()
        await row_holder.execute(
            "SELECT 1 FROM refresh_families WHERE family_id = $1 FOR UPDATE", fam_1
        )
        logout = asyncio.create_task(
            client.post(
                "/logout",
                data={"refresh_token": second["refresh_token"]},
                headers={"Authorization": f"Bearer {first['access_token']}"},
            )
        )
        await wait_for_lock_waiters(ctx, 1)
        # 2. The test takes the revocation lock and lets the row go: the logout now holds
        #    what it locks before the revocation lock, and queues for that lock first.
        await lock_holder.execute("SELECT pg_advisory_lock($1)", PG_REVOCATION_LOCK)
        await holding_row.rollback()
        await wait_for_lock_waiters(ctx, 1, "advisory")

        # 3. /revoke of the second session queues behind it, on whatever it locks first.
        async def race() -> Any:
            if racer == "revoke":
                data = {"token": second["refresh_token"]}
                return await client.post("/revoke", data=data, headers=app.basic())
            return await refresh(app, second["refresh_token"])

        revoke = asyncio.create_task(race())
        await wait_for_lock_waiters(ctx, 2)
        await lock_holder.execute("SELECT pg_advisory_unlock($1)", PG_REVOCATION_LOCK)
        logout_resp, revoke_resp = await asyncio.gather(logout, revoke)
    finally:
        await row_holder.close()
        await lock_holder.close()
    assert logout_resp.status == 204, await logout_resp.text()
    assert revoke_resp.status == (200 if racer == "revoke" else 400), await revoke_resp.text()
    for tokens in (first, second):
        assert (await _family(ctx, tokens["refresh_token"])).revoked_at is not None
