"""The login, consent and sign-out pages as a browser without JavaScript sees them."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.context import Context
from issuer.store.login_base import browser_login_store
from tests.conftest import MakeClient, MakeUser, Refresh, RegisteredClient, RegisteredUser
from tests.http.browser import (
    REDIRECT,
    Pkce,
    authorize_query,
    exchange,
    form_of,
    query_of,
    sign_in,
    start,
)

LOGOUT = "https://app.example/signed-out"


@pytest.fixture
async def rp(make_client: MakeClient) -> RegisteredClient:
    return await make_client(
        scopes="openid read",
        redirect_uris=(REDIRECT,),
        post_logout_redirect_uris=(LOGOUT,),
        first_party=True,
    )


@pytest.fixture
async def third_party(make_client: MakeClient) -> RegisteredClient:
    return await make_client(name="Photo Printer", scopes="openid read", redirect_uris=(REDIRECT,))


@pytest.fixture
async def user(make_user: MakeUser) -> RegisteredUser:
    return await make_user()


async def open_login_page(client: TestClient[Any, Any], rp: RegisteredClient) -> Any:
    resp = await start(client, authorize_query(rp.client_id, Pkce.make()))
    assert resp.status == 303
    return await client.get(resp.headers["Location"])


async def test_the_login_page_is_accessible_and_locked_down(
    client: TestClient[Any, Any], rp: RegisteredClient
) -> None:
    page = await open_login_page(client, rp)
    assert page.status == 200
    assert page.content_type == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # default-src 'none': no script at all
    assert "default-src 'none'" in csp
    assert "form-action 'self' https://app.example" in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    body = await page.text()
    assert '<html lang="en">' in body
    assert '<label for="username">' in body
    assert '<label for="password">' in body
    assert 'autocomplete="current-password"' in body
    assert "autofocus" in body
    assert "<script" not in body
    assert '<link rel="stylesheet" href="/assets/login.css">' in body
    assert "issuer" in body  # the display name


async def test_the_binding_cookie_is_httponly_and_lax(
    client: TestClient[Any, Any], rp: RegisteredClient
) -> None:
    resp = await start(client, authorize_query(rp.client_id, Pkce.make()))
    cookie = resp.cookies["issuer-browser"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"


async def test_a_wrong_password_shows_the_form_again_with_an_announced_error(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    page = await open_login_page(client, rp)
    action, csrf = form_of(await page.text())
    for username in (user.username, "nobody-at-all"):
        resp = await client.post(
            action,
            data={"csrf": csrf, "username": username, "password": "not the password of anyone"},
            allow_redirects=False,
        )
        assert resp.status == 400
        assert "Location" not in resp.headers
        body = await resp.text()
        assert 'role="alert"' in body
        assert "The username or password is wrong." in body
        assert 'aria-invalid="true"' in body
        assert 'aria-describedby="form-error"' in body
        assert f'value="{username}"' in body
    # The same request still completes with the right password.
    done = await client.post(
        action,
        data={"csrf": csrf, "username": user.username, "password": user.password},
        allow_redirects=False,
    )
    assert done.status == 303
    assert done.headers["Location"].startswith(REDIRECT + "?code=")


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
async def test_a_login_post_without_the_pages_csrf_token_is_refused(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, csrf: str | None
) -> None:
    page = await open_login_page(client, rp)
    action, _ = form_of(await page.text())
    data = {"username": user.username, "password": user.password}
    if csrf is not None:
        data["csrf"] = csrf
    resp = await client.post(action, data=data, allow_redirects=False)
    assert resp.status == 403
    assert "Location" not in resp.headers
    assert "issuer-session" not in resp.cookies
    assert "not sent from this page" in await resp.text()


async def test_another_browser_cannot_use_the_login_request(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    page = await open_login_page(client, rp)
    action, csrf = form_of(await page.text())
    client.session.cookie_jar.clear()  # the link sent to someone else
    resp = await client.post(
        action,
        data={"csrf": csrf, "username": user.username, "password": user.password},
        allow_redirects=False,
    )
    assert resp.status == 403


async def test_the_session_cookie_holds_an_opaque_id_stored_hashed(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, ctx: Context
) -> None:
    await sign_in(client, authorize_query(rp.client_id, Pkce.make()), user.username, user.password)
    cookie = next(c for c in client.session.cookie_jar if c.key == "issuer-session")
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    store = browser_login_store(ctx.store)
    assert await store.get_browser_session(cookie.value) is None
    found = await store.get_browser_session(hashlib.sha256(cookie.value.encode()).hexdigest())
    assert found is not None
    assert found.user_id == user.user_id


async def test_within_a_session_authorize_redirects_at_once_and_prompt_none_works(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    none = await start(client, authorize_query(rp.client_id, Pkce.make(), prompt="none"))
    assert none.status == 302
    assert query_of(none.headers["Location"])["error"] == "login_required"
    await sign_in(client, authorize_query(rp.client_id, Pkce.make()), user.username, user.password)
    again = await start(client, authorize_query(rp.client_id, Pkce.make()))
    assert again.status == 302
    assert "code" in query_of(again.headers["Location"])
    quiet = await start(client, authorize_query(rp.client_id, Pkce.make(), prompt="none"))
    assert "code" in query_of(quiet.headers["Location"])


async def test_prompt_login_and_max_age_force_a_fresh_login(
    client: TestClient[Any, Any],
    rp: RegisteredClient,
    user: RegisteredUser,
    clock: SettableClock,
) -> None:
    await sign_in(client, authorize_query(rp.client_id, Pkce.make()), user.username, user.password)
    forced = await start(client, authorize_query(rp.client_id, Pkce.make(), prompt="login"))
    assert forced.status == 303
    assert forced.headers["Location"].startswith("/interaction/")
    fresh = await start(client, authorize_query(rp.client_id, Pkce.make(), max_age="300"))
    assert fresh.status == 302
    clock.advance(301)
    stale = await start(client, authorize_query(rp.client_id, Pkce.make(), max_age="300"))
    assert stale.status == 303
    none = await start(
        client, authorize_query(rp.client_id, Pkce.make(), max_age="300", prompt="none")
    )
    assert query_of(none.headers["Location"])["error"] == "login_required"


async def test_a_third_party_client_gets_a_consent_page_remembered_per_user_and_client(
    client: TestClient[Any, Any],
    refresh: Refresh,
    third_party: RegisteredClient,
    user: RegisteredUser,
    admin: TestClient[Any, Any],
    admin_token: str,
) -> None:
    pkce = Pkce.make()
    resp = await start(client, authorize_query(third_party.client_id, pkce))
    page = await client.get(resp.headers["Location"])
    action, csrf = form_of(await page.text())
    consent = await client.post(
        action,
        data={"csrf": csrf, "username": user.username, "password": user.password},
        allow_redirects=False,
    )
    assert consent.status == 200
    body = await consent.text()
    assert "Photo Printer" in body
    assert "<code>openid</code>" in body
    assert "<code>read</code>" in body
    action, csrf = form_of(body)
    done = await client.post(
        action, data={"csrf": csrf, "decision": "allow"}, allow_redirects=False
    )
    assert done.status == 303
    code = query_of(done.headers["Location"])["code"]
    tokens = await exchange(
        client,
        code,
        client_id=third_party.client_id,
        verifier=pkce.verifier,
        headers=third_party.basic(),
    )
    assert tokens.status == 200
    # Remembered: the next request goes straight back with a code.
    again = await start(client, authorize_query(third_party.client_id, Pkce.make()))
    assert again.status == 302
    assert "code" in query_of(again.headers["Location"])
    # Withdrawn through the admin API: asked again (prompt=none says so).
    auth = {"Authorization": f"Bearer {admin_token}"}
    listed = await admin.get(f"/admin/users/{user.user_id}/consents", headers=auth)
    assert [c["client_id"] for c in (await listed.json())["consents"]] == [third_party.client_id]
    gone = await admin.delete(
        f"/admin/users/{user.user_id}/consents/{third_party.client_id}", headers=auth
    )
    assert gone.status == 204
    # The sessions the consent allowed end with it.
    revoked = await refresh(third_party, (await tokens.json())["refresh_token"])
    assert revoked.status == 400
    none = await start(client, authorize_query(third_party.client_id, Pkce.make(), prompt="none"))
    assert query_of(none.headers["Location"])["error"] == "consent_required"
    asked = await start(client, authorize_query(third_party.client_id, Pkce.make()))
    assert asked.status == 303
    missing = await admin.delete(
        f"/admin/users/{user.user_id}/consents/{third_party.client_id}", headers=auth
    )
    assert missing.status == 404


async def test_denying_consent_redirects_access_denied(
    client: TestClient[Any, Any], third_party: RegisteredClient, user: RegisteredUser
) -> None:
    params = authorize_query(third_party.client_id, Pkce.make())
    resp = await start(client, params)
    page = await client.get(resp.headers["Location"])
    action, csrf = form_of(await page.text())
    consent = await client.post(
        action, data={"csrf": csrf, "username": user.username, "password": user.password}
    )
    action, csrf = form_of(await consent.text())
    done = await client.post(action, data={"csrf": csrf, "decision": "deny"}, allow_redirects=False)
    back = query_of(done.headers["Location"])
    assert back["error"] == "access_denied"
    assert back["state"] == params["state"]
    forged = await client.post(action, data={"csrf": "x", "decision": "allow"})
    assert forged.status == 403


async def test_logout_ends_the_browser_session_and_its_refresh_families(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, refresh: Refresh
) -> None:
    pkce = Pkce.make()
    location = await sign_in(
        client, authorize_query(rp.client_id, pkce), user.username, user.password
    )
    tokens = await (
        await exchange(
            client,
            query_of(location)["code"],
            client_id=rp.client_id,
            verifier=pkce.verifier,
            headers=rp.basic(),
        )
    ).json()
    ask = await client.get(
        "/end_session",
        params={"client_id": rp.client_id, "post_logout_redirect_uri": LOGOUT, "state": "bye"},
    )
    assert ask.status == 200
    assert "frame-ancestors 'none'" in ask.headers["Content-Security-Policy"]
    action, csrf = form_of(await ask.text())
    assert action == "/end_session"
    forged = await client.post(action, data={"csrf": "forged"}, allow_redirects=False)
    assert forged.status == 403
    done = await client.post(
        action,
        data={
            "csrf": csrf,
            "client_id": rp.client_id,
            "post_logout_redirect_uri": LOGOUT,
            "state": "bye",
        },
        allow_redirects=False,
    )
    assert done.status == 303
    assert done.headers["Location"] == LOGOUT + "?state=bye"
    # The refresh family and its access token are revoked; the browser is signed out.
    assert (await refresh(rp, tokens["refresh_token"])).status == 400
    info = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status == 401
    none = await start(client, authorize_query(rp.client_id, Pkce.make(), prompt="none"))
    assert query_of(none.headers["Location"])["error"] == "login_required"


async def _code_tokens(
    client: TestClient[Any, Any], rp: RegisteredClient, location: str, pkce: Pkce
) -> dict[str, Any]:
    resp = await exchange(
        client,
        query_of(location)["code"],
        client_id=rp.client_id,
        verifier=pkce.verifier,
        headers=rp.basic(),
    )
    assert resp.status == 200
    tokens: dict[str, Any] = await resp.json()
    return tokens


async def _sign_out(client: TestClient[Any, Any], rp: RegisteredClient) -> None:
    ask = await client.get("/end_session", params={"client_id": rp.client_id})
    action, csrf = form_of(await ask.text())
    done = await client.post(
        action, data={"csrf": csrf, "client_id": rp.client_id}, allow_redirects=False
    )
    assert done.status in (200, 303)


async def test_logout_after_a_second_login_also_ends_the_first_logins_families(
    client: TestClient[Any, Any],
    rp: RegisteredClient,
    user: RegisteredUser,
    make_user: MakeUser,
    refresh: Refresh,
) -> None:
    # prompt=login replaces the browser's session: what the first login started must
    # still end with the browser's sign-out, not live on in a session no cookie names.
    first = Pkce.make()
    location = await sign_in(
        client, authorize_query(rp.client_id, first), user.username, user.password
    )
    before = await _code_tokens(client, rp, location, first)
    second = Pkce.make()
    location = await sign_in(
        client, authorize_query(rp.client_id, second, prompt="login"), user.username, user.password
    )
    after = await _code_tokens(client, rp, location, second)
    await _sign_out(client, rp)
    assert (await refresh(rp, after["refresh_token"])).status == 400
    assert (await refresh(rp, before["refresh_token"])).status == 400


async def test_another_user_signing_in_on_the_browser_ends_the_previous_users_session(
    client: TestClient[Any, Any],
    rp: RegisteredClient,
    user: RegisteredUser,
    make_user: MakeUser,
    refresh: Refresh,
) -> None:
    first = Pkce.make()
    location = await sign_in(
        client, authorize_query(rp.client_id, first), user.username, user.password
    )
    previous = await _code_tokens(client, rp, location, first)
    other = await make_user()
    second = Pkce.make()
    location = await sign_in(
        client,
        authorize_query(rp.client_id, second, prompt="login"),
        other.username,
        other.password,
    )
    current = await _code_tokens(client, rp, location, second)
    # The browser now belongs to the second user: the first user's sessions from it ended.
    assert (await refresh(rp, previous["refresh_token"])).status == 400
    assert (await refresh(rp, current["refresh_token"])).status == 200


async def test_prompt_consent_shows_the_consent_page_even_to_a_first_party_client(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    quiet = await sign_in(
        client, authorize_query(rp.client_id, Pkce.make()), user.username, user.password
    )
    assert "code" in query_of(quiet)
    asked = await start(client, authorize_query(rp.client_id, Pkce.make(), prompt="consent"))
    assert asked.status == 303
    page = await client.get(asked.headers["Location"])
    assert page.status == 200
    assert "Allow" in await page.text()


async def test_logout_never_redirects_to_an_unregistered_uri(
    client: TestClient[Any, Any], rp: RegisteredClient
) -> None:
    for params in (
        {"client_id": rp.client_id, "post_logout_redirect_uri": "https://evil.example/"},
        {"post_logout_redirect_uri": LOGOUT},  # no client named: nothing to compare with
        {"client_id": "no-such-client"},
    ):
        resp = await client.get("/end_session", params=params, allow_redirects=False)
        assert resp.status == 400
        assert "Location" not in resp.headers
    plain = await client.get("/end_session", allow_redirects=False)
    assert plain.status == 200
    assert "signed out" in await plain.text()


@pytest.mark.parametrize("settings_overrides", [{"issuer": "https://login.example"}])
async def test_on_https_the_cookies_are_secure_and_host_prefixed(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    resp = await start(client, authorize_query(rp.client_id, Pkce.make()))
    cookie = resp.cookies["__Host-issuer-browser"]
    assert cookie["secure"]
    assert cookie["httponly"]
    assert cookie["path"] == "/"
    assert not cookie["domain"]


async def test_the_stylesheet_is_served_and_replaceable(
    client: TestClient[Any, Any],
) -> None:
    css = await client.get("/assets/login.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    assert "ISSUER_LOGIN_STYLESHEET" in await css.text()


@pytest.mark.parametrize("settings_overrides", [{"login_max_failures": 2, "login_window": 600}])
async def test_the_page_shares_the_password_grants_throttling(
    client: TestClient[Any, Any],
    rp: RegisteredClient,
    user: RegisteredUser,
    ctx: Context,
) -> None:
    page = await open_login_page(client, rp)
    action, csrf = form_of(await page.text())
    statuses = []
    for _ in range(3):
        resp = await client.post(
            action,
            data={
                "csrf": csrf,
                "username": user.username,
                "password": "not the password of anyone",
            },
            allow_redirects=False,
        )
        statuses.append(resp.status)
    assert statuses == [400, 400, 429]
    assert int(resp.headers["Retry-After"]) > 0
    body = await resp.text()
    assert 'role="alert"' in body
    assert "Too many failed attempts" in body
    # Even the right password waits for the window, as with grant_type=password.
    right = await client.post(
        action,
        data={"csrf": csrf, "username": user.username, "password": user.password},
        allow_redirects=False,
    )
    assert right.status == 429
    actions = [e.action for e in await ctx.store.list_audit()]
    assert actions.count("login.failure") == 2
    assert "login.throttled" in actions
