"""Refresh-token families (RFC 6749 §6, RFC 9700 §4.14.2): rotation, reuse detection, logout.

A login starts a family. A refresh token is 256 random bits, stored only as its
SHA-256 (a slow hash buys nothing for a secret that cannot be guessed). Each
use spends the token and issues its successor; presenting a spent token again
means two parties hold it, so the whole family is revoked and the access tokens
issued from it are deny-listed.

Grace for lost responses (``ISSUER_REFRESH_REUSE_GRACE``, default off): within
that many seconds of a token's rotation, presenting it again succeeds *if the
token it was rotated to is still unused*. That successor is then spent and a
fresh pair issued, so a family never has more than one live refresh token. A
token two generations old (its successor has been used too) never qualifies.

Every decision runs in one transaction that holds the family's row lock (the
SQLite write lock on SQLite) and reads the token and the clock only once that
lock is held: of two concurrent uses exactly one wins, and the loser finds the
token spent at or before its own ``now``, which is a reuse (or, within the
grace, a retry). Locks follow the order in :mod:`issuer.store.base`.

The common case, an unspent token of a family no other request holds, is one
write (``Store.rotate_refresh``: on PostgreSQL one statement, which takes the
family's lock without waiting or gives up); every other case, and a family
that is busy, goes the locked way above.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import Enum

from issuer import metrics
from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import InvalidGrantError, InvalidScopeError
from issuer.jose.tokens import new_jti
from issuer.keyring import Keyring
from issuer.services.grants import TokenResponse, issue_access_token, sign_access_token
from issuer.services.scopes import parse_scope
from issuer.store.base import (
    AuditEvent,
    ClientRecord,
    FamilyRecord,
    RefreshTokenRecord,
    Rotation,
    Store,
    StoreTx,
    UserRecord,
)

log = logging.getLogger(__name__)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _exp(claims: Mapping[str, object]) -> datetime:
    exp = claims["exp"]
    assert isinstance(exp, int)
    return datetime.fromtimestamp(exp, UTC)


def _idle_deadline(settings: Settings, now: datetime, family: FamilyRecord) -> datetime:
    return min(now + timedelta(seconds=settings.refresh_idle_ttl), family.expires_at)


def _user_token(
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    user: UserRecord,
    client: ClientRecord,
    scope: tuple[str, ...],
) -> TokenResponse:
    """An access token for the user, issued to the client: sub is the user's id."""
    return issue_access_token(
        keyring,
        settings,
        clock,
        subject=user.user_id,
        client_id=client.client_id,
        scope=scope,
        roles=user.roles,
    )


async def start_session(
    tx: StoreTx,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    user: UserRecord,
    client: ClientRecord,
    scope: tuple[str, ...],
) -> TokenResponse:
    """A first access token and refresh token, in a new family (inside the caller's
    unit of work, so the login's other rows commit with it)."""
    now = clock.now()
    access = _user_token(keyring, settings, clock, user, client, scope)
    family = FamilyRecord(
        family_id=secrets.token_urlsafe(16),
        user_id=user.user_id,
        client_id=client.client_id,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl),
    )
    token = new_refresh_token()
    await tx.insert_family(family)
    await tx.insert_refresh(
        RefreshTokenRecord(
            token_hash=hash_refresh_token(token),
            family_id=family.family_id,
            generation=0,
            parent_hash=None,
            scope=scope,
            issued_at=now,
            idle_expires_at=_idle_deadline(settings, now, family),
        )
    )
    await tx.record_access_token(str(access.claims["jti"]), family.family_id, _exp(access.claims))
    return replace(access, refresh_token=token)


