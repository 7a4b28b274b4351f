"""The user's part of an authorization request: the login and consent steps.

Kept apart from the protocol endpoints (as node-oidc-provider does): a pending
request waits here as an interaction, bound to the browser that started it,
until the user has signed in (and, for a third-party client, consented); then
it completes with a code. Sign-in shares the password grant's rules
(:func:`issuer.services.login.check_password`): argon2id, one answer and one
cost for unknown user and wrong password, the same throttling, the same audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import AccessDeniedError, InvalidGrantError, IssuerError, TooManyRequestsError
from issuer.keyring import Keyring
from issuer.services.authorization import (
    AuthorizationPageError,
    AuthorizationRequest,
    Redirect,
    error_redirect,
    issue_code,
    needs_consent,
)
from issuer.services.browser_sessions import (
    csrf_ok,
    csrf_token,
    current_session,
    hash_secret,
    open_browser_session,
)
from issuer.services.login import check_password, confirm_login
from issuer.store.base import AuditEvent, ClientRecord, UserRecord
from issuer.store.login_base import (
    BrowserLoginStore,
    BrowserSessionRecord,
    ConsentRecord,
    InteractionRecord,
    LoginTx,
)

EXPIRED = (
    "This sign-in request has expired or was started in another browser. "
    "Go back to the application and sign in again."
)
BAD_FORM = "The form was not sent from this page. Reload the page and try again."


class InteractionError(AuthorizationPageError):
    """The interaction is unknown, expired, or bound to another browser."""

    description = EXPIRED


class CsrfError(AuthorizationPageError):
    """A form post without this browser's CSRF token."""

    error = "invalid_request"
    status = 403
    description = BAD_FORM


