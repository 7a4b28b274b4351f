"""Deleting session rows that can no longer matter, so the tables stay the size of what is live.

Safe to run in every worker and replica at once: each statement is an idempotent
DELETE of rows past a deadline that only moves forward.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import DatabaseUnavailableError
from issuer.store.base import Store
from issuer.store.login_base import browser_login_store

log = logging.getLogger(__name__)
PURGE_INTERVAL = 600.0


async def purge_expired(store: Store, settings: Settings, clock: Clock) -> int:
    # An access-token record matters until its token is past exp + leeway; a login
    # counter until its window is over. Keep both a little past the longer of the two.
    keep = timedelta(
        seconds=max(settings.access_token_ttl + settings.clock_leeway, settings.login_window)
    )
    now = clock.now()
    deleted = await store.purge_expired(now, keep)
    async with browser_login_store(store).login() as tx:
        deleted += await tx.purge_login(now, keep)
    return deleted


async def run_purger(store: Store, settings: Settings, clock: Clock) -> None:
    while True:
        # Jittered, so replicas started together do not purge in step.
        await asyncio.sleep(PURGE_INTERVAL * random.uniform(0.5, 1.5))
        try:
            deleted = await purge_expired(store, settings, clock)
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailableError:
            pass  # logged by the store, once per interval; the next round retries
        except Exception:
            log.exception("purging expired session rows failed; retrying later")
        else:
            if deleted:
                log.info("purged %d expired session row(s)", deleted)
