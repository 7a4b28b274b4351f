"""Bearer tokens presented to this issuer (RFC 6750): its own access tokens, verified
offline against its published keys, then against the deny list."""

from __future__ import annotations

from typing import cast

from issuer.clock import Clock
from issuer.errors import InvalidTokenError
from issuer.jose.tokens import AccessClaims
from issuer.keyring import Keyring
from issuer.services.revocation import is_revoked
from issuer.services.users import user_store
from issuer.store.base import Store
from issuer.verifier.core import verify_token
from issuer.verifier.errors import TokenError


async def verify_bearer(store: Store, keyring: Keyring, clock: Clock, token: str) -> AccessClaims:
    """The token's claims; :class:`InvalidTokenError` (401) if it is invalid or revoked."""
    try:
        claims = verify_token(
            token,
            keyring.snapshot().verification_keys,
            keyring.verification_policy(),
            clock.now().timestamp(),
        )
    except TokenError as exc:
        raise InvalidTokenError(f"the access token is invalid ({exc.reason})") from None
    if await is_revoked(user_store(store), claims):
        raise InvalidTokenError("the access token has been revoked")
    # Verified with this issuer's own keys: it made these claims (issuer.jose.tokens).
    return cast(AccessClaims, claims)
