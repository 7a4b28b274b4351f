"""The core's fast paths decide exactly as the checks they shortcut.

Each fast path in :mod:`issuer.verifier.core` accepts only what the general
code accepts and hands everything else to it, so results and errors are the
general code's. These tests pin that: duplicate JSON members (RFC 7515 §5.2,
RFC 7519 §4) refused through the public API however they are spelled, and
each fast path compared with its reference on deterministic generated inputs.
"""

from __future__ import annotations

import base64
import math
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from issuer.jose.keys import GeneratedKey
from issuer.verifier import (
    BadSignatureError,
    DisallowedAlgorithmError,
    HeaderCache,
    MalformedTokenError,
    Policy,
    TokenError,
    core,
    load_jwks,
    verify_token,
)

from .attacks import b64, compact, encode_json, good_claims, sign_rs256
from .conftest import AUDIENCE, ISSUER, NOW, mint

POLICY = Policy(issuer=ISSUER, audience=AUDIENCE)


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What a caller sees: the value, or the exception's type and message."""
    try:
        return ("value", fn(*args))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


# -- duplicate members, through the public API ------------------------------------------

_CLAIMS = encode_json(good_claims(ISSUER, AUDIENCE, NOW))[:-1]  # without the closing brace
DUPLICATE_PAYLOADS = {
    "same-name": _CLAIMS + b',"sub":"admin"}',
    "escaped-name": _CLAIMS + b',"\\u0073ub":"admin"}',
    "escaped-both": _CLAIMS + b',"\\u0073\\u0075\\u0062":"admin"}',
    "new-name-twice": _CLAIMS + b',"a":1,"\\u0061":2}',
    "spaces-around-colons": _CLAIMS + b',"a" : 1 ,\n"a"\t:\t2}',
    # Colons inside strings next to the duplicate, to fool a count of colons.
    "url-colons": _CLAIMS + b',"x":"a://b:/c:","a":1,"a":2}',
    "colon-in-name": _CLAIMS + b',"a:/":1,"a:/":2}',
    "nested-object": _CLAIMS + b',"cnf":{"jkt":"x","jkt":"y"}}',
    "nested-escaped": _CLAIMS + b',"cnf":{"a":1,"\\u0061":2}}',
    "object-in-array": _CLAIMS + b',"act":[{"sub":"a","sub":"b"}]}',
    "deep": _CLAIMS + b',"a":{"b":{"c":[1,{"d":1,"d":2}]}}}',
}


