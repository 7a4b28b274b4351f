"""Key commands: keep the schedule, rotate, revoke, re-wrap; each change audited.

The states are derived from the rows (:mod:`issuer.keyring`); these commands write
the rows, under the store's key-schedule lock, and then reload this worker's key
cache. Every audit row names the actor who caused it: the successor made because
an administrator rotated or revoked a key is that administrator's doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import DatabaseUnavailableError, NotFoundError
from issuer.jose.keys import GeneratedKey, generate_key
from issuer.kek import KeyEncryptionKeys
from issuer.keyring import Keyring, KeyState, KeyView, Plan, derive_schedule, plan_maintenance
from issuer.store.base import AuditEvent, KeyRecord, KeyScheduleTx, Store

# How long a key revocation stays on the revocation feed. A verifier holds a key at most
# its JWKS max-age plus its stale-if-error bound (an hour each by default) after it last
# fetched; a week covers any verifier that was merely slow or briefly offline.
KEY_REVOCATION_LISTED = timedelta(days=7)

log = logging.getLogger(__name__)
SCHEDULER = "scheduler"


class KeyPool:
    """Key pairs generated ahead, outside the key-schedule lock (which blocks the store)."""

    def __init__(self, alg: str, rsa_key_size: int) -> None:
        self._alg = alg
        self._rsa_key_size = rsa_key_size
        self._spare: list[GeneratedKey] = []

    async def fill(self, count: int) -> None:
        while len(self._spare) < count:
            self._spare.append(await self._generate())

    async def take(self) -> GeneratedKey:
        # Generating here happens only when another worker changed the schedule
        # between our plan and the lock.
        return self._spare.pop() if self._spare else await self._generate()

    async def _generate(self) -> GeneratedKey:
        # RSA key generation takes tens of milliseconds (seconds at 4096 bits): off the loop.
        return await asyncio.to_thread(generate_key, self._alg, self._rsa_key_size)


async def insert_key(
    tx: KeyScheduleTx,
    kek: KeyEncryptionKeys,
    key: GeneratedKey,
    activates_at: datetime,
    now: datetime,
) -> str:
    """Store ``key``, its private half wrapped under the first KEK."""
    wrapped, kek_id = kek.wrap(key.private_pem, key.kid)
    # Creation order breaks ties between keys that activate at the same instant
    # (an immediate rotation), so created_at must strictly increase.
    newest = max((r.created_at for r in await tx.list_keys()), default=None)
    if newest is not None and now <= newest:
        now = newest + timedelta(microseconds=1)
    await tx.insert_key(
        KeyRecord(
            kid=key.kid,
            alg=key.alg,
            public_jwk=key.public_jwk,
            private_wrapped=wrapped,
            kek_id=kek_id,
            created_at=now,
            activates_at=activates_at,
        )
    )
    return key.kid


class KeyService:
    """The write side of the key schedule, for one worker."""

    def __init__(
        self,
        store: Store,
        cache: Keyring,
        settings: Settings,
        kek: KeyEncryptionKeys,
        clock: Clock,
        pool: KeyPool | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._settings = settings
        self._kek = kek
        self._clock = clock
        self._pool = pool or KeyPool(settings.signing_alg, settings.rsa_key_size)

    async def list_keys(self) -> list[KeyView]:
        """Every key, newest first, as of the rows now (not the last reload)."""
        await self._cache.load()
        return list(reversed(self._cache.views()))

    async def maintain(self, *, actor: str = SCHEDULER) -> bool:
        """Create successors and destroy expired private keys as the schedule requires."""
        now = self._clock.now()
        loaded = self._cache.loaded
        plan = self._plan(self._cache.views(now) if loaded else [], now)
        if loaded and not plan:
            return False
        await self._pool.fill(len(plan.create_at))
        async with self._store.key_schedule() as tx:
            # Decide again under the lock, and at the time we got it: another worker may
            # have just made a key that activates "now" by its clock, which an earlier
            # reading of ours would see as pending (and make a second signing key).
            now = self._clock.now()
            views = derive_schedule(await tx.list_keys(), now, self._cache.retention)
            changed = await self._apply(tx, self._plan(views, now), now, actor)
        await self._cache.load()
        return changed

    async def rotate(self, *, immediate: bool, actor: str) -> KeyView:
        await self._pool.fill(1)
        async with self._store.key_schedule() as tx:
            now = self._clock.now()  # read under the lock, as in maintain()
            lead = timedelta(seconds=self._settings.key_publish_lead)
            activates_at = now if immediate else now + lead
            kid = await insert_key(tx, self._kek, await self._pool.take(), activates_at, now)
            await tx.add_audit(AuditEvent(now, actor, "key.rotate", kid, {"immediate": immediate}))
            log.warning(
                "signing key rotated",
                extra={"kid": kid, "immediate": immediate, "actor": actor},
            )
            views = derive_schedule(await tx.list_keys(), now, self._cache.retention)
            await self._apply(tx, self._plan(views, now), now, actor)
        await self._cache.load()
        return self._cache.view(kid)

    async def revoke(self, kid: str, *, actor: str) -> KeyView:
        signing = self._cache.loaded and any(
            v.kid == kid and v.state is KeyState.ACTIVE for v in self._cache.views()
        )
        await self._pool.fill(1 if signing else 0)
        async with self._store.key_schedule() as tx:
            now = self._clock.now()  # read under the lock, as in maintain()
            views = derive_schedule(await tx.list_keys(), now, self._cache.retention)
            target = next((v for v in views if v.kid == kid), None)
            if target is None:
                raise NotFoundError(f"no key with kid {kid}")
            if target.state is not KeyState.REVOKED:
                await tx.revoke_key(kid, now)
                # On the revocation feed too: verifiers that poll it refuse the key within
                # one poll interval, whatever their cached JWKS says.
                await tx.add_revocation("kid", kid, now, now + KEY_REVOCATION_LISTED)
                await tx.add_audit(
                    AuditEvent(now, actor, "key.revoke", kid, {"was": target.state.value})
                )
                log.warning(
                    "signing key revoked",
                    extra={"kid": kid, "was": target.state.value, "actor": actor},
                )
                if target.state is KeyState.ACTIVE:
                    # A fresh key signs from now on. Without it the key before the revoked
                    # one would derive as active again: a retired key must never sign again,
                    # and its private half may already be gone. The new kid in live traffic
                    # also makes verifiers refetch, which drops the revoked key at once.
                    fresh = await insert_key(tx, self._kek, await self._pool.take(), now, now)
                    await tx.add_audit(
                        AuditEvent(now, actor, "key.create", fresh, {"replaces": kid})
                    )
                views = derive_schedule(await tx.list_keys(), now, self._cache.retention)
                await self._apply(tx, self._plan(views, now), now, actor)
        await self._cache.load()
        return self._cache.view(kid)

    async def rewrap(self, *, actor: str) -> int:
        """Re-wrap every live private key under the first KEK (after rotating the KEK)."""
        count = 0
        async with self._store.key_schedule() as tx:
            now = self._clock.now()
            for record in await tx.list_keys():
                if record.private_wrapped is None or record.kek_id == self._kek.current_id:
                    continue
                pem = self._kek.unwrap(record.private_wrapped, record.kek_id, record.kid)
                wrapped, kek_id = self._kek.wrap(pem, record.kid)
                await tx.replace_wrapped_key(record.kid, wrapped, kek_id)
                count += 1
            await tx.add_audit(AuditEvent(now, actor, "key.rewrap", None, {"count": count}))
        await self._cache.load()
        return count

    def _plan(self, views: Sequence[KeyView], now: datetime) -> Plan:
        return plan_maintenance(
            views,
            now,
            timedelta(seconds=self._settings.key_rotation_interval),
            timedelta(seconds=self._settings.key_publish_lead),
        )

    async def _apply(self, tx: KeyScheduleTx, plan: Plan, now: datetime, actor: str) -> bool:
        for activates_at in plan.create_at:
            kid = await insert_key(tx, self._kek, await self._pool.take(), activates_at, now)
            detail = {"activates_at": activates_at.isoformat()}
            await tx.add_audit(AuditEvent(now, actor, "key.create", kid, detail))
            log.info("signing key created", extra={"kid": kid, **detail})
        for kid in plan.destroy:
            await tx.destroy_private_key(kid)
            await tx.add_audit(AuditEvent(now, actor, "key.destroy_private", kid))
            log.info("private key destroyed (expired or revoked)", extra={"kid": kid})
        return bool(plan)


async def run_key_schedule(
    keys: KeyService, cache: Keyring, wake: asyncio.Event, refresh_interval: float
) -> None:
    """Every worker, until cancelled: keep the schedule and reload on a timer, on
    ``wake`` (a change notification), or at the next state boundary."""
    while True:
        try:
            await keys.maintain()
            await cache.load()
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailableError:
            # Logged by the store, once per interval: the keys in memory serve on.
            pass
        except Exception:
            log.exception("key schedule maintenance failed; retrying")
        delay = refresh_interval
        until = cache.seconds_to_next_change()
        if until is not None:
            delay = min(delay, max(0.05, until))
        wake.clear()
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
        # that lands as the wake-up does (gh-86296), and the app's shutdown then hangs.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()
