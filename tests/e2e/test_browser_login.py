"""A real browser (Debian's Chromium, driven by Playwright) signs in through the login page.

The issuer runs on one origin, the relying party on a second, and a stranger's page
on a third: the browser follows the redirects, the test exchanges the code, the
page's headers and its CSRF refusal are checked, CORS lets the second origin read
/userinfo (after a preflight: the request carries Authorization) and not the third,
and the page is saved as docs/login-page.png for the README.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, async_playwright

from tests.conftest import MakeClient, MakeUser
from tests.http.browser import Pkce, exchange, query_of

CHROMIUM = os.environ.get("ISSUER_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "login-page.png"

pytestmark = pytest.mark.slow


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Chromium at {CHROMIUM} (./run test installs Debian's chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as pw:
        # Root in CI containers: Chromium's sandbox needs user namespaces it may not have.
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


async def site(html: str) -> TestServer:
    """A plain page on its own origin (127.0.0.1, its own port)."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_a_person_signs_in_with_chromium(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    browser: Browser,
) -> None:
    relying_party = await site("<!doctype html><title>app</title><p>Signed in</p>")
    stranger = await site("<!doctype html><title>elsewhere</title>")
    try:
        rp_origin = str(relying_party.make_url("")).rstrip("/")
        stranger_origin = str(stranger.make_url("")).rstrip("/")
        issuer = str(client.make_url("")).rstrip("/")
        redirect = f"{rp_origin}/callback"
        spa = await make_client(
            name="Example App",
            scopes="openid read",
            redirect_uris=(redirect,),
            first_party=True,
            public=True,
        )
        user = await make_user(username="ada", password="correct horse battery staple")
        pkce = Pkce.make()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": spa.client_id,
                "redirect_uri": redirect,
                "scope": "openid read",
                "state": "xyz",
                "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
            }
        )
        context = await browser.new_context(viewport={"width": 720, "height": 640})
        page = await context.new_page()

        # The login page: headers, focus, labels.
        response = await page.goto(f"{issuer}/authorize?{query}")
        assert response is not None
        assert response.status == 200
        assert "/interaction/" in page.url
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"
        assert await page.evaluate("document.activeElement.id") == "username"
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill("wrong")
        await page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        assert await alert.inner_text() == "The username or password is wrong."
        await page.get_by_label("Password").fill(user.password)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.get_by_label("Password").fill("")
        await page.screenshot(path=str(SCREENSHOT))
        await page.get_by_label("Password").fill(user.password)

        # Sign in: the browser follows the redirect to the relying party's origin.
        async with page.expect_navigation(url=f"{redirect}?**"):
            await page.get_by_role("button", name="Sign in").click()
        back = query_of(page.url)
        assert back["state"] == "xyz"
        assert back["iss"] == "http://issuer.test"
        assert await page.inner_text("p") == "Signed in"
        tokens = await exchange(
            client,
            back["code"],
            client_id=spa.client_id,
            verifier=pkce.verifier,
            redirect_uri=redirect,
        )
        assert tokens.status == 200
        issued = await tokens.json()
        access_token = issued["access_token"]

        # CORS: the app's origin reads /userinfo (a preflighted request), a stranger cannot.
        fetch = """async ([url, token]) => {
            try {
                const r = await fetch(url, {headers: {Authorization: 'Bearer ' + token}});
                return [r.status, await r.json()];
            } catch (e) { return ['blocked', String(e)]; }
        }"""
        status, body = await page.evaluate(fetch, [f"{issuer}/userinfo", access_token])
        assert status == 200
        assert body["preferred_username"] == "ada"
        await page.goto(stranger_origin + "/")
        status, _ = await page.evaluate(fetch, [f"{issuer}/userinfo", access_token])
        assert status == "blocked"

        await page.goto(rp_origin + "/")
        # The app's own page refreshes through /token and revokes through /revoke (CORS).
        post = """async ([url, form]) => {
            try {
                const r = await fetch(url, {method: 'POST', body: new URLSearchParams(form)});
                return [r.status, await r.text()];
            } catch (e) { return ['blocked', String(e)]; }
        }"""
        status, text = await page.evaluate(
            post,
            [
                f"{issuer}/token",
                {
                    "grant_type": "refresh_token",
                    "refresh_token": issued["refresh_token"],
                    "client_id": spa.client_id,
                },
            ],
        )
        assert status == 200, text
        status, _ = await page.evaluate(
            post, [f"{issuer}/revoke", {"token": access_token, "client_id": spa.client_id}]
        )
        assert status == 200
        tokens = await exchange(
            client,
            back["code"],
            client_id=spa.client_id,
            verifier=pkce.verifier,
            redirect_uri=redirect,
        )
        assert tokens.status == 400  # the code was used once already

        # CSRF: a stranger's page posts a login form to the issuer: refused.
        start = await context.new_page()
        await start.goto(f"{issuer}/authorize?{query}&prompt=login")
        target = start.url + "/login"
        await page.set_content(
            f'<form method="post" action="{target}"><input name="username" value="ada">'
            '<input name="password" value="x"><button>go</button></form>'
        )
        async with page.expect_navigation():
            await page.click("button")
        assert "not sent from this page" in await page.inner_text("body")
        await context.close()
    finally:
        await relying_party.close()
        await stranger.close()
    assert SCREENSHOT.stat().st_size > 5000
