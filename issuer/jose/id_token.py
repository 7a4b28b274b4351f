"""ID tokens (OpenID Connect Core §2, §3.1.3.6): claims and ``at_hash``; no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from issuer.jose.tokens import b64url

# OpenID Connect Core §3.1.3.6: the hash of the JWS alg (Ed25519 signs with SHA-512).
_HASHES = {"RS256": "sha256", "PS256": "sha256", "ES256": "sha256", "EdDSA": "sha512"}


def token_hash(token: str, alg: str) -> str:
    """``at_hash``: base64url of the left half of the hash of the token's ASCII octets."""
    digest = hashlib.new(_HASHES[alg], token.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2]).decode("ascii")


@dataclass(frozen=True, slots=True)
class IdTokenRequest:
    issuer: str
    subject: str
    client_id: str
    now: int
    ttl: int
    auth_time: int
    nonce: str | None
    access_token: str
    alg: str


def id_token_claims(req: IdTokenRequest) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": req.issuer,
        "sub": req.subject,
        "aud": req.client_id,
        "exp": req.now + req.ttl,
        "iat": req.now,
        "auth_time": req.auth_time,
        "azp": req.client_id,
        "at_hash": token_hash(req.access_token, req.alg),
    }
    if req.nonce is not None:
        claims["nonce"] = req.nonce
    return claims
