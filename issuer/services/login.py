"""The resource owner password credentials grant (RFC 6749 §4.3), for first-party clients only.

RFC 9700 §2.4 says this grant MUST NOT be used; its reasons are about handing a
user's password to a *third-party* client. Here only clients the operator marks
``first_party`` (the service's own login screens and apps) may use it, which is
the job this issuer exists for; every other client gets ``unauthorized_client``.

Unknown user, wrong password and disabled user answer the same ``invalid_grant``
after the same work (an unknown user is checked against a dummy hash), so
neither the body nor the time tells them apart.
"""

from __future__ import annotations

import logging

from issuer import metrics
from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import (
    InvalidGrantError,
    InvalidRequestError,
    TooManyRequestsError,
    UnauthorizedClientError,
)
from issuer.keyring import Keyring
from issuer.services.grants import TokenResponse
from issuer.services.passwords import check_length, hash_password, verify_password
from issuer.services.scopes import grant_scope
from issuer.services.sessions import start_session
from issuer.services.throttle import attempt_succeeded, begin_attempt
from issuer.services.users import MAX_USERNAME, username_key
from issuer.store.base import AuditEvent, ClientRecord, Store

log = logging.getLogger(__name__)
BAD_LOGIN = "the username or password is wrong"


async def password_grant(
    store: Store,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    client: ClientRecord,
    username: str,
    password: str,
    requested_scope: str | None,
    address: str | None,
) -> TokenResponse:
    if not client.first_party:
        raise UnauthorizedClientError("only first-party clients may use the password grant")
    # Refused before any hashing: a megabyte password must not cost a megabyte of argon2.
    check_length(password)
    if len(username) > 4 * MAX_USERNAME:
        raise InvalidRequestError("the username is too long")
    scope = grant_scope(requested_scope, client.scopes)
    key = username_key(username)
    try:
        attempt = await begin_attempt(store, clock, settings, key, address)
    except TooManyRequestsError:
        # Never the password; the username as typed, as for failures.
        await store.add_audit(
            AuditEvent(
                clock.now(),
                f"client:{client.client_id}",
                "login.throttled",
                None,
                {"username": username[:MAX_USERNAME], "address": address},
            )
        )
        log.info("login throttled", extra={"client_id": client.client_id, "address": address})
        raise
    user = await store.get_user_by_key(key)
    ok, needs_rehash = await verify_password(None if user is None else user.password_hash, password)
    actor = f"client:{client.client_id}"
    if user is None or not ok or user.disabled:
        reason = "unknown_user" if user is None else "disabled" if ok else "wrong_password"
        metrics.login_failed()
        await store.add_audit(
            AuditEvent(
                clock.now(),
                actor,
                "login.failure",
                None if user is None else user.user_id,
                {"username": username[:MAX_USERNAME], "reason": reason, "address": address},
            )
        )
        raise InvalidGrantError(BAD_LOGIN)
    # The parameters were raised since this hash was made: upgrade it now that we hold
    # the password (argon2 check_needs_rehash). Hashed before the unit of work, which
    # must not hold SQLite's write lock through argon2.
    new_hash = await hash_password(password) if needs_rehash else None
    # The bookkeeping of a login commits together: counters, rehash, session, audit.
    async with store.transaction() as tx:
        await attempt_succeeded(tx, attempt)
        if new_hash is not None:
            await tx.update_user(user.user_id, clock.now(), password_hash=new_hash)
        tokens = await start_session(
            tx, keyring, settings, clock, user=user, client=client, scope=scope
        )
        await tx.add_audit(
            AuditEvent(
                clock.now(),
                actor,
                "login.success",
                user.user_id,
                {"scope": " ".join(scope), "address": address},
            )
        )
    if new_hash is not None:
        log.info("rehashed the password of user %s with current parameters", user.user_id)
    return tokens
