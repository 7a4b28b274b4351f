"""The authorization endpoint: RFC 6749 §4.1.1-4.1.2, PKCE (RFC 7636) as OAuth 2.1
requires it, OpenID Connect Core §3.1.2, and the ``iss`` response parameter (RFC 9207).

A request whose client or redirect URI cannot be trusted is answered with an
error page and never redirected (RFC 6749 §4.1.2.1: that would make this server
an open redirector); every other error goes back to the client's redirect URI
with ``error``, ``state`` and ``iss``. PKCE is required of every client, and
only S256: ``plain`` would hand the verifier to whoever sees the request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import (
    ConsentRequiredError,
    InvalidRequestError,
    InvalidScopeError,
    IssuerError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestUriNotSupportedError,
    UnsupportedResponseTypeError,
)
from issuer.services.browser_sessions import current_session, hash_secret, new_secret
from issuer.services.registration import redirect_uri_matches
from issuer.services.scopes import grant_scope
from issuer.store.base import AuditEvent, ClientRecord
from issuer.store.login_base import (
    AuthorizationCodeRecord,
    BrowserLoginStore,
    BrowserSessionRecord,
    InteractionRecord,
    LoginTx,
)

CODE_TTL = 60  # seconds; RFC 6749 §4.1.2 recommends at most 10 minutes, OAuth 2.1 less
INTERACTION_TTL = 600
MAX_STATE = 2000
MAX_NONCE = 500
PROMPTS = frozenset({"none", "login", "consent"})
# RFC 7636 §4.2: S256 of a 32-octet (or longer) verifier is 43 base64url characters.
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class AuthorizationPageError(IssuerError):
    """An error shown on the issuer's own page: the redirect URI cannot be trusted."""

    error = "invalid_request"
    status = 400


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request, as stored while the user signs in."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None
    code_challenge: str
    nonce: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizationRequest:
        return cls(
            client_id=data["client_id"],
            redirect_uri=data["redirect_uri"],
            scope=tuple(data["scope"]),
            state=data["state"],
            code_challenge=data["code_challenge"],
            nonce=data["nonce"],
            prompt=tuple(data["prompt"]),
            max_age=data["max_age"],
        )


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send the browser here (the client's redirect URI, with a code or an error)."""

    location: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartInteraction:
    """Show the login (or consent) page for this pending request."""

    interaction_id: str
    browser_secret: str | None = field(repr=False)  # a new binding cookie to set, if any


def redirect_with(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` added to its query (RFC 6749 §3.1.2: keep the query it has)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def error_redirect(settings: Settings, uri: str, state: str | None, error: IssuerError) -> Redirect:
    return Redirect(
        redirect_with(
            uri,
            {
                "error": error.error,
                "error_description": error.description,
                "state": state,
                "iss": settings.issuer,
            },
        )
    )


async def trusted_client(
    store: BrowserLoginStore, params: Mapping[str, str], repeated: set[str]
) -> tuple[ClientRecord, str]:
    """The client and redirect URI, or an :class:`AuthorizationPageError`."""
    if {"client_id", "redirect_uri"} & repeated:
        raise AuthorizationPageError("client_id or redirect_uri is repeated")
    client_id = params.get("client_id")
    if not client_id:
        raise AuthorizationPageError("the request names no client (client_id is missing)")
    client = await store.get_client(client_id[:200])
    if client is None or client.disabled:
        raise AuthorizationPageError("the request names an unknown client")
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        # OpenID Connect Core §3.1.2.1 requires it; asking for it always keeps one rule.
        raise AuthorizationPageError("the request has no redirect_uri")
    if not redirect_uri_matches(client.redirect_uris, redirect_uri):
        raise AuthorizationPageError(
            "the redirect_uri is not registered for this client (it is compared exactly)"
        )
    return client, redirect_uri


def parse_request(
    client: ClientRecord, redirect_uri: str, params: Mapping[str, str], repeated: set[str]
) -> AuthorizationRequest:
    """The rest of the request; errors here are redirected to the client."""
    if repeated:
        # RFC 6749 §3.1: parameters MUST NOT be included more than once.
        raise InvalidRequestError(f"parameter {sorted(repeated)[0][:40]} is repeated")
    if "request" in params:
        raise RequestNotSupportedError()
    if "request_uri" in params:
        raise RequestUriNotSupportedError()
    response_type = params.get("response_type")
    if response_type is None:
        raise InvalidRequestError("response_type is missing")
    if response_type != "code":
        raise UnsupportedResponseTypeError()
    if params.get("response_mode", "query") != "query":
        raise InvalidRequestError("only response_mode=query is supported")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
    if method != "S256":
        # RFC 7636 §4.4.1; OAuth 2.1 §4.1.1: plain (or no method, which means plain) refused.
        raise InvalidRequestError("code_challenge_method must be S256")
    if not _CHALLENGE.match(challenge):
        raise InvalidRequestError("code_challenge must be 43 base64url characters (S256)")
    scope = grant_scope(params.get("scope"), client.scopes)
    if not scope:
        raise InvalidScopeError("no scope was asked for and the client has none")
    prompt = tuple(params.get("prompt", "").split())
    if any(p not in PROMPTS for p in prompt):
        raise InvalidRequestError("prompt may be none, login or consent")
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values")
    max_age = None
    if "max_age" in params:
        text = params["max_age"]
        if not text.isdigit() or len(text) > 9:
            raise InvalidRequestError("max_age must be a number of seconds")
        max_age = int(text)
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > MAX_NONCE:
        raise InvalidRequestError("nonce is too long")
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=params.get("state"),
        code_challenge=challenge,
        nonce=nonce,
        prompt=prompt,
        max_age=max_age,
    )


def needs_login(
    request: AuthorizationRequest, session: BrowserSessionRecord | None, now: datetime
) -> bool:
    if session is None or "login" in request.prompt:
        return True
    # OpenID Connect Core §3.1.2.1: max_age forces a new login once it has passed.
    return request.max_age is not None and now - session.auth_time > timedelta(
        seconds=request.max_age
    )


async def needs_consent(
    store: BrowserLoginStore, client: ClientRecord, request: AuthorizationRequest, user_id: str
) -> bool:
    if "consent" in request.prompt:
        return True  # OpenID Connect Core §3.1.2.1: asked for, even by a first-party client
    if client.first_party:
        return False  # the operator's own applications
    consent = await store.get_consent(user_id, client.client_id)
    return consent is None or any(s not in consent.scope for s in request.scope)


async def authorize(
    store: BrowserLoginStore,
    settings: Settings,
    clock: Clock,
    params: Mapping[str, str],
    repeated: set[str],
    *,
    session_secret: str | None,
    browser_secret: str | None,
) -> Redirect | StartInteraction:
    """``GET /authorize``: a code at once within a browser session, or the login page."""
    client, redirect_uri = await trusted_client(store, params, repeated)
    state = params.get("state") if "state" not in repeated else None
    if state is not None and len(state) > MAX_STATE:
        # Too long to send back whole, and RFC 6749 says state comes back unchanged.
        raise AuthorizationPageError("state is too long")
    try:
        request = parse_request(client, redirect_uri, params, repeated)
        session = await current_session(store, clock, session_secret)
        now = clock.now()
        if needs_login(request, session, now):
            if "none" in request.prompt:
                raise LoginRequiredError()
            return await start_interaction(store, clock, request, browser_secret)
        assert session is not None
        if await needs_consent(store, client, request, session.user_id):
            if "none" in request.prompt:
                raise ConsentRequiredError()
            return await start_interaction(store, clock, request, browser_secret, session)
        async with store.login() as tx:
            return await issue_code(tx, settings, now, request, session)
    except IssuerError as exc:
        return error_redirect(settings, redirect_uri, state, exc)


async def start_interaction(
    store: BrowserLoginStore,
    clock: Clock,
    request: AuthorizationRequest,
    browser_secret: str | None,
    session: BrowserSessionRecord | None = None,
) -> StartInteraction:
    new_binding = None
    if not browser_secret or len(browser_secret) > 200:
        browser_secret = new_binding = new_secret()
    now = clock.now()
    interaction = InteractionRecord(
        interaction_id=secrets.token_urlsafe(16),
        browser_hash=hash_secret(browser_secret),
        client_id=request.client_id,
        request=request.as_json(),
        created_at=now,
        expires_at=now + timedelta(seconds=INTERACTION_TTL),
    )
    async with store.login() as tx:
        await tx.insert_interaction(interaction)
        if session is not None:
            # Signed in already; only consent is missing.
            await tx.set_interaction_login(
                interaction.interaction_id, session.user_id, session.session_hash, session.auth_time
            )
    return StartInteraction(interaction.interaction_id, new_binding)


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def issue_code(
    tx: LoginTx,
    settings: Settings,
    now: datetime,
    request: AuthorizationRequest,
    session: BrowserSessionRecord,
) -> Redirect:
    """RFC 6749 §4.1.2: a single-use code, bound to everything it was issued for."""
    code = secrets.token_urlsafe(32)
    await tx.insert_code(
        AuthorizationCodeRecord(
            code_hash=hash_code(code),
            client_id=request.client_id,
            user_id=session.user_id,
            redirect_uri=request.redirect_uri,
            scope=request.scope,
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            auth_time=session.auth_time,
            session_hash=session.session_hash,
            issued_at=now,
            expires_at=now + timedelta(seconds=CODE_TTL),
        )
    )
    await tx.add_audit(
        AuditEvent(
            now,
            f"user:{session.user_id}",
            "authorization.code",
            session.user_id,
            {"client_id": request.client_id, "scope": " ".join(request.scope)},
        )
    )
    return Redirect(
        redirect_with(
            request.redirect_uri,
            {"code": code, "state": request.state, "iss": settings.issuer},
        )
    )
