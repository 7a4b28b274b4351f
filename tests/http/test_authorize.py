"""The authorization code flow over HTTP on both stores: what works, and every refusal."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from tests.conftest import MakeClient, MakeUser, Refresh, RegisteredClient, RegisteredUser
from tests.http.browser import (
    REDIRECT,
    Pkce,
    authorize_query,
    exchange,
    query_of,
    sign_in,
    start,
)

ISS = "http://issuer.test"


@pytest.fixture
async def rp(make_client: MakeClient) -> RegisteredClient:
    """A confidential, first-party web app (no consent page)."""
    return await make_client(scopes="openid read", redirect_uris=(REDIRECT,), first_party=True)


@pytest.fixture
async def user(make_user: MakeUser) -> RegisteredUser:
    return await make_user(roles=("reader",))


async def code_for(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, pkce: Pkce
) -> str:
    params = authorize_query(rp.client_id, pkce)
    back = query_of(await sign_in(client, params, user.username, user.password))
    assert back["state"] == params["state"]
    assert back["iss"] == ISS
    return back["code"]


async def test_confidential_client_gets_tokens_and_the_refresh_token_rotates(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, refresh: Refresh
) -> None:
    pkce = Pkce.make()
    code = await code_for(client, rp, user, pkce)
    resp = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert resp.headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "openid read"
    assert {"access_token", "refresh_token", "id_token"} <= set(body)
    # The refresh token joined the ordinary family machinery: it rotates once.
    again = await refresh(rp, body["refresh_token"])
    assert again.status == 200, await again.text()
    reuse = await refresh(rp, body["refresh_token"])
    assert reuse.status == 400
    assert (await reuse.json())["error"] == "invalid_grant"


async def test_public_client_exchanges_with_client_id_only(
    client: TestClient[Any, Any], make_client: MakeClient, user: RegisteredUser
) -> None:
    spa = await make_client(
        scopes="openid read", redirect_uris=(REDIRECT,), first_party=True, public=True
    )
    pkce = Pkce.make()
    code = await code_for(client, spa, user, pkce)
    resp = await exchange(client, code, client_id=spa.client_id, verifier=pkce.verifier)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    "verifier",
    [None, "x" * 43, "short", Pkce.make().verifier],
    ids=["missing", "wrong", "malformed", "another-pairs"],
)
async def test_a_wrong_or_missing_code_verifier_is_refused_and_spends_the_code(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, verifier: str | None
) -> None:
    pkce = Pkce.make()
    code = await code_for(client, rp, user, pkce)
    resp = await exchange(
        client, code, client_id=rp.client_id, verifier=verifier, headers=rp.basic()
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"
    # One try: the right verifier afterwards finds the code spent.
    right = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    assert right.status == 400


async def test_a_replayed_code_is_refused_and_revokes_what_it_issued(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, refresh: Refresh
) -> None:
    pkce = Pkce.make()
    code = await code_for(client, rp, user, pkce)
    first = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    tokens = await first.json()
    assert first.status == 200
    second = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    assert second.status == 400
    assert (await second.json())["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    gone = await refresh(rp, tokens["refresh_token"])
    assert gone.status == 400
    info = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status == 401


async def test_an_expired_code_is_refused(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, clock: SettableClock
) -> None:
    pkce = Pkce.make()
    code = await code_for(client, rp, user, pkce)
    clock.advance(60)
    resp = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_a_code_just_inside_its_60_seconds_works(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, clock: SettableClock
) -> None:
    pkce = Pkce.make()
    code = await code_for(client, rp, user, pkce)
    clock.advance(59)
    resp = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    assert resp.status == 200, await resp.text()


async def test_the_code_is_bound_to_its_client(
    client: TestClient[Any, Any],
    rp: RegisteredClient,
    user: RegisteredUser,
    make_client: MakeClient,
) -> None:
    other = await make_client(scopes="openid read", redirect_uris=(REDIRECT,), first_party=True)
    pkce = Pkce.make()
    code = await code_for(client, rp, user, pkce)
    stolen = await exchange(
        client, code, client_id=other.client_id, verifier=pkce.verifier, headers=other.basic()
    )
    assert stolen.status == 400
    assert (await stolen.json())["error"] == "invalid_grant"
    # A stranger's attempt spends nothing: the owner still gets its tokens.
    own = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    assert own.status == 200


async def test_token_request_redirect_uri_must_match_exactly(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    pkce = Pkce.make()
    code = await code_for(client, rp, user, pkce)
    resp = await exchange(
        client,
        code,
        client_id=rp.client_id,
        verifier=pkce.verifier,
        redirect_uri=REDIRECT + "/",
        headers=rp.basic(),
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT[:-1] + "K",  # one character differs
        REDIRECT + "/",
        REDIRECT.replace("https", "http"),
        REDIRECT + "?x=1",
        "https://evil.example/callback",
    ],
)
async def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(
    client: TestClient[Any, Any], rp: RegisteredClient, redirect_uri: str
) -> None:
    resp = await start(
        client, authorize_query(rp.client_id, Pkce.make(), redirect_uri=redirect_uri)
    )
    assert resp.status == 400
    assert "Location" not in resp.headers
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert 'role="alert"' in page
    assert "redirect_uri" in page


async def test_an_unknown_client_gets_an_error_page_and_no_redirect(
    client: TestClient[Any, Any],
) -> None:
    resp = await start(client, authorize_query("no-such-client", Pkce.make()))
    assert resp.status == 400
    assert "Location" not in resp.headers
    assert "unknown client" in await resp.text()
    missing = await start(client, authorize_query("", Pkce.make()))
    assert missing.status == 400
    assert "Location" not in missing.headers


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),  # absent means plain
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"request": "eyJ..."}, "request_not_supported"),
    ],
)
async def test_other_errors_redirect_with_error_state_and_iss(
    client: TestClient[Any, Any], rp: RegisteredClient, change: dict[str, str], error: str
) -> None:
    params = authorize_query(rp.client_id, Pkce.make(), state="kept & / é=", **change)
    resp = await start(client, params)
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    back = query_of(location)
    assert back["error"] == error
    assert back["state"] == "kept & / é="
    assert back["iss"] == ISS
    assert "code" not in back


async def test_state_comes_back_unchanged_with_the_code(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    state = "a b+c&d=e/é%20\"'<>"
    params = authorize_query(rp.client_id, Pkce.make(), state=state)
    back = query_of(await sign_in(client, params, user.username, user.password))
    assert back["state"] == state


async def test_a_repeated_parameter_is_refused(
    client: TestClient[Any, Any], rp: RegisteredClient
) -> None:
    params = authorize_query(rp.client_id, Pkce.make())
    query = urlencode(params) + "&scope=read"
    resp = await client.get("/authorize?" + query, allow_redirects=False)
    assert resp.status == 302
    assert query_of(resp.headers["Location"])["error"] == "invalid_request"
    twice = urlencode(params) + "&client_id=other"
    page = await client.get("/authorize?" + twice, allow_redirects=False)
    assert page.status == 400
    assert "Location" not in page.headers


async def test_a_redirect_uri_with_a_query_keeps_it(
    client: TestClient[Any, Any], make_client: MakeClient, user: RegisteredUser
) -> None:
    target = "https://app.example/cb?tenant=7"
    rp = await make_client(scopes="openid", redirect_uris=(target,), first_party=True)
    params = authorize_query(rp.client_id, Pkce.make(), redirect_uri=target, scope="openid")
    location = await sign_in(client, params, user.username, user.password)
    assert location.startswith(target + "&code=")


async def test_a_native_app_may_use_any_port_on_a_loopback_ip(
    client: TestClient[Any, Any], make_client: MakeClient, user: RegisteredUser
) -> None:
    app = await make_client(
        scopes="openid",
        redirect_uris=("http://127.0.0.1/callback", "http://localhost/callback"),
        first_party=True,
        public=True,
    )
    pkce = Pkce.make()
    params = authorize_query(
        app.client_id, pkce, redirect_uri="http://127.0.0.1:51004/callback", scope="openid"
    )
    location = await sign_in(client, params, user.username, user.password)
    assert location.startswith("http://127.0.0.1:51004/callback?code=")
    resp = await exchange(
        client,
        query_of(location)["code"],
        client_id=app.client_id,
        verifier=pkce.verifier,
        redirect_uri="http://127.0.0.1:51004/callback",
    )
    assert resp.status == 200
    # RFC 8252 §8.3: no port leeway for the name localhost, nor for another path.
    for uri in ("http://localhost:51004/callback", "http://127.0.0.1:51004/other"):
        page = await start(client, authorize_query(app.client_id, pkce, redirect_uri=uri))
        assert page.status == 400
        assert "Location" not in page.headers


async def test_a_client_without_redirect_uris_cannot_use_the_code_grant(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    service = await make_client(scopes="read")
    resp = await client.post(
        "/token", data={"grant_type": "authorization_code", "code": "x"}, headers=service.basic()
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "unauthorized_client"
