"""The two browser cookies: the session (who is signed in) and the browser binding.

Both hold only random values (their hashes are what the store keeps), are
``HttpOnly`` and ``SameSite=Lax`` (sent on the top-level redirect back from a
client, never on a cross-site form post), and on an HTTPS issuer ``Secure``
with the ``__Host-`` prefix (RFC 6265bis §4.1.3.2: no Domain, Path=/, Secure, so
no sibling subdomain can set or shadow them).
"""

from __future__ import annotations

from aiohttp import web

from issuer.config import Settings


def _secure(settings: Settings) -> bool:
    return settings.issuer.startswith("https://")


def session_cookie(settings: Settings) -> str:
    return "__Host-issuer-session" if _secure(settings) else "issuer-session"


def browser_cookie(settings: Settings) -> str:
    return "__Host-issuer-browser" if _secure(settings) else "issuer-browser"


def set_cookie(
    response: web.StreamResponse, settings: Settings, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=_secure(settings),
        httponly=True,
        samesite="Lax",
    )


def clear_cookie(response: web.StreamResponse, settings: Settings, name: str) -> None:
    response.del_cookie(name, path="/", secure=_secure(settings), httponly=True, samesite="Lax")


def read(request: web.Request, name: str) -> str | None:
    value = request.cookies.get(name)
    return value if value and len(value) <= 200 else None
