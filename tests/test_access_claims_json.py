"""issuer.jose.tokens.access_claims_json writes the bytes the JSON encoder writes."""

from __future__ import annotations

import json

import jwt
from hypothesis import example, given
from hypothesis import strategies as st

from issuer.jose.keys import generate_key
from issuer.jose.tokens import (
    AccessTokenRequest,
    Signer,
    access_claims_json,
    access_token_claims,
)

# Lone surrogates are left out: no store or form parser lets one through, and neither
# the encoder's output nor this one can be encoded as UTF-8 with one in it.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
URLS = st.text("abc:/.0-9", min_size=1, max_size=30)


@given(
    issuer=URLS | TEXT,
    subject=TEXT,
    audience=URLS | TEXT,
    client_id=TEXT,
    scope=st.text("read write openid:x/y", max_size=30) | TEXT,
    now=st.integers(0, 2**40),
    ttl=st.integers(0, 10**7),
    roles=st.none() | st.tuples() | st.lists(TEXT, max_size=4).map(tuple),
    jti=st.none() | TEXT.filter(bool),
)
@example(
    issuer='a"b\\c\x00\u2028é',
    subject="名前",
    audience="\x7f",
    client_id="tab\there",
    scope="",
    now=0,
    ttl=0,
    roles=("new\nline",),
    jti=None,
)
def test_the_claims_json_is_the_encoders(
    issuer: str,
    subject: str,
    audience: str,
    client_id: str,
    scope: str,
    now: int,
    ttl: int,
    roles: tuple[str, ...] | None,
    jti: str | None,
) -> None:
    claims = access_token_claims(
        AccessTokenRequest(issuer, subject, audience, client_id, scope, now, ttl, roles), jti
    )
    encoder = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
    assert access_claims_json(claims) == encoder


def test_a_token_signed_from_the_hand_written_claims_verifies_with_pyjwt() -> None:
    key = generate_key("RS256")
    claims = access_token_claims(
        AccessTokenRequest(
            "https://issuer", "u-1", "api", "c-1", "read", 1_700_000_000, 300, ("a",)
        )
    )
    token = Signer(key.kid, key.alg, key.private_pem).sign_json(access_claims_json(claims))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}
    decoded = jwt.decode(
        token,
        jwt.PyJWK.from_dict(key.public_jwk).key,
        algorithms=["RS256"],
        audience="api",
        issuer="https://issuer",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert decoded == claims
