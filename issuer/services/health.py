"""Readiness: what this worker needs to answer requests."""

from __future__ import annotations

import asyncio

from issuer.clock import Clock
from issuer.errors import IssuerError
from issuer.keyring import Keyring
from issuer.store.base import Store

READY_TIMEOUT = 2.0


async def unready_parts(store: Store, keyring: Keyring, clock: Clock) -> list[str]:
    """What is not ready (``database``, ``signing_key``); empty when all is."""
    failed = []
    try:
        # Less than the whole bound, so the answer itself goes out within it.
        await asyncio.wait_for(store.ping(), READY_TIMEOUT * 0.875)
    except Exception:
        failed.append("database")
    try:
        keyring.signer(clock.now())
    except IssuerError:
        failed.append("signing_key")
    return failed
