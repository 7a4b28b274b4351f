"""Token revocation (RFC 7009), introspection (RFC 7662) and the revocation feed.

Access tokens are checked through the one verification path the resource
services use (:func:`issuer.verifier.core.verify_token` with this issuer's own
published keys), then against the deny list, which is keyed on ``jti``: one
token has several valid spellings, so a hash of its text would be no key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import InvalidRequestError, UnauthorizedClientError
from issuer.keyring import Keyring
from issuer.services.sessions import (
    deny_access_token,
    family_usable,
    hash_refresh_token,
    revoke_refresh_family,
)
from issuer.store.base import ClientRecord, Store
from issuer.verifier.core import verify_token
from issuer.verifier.errors import TokenError

FEED_PAGE = 1000
REFRESH_TOKEN = "refresh_token"  # noqa: S105 - the token_type we report, not a secret


def verify_access_token(keyring: Keyring, clock: Clock, token: str) -> dict[str, Any] | None:
    """The claims of an access token this issuer signed and that has not expired, else None."""
    try:
        return verify_token(
            token,
            keyring.snapshot().verification_keys,
            keyring.verification_policy(),
            clock.now().timestamp(),
        )
    except TokenError:
        return None


async def is_revoked(store: Store, claims: Mapping[str, Any]) -> bool:
    iat = claims.get("iat")
    return await store.is_revoked(
        str(claims.get("jti")),
        str(claims.get("sub")),
        float(iat) if isinstance(iat, int | float) else 0.0,
    )


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


async def revoke(
    store: Store,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    client: ClientRecord,
    token: str,
) -> None:
    """RFC 7009 §2.1: unknown, expired or already revoked tokens are not an error."""
    actor = f"client:{client.client_id}"
    # §2.1: a wrong hint must not stop the search. Our refresh tokens are base64url
    # without dots and our access tokens are JWS, so the token's shape decides and the
    # hint is not needed at all.
    if _looks_like_jwt(token):
        claims = verify_access_token(keyring, clock, token)
        if claims is not None:
            if claims.get("client_id") != client.client_id:
                # §2.1: the server checks the token was issued to the requesting client.
                raise UnauthorizedClientError("this token was issued to another client")
            await deny_access_token(store, settings, clock, claims, actor=actor)
        return
    found = await store.find_refresh(hash_refresh_token(token))
    if found is None:
        return
    _, family = found
    if family.client_id != client.client_id:
        raise UnauthorizedClientError("this token was issued to another client")
    await revoke_refresh_family(store, settings, clock, {family.family_id}, actor=actor)


async def introspect(
    store: Store,
    keyring: Keyring,
    clock: Clock,
    *,
    client: ClientRecord,
    token: str,
) -> dict[str, Any]:
    """RFC 7662 §2.2: ``{"active": false}`` for anything not usable right now."""
    inactive: dict[str, Any] = {"active": False}
    if _looks_like_jwt(token):
        claims = verify_access_token(keyring, clock, token)
        if claims is None or await is_revoked(store, claims):
            return inactive
        return {**claims, "active": True, "token_type": "Bearer"}
    found = await store.find_refresh(hash_refresh_token(token))
    if found is None:
        return inactive
    rt, family = found
    now = clock.now()
    # A refresh token is only described to the client it was issued to.
    if (
        family.client_id != client.client_id
        or rt.spent_at is not None
        or now >= rt.idle_expires_at
        or not family_usable(family, now)
    ):
        return inactive
    user = await store.get_user(family.user_id)
    if user is None or user.disabled:
        return inactive
    return {
        "active": True,
        "token_type": REFRESH_TOKEN,
        "client_id": family.client_id,
        "sub": family.user_id,
        "scope": " ".join(rt.scope),
        "iat": int(rt.issued_at.timestamp()),
        "exp": int(min(rt.idle_expires_at, family.expires_at).timestamp()),
    }


@dataclass(frozen=True, slots=True)
class FeedPage:
    items: list[dict[str, Any]]
    next: str


def parse_cursor(after: str | None) -> int:
    # An empty after (`?after=$NEXT` before the first poll) means from the beginning.
    if not after:
        return 0
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise InvalidRequestError("after must be a cursor returned as next by this endpoint")
    return int(after)


async def revocation_feed(store: Store, clock: Clock, after: str | None) -> FeedPage:
    """Live deny-list entries and user cut-offs after the cursor, oldest first."""
    cursor = parse_cursor(after)
    entries, top = await store.list_revocations(cursor, clock.now(), FEED_PAGE)
    items: list[dict[str, Any]] = []
    for e in entries:
        at = int(e.at.timestamp())
        if e.kind == "jti":
            items.append({"jti": e.subject, "exp": at})
        elif e.kind == "kid":
            items.append({"kid": e.subject, "revoked_at": at})
        else:
            items.append({"sub": e.subject, "revoked_before": at})
    # A full page continues after its last item; otherwise skip past expired entries too.
    last = entries[-1].seq if len(entries) == FEED_PAGE else max(top, cursor)
    return FeedPage(items, str(last))
