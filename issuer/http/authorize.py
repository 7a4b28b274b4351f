"""``GET /authorize`` (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2): parse, one service
call, then a redirect (to the client, or to the login page) or the error page."""

from __future__ import annotations

from aiohttp import web

from issuer.appkeys import context_key
from issuer.http.login_openapi import AUTHORIZE
from issuer.http.operations import operation
from issuer.http.requests import storable
from issuer.interaction import cookies
from issuer.interaction.views import pages, see_other
from issuer.services.authorization import AuthorizationPageError, Redirect, authorize
from issuer.services.browser_sessions import login_store

MAX_PARAMS = 50


def query_params(request: web.Request) -> tuple[dict[str, str], set[str]]:
    """The parameters (empty ones count as omitted, RFC 6749 §3.1) and those repeated."""
    query = request.query
    if len(query) > MAX_PARAMS:
        raise AuthorizationPageError("too many parameters")
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name in query:
        values = query.getall(name)
        if not all(storable(v) for v in values) or not storable(name):
            raise AuthorizationPageError(
                f"parameter {name[:40]!r} contains a NUL or an invalid Unicode character"
            )
        if len(values) > 1:
            repeated.add(name)
        if values[0]:
            params[name] = values[0]
    return params, repeated


@operation(AUTHORIZE)
@pages
async def handle_authorize(request: web.Request) -> web.StreamResponse:
    ctx = request.app[context_key]
    settings = ctx.settings
    params, repeated = query_params(request)
    outcome = await authorize(
        login_store(ctx.store),
        settings,
        ctx.clock,
        params,
        repeated,
        session_secret=cookies.read(request, cookies.session_cookie(settings)),
        browser_secret=cookies.read(request, cookies.browser_cookie(settings)),
    )
    if isinstance(outcome, Redirect):
        # RFC 6749 §4.1.2: 302 (Found) back to the client.
        return web.Response(
            status=302, headers={"Location": outcome.location, "Cache-Control": "no-store"}
        )
    response = see_other(f"/interaction/{outcome.interaction_id}")
    if outcome.browser_secret is not None:
        # A browser session cookie (no Max-Age): it ends when the browser does.
        cookies.set_cookie(
            response, settings, cookies.browser_cookie(settings), outcome.browser_secret, None
        )
    return response
