"""A refresh's write on PostgreSQL (``Store.rotate_refresh``), shared by concurrent refreshes.

Every refresh that reaches the store in one turn of a worker's event loop is
rotated by one statement: one round trip, one pooled connection, one plan to
start and one commit (one WAL flush) for all of them, where each used to pay
its own. Each rotation in the statement is judged on its own rows exactly as
the one-rotation statement judges them, so sharing changes no outcome: a
rotation that one statement does not make returns None, and its caller takes
the locked path, as before.

A statement for a single rotation stays the plain one, so a quiet service runs
the same statement as ever.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from issuer.clock import Clock
from issuer.errors import DatabaseUnavailableError, InvalidRequestError
from issuer.store.base import Rotated, Rotation

if TYPE_CHECKING:
    import asyncpg

    from issuer.store.pgpool import BoundedPool

# A refresh's whole write as one statement, so one round trip and no BEGIN/COMMIT
# (Rotation, Store.rotate_refresh). The family row is locked first (lock order, step 2)
# and only if no one holds it: SKIP LOCKED leaves a busy family to the caller's
# lock_refresh path, where a request that waited reads the token afresh and the clock
# after the wait. A family revoked, or a user disabled (which revokes the user's
# families), after this statement's snapshot is seen anyway: locking a row that changed
# re-reads its newest version (READ COMMITTED), and so does the spend, so a token is
# spent once whatever ran alongside. The successor and the jti are inserted only from
# the spent row, in the same transaction.
ROTATE_REFRESH = """
WITH family AS MATERIALIZED (
    SELECT f.family_id, f.expires_at, u.user_id, u.roles
    FROM refresh_tokens t
    JOIN refresh_families f ON f.family_id = t.family_id
    JOIN users u ON u.user_id = f.user_id
    WHERE t.token_hash = $1 AND f.client_id = $2 AND f.revoked_at IS NULL
      AND f.expires_at > $3::timestamptz AND NOT u.disabled
    FOR UPDATE OF f SKIP LOCKED
), spent AS (
    UPDATE refresh_tokens t SET spent_at = $3::timestamptz FROM family
    WHERE t.token_hash = $1 AND t.family_id = family.family_id
      AND t.spent_at IS NULL AND t.idle_expires_at > $3::timestamptz
      AND ($4::text IS NULL OR string_to_array(t.scope, ' ') @> string_to_array($4, ' '))
    RETURNING t.family_id, t.generation, coalesce($4, t.scope) AS scope,
              family.expires_at, family.user_id, family.roles
), successor AS (
    INSERT INTO refresh_tokens (token_hash, family_id, generation, parent_hash, scope,
                                issued_at, idle_expires_at)
    SELECT $5, family_id, generation + 1, $1, scope, $3::timestamptz,
           least($3::timestamptz + $6::interval, expires_at)
    FROM spent
    RETURNING family_id
), access AS (
    INSERT INTO family_access_tokens (jti, family_id, exp)
    SELECT $7, family_id, $8 FROM successor
    RETURNING family_id
)
SELECT spent.family_id, spent.user_id, spent.roles, spent.scope
FROM spent JOIN access ON access.family_id = spent.family_id
"""

# The same for several rotations, one row of the arrays each ($8 is the time, read once
# for all). Every condition is the statement above's, applied per row: each presented
# token is matched only with its own client, scope and successor. The family is found
# per presented token (LATERAL, which FOR UPDATE keeps from being flattened), by the
# token's primary key as above, whatever the planner thinks of the tables' sizes. The families are
# locked together and not in family_id order, which is safe because SKIP LOCKED never
# waits: a family another transaction holds is skipped, as above. The presented tokens
# are distinct (RotationBatcher), so each spent row has exactly one successor.
ROTATE_REFRESHES = """
WITH asked AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::interval[],
                         $6::text[], $7::timestamptz[])
        AS a(token_hash, client_id, scope, new_hash, idle_ttl, jti, access_exp)
), family AS MATERIALIZED (
    SELECT a.token_hash, held.*
    FROM asked a, LATERAL (
        SELECT f.family_id, f.expires_at, u.user_id, u.roles
        FROM refresh_tokens t
        JOIN refresh_families f ON f.family_id = t.family_id
        JOIN users u ON u.user_id = f.user_id
        WHERE t.token_hash = a.token_hash AND f.client_id = a.client_id
          AND f.revoked_at IS NULL AND f.expires_at > $8::timestamptz AND NOT u.disabled
        FOR UPDATE OF f SKIP LOCKED
    ) held
), spent AS (
    UPDATE refresh_tokens t SET spent_at = $8::timestamptz
    FROM family JOIN asked a ON a.token_hash = family.token_hash
    WHERE t.token_hash = family.token_hash AND t.family_id = family.family_id
      AND t.spent_at IS NULL AND t.idle_expires_at > $8::timestamptz
      AND (a.scope IS NULL OR string_to_array(t.scope, ' ') @> string_to_array(a.scope, ' '))
    RETURNING t.token_hash, t.family_id, t.generation, coalesce(a.scope, t.scope) AS scope,
              family.expires_at, family.user_id, family.roles,
              a.new_hash, a.idle_ttl, a.jti, a.access_exp
), successor AS (
    INSERT INTO refresh_tokens (token_hash, family_id, generation, parent_hash, scope,
                                issued_at, idle_expires_at)
    SELECT new_hash, family_id, generation + 1, token_hash, scope, $8::timestamptz,
           least($8::timestamptz + idle_ttl, expires_at)
    FROM spent
    RETURNING parent_hash
), access AS (
    INSERT INTO family_access_tokens (jti, family_id, exp)
    SELECT spent.jti, spent.family_id, spent.access_exp
    FROM spent JOIN successor ON successor.parent_hash = spent.token_hash
    RETURNING jti
)
SELECT spent.token_hash, spent.family_id, spent.user_id, spent.roles, spent.scope
FROM spent JOIN access ON access.jti = spent.jti
"""


def _scope(rotation: Rotation) -> str | None:
    return None if rotation.scope is None else " ".join(rotation.scope)


def _rotated(row: asyncpg.Record) -> Rotated:
    return Rotated(
        row["family_id"],
        row["user_id"],
        tuple(row["roles"].split()),
        tuple(row["scope"].split()),
    )


_Waiting = tuple[Rotation, "asyncio.Future[Rotated | None]"]


def _fail(waiting: list[_Waiting], exc: Exception) -> None:
    for _, done in waiting:
        if not done.done():
            # A fault is every caller's 503; each gets its own exception to raise.
            done.set_exception(
                DatabaseUnavailableError()
                if len(waiting) > 1 and isinstance(exc, DatabaseUnavailableError)
                else exc
            )


class RotationBatcher:
    """Rotations asked for in one turn of the event loop, made by one statement."""

    def __init__(self, pool: BoundedPool) -> None:
        self.pool = pool
        self._waiting: dict[str, _Waiting] = {}
        self._clock: Clock | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def rotate(self, rotation: Rotation, clock: Clock) -> Rotated | None:
        if rotation.token_hash in self._waiting or (self._waiting and clock is not self._clock):
            # The same token twice at once: apart, so that one statement takes the family
            # and the other finds it held or the token spent, as across two workers.
            return await self.rotate_one(rotation, clock)
        loop = asyncio.get_running_loop()
        if not self._waiting:
            self._clock = clock
            # After the callbacks already due: the requests read in this turn join.
            loop.call_soon(self._start)
        done: asyncio.Future[Rotated | None] = loop.create_future()
        self._waiting[rotation.token_hash] = (rotation, done)
        # A caller cancelled before the statement starts is left out of it (nothing
        # spent); once it has started, the rotation completes and is not reported, as
        # a response lost on the way.
        return await done

    def _start(self) -> None:
        waiting = [w for w in self._waiting.values() if not w[1].done()]
        clock, self._waiting, self._clock = self._clock, {}, None
        if not waiting or clock is None:
            return
        task = asyncio.get_running_loop().create_task(self._run(waiting, clock))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, waiting: list[_Waiting], clock: Clock) -> None:
        try:
            if len(waiting) == 1:
                results = [await self.rotate_one(waiting[0][0], clock)]
            else:
                results = await self.rotate_many([rotation for rotation, _ in waiting], clock)
        except InvalidRequestError as exc:
            if len(waiting) == 1:
                _fail(waiting, exc)
                return
            # One rotation's value that PostgreSQL refuses fails the whole statement, which
            # therefore changed nothing: each again alone, so the error reaches its own.
            await asyncio.gather(*(self._run([w], clock) for w in waiting))
            return
        except Exception as exc:
            _fail(waiting, exc)
            return
        except asyncio.CancelledError:
            for _, done in waiting:
                done.cancel()
            raise
        for (_, done), result in zip(waiting, results, strict=True):
            if not done.done():
                done.set_result(result)

    async def rotate_one(self, rotation: Rotation, clock: Clock) -> Rotated | None:
        async with self.pool.acquire() as conn:
            # Read with the connection in hand: the statement takes the lock at once or
            # not at all, so no wait lies between this reading and the decision.
            now = clock.now()
            row = await conn.fetchrow(
                ROTATE_REFRESH,
                rotation.token_hash,
                rotation.client_id,
                now,
                _scope(rotation),
                rotation.new_hash,
                rotation.idle_ttl,
                rotation.jti,
                rotation.access_exp,
            )
        return None if row is None else _rotated(row)

    async def rotate_many(self, rotations: list[Rotation], clock: Clock) -> list[Rotated | None]:
        async with self.pool.acquire() as conn:
            now = clock.now()  # as in rotate_one
            found = await conn.fetch(
                ROTATE_REFRESHES,
                [r.token_hash for r in rotations],
                [r.client_id for r in rotations],
                [_scope(r) for r in rotations],
                [r.new_hash for r in rotations],
                [r.idle_ttl for r in rotations],
                [r.jti for r in rotations],
                [r.access_exp for r in rotations],
                now,
            )
        by_token = {row["token_hash"]: _rotated(row) for row in found}
        return [by_token.get(r.token_hash) for r in rotations]
