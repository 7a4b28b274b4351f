"""The resource owner password credentials grant (RFC 6749 §4.3), for first-party clients only.

RFC 9700 §2.4 says this grant MUST NOT be used; its reasons are about handing a
user's password to a *third-party* client. Here only clients the operator marks
``first_party`` (the service's own login screens and apps) may use it, which is
the job this issuer exists for; every other client gets ``unauthorized_client``.

Unknown user, wrong password and disabled user answer the same ``invalid_grant``
after the same work (an unknown user is checked against a dummy hash), so
neither the body nor the time tells them apart; throttling (``throttle.py``)
answers them alike too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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
from issuer.services import throttle
from issuer.services.grants import TokenResponse
from issuer.services.passwords import check_length, hash_password, verify_password
from issuer.services.scopes import grant_scope
from issuer.services.sessions import start_session
from issuer.services.users import MAX_USERNAME, username_key
from issuer.store.base import AuditEvent, ClientRecord, Store, StoreTx, UserRecord

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
    scope = grant_scope(requested_scope, client.scopes)
    actor = f"client:{client.client_id}"
    checked = await check_password(
        store,
        keyring,
        settings,
        clock,
        username=username,
        password=password,
        address=address,
        actor=actor,
    )
    user = checked.user
    # The bookkeeping of a login commits together: counters, rehash, session, audit.
    async with store.transaction() as tx:
        admitted = await confirm_login(tx, settings, clock, checked)
        if admitted:
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
    if not admitted:
        # Failures recorded while this password was checked put it past a limit.
        raise TooManyRequestsError(checked.keys.retry_after)
    if checked.new_hash is not None:
        log.info("rehashed the password of user %s with current parameters", user.user_id)
    return tokens


@dataclass(frozen=True, slots=True)
class CheckedPassword:
    """A right password: the user, and what :func:`confirm_login` must commit."""

    user: UserRecord
    keys: throttle.LoginKeys
    new_hash: str | None = field(repr=False)
    actor: str
    address: str | None


async def check_password(
    store: Store,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    username: str,
    password: str,
    address: str | None,
    actor: str,
) -> CheckedPassword:
    """The user whose password this is, under the rules above (throttling, one answer and
    one cost for every failure, the audit). Shared by the password grant and the login
    page; the caller commits :func:`confirm_login` in its unit of work."""
    # Refused before any hashing: a megabyte password must not cost a megabyte of argon2.
    check_length(password)
    if len(username) > 4 * MAX_USERNAME:
        raise InvalidRequestError("the username is too long")
    key = username_key(username)
    keys = throttle.login_keys(
        keyring.derived_key(throttle.TAG_PURPOSE), key, address, clock.now(), settings.login_window
    )
    # Looked up before the throttle check so that a known and an unknown username cost
    # the same work on every path.
    user = await store.get_user_by_key(key)
    # What the audit log keeps of the typed username: the account's own name when it
    # matches one, else only its keyed tag (it may be a password typed in the wrong field).
    who: dict[str, object] = (
        {"username_tag": keys.tag} if user is None else {"username": user.username}
    )
    target = None if user is None else user.user_id
    try:
        await throttle.check(store, settings, keys)
    except TooManyRequestsError:
        await store.add_audit(
            AuditEvent(clock.now(), actor, "login.throttled", target, {**who, "address": address})
        )
        log.info("login throttled", extra={"actor": actor, "address": address})
        raise
    ok, needs_rehash = await verify_password(None if user is None else user.password_hash, password)
    if user is None or not ok or user.disabled:
        reason = "unknown_user" if user is None else "disabled" if ok else "wrong_password"
        metrics.login_failed()
        # The failure, its counters and its audit row commit together.
        async with store.transaction() as tx:
            over = await throttle.record_failure(tx, settings, keys)
            await tx.add_audit(
                AuditEvent(
                    clock.now(),
                    actor,
                    "login.throttled" if over else "login.failure",
                    target,
                    {**who, "reason": reason, "address": address},
                )
            )
        if over:
            # Failures that raced past the first check: refused like a right password
            # would be, so a burst learns nothing beyond the limit.
            raise TooManyRequestsError(keys.retry_after)
        raise InvalidGrantError(BAD_LOGIN)
    # The parameters were raised since this hash was made: upgrade it now that we hold
    # the password (argon2 check_needs_rehash). Hashed before the unit of work, which
    # must not hold SQLite's write lock through argon2.
    new_hash = await hash_password(password) if needs_rehash else None
    return CheckedPassword(user, keys, new_hash, actor, address)


async def confirm_login(
    tx: StoreTx, settings: Settings, clock: Clock, checked: CheckedPassword
) -> bool:
    """Inside the login's unit of work: admit the success (False: failures recorded while
    the password was checked put it past a limit; the refusal is audited, the caller
    answers 429 after the transaction) and store an upgraded hash."""
    user = checked.user
    if not await throttle.admit_success(tx, settings, checked.keys):
        await tx.add_audit(
            AuditEvent(
                clock.now(),
                checked.actor,
                "login.throttled",
                user.user_id,
                {"username": user.username, "address": checked.address},
            )
        )
        return False
    if checked.new_hash is not None:
        await tx.update_user(user.user_id, clock.now(), password_hash=checked.new_hash)
    return True
