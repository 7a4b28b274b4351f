"""Access tokens: the RFC 9068 JWT profile, signed as JWS compact (RFC 7515 §7.1).

Signing goes straight to ``cryptography`` with a key object loaded once per
signing key: jwcrypto rebuilds key objects and re-serializes JSON on every call,
which costs more than the RSA operation itself.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple, NotRequired, TypedDict

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from issuer.jsontext import json_str

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - RFC 9068 §2.1, not a secret
# OpenID Connect Core §2 leaves typ open; JWT is what libraries expect.
ID_TOKEN_TYP = "JWT"  # noqa: S105 - not a secret


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# One encoder for every token: json.dumps with any option makes a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# Immutable descriptions of the RS256 algorithm, made once rather than per signature.
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


def _json(obj: Any) -> bytes:
    return _COMPACT.encode(obj).encode()


class Signer:
    """Signs with one private key; built once per key and reused for every token."""

    __slots__ = ("_headers", "_key", "alg", "kid")

    def __init__(self, kid: str, alg: str, private_pem: bytes) -> None:
        self.kid = kid
        self.alg = alg
        # Only keys this service generated reach here, unwrapped by AES-GCM (which
        # authenticates them and binds them to their kid): cryptography's RSA consistency
        # check (~20 ms per key) would only re-prove that on every start and rotation.
        key = serialization.load_pem_private_key(
            private_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
        expected = {
            "RS256": rsa.RSAPrivateKey,
            "PS256": rsa.RSAPrivateKey,
            "ES256": ec.EllipticCurvePrivateKey,
            "EdDSA": ed25519.Ed25519PrivateKey,
        }[alg]
        if not isinstance(key, expected):
            raise ValueError(f"key {kid} does not fit alg {alg}")
        self._key = key
        # Each kind of token says what it is (RFC 8725 §3.11): an ID token (typ JWT)
        # must never pass for an access token (typ at+jwt), or the other way round.
        self._headers = {
            typ: b64url(_json({"alg": alg, "kid": kid, "typ": typ}))
            for typ in (ACCESS_TOKEN_TYP, ID_TOKEN_TYP)
        }

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid!r}, alg={self.alg!r})"

    def sign(self, claims: Mapping[str, Any], typ: str = ACCESS_TOKEN_TYP) -> str:
        return self.sign_json(_json(claims), typ)

    def sign_json(self, payload: bytes, typ: str = ACCESS_TOKEN_TYP) -> str:
        """A token of ``payload``, claims already written as JSON."""
        signing_input = self._headers[typ] + b"." + b64url(payload)
        return (signing_input + b"." + b64url(self._signature(signing_input))).decode("ascii")

    def _signature(self, data: bytes) -> bytes:
        key = self._key
        if self.alg == "RS256":
            assert isinstance(key, rsa.RSAPrivateKey)
            return key.sign(data, _PKCS1V15, _SHA256)
        if self.alg == "PS256":
            assert isinstance(key, rsa.RSAPrivateKey)
            # RFC 7518 §3.5: salt length equals the hash length.
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return key.sign(data, pss, hashes.SHA256())
        if self.alg == "ES256":
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            # RFC 7518 §3.4: R || S, each 32 bytes big-endian, not DER.
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(data)


def new_jti() -> str:
    return secrets.token_urlsafe(16)


class AccessClaims(TypedDict):
    """RFC 9068 §2.2 claims of this issuer's access tokens; times are Unix seconds."""

    iss: str
    sub: str
    aud: str
    exp: int
    iat: int
    nbf: int
    jti: str
    client_id: str
    scope: str
    roles: NotRequired[list[str]]  # users' tokens only


class AccessTokenRequest(NamedTuple):
    """What goes into one access token; times are Unix seconds. (A named tuple: made on
    every token request, at a third of a frozen dataclass's cost.)"""

    issuer: str
    subject: str
    audience: str
    client_id: str
    scope: str
    now: int
    ttl: int
    roles: tuple[str, ...] | None = None


def access_token_claims(req: AccessTokenRequest, jti: str | None = None) -> AccessClaims:
    """RFC 9068 §2.2 claims: iss, exp, aud, sub, client_id, iat, jti (+ nbf, scope, roles)."""
    claims: AccessClaims = {
        "iss": req.issuer,
        "sub": req.subject,
        "aud": req.audience,
        "exp": req.now + req.ttl,
        "iat": req.now,
        "nbf": req.now,
        "jti": jti or new_jti(),
        "client_id": req.client_id,
        "scope": req.scope,
    }
    if req.roles is not None:
        claims["roles"] = list(req.roles)
    return claims


def access_claims_json(claims: AccessClaims) -> bytes:
    """``claims`` as the compact JSON ``Signer.sign`` would write, made by hand: the
    encoder cost twice as much as the rest of building a token's claims (issue 11).

    Same keys in the same order (``access_token_claims``'s), and each string through
    ``json_str``, which escapes anything that needs it as the encoder does; the tests
    compare the bytes with the encoder's.
    """
    text = (
        f'{{"iss":{json_str(claims["iss"])},"sub":{json_str(claims["sub"])},'
        f'"aud":{json_str(claims["aud"])},"exp":{int(claims["exp"])},'
        f'"iat":{int(claims["iat"])},"nbf":{int(claims["nbf"])},'
        f'"jti":{json_str(claims["jti"])},"client_id":{json_str(claims["client_id"])},'
        f'"scope":{json_str(claims["scope"])}'
    )
    roles = claims.get("roles")
    if roles is not None:
        text += ',"roles":[' + ",".join(map(json_str, roles)) + "]"
    return (text + "}").encode()