class LoginFailedError(Exception):
    """Show the login form (``page``) again with this message (nothing is redirected)."""

    def __init__(
        self, page: InteractionPage, message: str, status: int, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.page = page
        self.message = message
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class InteractionPage:
    """What the login or consent page shows."""

    interaction_id: str
    stage: str  # "login" | "consent"
    client_name: str
    first_party: bool
    scope: tuple[str, ...]
    csrf: str = field(repr=False)
    form_targets: tuple[str, ...]  # where the forms' redirects may lead (CSP form-action)


@dataclass(frozen=True, slots=True)
class LoginDone:
    session_secret: str = field(repr=False)
    next: Redirect | InteractionPage


async def _load(
    store: BrowserLoginStore, clock: Clock, interaction_id: str, browser_secret: str | None
) -> tuple[InteractionRecord, ClientRecord, AuthorizationRequest]:
    if not browser_secret or len(interaction_id) > 100:
        raise InteractionError()
    interaction = await store.get_interaction(interaction_id)
    if (
        interaction is None
        or clock.now() >= interaction.expires_at
        or interaction.browser_hash != hash_secret(browser_secret)
    ):
        raise InteractionError()
    client = await store.get_client(interaction.client_id)
    if client is None or client.disabled:
        raise InteractionError()
    return interaction, client, AuthorizationRequest.from_json(interaction.request)


def form_targets(uri: str) -> tuple[str, ...]:
    """Where a form's redirect may lead, as a CSP ``form-action`` source."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return (f"{parts.scheme}://{parts.netloc}",)
    return (f"{parts.scheme}:",)


def _page(
    interaction: InteractionRecord,
    client: ClientRecord,
    request: AuthorizationRequest,
    browser_secret: str,
    stage: str,
) -> InteractionPage:
    return InteractionPage(
        interaction_id=interaction.interaction_id,
        stage=stage,
        client_name=client.name,
        first_party=client.first_party,
        scope=request.scope,
        csrf=csrf_token(browser_secret, f"interaction:{interaction.interaction_id}"),
        form_targets=form_targets(request.redirect_uri),
    )


async def show(
    store: BrowserLoginStore, clock: Clock, interaction_id: str, browser_secret: str | None
) -> InteractionPage:
    interaction, client, request = await _load(store, clock, interaction_id, browser_secret)
    assert browser_secret is not None
    stage = "login" if interaction.user_id is None else "consent"
    return _page(interaction, client, request, browser_secret, stage)


def _check_csrf(interaction_id: str, browser_secret: str | None, csrf: str | None) -> None:
    if not csrf_ok(browser_secret, f"interaction:{interaction_id}", csrf):
        raise CsrfError()


async def login(
    store: BrowserLoginStore,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    interaction_id: str,
    browser_secret: str | None,
    session_secret: str | None,
    csrf: str | None,
    username: str | None,
    password: str | None,
    address: str | None,
) -> LoginDone:
    """The login form was posted: sign the user in, then consent or a code."""
    _check_csrf(interaction_id, browser_secret, csrf)
    interaction, client, request = await _load(store, clock, interaction_id, browser_secret)
    assert browser_secret is not None
    form = _page(interaction, client, request, browser_secret, "login")
    if not username or not password:
        raise LoginFailedError(form, "Enter your username and password.", 400)
    try:
        checked = await check_password(
            store,
            keyring,
            settings,
            clock,
            username=username,
            password=password,
            address=address,
            actor=f"login-page:{client.client_id}",
        )
    except TooManyRequestsError as exc:
        raise LoginFailedError(
            form,
            "Too many failed attempts. Wait a few minutes and try again.",
            429,
            exc.retry_after,
        ) from None
    except InvalidGrantError:
        raise LoginFailedError(form, "The username or password is wrong.", 400) from None
    except IssuerError:
        # Too long a username or password: the same answer, nothing more to say.
        raise LoginFailedError(form, "The username or password is wrong.", 400) from None
    user = checked.user
    # The browser's session until now (prompt=login, max_age, another user): replaced below.
    previous = await current_session(store, clock, session_secret)
    now = clock.now()
    wants_consent = await needs_consent(store, client, request, user.user_id)
    busy = LoginFailedError(
        form,
        "Too many failed attempts. Wait a few minutes and try again.",
        429,
        checked.keys.retry_after,
    )
    # The login's bookkeeping, its session and its code (or consent step) commit together.
    async with store.login() as tx:
        if not await confirm_login(tx, settings, clock, checked):
            done = None  # refused: the audit row commits, the answer is 429
        else:
            done = await _signed_in(
                tx,
                settings,
                now,
                interaction,
                client,
                request,
                checked.user,
                browser_secret,
                wants_consent,
                address,
                previous,
            )
    if done is None:
        raise busy
    return done


async def _signed_in(
    tx: LoginTx,
    settings: Settings,
    now: datetime,
    interaction: InteractionRecord,
    client: ClientRecord,
    request: AuthorizationRequest,
    user: UserRecord,
    browser_secret: str,
    wants_consent: bool,
    address: str | None,
    previous: BrowserSessionRecord | None,
) -> LoginDone:
    secret, session = await open_browser_session(tx, settings, now, user.user_id)
    if previous is not None:
        # A browser holds one session. The same user signing in again keeps what the
        # first login started, so the browser's sign-out still ends it; another user
        # signing in ends the previous user's session here, as a sign-out would.
        if previous.user_id == user.user_id:
            await tx.move_session_families(previous.session_hash, session.session_hash)
            await tx.end_browser_session(previous.session_hash, now)
        else:
            for family_id in await tx.end_browser_session(previous.session_hash, now):
                await tx.revoke_family(family_id, now, settings.clock_leeway)
    await tx.add_audit(
        AuditEvent(
            now,
            f"login-page:{client.client_id}",
            "login.success",
            user.user_id,
            {"scope": " ".join(request.scope), "address": address, "via": "login_page"},
        )
    )
    if wants_consent:
        await tx.set_interaction_login(
            interaction.interaction_id, user.user_id, session.session_hash, session.auth_time
        )
        return LoginDone(secret, _page(interaction, client, request, browser_secret, "consent"))
    # Deleted in the transaction that issues the code: one interaction, one code.
    if not await tx.delete_interaction(interaction.interaction_id):
        raise InteractionError()
    return LoginDone(secret, await issue_code(tx, settings, now, request, session))


async def consent(
    store: BrowserLoginStore,
    settings: Settings,
    clock: Clock,
    *,
    interaction_id: str,
    browser_secret: str | None,
    csrf: str | None,
    allow: bool,
) -> Redirect:
    """The consent form was posted: remember the consent and issue a code, or refuse."""
    _check_csrf(interaction_id, browser_secret, csrf)
    interaction, client, request = await _load(store, clock, interaction_id, browser_secret)
    if interaction.user_id is None or interaction.session_hash is None:
        raise InteractionError()
    session = await store.get_browser_session(interaction.session_hash)
    if session is None or session.ended_at is not None or clock.now() >= session.expires_at:
        raise InteractionError()
    if not allow:
        async with store.login() as tx:
            await tx.delete_interaction(interaction_id)
        return error_redirect(
            settings,
            request.redirect_uri,
            request.state,
            AccessDeniedError("the user refused the request"),
        )
    now = clock.now()
    async with store.login() as tx:
        if not await tx.delete_interaction(interaction_id):
            raise InteractionError()
        await tx.save_consent(ConsentRecord(session.user_id, client.client_id, request.scope, now))
        await tx.add_audit(
            AuditEvent(
                now,
                f"user:{session.user_id}",
                "consent.grant",
                session.user_id,
                {"client_id": client.client_id, "scope": " ".join(request.scope)},
            )
        )
        return await issue_code(tx, settings, now, request, session)
