"""The pure verification core: RFC 7515/7519/8725 checks with an explicit ``now``."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest

from issuer.jose.keys import GeneratedKey, generate_key
from issuer.jose.tokens import Signer
from issuer.verifier import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExcessiveLifetimeError,
    ExpiredTokenError,
    HeaderCache,
    MalformedTokenError,
    NotYetValidError,
    Policy,
    TokenError,
    UnknownKeyError,
    load_jwks,
    parse_compact,
    verify_token,
)

from .attacks import b64, compact, good_claims
from .conftest import AUDIENCE, ISSUER, NOW, mint

POLICY = Policy(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="module")
def ec_key() -> GeneratedKey:
    return generate_key("ES256")


def keys_of(*generated: GeneratedKey) -> dict[str, Any]:
    return load_jwks({"keys": [g.public_jwk for g in generated]})


def test_a_token_as_the_issuer_signs_it_verifies(rsa_key: GeneratedKey) -> None:
    claims = verify_token(mint(rsa_key), keys_of(rsa_key), POLICY, NOW)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE


def test_bytes_tokens_verify_too(rsa_key: GeneratedKey) -> None:
    assert verify_token(mint(rsa_key).encode(), keys_of(rsa_key), POLICY, NOW)["sub"] == "user-1"


def test_parse_compact_decodes_without_verifying(rsa_key: GeneratedKey) -> None:
    parsed = parse_compact(mint(rsa_key, sub="someone"))
    assert parsed.header == {"alg": "RS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    assert parsed.claims["sub"] == "someone"
    assert len(parsed.signature) == 256


@pytest.mark.parametrize(
    ("exp_offset", "accepted"),
    [(-59, True), (-60, False), (600, True)],
    ids=["inside-leeway", "at-leeway", "future"],
)
def test_exp_uses_the_leeway(rsa_key: GeneratedKey, exp_offset: int, accepted: bool) -> None:
    token = mint(rsa_key, now=NOW - 600, exp=NOW + exp_offset)
    if accepted:
        verify_token(token, keys_of(rsa_key), POLICY, NOW)
    else:
        with pytest.raises(ExpiredTokenError):
            verify_token(token, keys_of(rsa_key), POLICY, NOW)


@pytest.mark.parametrize(("nbf_offset", "accepted"), [(60, True), (61, False)])
def test_nbf_uses_the_leeway(rsa_key: GeneratedKey, nbf_offset: int, accepted: bool) -> None:
    token = mint(rsa_key, nbf=NOW + nbf_offset)
    if accepted:
        verify_token(token, keys_of(rsa_key), POLICY, NOW)
    else:
        with pytest.raises(NotYetValidError):
            verify_token(token, keys_of(rsa_key), POLICY, NOW)


def test_lifetime_is_bounded_by_policy(rsa_key: GeneratedKey) -> None:
    day = 24 * 3600
    verify_token(mint(rsa_key, ttl=day), keys_of(rsa_key), POLICY, NOW)
    with pytest.raises(ExcessiveLifetimeError):
        verify_token(mint(rsa_key, ttl=day + 1), keys_of(rsa_key), POLICY, NOW)
    unbounded = Policy(issuer=ISSUER, audience=AUDIENCE, max_lifetime=None)
    assert verify_token(mint(rsa_key, exp=2**64), keys_of(rsa_key), unbounded, NOW)


def test_a_keys_type_cannot_widen_the_allow_list(rsa_key: GeneratedKey) -> None:
    # The JWK has no alg: PS256 would fit an RSA key, but the policy says RS256 only.
    jwk = {k: v for k, v in rsa_key.public_jwk.items() if k != "alg"}
    keys = load_jwks({"keys": [jwk]})
    header = {"alg": "PS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    token = compact(header, good_claims(ISSUER, AUDIENCE, NOW), rsa_key, alg="PS256")
    with pytest.raises(DisallowedAlgorithmError):
        verify_token(token, keys, POLICY, NOW)
    # Allowed by policy and fitting the key's type: it verifies.
    both = Policy(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"RS256", "PS256"}))
    assert verify_token(token, keys, both, NOW)


def test_a_jwk_alg_pins_its_key(rsa_key: GeneratedKey) -> None:
    # The JWK says RS256 (RFC 7517 §4.4): a PS256 token may not use it even if allowed.
    header = {"alg": "PS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    token = compact(header, good_claims(ISSUER, AUDIENCE, NOW), rsa_key, alg="PS256")
    both = Policy(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"RS256", "PS256"}))
    with pytest.raises(DisallowedAlgorithmError):
        verify_token(token, keys_of(rsa_key), both, NOW)


def test_es256_verifies_and_rejects_zero_signatures(ec_key: GeneratedKey) -> None:
    policy = Policy(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"ES256"}))
    claims = good_claims(ISSUER, AUDIENCE, NOW)
    token = Signer(ec_key.kid, "ES256", ec_key.private_pem).sign(claims)
    assert verify_token(token, keys_of(ec_key), policy, NOW)["sub"] == "user-1"
    h, p, _ = token.split(".")
    # CVE-2022-21449: r = s = 0 must never verify.
    with pytest.raises(BadSignatureError):
        verify_token(f"{h}.{p}.{b64(bytes(64))}", keys_of(ec_key), policy, NOW)
    with pytest.raises(BadSignatureError):
        verify_token(f"{h}.{p}.{b64(bytes(63))}", keys_of(ec_key), policy, NOW)


def test_rsa_key_cannot_verify_es256(rsa_key: GeneratedKey) -> None:
    policy = Policy(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"RS256", "ES256"}))
    header = {"alg": "ES256", "kid": rsa_key.kid, "typ": "at+jwt"}
    token = compact(header, good_claims(ISSUER, AUDIENCE, NOW), signature=bytes(64))
    with pytest.raises(DisallowedAlgorithmError):
        verify_token(token, keys_of(rsa_key), policy, NOW)


def test_typ_compares_case_insensitively(rsa_key: GeneratedKey) -> None:
    # RFC 7515 §4.1.9: typ is a media type; application/at+jwt is the long form.
    for typ in ("AT+JWT", "application/at+jwt"):
        header = {"alg": "RS256", "kid": rsa_key.kid, "typ": typ}
        token = compact(header, good_claims(ISSUER, AUDIENCE, NOW), rsa_key)
        assert verify_token(token, keys_of(rsa_key), POLICY, NOW)


def test_audience_may_be_a_list(rsa_key: GeneratedKey) -> None:
    token = mint(rsa_key, aud=["https://other.example", AUDIENCE])
    assert verify_token(token, keys_of(rsa_key), POLICY, NOW)


def test_load_jwks_uses_only_public_members_and_skips_unusable_keys(
    rsa_key: GeneratedKey,
) -> None:
    weak = generate_key("RS256", rsa_key_size=1024)
    doc = {
        "keys": [
            {**rsa_key.public_jwk, "d": "AAAA"},  # private member: ignored, public half used
            {**rsa_key.public_jwk, "kid": "enc", "use": "enc"},
            {**rsa_key.public_jwk, "kid": "hs", "alg": "HS256"},
            {"kty": "oct", "kid": "oct", "k": "c2VjcmV0"},
            weak.public_jwk,
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not an object",
        ]
    }
    keys = load_jwks(doc)
    assert list(keys) == [rsa_key.kid]
    assert not hasattr(keys[rsa_key.kid].key, "private_numbers")


def test_load_jwks_refuses_a_document_without_keys() -> None:
    with pytest.raises(ValueError, match="keys"):
        load_jwks(b'{"kids": []}')


def test_unknown_kid(rsa_key: GeneratedKey, next_rsa_key: GeneratedKey) -> None:
    with pytest.raises(UnknownKeyError):
        verify_token(mint(next_rsa_key), keys_of(rsa_key), POLICY, NOW)


def test_header_cache_remembers_only_good_headers_and_stays_small(rsa_key: GeneratedKey) -> None:
    cache = HeaderCache(POLICY, max_entries=2)
    keys = keys_of(rsa_key)
    token = mint(rsa_key)
    verify_token(token, keys, POLICY, NOW, cache)
    verify_token(token, keys, POLICY, NOW, cache)
    with pytest.raises(DisallowedAlgorithmError):
        verify_token(compact({"alg": "none"}, b"{}", signature=b"x"), keys, POLICY, NOW, cache)
    assert len(cache._entries) == 1
    for n in range(5):
        header = {"alg": "RS256", "kid": f"k{n}", "typ": "at+jwt"}
        with pytest.raises(UnknownKeyError):
            verify_token(compact(header, b"{}", signature=b"x"), keys, POLICY, NOW, cache)
    assert len(cache._entries) <= 2


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="algorithms"):
        Policy(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"none"}))
    with pytest.raises(ValueError, match="algorithms"):
        Policy(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"HS256"}))
    with pytest.raises(ValueError, match="issuer"):
        Policy(issuer="", audience=AUDIENCE)


def test_mangled_tokens_raise_only_token_errors(rsa_key: GeneratedKey) -> None:
    # A small deterministic fuzz: flip, drop and insert bytes anywhere in a good token.
    keys = keys_of(rsa_key)
    good = mint(rsa_key).encode()
    rng = random.Random(4)
    alphabet = b'AZaz09-_.=+/ {}"\x00\xff'
    for _ in range(300):
        token = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(token))
            action = rng.randrange(3)
            if action == 0:
                token[at] = rng.choice(alphabet)
            elif action == 1:
                del token[at]
            else:
                token.insert(at, rng.choice(alphabet))
        with contextlib.suppress(TokenError):
            verify_token(bytes(token), keys, POLICY, NOW)


def test_payload_is_parsed_only_after_the_signature(rsa_key: GeneratedKey) -> None:
    # Unsigned junk in the payload is a bad signature, not a parser exercise.
    header = {"alg": "RS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    token = compact(header, b"[" * 2000, signature=b"\x01" * 256)
    with pytest.raises(BadSignatureError):
        verify_token(token, keys_of(rsa_key), POLICY, NOW)


def test_non_canonical_base64url_is_refused(rsa_key: GeneratedKey) -> None:
    # An RSA-2048 signature is 256 bytes: 342 characters, the last one carrying 4
    # unused bits. Setting one of them spells the same signature differently.
    token = mint(rsa_key)
    head, _, sig = token.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twisted = alphabet[alphabet.index(sig[-1]) ^ 1]
    assert verify_token(token, keys_of(rsa_key), POLICY, NOW)
    with pytest.raises(MalformedTokenError):
        verify_token(f"{head}.{sig[:-1]}{twisted}", keys_of(rsa_key), POLICY, NOW)