@pytest.mark.parametrize("payload", DUPLICATE_PAYLOADS.values(), ids=DUPLICATE_PAYLOADS.keys())
def test_a_duplicate_claim_is_refused_however_spelled(
    rsa_key: GeneratedKey, payload: bytes
) -> None:
    header = {"alg": "RS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    token = compact(header, payload, rsa_key)  # signed: the payload is reached
    keys = load_jwks({"keys": [rsa_key.public_jwk]})
    headers = HeaderCache(POLICY)
    verify_token(mint(rsa_key), keys, POLICY, NOW, headers)  # warm: the fast paths are taken
    for cache in (headers, None):
        with pytest.raises(MalformedTokenError, match="duplicate member"):
            verify_token(token, keys, POLICY, NOW, cache)


def _headers(kid: str) -> dict[str, bytes]:
    k = kid.encode()
    return {
        "same-name": b'{"alg":"RS256","kid":"' + k + b'","typ":"at+jwt","kid":"' + k + b'"}',
        "escaped-name": b'{"alg":"RS256","\\u0061lg":"RS256","kid":"' + k + b'","typ":"at+jwt"}',
        "url-colons": b'{"alg":"RS256","x":"https://a:/","typ":"at+jwt","kid":"'
        + k
        + b'","typ":"at+jwt"}',
        "nested": b'{"alg":"RS256","kid":"' + k + b'","typ":"at+jwt","x":{"a":1,"\\u0061":1}}',
    }


def test_a_duplicate_header_parameter_is_refused_however_spelled(rsa_key: GeneratedKey) -> None:
    keys = load_jwks({"keys": [rsa_key.public_jwk]})
    claims = good_claims(ISSUER, AUDIENCE, NOW)
    for header in _headers(rsa_key.kid).values():
        token = compact(header, claims, rsa_key)
        for cache in (HeaderCache(POLICY), None):
            with pytest.raises(MalformedTokenError, match="duplicate member"):
                verify_token(token, keys, POLICY, NOW, cache)


# -- JSON: the counting fast path against the pairs-hook decoder --------------------------

_NAMES = ['"a"', '"\\u0061"', '"b"', '"a:/"', '"://"', '"\\u003a"', '"sub"', '"s\\u0075b"']
_SCALARS = ["1", '"x:/y"', '"https://h:1/p"', "true", "null", '"a\\"b:"', "NaN", "1e400", '":"']


def _random_json(rng: random.Random, depth: int = 0) -> str:
    def ws() -> str:
        return rng.choice(["", "", "", " ", "\n", "\t "])

    kind = rng.random()
    if depth < 3 and kind < 0.45:
        members = [
            f"{ws()}{rng.choice(_NAMES)}{ws()}:{ws()}{_random_json(rng, depth + 1)}{ws()}"
            for _ in range(rng.randint(0, 4))
        ]
        return "{" + ",".join(members) + "}"
    if depth < 3 and kind < 0.6:
        return "[" + ",".join(_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    return rng.choice(_SCALARS)


def test_json_fast_path_matches_the_exact_decoder() -> None:
    rng = random.Random(9068)
    seen_duplicate = seen_accepted = 0
    for _ in range(4000):
        text = _random_json(rng)
        if rng.random() < 0.1:  # surrounding whitespace, trailing data, truncation
            text = rng.choice([f" {text}", f"{text} ", f"{text}x", text[:-1]])
        raw = text.encode()
        fast = outcome(core._json_object, raw, "payload")
        exact = outcome(core._json_object_exact, raw, "payload")
        assert fast == exact, text
        seen_duplicate += "duplicate" in str(exact[1])
        seen_accepted += exact[0] == "value"
    # The corpus exercised both sides of the decision.
    assert seen_duplicate > 100
    assert seen_accepted > 100


# -- base64url: the one-translate decoder against a strict reference ----------------------


def _reference_b64decode(part: bytes) -> bytes:
    # RFC 7515 §2: the base64url alphabet, no padding, and canonical (re-encodes the same).
    if not re.fullmatch(rb"[A-Za-z0-9_-]*", part) or len(part) % 4 == 1:
        raise MalformedTokenError("invalid base64url")
    data = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=") != part:
        raise MalformedTokenError("invalid base64url")
    return data


def test_base64url_decoding_matches_a_strict_reference() -> None:
    rng = random.Random(7515)
    stray = b"=+/. \n\x00\xff!"
    for _ in range(3000):
        part = bytearray(b64(rng.randbytes(rng.randint(0, 12))).encode())
        for _ in range(rng.choice([0, 0, 1, 2])):
            at = rng.randint(0, len(part))
            part[at:at] = bytes([rng.choice(stray + b"AQgw-_")])
        if part and rng.random() < 0.2:  # flip the unused low bits of the last character
            part[-1] = rng.choice(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            )
        assert outcome(core._b64decode, bytes(part)) == outcome(_reference_b64decode, bytes(part))


# -- claims: the one sweep against the checks in order ------------------------------------

_TIMES: list[Any] = [
    NOW,
    NOW - 30,
    NOW + 30,
    NOW - 61,
    NOW + 61,
    NOW + 600,
    NOW - 86_400,
    NOW + 86_400,
    NOW + 86_461,
    float(NOW),
    NOW + 0.5,
    True,
    None,
    "1900000000",
    2**64,
    10**400,
    math.nan,
    math.inf,
]
_STRINGS: list[Any] = ["user-1", "", 1, None, ["x"], True]
_ABSENT: Any = object()


def _random_claims(rng: random.Random) -> dict[str, Any]:
    pools: dict[str, list[Any]] = {
        "iss": [ISSUER, ISSUER + "/", None, [ISSUER], 1],
        "aud": [AUDIENCE, [AUDIENCE], ["other", AUDIENCE], [], "other", None, {"a": 1}],
        "exp": _TIMES,
        "iat": _TIMES,
        "nbf": _TIMES,
        "sub": _STRINGS,
        "jti": _STRINGS,
        "client_id": _STRINGS,
        "scope": _STRINGS,
        "roles": [["user"], [], ["a", "b"], ["a", 1], "admin", None, [None]],
    }
    claims = good_claims(ISSUER, AUDIENCE, NOW)
    for name, pool in pools.items():
        if rng.random() < 0.25:
            value = rng.choice([*pool, _ABSENT])
            if value is _ABSENT:
                claims.pop(name, None)
            else:
                claims[name] = value
    return claims


POLICIES = [
    POLICY,
    Policy(issuer=ISSUER, audience=AUDIENCE, max_lifetime=None),
    Policy(issuer=ISSUER, audience=AUDIENCE, leeway=0),
    Policy(issuer=ISSUER, audience=AUDIENCE, required_claims=("exp",)),
    Policy(issuer=ISSUER, audience=AUDIENCE, required_claims=("exp", "nbf", "client_id")),
]


@pytest.mark.parametrize("policy", POLICIES, ids=range(len(POLICIES)))
def test_claim_sweep_matches_the_checks_in_order(policy: Policy) -> None:
    rng = random.Random(9068)
    accepted = 0
    for _ in range(3000):
        claims: Mapping[str, Any] = _random_claims(rng)
        now = NOW + rng.choice([0, 0.5, 59, 60, 61, -59, -61])
        sweep = outcome(core.check_claims, claims, policy, now)
        in_order = outcome(core._check_claims_in_order, claims, policy, now)
        assert sweep == in_order, claims
        accepted += sweep[0] == "value"
    assert accepted > 100


# -- prepare and complete: the inlined usual case against the general path -----------------


def _variants(token: str) -> list[str | bytes]:
    h, p, s = token.split(".")
    return [
        token,
        token.encode(),
        f"{h}.{p}.{s}.x",
        f"{h}.{p}",
        f"{h}..{s}",
        f".{p}.{s}",
        f"{h}.{p}.",
        f"{h}.{p}.{s}é",
        f"{h}.{p}.{s}" + "A" * 9000,
        f"{h} .{p}.{s}",
        f"{h}.{p}={s}",
        "...",
        "",
    ]


def _prepared(token: str | bytes, headers: HeaderCache | None) -> tuple[Any, ...]:
    p = core.prepare(token, POLICY, headers)
    return (p.alg, p.kid, p.signing_input, p.payload, p.signature)


def test_prepare_fast_path_matches_the_general_path(rsa_key: GeneratedKey) -> None:
    headers = HeaderCache(POLICY)
    core.prepare(mint(rsa_key), POLICY, headers)  # the header is known from now on
    other = compact({"alg": "RS256", "kid": "other", "typ": "at+jwt"}, b"{}", signature=b"x")
    for token in [*_variants(mint(rsa_key)), *_variants(other)]:
        assert outcome(_prepared, token, headers) == outcome(_prepared, token, None), token


def _reference_complete(
    prepared: core.PreparedToken, key: core.VerificationKey, policy: Policy, now: float
) -> dict[str, Any]:
    """complete() without its fast path: the checks in their documented order."""
    try:
        if not key.fits(prepared.alg):
            raise DisallowedAlgorithmError(f"alg {prepared.alg} does not fit key {key.kid}")
        signature = core._b64decode(prepared.signature)
        core._verify_signature(key, prepared.alg, prepared.signing_input, signature)
        claims = core._json_object_exact(core._b64decode(prepared.payload), "payload")
        core._check_claims_in_order(claims, policy, now)
        return claims
    except TokenError:
        raise
    except Exception:
        raise MalformedTokenError("token could not be decoded") from None


def test_complete_fast_path_matches_the_general_path(rsa_key: GeneratedKey) -> None:
    key = load_jwks({"keys": [rsa_key.public_jwk]})[rsa_key.kid]
    good = core.prepare(mint(rsa_key), POLICY)
    core.complete(good, key, POLICY, NOW)  # the RSA key class is known from now on
    rng = random.Random(8725)
    for _ in range(300):
        segments = {"payload": bytearray(good.payload), "signature": bytearray(good.signature)}
        which = rng.choice(list(segments))
        part = segments[which]
        at = rng.randrange(len(part))
        action = rng.randrange(3)
        if action == 0:
            part[at] = rng.choice(b"=+/. \x00AQgw-_")
        elif action == 1:
            del part[at]
        else:
            part[at:at] = bytes([rng.choice(b"=+/.AQgw-_")])
        prepared = core.PreparedToken(
            good.alg,
            good.kid,
            good.signing_input,
            bytes(segments["payload"]),
            bytes(segments["signature"]),
        )
        assert outcome(core.complete, prepared, key, POLICY, NOW) == outcome(
            _reference_complete, prepared, key, POLICY, NOW
        )


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_complete_fast_path_refuses_non_canonical_spellings(rsa_key: GeneratedKey) -> None:
    # An RSA-2048 signature is 342 characters; the last carries 4 unused bits. Any of
    # the 15 other characters with the same 2 high bits decodes to the same signature.
    key = load_jwks({"keys": [rsa_key.public_jwk]})[rsa_key.kid]
    good = core.prepare(mint(rsa_key), POLICY)
    core.complete(good, key, POLICY, NOW)  # the RSA key class is known from now on
    last = _ALPHABET.index(chr(good.signature[-1]))
    for twin in (c for i, c in enumerate(_ALPHABET) if i // 16 == last // 16 and i != last):
        signature = good.signature[:-1] + twin.encode()
        twisted = core.PreparedToken(
            good.alg, good.kid, good.signing_input, good.payload, signature
        )
        with pytest.raises(MalformedTokenError, match="invalid base64url"):
            _reference_b64decode(signature)
        with pytest.raises(MalformedTokenError, match="invalid base64url"):
            core.complete(twisted, key, POLICY, NOW)


def test_complete_fast_path_verifies_a_real_payload_change(rsa_key: GeneratedKey) -> None:
    # Same signature over a different, well-formed payload: refused on the fast path too.
    key = load_jwks({"keys": [rsa_key.public_jwk]})[rsa_key.kid]
    good = core.prepare(mint(rsa_key), POLICY)
    payload = b64(encode_json(good_claims(ISSUER, AUDIENCE, NOW, sub="admin"))).encode()
    forged = core.PreparedToken(
        good.alg,
        good.kid,
        good.signing_input.split(b".")[0] + b"." + payload,
        payload,
        good.signature,
    )
    with pytest.raises(BadSignatureError):
        core.complete(forged, key, POLICY, NOW)


@pytest.mark.parametrize(("kty", "alg"), [("RSA", "PS256"), ("EC", None), ("OKP", "RS256")])
def test_complete_fast_path_keeps_the_key_to_its_alg(
    rsa_key: GeneratedKey, kty: str, alg: str | None
) -> None:
    # RFC 7517 §4.4: a JWK that names its alg is used with that alg only; kty must fit.
    loaded = load_jwks({"keys": [rsa_key.public_jwk]})[rsa_key.kid]
    good = core.prepare(mint(rsa_key), POLICY)
    core.complete(good, loaded, POLICY, NOW)  # the RSA key class is known from now on
    key = core.VerificationKey(kid=rsa_key.kid, kty=kty, alg=alg, key=loaded.key)
    with pytest.raises(DisallowedAlgorithmError):
        core.complete(good, key, POLICY, NOW)


@pytest.mark.parametrize("trim", range(4))
def test_complete_fast_path_reads_each_segment_length_as_the_general_path(
    rsa_key: GeneratedKey, trim: int
) -> None:
    # Every length % 4 of the payload and of the signature, with every last character,
    # signed (so a payload that decodes gets as far as its base64 and its JSON).
    key = load_jwks({"keys": [rsa_key.public_jwk]})[rsa_key.kid]
    good = core.prepare(mint(rsa_key), POLICY)
    core.complete(good, key, POLICY, NOW)  # the RSA key class is known from now on
    header = good.signing_input.split(b".")[0]
    payload_stem = good.payload[: len(good.payload) - trim - 1]
    signature_stem = good.signature[: len(good.signature) - trim - 1]
    for last in _ALPHABET.encode():
        payload = payload_stem + bytes([last])
        signing_input = header + b"." + payload
        signature = b64(sign_rs256(rsa_key.private_pem, signing_input)).encode()
        for prepared in (
            core.PreparedToken(good.alg, good.kid, signing_input, payload, signature),
            core.PreparedToken(
                good.alg, good.kid, good.signing_input, good.payload, signature_stem + bytes([last])
            ),
        ):
            assert outcome(core.complete, prepared, key, POLICY, NOW) == outcome(
                _reference_complete, prepared, key, POLICY, NOW
            ), prepared
