"""Signing keys: generation, RFC 7638 thumbprint ``kid``, wrapping under the KEK.

Private keys leave this module only wrapped: AES-256-GCM under a key-encryption
key, with the ``kid`` as associated data so a wrapped blob cannot be swapped
onto another key's row (NIST SP 800-38D; the nonce is random, 96 bits).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwcrypto import jwk

# RFC 7518 §3.1 / RFC 8037 §3.1: what each alg needs from a key.
_KEYGEN: dict[str, dict[str, Any]] = {
    "RS256": {"kty": "RSA"},
    "PS256": {"kty": "RSA"},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
}
PUBLIC_MEMBERS = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_WRAP_VERSION = b"\x01"


class KeyUnwrapError(Exception):
    """The wrapped private key could not be opened with any configured KEK."""


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    kid: str
    alg: str
    public_jwk: dict[str, str]
    private_pem: bytes

    def __repr__(self) -> str:
        return f"GeneratedKey(kid={self.kid!r}, alg={self.alg!r})"


def generate_key(alg: str, rsa_key_size: int = 2048) -> GeneratedKey:
    """A fresh key pair for ``alg``; its kid is the RFC 7638 SHA-256 thumbprint."""
    params = dict(_KEYGEN[alg])
    if params["kty"] == "RSA":
        params["size"] = rsa_key_size
    key = jwk.JWK.generate(**params)
    kid = key.thumbprint()
    public = public_jwk(json.loads(key.export_public()), kid=kid, alg=alg)
    pem: bytes = key.export_to_pem(private_key=True, password=None)
    return GeneratedKey(kid=kid, alg=alg, public_jwk=public, private_pem=pem)


def public_jwk(members: dict[str, Any], *, kid: str, alg: str) -> dict[str, str]:
    """Only the public members, plus kid/alg/use: never d, p, q, dp, dq, qi, k."""
    kty = members["kty"]
    out = {name: members[name] for name in PUBLIC_MEMBERS[kty]}
    out.update(kid=kid, alg=alg, use="sig")
    return out


def kek_id(kek: bytes) -> str:
    """A short public name for a KEK, so unwrapping picks the right one without trying all."""
    return hashlib.sha256(b"issuer-kek-id\x00" + kek).hexdigest()[:16]


def wrap_private_key(private_pem: bytes, kek: bytes, kid: str) -> bytes:
    nonce = os.urandom(12)
    sealed = AESGCM(kek).encrypt(nonce, private_pem, _aad(kid))
    return _WRAP_VERSION + nonce + sealed


def unwrap_private_key(wrapped: bytes, kek: bytes, kid: str) -> bytes:
    if len(wrapped) < 1 + 12 + 16 or wrapped[:1] != _WRAP_VERSION:
        raise KeyUnwrapError("wrapped key has an unknown format")
    try:
        return AESGCM(kek).decrypt(wrapped[1:13], wrapped[13:], _aad(kid))
    except InvalidTag:
        raise KeyUnwrapError("wrapped key does not open with this KEK") from None


def _aad(kid: str) -> bytes:
    return b"issuer-signing-key\x00" + kid.encode()
