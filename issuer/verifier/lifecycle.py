"""``async with`` for the library's background clients (JWKS cache, revocation feed)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
