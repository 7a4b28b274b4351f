"""JWKS parsing (RFC 7517 §5): public keys by kid, parsed once into ``cryptography`` objects.

Only signature keys of a supported type are kept (RSA >= 2048 bits, P-256,
Ed25519); private members in an entry are dropped, never used; an entry that
cannot be used is skipped so the others still serve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SUPPORTED_ALGS = frozenset({"RS256", "PS256", "ES256", "EdDSA"})
_KTY_FOR_ALG = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
PublicKeyObject = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key from a JWKS, parsed once."""

    kid: str
    kty: str
    alg: str | None
    key: PublicKeyObject

    def fits(self, alg: str) -> bool:
        if _KTY_FOR_ALG.get(alg) != self.kty:
            return False
        # A JWK that names its alg may only be used with that alg (RFC 7517 §4.4).
        return self.alg is None or self.alg == alg


def load_jwks(document: bytes | str | Mapping[str, Any]) -> dict[str, VerificationKey]:
    """Parse a JWKS into key objects by kid. Keys we cannot use are skipped, not fatal."""
    from jwcrypto import jwk  # imported here: only JWKS refreshes pay for it

    doc = json.loads(document) if isinstance(document, bytes | str) else document
    entries = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("JWKS has no keys array")
    keys: dict[str, VerificationKey] = {}
    for entry in entries:
        key = _load_key(jwk, entry)
        if key is not None and key.kid not in keys:
            keys[key.kid] = key
    return keys


def _load_key(jwk_module: Any, entry: Any) -> VerificationKey | None:
    if not isinstance(entry, Mapping):
        return None
    kid, kty = entry.get("kid"), entry.get("kty")
    if not isinstance(kid, str) or not kid or kty not in ("RSA", "EC", "OKP"):
        return None
    if entry.get("use", "sig") != "sig":
        return None
    alg = entry.get("alg")
    if alg is not None and alg not in SUPPORTED_ALGS:
        return None
    try:
        # Public members only: a JWKS entry that carries private members is still
        # used only for its public half.
        public = {k: v for k, v in entry.items() if k not in _PRIVATE_MEMBERS}
        obj = jwk_module.JWK(**public).get_op_key("verify")
    except Exception:  # a bad entry is skipped, the rest still serve
        return None
    if not isinstance(obj, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return None
    if isinstance(obj, ec.EllipticCurvePublicKey) and not isinstance(obj.curve, ec.SECP256R1):
        return None
    if isinstance(obj, rsa.RSAPublicKey) and obj.key_size < 2048:
        return None
    return VerificationKey(kid=kid, kty=kty, alg=alg, key=obj)
