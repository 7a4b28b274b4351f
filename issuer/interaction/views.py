"""Handlers of the pages: ``/interaction/{id}`` (login, consent), ``/end_session``, the
stylesheet. Each parses the request, makes one service call, and renders a page or a
redirect; errors become an error page here, never JSON and never a redirect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from issuer.appkeys import context_key
from issuer.errors import IssuerError
from issuer.http.addresses import client_address
from issuer.http.forms import Form, read_form
from issuer.http.login_openapi import (
    CONSENT,
    END_SESSION,
    END_SESSION_FORM,
    INTERACTION,
    LOGIN,
    STYLESHEET,
)
from issuer.http.operations import operation
from issuer.http.requests import require_storable
from issuer.interaction import cookies
from issuer.interaction.pages import error_page, render
from issuer.services import interaction, oidc
from issuer.services.authorization import Redirect
from issuer.services.browser_sessions import login_store
from issuer.services.interaction import InteractionPage, LoginFailedError, form_targets

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pages(handler: Handler) -> Handler:
    """Render the service's refusals as the error page (status and message kept)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except IssuerError as exc:
            settings = request.app[context_key].settings
            return error_page(settings, _sentence(exc.description), exc.error, exc.status)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def see_other(location: str) -> web.Response:
    # 303: the browser follows with GET, whatever the method that led here.
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def interaction_page(
    request: web.Request,
    page: InteractionPage,
    *,
    error: str | None = None,
    username: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    settings = request.app[context_key].settings
    if page.stage == "login":
        return render(
            settings,
            "login.html",
            title="Sign in",
            status=status,
            form_targets=page.form_targets,
            headers=headers,
            page=page,
            error=error,
            username=username,
        )
    return render(
        settings,
        "consent.html",
        title="Allow access?",
        status=status,
        form_targets=page.form_targets,
        headers=headers,
        page=page,
    )


@operation(INTERACTION)
@pages
async def handle_interaction(request: web.Request) -> web.StreamResponse:
    ctx = request.app[context_key]
    page = await interaction.show(
        login_store(ctx.store),
        ctx.clock,
        request.match_info["interaction_id"],
        cookies.read(request, cookies.browser_cookie(ctx.settings)),
    )
    return interaction_page(request, page)


@operation(LOGIN)
@pages
async def handle_login(request: web.Request) -> web.StreamResponse:
    ctx = request.app[context_key]
    settings = ctx.settings
    form = await read_form(request)
    interaction_id = request.match_info["interaction_id"]
    browser_secret = cookies.read(request, cookies.browser_cookie(settings))
    try:
        done = await interaction.login(
            login_store(ctx.store),
            ctx.keyring,
            settings,
            ctx.clock,
            interaction_id=interaction_id,
            browser_secret=browser_secret,
            session_secret=cookies.read(request, cookies.session_cookie(settings)),
            csrf=form.get("csrf"),
            username=form.get("username"),
            password=form.get("password"),
            address=client_address(request, settings.trusted_proxies),
        )
    except LoginFailedError as exc:
        headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return interaction_page(
            request,
            exc.page,
            error=exc.message,
            username=(form.get("username") or "")[:200],
            status=exc.status,
            headers=headers,
        )
    if isinstance(done.next, Redirect):
        response = see_other(done.next.location)
    else:
        response = interaction_page(request, done.next)
    cookies.set_cookie(
        response,
        settings,
        cookies.session_cookie(settings),
        done.session_secret,
        settings.browser_session_ttl,
    )
    return response


@operation(CONSENT)
@pages
async def handle_consent(request: web.Request) -> web.StreamResponse:
    ctx = request.app[context_key]
    form = await read_form(request)
    decision = form.get("decision")
    redirect = await interaction.consent(
        login_store(ctx.store),
        ctx.settings,
        ctx.clock,
        interaction_id=request.match_info["interaction_id"],
        browser_secret=cookies.read(request, cookies.browser_cookie(ctx.settings)),
        csrf=form.get("csrf"),
        allow=decision == "allow",
    )
    return see_other(redirect.location)


def _logout_params(request: web.Request, form: Form | None) -> dict[str, str]:
    fields = dict(form.fields) if form is not None else dict(request.query.items())
    return {
        require_storable(k, "a parameter name"): require_storable(v, f"parameter {k[:40]!r}")
        for k, v in fields.items()
        if v
    }


@operation(END_SESSION)
@pages
async def handle_end_session(request: web.Request) -> web.StreamResponse:
    """OpenID Connect RP-Initiated Logout 1.0: GET asks."""
    return await _end_session(request)


@operation(END_SESSION_FORM)
@pages
async def handle_end_session_form(request: web.Request) -> web.StreamResponse:
    """The confirmation form's POST signs out."""
    return await _end_session(request)


async def _end_session(request: web.Request) -> web.StreamResponse:
    ctx = request.app[context_key]
    settings = ctx.settings
    store = login_store(ctx.store)
    session_secret = cookies.read(request, cookies.session_cookie(settings))
    browser_secret = cookies.read(request, cookies.browser_cookie(settings))
    if request.method == "GET":
        outcome = await oidc.begin_logout(
            store,
            ctx.keyring,
            settings,
            ctx.clock,
            _logout_params(request, None),
            session_secret=session_secret,
            browser_secret=browser_secret,
        )
        if isinstance(outcome, oidc.ConfirmLogout):
            return render(
                settings,
                "logout.html",
                title="Sign out",
                form_targets=_targets(outcome.request.post_logout_redirect_uri),
                csrf=outcome.csrf,
                request=outcome.request,
                client_name=outcome.client_name,
            )
    else:
        form = await read_form(request)
        outcome = await oidc.end_session(
            store,
            ctx.keyring,
            settings,
            ctx.clock,
            _logout_params(request, form),
            session_secret=session_secret,
            browser_secret=browser_secret,
        )
    if isinstance(outcome, Redirect):
        response: web.Response = see_other(outcome.location)
    else:
        response = render(settings, "signed_out.html", title="Signed out")
    if request.method == "POST":
        cookies.clear_cookie(response, settings, cookies.session_cookie(settings))
    return response


def _targets(uri: str | None) -> tuple[str, ...]:
    return () if uri is None else form_targets(uri)


def stylesheet_handler(path: str | None) -> Handler:
    """The built-in stylesheet, or the operator's (``ISSUER_LOGIN_STYLESHEET``), read once."""
    cached: list[bytes] = []

    @operation(STYLESHEET)
    async def handle_stylesheet(request: web.Request) -> web.StreamResponse:
        if not cached:
            if path is None:
                css = (resources.files("issuer.interaction") / "static" / "login.css").read_bytes()
            else:
                with open(path, "rb") as f:  # noqa: ASYNC230 - once, a small local file
                    css = f.read()
            cached.append(css)
        return web.Response(
            body=cached[0],
            content_type="text/css",
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return handle_stylesheet


def add_routes(app: web.Application) -> None:
    settings = app[context_key].settings
    app.router.add_get("/interaction/{interaction_id}", handle_interaction)
    app.router.add_post("/interaction/{interaction_id}/login", handle_login)
    app.router.add_post("/interaction/{interaction_id}/consent", handle_consent)
    app.router.add_get("/end_session", handle_end_session)
    app.router.add_post("/end_session", handle_end_session_form)
    stylesheet = None if settings.login_stylesheet is None else str(settings.login_stylesheet)
    app.router.add_get("/assets/login.css", stylesheet_handler(stylesheet))