def narrow_scope(requested: str | None, granted: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 6749 §6: a refresh may ask for less than the presented token had, never more."""
    if requested is None:
        return granted
    asked = parse_scope(requested)
    if any(s not in granted for s in asked):
        raise InvalidScopeError("a refresh cannot widen the scope")
    return asked


class Outcome(Enum):
    ROTATED = "rotated"
    GRACE = "grace"
    INVALID = "invalid"
    REUSED = "reused"


def family_usable(family: FamilyRecord, now: datetime) -> bool:
    return family.revoked_at is None and now < family.expires_at


async def refresh(
    store: Store,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    client: ClientRecord,
    presented: str,
    requested_scope: str | None,
) -> TokenResponse:
    """``grant_type=refresh_token``: spend the presented token, return a fresh pair."""
    token_hash = hash_refresh_token(presented)
    new = new_refresh_token()
    rotated = await _rotate_at_once(
        store, keyring, settings, clock, client, token_hash, new, requested_scope
    )
    if rotated is not None:
        return replace(rotated, refresh_token=new)
    found = await store.find_refresh_grant(token_hash)
    # RFC 6749 §6: the token must be presented by the client it was issued to; a
    # stranger's attempt spends nothing (it would only lock the owner out).
    if found is None or found[1].client_id != client.client_id:
        raise InvalidGrantError("the refresh token is invalid, expired or revoked")
    old, family, user = found
    if user.disabled:
        raise InvalidGrantError("the refresh token is invalid, expired or revoked")
    scope = narrow_scope(requested_scope, old.scope)
    # Signed before the transaction, so its jti is recorded in the family atomically
    # with the rotation (a reuse revocation can then never miss it).
    access = _user_token(keyring, settings, clock, user, client, scope)
    async with store.transaction() as tx:
        outcome, now = await _rotate(
            tx, settings, clock, token_hash, hash_refresh_token(new), scope
        )
        if outcome in (Outcome.ROTATED, Outcome.GRACE):
            await tx.record_access_token(
                str(access.claims["jti"]), family.family_id, _exp(access.claims)
            )
        elif outcome is Outcome.REUSED:
            await tx.add_audit(
                AuditEvent(
                    now,
                    f"client:{client.client_id}",
                    "refresh.reuse",
                    user.user_id,
                    {"family": family.family_id, "generation": old.generation},
                )
            )
    if outcome is Outcome.REUSED:
        metrics.refresh_reuse_detected()
        log.warning(
            "refresh token reuse detected: the session is revoked",
            extra={"family": family.family_id, "client_id": client.client_id},
        )
    if outcome not in (Outcome.ROTATED, Outcome.GRACE):
        raise InvalidGrantError("the refresh token is invalid, expired or revoked")
    return replace(access, refresh_token=new)


async def _rotate_at_once(
    store: Store,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    client: ClientRecord,
    token_hash: str,
    new: str,
    requested_scope: str | None,
) -> TokenResponse | None:
    """The common case in one write: an unspent token of a usable family that no other
    request holds (``Store.rotate_refresh`` checks all of it under the family's lock).
    None: nothing was spent, and the locked path decides (a spent token, a busy or
    ended family, a stranger's token, a scope the token does not have)."""
    try:
        asked = None if requested_scope is None else parse_scope(requested_scope)
    except InvalidScopeError:
        return None  # refused on the locked path, after the token is checked, as ever
    now = clock.now()
    exp = datetime.fromtimestamp(int(now.timestamp()) + settings.access_token_ttl, UTC)
    # The key, the jti and the expiry are chosen before the write, which records the jti
    # in the family with the spend (a reuse revocation then deny-lists this token); with
    # no key to sign with, nothing is spent.
    signer = keyring.signer(now)
    jti = new_jti()
    rotated = await store.rotate_refresh(
        Rotation(
            token_hash=token_hash,
            new_hash=hash_refresh_token(new),
            client_id=client.client_id,
            scope=asked,
            idle_ttl=timedelta(seconds=settings.refresh_idle_ttl),
            jti=jti,
            access_exp=exp,  # the claim's: whole seconds
        ),
        clock,
    )
    if rotated is None:
        return None
    return sign_access_token(
        signer,
        settings,
        now,
        subject=rotated.user_id,
        client_id=client.client_id,
        scope=rotated.scope,
        roles=rotated.roles,
        jti=jti,
    )


async def _rotate(
    tx: StoreTx,
    settings: Settings,
    clock: Clock,
    token_hash: str,
    new_hash: str,
    scope: tuple[str, ...],
) -> tuple[Outcome, datetime]:
    found = await tx.lock_refresh(token_hash)  # the family stays locked from here on
    # Read after the lock: a request that waited must not judge the winner's spend
    # by a time from before the wait (that would look like a retry within the grace).
    now = clock.now()
    if found is None:
        return Outcome.INVALID, now
    old, family = found
    user = await tx.get_user(family.user_id)
    if not family_usable(family, now) or user is None or user.disabled:
        return Outcome.INVALID, now
    if old.spent_at is None:
        if now >= old.idle_expires_at or not await tx.spend_refresh(token_hash, now):
            return Outcome.INVALID, now
        generation, outcome = old.generation + 1, Outcome.ROTATED
    else:
        grace = timedelta(seconds=settings.refresh_reuse_grace)
        child = None
        if now < old.spent_at + grace:
            child = await tx.spend_child_of(family.family_id, token_hash, now)
        if child is None:
            await tx.revoke_family(family.family_id, now, settings.clock_leeway)
            return Outcome.REUSED, now
        generation, outcome = child.generation + 1, Outcome.GRACE
    await tx.insert_refresh(
        RefreshTokenRecord(
            token_hash=new_hash,
            family_id=family.family_id,
            generation=generation,
            parent_hash=token_hash,
            scope=scope,
            issued_at=now,
            idle_expires_at=_idle_deadline(settings, now, family),
        )
    )
    return outcome, now


async def _revoke_families(
    tx: StoreTx, settings: Settings, now: datetime, family_ids: set[str], *, actor: str
) -> None:
    # Sorted, like every multi-family lock (see the lock order in issuer.store.base).
    for family_id in sorted(family_ids):
        if await tx.revoke_family(family_id, now, settings.clock_leeway):
            await tx.add_audit(
                AuditEvent(now, actor, "session.revoke", None, {"family": family_id})
            )


async def revoke_refresh_family(
    store: Store, settings: Settings, clock: Clock, family_ids: set[str], *, actor: str
) -> None:
    """Revoke families (logout, RFC 7009) and deny-list the access tokens issued from them."""
    async with store.transaction() as tx:
        await tx.lock_families(family_ids)
        await _revoke_families(tx, settings, clock.now(), family_ids, actor=actor)


async def _deny(
    tx: StoreTx, settings: Settings, now: datetime, claims: Mapping[str, object], *, actor: str
) -> None:
    exp = _exp(claims)
    jti = str(claims["jti"])
    await tx.add_revocation("jti", jti, exp, exp + timedelta(seconds=settings.clock_leeway))
    await tx.add_audit(AuditEvent(now, actor, "token.revoke", str(claims.get("sub")), {"jti": jti}))


async def deny_access_token(
    store: Store, settings: Settings, clock: Clock, claims: Mapping[str, object], *, actor: str
) -> None:
    """Deny-list one verified access token by its jti until it expires (plus leeway)."""
    async with store.transaction() as tx:
        await _deny(tx, settings, clock.now(), claims, actor=actor)


async def logout(
    store: Store,
    settings: Settings,
    clock: Clock,
    claims: Mapping[str, object],
    refresh_token: str | None,
) -> None:
    """End the caller's session in one unit of work: deny-list the bearer token, revoke
    its refresh family and, if the caller names one, the family of another of its own
    sessions (a stranger's refresh token is ignored)."""
    actor = f"user:{claims.get('sub')}"
    async with store.transaction() as tx:
        families = set()
        family = await tx.family_of_access_token(str(claims.get("jti")))
        if family is not None:
            families.add(family)
        if refresh_token is not None:
            found = await tx.find_refresh(hash_refresh_token(refresh_token))
            if (
                found is not None
                and found[1].user_id == claims.get("sub")
                and found[1].client_id == claims.get("client_id")
            ):
                families.add(found[1].family_id)
        # Every family row first, then the feed (lock order): a /revoke or a reuse
        # detection on one of them waits for this logout instead of deadlocking it.
        await tx.lock_families(families)
        now = clock.now()
        await _revoke_families(tx, settings, now, families, actor=actor)
        await _deny(tx, settings, now, claims, actor=actor)


async def cut_off_subject(
    tx: StoreTx, settings: Settings, clock: Clock, subject: str, *, actor: str, action: str
) -> int:
    """End the subject's sessions and revoke every access token issued to it up to now,
    inside the caller's unit of work.

    The ``sub`` entry reaches offline verifiers through the revocation feed. A token is
    cut off when its ``iat`` is at or before ``revoked_before`` (whole seconds, as iat
    is), so every token issued up to now, even earlier in this second, is covered.
    """
    families = await tx.revoke_user_families(subject, clock.now())
    now = clock.now()
    revoked_before = datetime.fromtimestamp(int(now.timestamp()), UTC)
    keep = timedelta(seconds=settings.access_token_ttl + settings.clock_leeway)
    await tx.add_revocation("sub", subject, revoked_before, revoked_before + keep)
    await tx.add_audit(AuditEvent(now, actor, action, subject, {"families": families}))
    return families
