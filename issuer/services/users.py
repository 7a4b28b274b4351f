"""Users (resource owners, RFC 6749 §1.1): create, change, look up, cut off.

A username is compared case-insensitively after Unicode NFKC (the UsernameCaseMapped
idea of RFC 8265 §3.3), through a normalized ``username_key`` that carries the
unique index; the name as typed is kept for display. Ids are random and stable,
and are the ``sub`` of the user's tokens, so renaming never changes a subject.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime
from typing import Any

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import InvalidRequestError, NotFoundError
from issuer.services.passwords import check_new_password, hash_password
from issuer.services.sessions import cut_off_subject
from issuer.store.base import AuditEvent, Store, UserRecord

MAX_USERNAME = 200
# Matched whole (fullmatch): with re.match and "$", "issuer:admin\n" would pass, and
# stored space-joined and split back it would silently become "issuer:admin".
ROLE_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
_ROLE = re.compile(ROLE_PATTERN)


def user_store(store: Store) -> Store:
    """The store itself: :class:`Store` now types every method (kept for callers)."""
    return store


def username_key(username: str) -> str:
    # casefold() can undo NFKC for a few characters, so normalize on both sides.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def clean_username(username: str) -> str:
    name = unicodedata.normalize("NFKC", username).strip()
    if not name or len(name) > MAX_USERNAME:
        raise InvalidRequestError(f"a username is 1 to {MAX_USERNAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidRequestError("a username must not contain control characters")
    return name


def clean_roles(roles: Any) -> tuple[str, ...]:
    if not isinstance(roles, list | tuple) or not all(isinstance(r, str) for r in roles):
        raise InvalidRequestError("roles must be a list of strings")
    out: list[str] = []
    for role in roles:
        if not _ROLE.fullmatch(role):
            raise InvalidRequestError(f"invalid role name {role[:64]!r} (letters, digits, _.:-)")
        if role not in out:
            out.append(role)
    return tuple(out)


def user_json(user: UserRecord) -> dict[str, Any]:
    """What operators see: never the password hash."""

    def iso(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    return {
        "id": user.user_id,
        "username": user.username,
        "roles": list(user.roles),
        "disabled": user.disabled,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
    }


async def create_user(
    store: Store,
    clock: Clock,
    *,
    username: str,
    password: str,
    roles: Any = (),
    actor: str,
) -> UserRecord:
    name = clean_username(username)
    role_list = clean_roles(list(roles))
    check_new_password(password)
    now = clock.now()
    user = UserRecord(
        user_id=secrets.token_urlsafe(16),
        username=name,
        username_key=username_key(name),
        password_hash=await hash_password(password),
        roles=role_list,
        disabled=False,
        created_at=now,
        updated_at=now,
    )
    async with store.transaction() as tx:
        await tx.create_user(user)
        await tx.add_audit(
            AuditEvent(
                now, actor, "user.create", user.user_id, {"username": name, "roles": role_list}
            )
        )
    return user


async def find_user(
    store: Store, *, user_id: str | None = None, name: str | None = None
) -> UserRecord:
    user = None
    if user_id is not None:
        user = await store.get_user(user_id)
    elif name is not None:
        user = await store.get_user_by_key(username_key(name))
    if user is None:
        raise NotFoundError("no such user")
    return user


async def update_user(
    store: Store,
    clock: Clock,
    settings: Settings,
    user_id: str,
    *,
    roles: Any = None,
    disabled: bool | None = None,
    password: str | None = None,
    actor: str,
) -> UserRecord:
    role_list = None if roles is None else clean_roles(roles)
    new_hash = None
    if password is not None:
        check_new_password(password)
        new_hash = await hash_password(password)
    detail: dict[str, Any] = {}
    if role_list is not None:
        detail["roles"] = list(role_list)
    if disabled is not None:
        detail["disabled"] = disabled
    if password is not None:
        detail["password_changed"] = True
    async with store.transaction() as tx:
        now = clock.now()
        user = await tx.update_user(
            user_id, now, roles=role_list, disabled=disabled, password_hash=new_hash
        )
        if user is None:
            raise NotFoundError("no such user")
        await tx.add_audit(AuditEvent(now, actor, "user.update", user_id, detail))
        if disabled:
            # Disabling means no access from now on, not once the last token expires.
            await cut_off_subject(
                tx, settings, clock, user_id, actor=actor, action="user.revoke_tokens"
            )
    return user


async def revoke_user_tokens(
    store: Store, clock: Clock, settings: Settings, user_id: str, *, actor: str
) -> int:
    """End every session of the user and cut off every access token issued so far."""
    async with store.transaction() as tx:
        if await tx.get_user(user_id) is None:
            raise NotFoundError("no such user")
        return await cut_off_subject(
            tx, settings, clock, user_id, actor=actor, action="user.revoke_tokens"
        )


async def list_users(
    store: Store, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of users by compared username, and the cursor of the next page (None at the end)."""
    found = await store.list_users(after, limit)
    # The cursor is the last username's compared form: stable under inserts.
    nxt = found[-1].username_key if len(found) == limit else None
    return [user_json(u) for u in found], nxt
