"""The asyncpg pool as the PostgreSQL store uses it: every wait bounded, every fault translated.

asyncpg on its own waits for a pooled connection without a bound, gives each
statement its ``command_timeout`` (30 s), and after a timeout or a cancellation
waits again (unbounded on release) for the server to acknowledge a cancel that a
stalled network never delivers. Here:

- acquiring a connection (opening one included) is bounded by
  ``ISSUER_DB_ACQUIRE_TIMEOUT``, each statement by ``ISSUER_DB_STATEMENT_TIMEOUT``;
- a connection that fails, times out or is abandoned mid-statement is terminated
  at once, never rolled back or reset over a dead link: the server rolls an open
  transaction back when the socket closes, and the pool opens a fresh connection
  on the next acquire, so service resumes as soon as the database answers again;
- connection faults become :class:`DatabaseUnavailableError` (``503``, one WARNING
  per interval), and values PostgreSQL cannot store (a NUL, a lone surrogate, an
  out-of-range number) become :class:`InvalidRequestError` (``400``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from issuer import logs
from issuer.errors import DatabaseUnavailableError, InvalidRequestError

# SQLSTATE classes 08 (connection), 53 (insufficient resources: too many
# connections), 57 (operator intervention: shutdown, query cancelled).
_SERVER_FAULTS = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
)


def _closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True  # a lost connection is handed back to the pool by asyncpg itself


def _terminate(conn: Any) -> None:
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


def is_fault(exc: BaseException, conn: Any = None) -> bool:
    """Is ``exc`` the database's or the network's failing, rather than this request's?"""
    if isinstance(exc, (OSError, TimeoutError, *_SERVER_FAULTS)):
        return True
    # "connection is closed" and the like, once the link is gone.
    return isinstance(exc, asyncpg.InterfaceError) and conn is not None and _closed(conn)


def translate(exc: BaseException, conn: Any = None) -> Exception | None:
    """The error to raise instead of the driver's ``exc``, or None to let it through."""
    if is_fault(exc, conn):
        logs.overload(
            "database_unavailable",
            "database unavailable (%s): answering 503 temporarily_unavailable",
            type(exc).__name__,
        )
        return DatabaseUnavailableError()
    if isinstance(exc, asyncpg.DataError | UnicodeEncodeError):
        # A NUL or a lone surrogate that got past the request parsers, or a number out
        # of the column's range: the client's value, not the server's failing.
        return InvalidRequestError("a value in the request cannot be stored")
    return None


@contextlib.contextmanager
def translated(conn: Any = None) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        better = translate(exc, conn)
        if better is None:
            raise
        raise better from None


class BoundedPool:
    """An asyncpg pool with bounded waits; the calls the store makes, by the same names."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float) -> None:
        self.raw = pool
        self.acquire_timeout = acquire_timeout

    @classmethod
    async def create(
        cls,
        dsn: str,
        *,
        max_size: int,
        acquire_timeout: float,
        statement_timeout: float,
        reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> BoundedPool:
        # No connection floor: asyncpg would keep it up from a background task that logs
        # a traceback at every retry while the database is down. Connections are opened
        # on demand instead, and one now, so that a wrong URL stops start-up at once.
        pool = await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=max_size,
            command_timeout=statement_timeout,
            timeout=acquire_timeout,  # opening a connection
            reset=reset,
        )
        try:
            async with pool.acquire(timeout=acquire_timeout):
                pass
        except BaseException:
            pool.terminate()
            raise
        return cls(pool, acquire_timeout=acquire_timeout)

    async def close(self) -> None:
        await self.raw.close()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        with translated():
            conn = await self.raw.acquire(timeout=self.acquire_timeout)
        try:
            yield conn
        except BaseException as exc:
            # Cancelled mid-statement (a readiness probe's deadline, a client gone) or
            # failed on the link: the statement's fate is unknown, and waiting for the
            # server to acknowledge a cancel is unbounded when the network stalls.
            if isinstance(exc, asyncio.CancelledError) or is_fault(exc, conn):
                _terminate(conn)
            better = translate(exc, conn) if isinstance(exc, Exception) else None
            if better is None:
                raise
            raise better from None
        finally:
            # Release resets the connection; when that fails asyncpg terminates it, and
            # the work done above (perhaps a commit) must not be reported as failed.
            with contextlib.suppress(Exception):
                await self.raw.release(conn)

    @asynccontextmanager
    async def transaction(self, *, isolation: str | None = None) -> AsyncIterator[Any]:
        """A connection inside a transaction: committed on success, else rolled back."""
        async with self.acquire() as conn:
            tx = conn.transaction(isolation=isolation)
            await tx.start()
            try:
                yield conn
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError) or is_fault(exc, conn):
                    # No ROLLBACK over a dead or stalled link: closing the socket makes
                    # the server roll back.
                    _terminate(conn)
                elif not _closed(conn):
                    await tx.rollback()
                raise
            else:
                await tx.commit()

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return str(await conn.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)
