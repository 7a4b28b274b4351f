"""A relying-party library no one here wrote: Authlib's OAuth 2 client runs the code flow
with PKCE against the real app, and Authlib's OpenID Connect rules (with joserfc for the
signature) validate the ID token against the published JWKS."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp.test_utils import TestClient
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import MakeClient, MakeUser
from tests.http.browser import form_of

ISS = "http://issuer.test"
REDIRECT = "http://127.0.0.1:8765/callback"  # a native app's loopback redirect


async def browser_signs_in(
    browser: TestClient[Any, Any], url: str, username: str, password: str
) -> str:
    """What the user's browser does with the authorization URL; returns the final redirect."""
    path = url.split("127.0.0.1", 1)[1].split("/", 1)[1]
    start = await browser.get("/" + path, allow_redirects=False)
    assert start.status == 303, await start.text()
    page = await browser.get(start.headers["Location"])
    action, csrf = form_of(await page.text())
    done = await browser.post(
        action,
        data={"csrf": csrf, "username": username, "password": password},
        allow_redirects=False,
    )
    assert done.status == 303, await done.text()
    return str(done.headers["Location"])


async def test_authlib_completes_the_flow_and_validates_the_id_token(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser
) -> None:
    rp = await make_client(
        scopes="openid read",
        redirect_uris=("http://127.0.0.1/callback",),
        first_party=True,
    )
    user = await make_user()
    base = str(client.make_url("")).rstrip("/")
    metadata = await (await client.get("/.well-known/openid-configuration")).json()
    async with AsyncOAuth2Client(
        client_id=rp.client_id,
        client_secret=rp.client_secret,
        scope="openid read",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(16)
        url, state = oauth.create_authorization_url(
            base + "/authorize", code_verifier=verifier, nonce=nonce
        )
        assert "code_challenge_method=S256" in url
        location = await browser_signs_in(client, url, user.username, user.password)
        assert location.startswith(REDIRECT + "?")
        assert f"iss={ISS.replace(':', '%3A').replace('/', '%2F')}" in location
        token = await oauth.fetch_token(
            base + "/token",
            authorization_response=location,
            state=state,
            code_verifier=verifier,
        )
    assert token["token_type"] == "Bearer"
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        options={"iss": {"values": [metadata["issuer"]]}},
        params={"nonce": nonce, "client_id": rp.client_id, "access_token": token["access_token"]},
    )
    claims.validate()  # iss, aud, exp, iat, auth_time, nonce, azp, at_hash
    assert claims["sub"] == user.user_id
