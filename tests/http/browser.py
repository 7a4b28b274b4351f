"""Driving the login page over HTTP like a browser without JavaScript would."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from aiohttp.test_utils import TestClient

REDIRECT = "https://app.example/callback"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@dataclass(frozen=True)
class Pkce:
    verifier: str = field(repr=False)
    challenge: str

    @classmethod
    def make(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_query(client_id: str, pkce: Pkce, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid read",
        "state": "st-" + secrets.token_urlsafe(8),
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def form_of(page: str) -> tuple[str, str]:
    """The first form's action and CSRF token."""
    action, csrf = _ACTION.search(page), _CSRF.search(page)
    assert action is not None, page
    assert csrf is not None, page
    return html.unescape(action.group(1)), html.unescape(csrf.group(1))


async def start(client: TestClient[Any, Any], params: dict[str, str]) -> Any:
    return await client.get("/authorize?" + urlencode(params), allow_redirects=False)


async def sign_in(
    client: TestClient[Any, Any], params: dict[str, str], username: str, password: str
) -> str:
    """Start at /authorize, fill in the login page; the Location sent back to the client."""
    resp = await start(client, params)
    assert resp.status == 303, await resp.text()
    page = await client.get(resp.headers["Location"])
    assert page.status == 200, await page.text()
    action, csrf = form_of(await page.text())
    done = await client.post(
        action,
        data={"csrf": csrf, "username": username, "password": password},
        allow_redirects=False,
    )
    assert done.status == 303, await done.text()
    return str(done.headers["Location"])


async def exchange(
    client: TestClient[Any, Any],
    code: str,
    *,
    client_id: str,
    verifier: str | None,
    redirect_uri: str = REDIRECT,
    headers: dict[str, str] | None = None,
) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    if not headers:
        data["client_id"] = client_id
    return await client.post("/token", data=data, headers=headers or {})
