"""``async with`` for the library's background clients (JWKS cache, revocation feed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from issuer.verifier.verifier import Verifier


class Background:
    """Runs ``start()`` on entry and ``close()`` on exit."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@asynccontextmanager
async def running(verifier: Verifier, framework: str) -> AsyncIterator[None]:
    """Start the verifier's JWKS client (and its revocation feed, if it has one) for a while.

    ``framework`` goes into the ``User-Agent`` of their requests, so operators see
    who fetches.
    """
    jwks = verifier.jwks
    revocations: object = verifier.revocations
    feed = revocations if isinstance(revocations, Background) else None
    for client in (jwks, feed):
        state = getattr(client, "cache", None) or getattr(client, "state", None)
        if state is not None and state.framework == "aiohttp":
            state.framework = framework
    await jwks.start()
    try:
        if feed is not None:
            await feed.start()
        yield
    finally:
        if feed is not None:
            await feed.close()
        await jwks.close()
