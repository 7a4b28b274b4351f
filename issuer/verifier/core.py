"""Offline verification of RFC 9068 access tokens: parse, pick the key, verify, check claims.

Pure and synchronous: no I/O, no clock (``now`` is an argument). Follows RFC 8725
(JWT BCP): the algorithm comes from an explicit allow-list and must fit the key
(§3.1, §3.2); keys come only from the JWKS, never from ``jwk``/``jku``/``x5u``/
``x5c`` headers; ``typ`` must be ``at+jwt`` (§3.11, RFC 9068 §4); unknown
``crit`` is rejected (RFC 7515 §4.1.11); only the compact serialization is read.
Key objects are parsed once per JWKS, so verifying costs one signature check
and two small JSON parses.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from issuer.verifier.errors import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExpiredTokenError,
    MalformedTokenError,
    MissingClaimError,
    NotYetValidError,
    TokenError,
    UnknownKeyError,
    WrongAudienceError,
    WrongIssuerError,
    WrongTypeError,
)

MAX_TOKEN_BYTES = 8192
SUPPORTED_ALGS = frozenset({"RS256", "PS256", "ES256", "EdDSA"})
_KTY_FOR_ALG = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
_B64URL = re.compile(rb"^[A-Za-z0-9_-]*$")
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


@dataclass(frozen=True, slots=True)
class Policy:
    issuer: str
    audience: str
    algorithms: frozenset[str] = frozenset({"RS256"})
    leeway: float = 60.0
    typ: str = "at+jwt"
    max_token_bytes: int = MAX_TOKEN_BYTES
    required_claims: tuple[str, ...] = ("iss", "sub", "aud", "exp", "iat", "jti")

    def __post_init__(self) -> None:
        unknown = set(self.algorithms) - SUPPORTED_ALGS
        if unknown or not self.algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGS)}")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _b64decode(part: bytes) -> bytes:
    # Strict base64url without padding (RFC 7515 §2): reject '=', '+', '/', whitespace.
    if not _B64URL.match(part) or len(part) % 4 == 1:
        raise MalformedTokenError("invalid base64url")
    try:
        return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise MalformedTokenError("invalid base64url") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise MalformedTokenError(f"duplicate member {name!r}")
        out[name] = value
    return out


def _reject_constant(name: str) -> Any:
    raise MalformedTokenError(f"non-standard JSON constant {name}")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except MalformedTokenError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedTokenError(f"{what} is not valid UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise MalformedTokenError(f"{what} is not a JSON object")
    return value


def parse_compact(token: str | bytes, max_bytes: int = MAX_TOKEN_BYTES) -> ParsedToken:
    """Split and decode a JWS compact serialization; no signature check yet."""
    if isinstance(token, str):
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedTokenError("token is not ASCII") from None
    elif isinstance(token, bytes):
        raw = token
    else:
        raise MalformedTokenError("token must be a string")
    if len(raw) > max_bytes:
        raise MalformedTokenError(f"token is longer than {max_bytes} bytes")
    if raw.count(b".") != 2:
        # Five parts is a JWE; JSON serialization has no dots at all.
        raise MalformedTokenError("not a JWS compact serialization")
    h, p, s = raw.split(b".")
    if not h or not p or not s:
        raise MalformedTokenError("empty header, payload or signature")
    header = _json_object(_b64decode(h), "header")
    claims = _json_object(_b64decode(p), "payload")
    return ParsedToken(header, claims, h + b"." + p, _b64decode(s))


def _verify_signature(key: VerificationKey, alg: str, data: bytes, sig: bytes) -> None:
    k = key.key
    try:
        if alg == "RS256" and isinstance(k, rsa.RSAPublicKey):
            k.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256" and isinstance(k, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            k.verify(sig, data, pss, hashes.SHA256())
        elif alg == "ES256" and isinstance(k, ec.EllipticCurvePublicKey):
            if len(sig) != 64:
                raise BadSignatureError("ES256 signature must be 64 bytes")
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            # r = s = 0 ("psychic signatures", CVE-2022-21449) must never verify.
            if r == 0 or s == 0:
                raise BadSignatureError("ES256 signature with a zero component")
            k.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        elif alg == "EdDSA" and isinstance(k, ed25519.Ed25519PublicKey):
            k.verify(sig, data)
        else:
            raise DisallowedAlgorithmError(f"alg {alg} does not fit key {key.kid}")
    except InvalidSignature:
        raise BadSignatureError("signature does not verify") from None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise MissingClaimError(f"claim {name} is null")
        return None
    # bool is an int in Python; a NumericDate must be a real number (RFC 7519 §2).
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MissingClaimError(f"claim {name} is not a NumericDate")
    return float(value)


def check_header(header: Mapping[str, Any], policy: Policy) -> tuple[str, str]:
    """Returns (alg, kid) after the header checks that need no key."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms:
        raise DisallowedAlgorithmError(f"alg {alg!r} is not allowed")
    if "crit" in header:
        # We understand no extension header, so any crit is unknown (RFC 7515 §4.1.11).
        raise MalformedTokenError("unsupported crit header")
    if "enc" in header or "zip" in header:
        raise MalformedTokenError("encrypted or compressed tokens are not accepted")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in (policy.typ, "application/" + policy.typ):
        raise WrongTypeError(f"typ must be {policy.typ}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnknownKeyError("token has no kid")
    return alg, kid


def check_claims(claims: Mapping[str, Any], policy: Policy, now: float) -> None:
    for name in policy.required_claims:
        if name not in claims:
            raise MissingClaimError(f"claim {name} is required")
    exp = _number(claims, "exp")
    nbf = _number(claims, "nbf")
    iat = _number(claims, "iat")
    if exp is None:
        raise MissingClaimError("claim exp is required")
    if now >= exp + policy.leeway:
        raise ExpiredTokenError("token has expired")
    if nbf is not None and now + policy.leeway < nbf:
        raise NotYetValidError("token is not valid yet (nbf)")
    if iat is not None and now + policy.leeway < iat:
        raise NotYetValidError("token was issued in the future (iat)")
    if claims.get("iss") != policy.issuer:
        raise WrongIssuerError("wrong issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and a == policy.audience for a in audiences):
        raise WrongAudienceError("wrong audience")
    for name in ("sub", "jti", "client_id", "scope"):
        if name in claims and not isinstance(claims[name], str):
            raise MissingClaimError(f"claim {name} must be a string")


def verify_parsed(
    parsed: ParsedToken, keys: Mapping[str, VerificationKey], policy: Policy, now: float
) -> dict[str, Any]:
    alg, kid = check_header(parsed.header, policy)
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyError("no key with this kid")
    if not key.fits(alg):
        raise DisallowedAlgorithmError(f"alg {alg} does not fit key {kid}")
    _verify_signature(key, alg, parsed.signing_input, parsed.signature)
    check_claims(parsed.claims, policy, now)
    return parsed.claims


def verify_token(
    token: str | bytes, keys: Mapping[str, VerificationKey], policy: Policy, now: float
) -> dict[str, Any]:
    """The claims of a valid token; a :class:`TokenError` subclass otherwise, never anything else."""
    try:
        return verify_parsed(parse_compact(token, policy.max_token_bytes), keys, policy, now)
    except TokenError:
        raise
    except Exception:
        raise MalformedTokenError("token could not be decoded") from None


def load_jwks(document: bytes | str | Mapping[str, Any]) -> dict[str, VerificationKey]:
    """Parse a JWKS into key objects by kid. Keys we cannot use are skipped, not fatal."""
    from jwcrypto import jwk  # imported here: only JWKS refreshes pay for it

    if isinstance(document, bytes | str):
        doc = json.loads(document)
    else:
        doc = document
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
        public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        obj = jwk_module.JWK(**public).get_op_key("verify")
    except Exception:
        return None
    if not isinstance(obj, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return None
    if isinstance(obj, ec.EllipticCurvePublicKey) and not isinstance(obj.curve, ec.SECP256R1):
        return None
    if isinstance(obj, rsa.RSAPublicKey) and obj.key_size < 2048:
        return None
    return VerificationKey(kid=kid, kty=kty, alg=alg, key=obj)
