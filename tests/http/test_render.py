"""issuer.http.render.token_body writes what json.dumps writes for the same token response."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from issuer.http.render import token_body
from issuer.services.grants import TokenResponse

B64URL = st.text("ABCxyz019-_.", min_size=1, max_size=60)


@given(
    access=B64URL | st.text(max_size=20),
    scope=st.text("read write openid:x/y", max_size=30) | st.text(max_size=20),
    expires_in=st.integers(0, 10**9),
    refresh=st.none() | B64URL | st.text(max_size=20),
    id_token=st.none() | B64URL,
)
@example(access='a"b\\c\x00\u2028é', scope="", expires_in=600, refresh=None, id_token=None)
def test_token_body_is_the_json_of_as_json(
    access: str, scope: str, expires_in: int, refresh: str | None, id_token: str | None
) -> None:
    result = TokenResponse(
        access_token=access,
        expires_in=expires_in,
        scope=scope,
        claims={},  # type: ignore[typeddict-item]
        refresh_token=refresh,
        id_token=id_token,
    )
    body = token_body(result)
    assert json.loads(body) == result.as_json()
    if all(s is None or (s.isascii() and s.isprintable()) for s in (access, scope, refresh)):
        # Same bytes as the encoder, key order included (RFC 6749 §5.1's order).
        assert body == json.dumps(result.as_json(), separators=(",", ":")).encode()
