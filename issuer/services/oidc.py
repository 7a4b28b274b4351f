"""OpenID Connect: UserInfo (Core §5.3), discovery metadata (Discovery §3),
RP-initiated logout (RP-Initiated Logout 1.0 §2-3), and consents (withdrawn by the operator).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import InsufficientScopeError, InvalidTokenError, NotFoundError
from issuer.jose.tokens import ID_TOKEN_TYP
from issuer.keyring import Keyring
from issuer.services.authorization import AuthorizationPageError, Redirect, redirect_with
from issuer.services.browser_sessions import csrf_ok, csrf_token, current_session
from issuer.services.interaction import CsrfError
from issuer.store.base import AuditEvent, ClientRecord
from issuer.store.login_base import BrowserLoginStore
from issuer.store.login_base import ConsentRecord as ConsentRecord
from issuer.verifier.core import Policy, verify_token
from issuer.verifier.errors import ExpiredTokenError, TokenError

CLAIMS = ("sub", "preferred_username", "roles")
LOGOUT_CSRF = "end_session"


async def userinfo(store: BrowserLoginStore, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The signed-in user, for a verified access token that carries ``openid``."""
    if "openid" not in str(claims.get("scope", "")).split():
        raise InsufficientScopeError("openid", "userinfo needs a token with the openid scope")
    user = await store.get_user(str(claims.get("sub")))
    if user is None or user.disabled or claims.get("sub") == claims.get("client_id"):
        raise InvalidTokenError("the access token names no user")
    return {"sub": user.user_id, "preferred_username": user.username, "roles": list(user.roles)}


def metadata(settings: Settings, scopes: list[str]) -> dict[str, Any]:
    """What discovery adds for browser login: exactly what is implemented."""
    base = settings.issuer
    return {
        "authorization_endpoint": f"{base}/authorize",
        "userinfo_endpoint": f"{base}/userinfo",
        "end_session_endpoint": f"{base}/end_session",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "id_token_signing_alg_values_supported": [settings.signing_alg],
        "subject_types_supported": ["public"],
        "scopes_supported": scopes,
        "claims_supported": ["iss", "aud", "exp", "iat", "auth_time", "nonce", "azp", *CLAIMS],
        "prompt_values_supported": ["none", "login", "consent"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


# -- RP-initiated logout --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    client_id: str | None
    post_logout_redirect_uri: str | None
    state: str | None


@dataclass(frozen=True, slots=True)
class ConfirmLogout:
    """Ask the user (a page with a CSRF-protected form)."""

    request: LogoutRequest
    csrf: str = field(repr=False)
    client_name: str | None


@dataclass(frozen=True, slots=True)
class SignedOut:
    """Nowhere registered to go back to: say so on a page."""


def _unverified_payload(token: str) -> dict[str, Any]:
    try:
        segment = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _hint_client_id(
    keyring: Keyring, settings: Settings, clock: Clock, hint: str, client_id: str | None
) -> str:
    """The client an ID token hint was issued to, its signature checked. An expired hint
    is accepted (RP-Initiated Logout §2: clients send the ID token they kept)."""
    payload = _unverified_payload(hint[:8192])
    audience = payload.get("aud")
    if not isinstance(audience, str) or (client_id is not None and audience != client_id):
        raise AuthorizationPageError("the id_token_hint was not issued to this client")
    policy = Policy(
        issuer=settings.issuer,
        audience=audience,
        algorithms=frozenset({settings.signing_alg}),
        typ=ID_TOKEN_TYP.lower(),  # the policy holds typ in lower case
        required_claims=("iss", "sub", "aud", "iat"),
        max_lifetime=None,
    )
    try:
        verify_token(hint, keyring.snapshot().verification_keys, policy, clock.now().timestamp())
    except ExpiredTokenError:
        # Raised after the signature held, before the issuer was compared: compare it here.
        if payload.get("iss") != settings.issuer:
            raise AuthorizationPageError("the id_token_hint is not a valid ID token") from None
    except TokenError:
        raise AuthorizationPageError("the id_token_hint is not a valid ID token") from None
    return audience


async def _logout_client(
    store: BrowserLoginStore,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    params: Mapping[str, str],
) -> tuple[ClientRecord | None, LogoutRequest]:
    client_id = params.get("client_id")
    hint = params.get("id_token_hint")
    if hint is not None:
        client_id = _hint_client_id(keyring, settings, clock, hint, client_id)
    client = None
    if client_id is not None:
        client = await store.get_client(client_id[:200])
        if client is None or client.disabled:
            raise AuthorizationPageError("the request names an unknown client")
    target = params.get("post_logout_redirect_uri")
    if target is not None and (client is None or target not in client.post_logout_redirect_uris):
        # Never a redirect to a URI the client did not register (an open redirector).
        raise AuthorizationPageError("post_logout_redirect_uri is not registered for the client")
    state = params.get("state")
    return client, LogoutRequest(
        None if client is None else client.client_id, target, None if target is None else state
    )


def _after_logout(request: LogoutRequest) -> Redirect | SignedOut:
    if request.post_logout_redirect_uri is None:
        return SignedOut()
    return Redirect(redirect_with(request.post_logout_redirect_uri, {"state": request.state}))


async def begin_logout(
    store: BrowserLoginStore,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    params: Mapping[str, str],
    *,
    session_secret: str | None,
    browser_secret: str | None,
) -> ConfirmLogout | Redirect | SignedOut:
    """``GET /end_session``: ask the signed-in user to confirm; otherwise go back at once."""
    client, request = await _logout_client(store, keyring, settings, clock, params)
    session = await current_session(store, clock, session_secret)
    if session is None or not browser_secret:
        return _after_logout(request)
    return ConfirmLogout(
        request, csrf_token(browser_secret, LOGOUT_CSRF), None if client is None else client.name
    )


async def end_session(
    store: BrowserLoginStore,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    params: Mapping[str, str],
    *,
    session_secret: str | None,
    browser_secret: str | None,
) -> Redirect | SignedOut:
    """``POST /end_session`` (the confirmation form): end the browser session and the
    refresh-token families it started, with their access tokens."""
    if not csrf_ok(browser_secret, LOGOUT_CSRF, params.get("csrf")):
        raise CsrfError()
    _, request = await _logout_client(store, keyring, settings, clock, params)
    session = await current_session(store, clock, session_secret)
    if session is not None:
        now = clock.now()
        async with store.login() as tx:
            families = await tx.end_browser_session(session.session_hash, now)
            for family_id in families:
                await tx.revoke_family(family_id, now, settings.clock_leeway)
            await tx.add_audit(
                AuditEvent(
                    now,
                    f"user:{session.user_id}",
                    "session.end",
                    session.user_id,
                    {"families": len(families), "client_id": request.client_id},
                )
            )
    return _after_logout(request)


# -- consents -------------------------------------------------------------------------


async def list_consents(store: BrowserLoginStore, user_id: str) -> list[ConsentRecord]:
    if await store.get_user(user_id) is None:
        raise NotFoundError("no such user")
    return await store.list_consents(user_id)


async def withdraw_consent(
    store: BrowserLoginStore,
    settings: Settings,
    clock: Clock,
    user_id: str,
    client_id: str,
    *,
    actor: str,
) -> int:
    """The client must ask the user again, and loses the sessions the consent allowed:
    its refresh families for this user are revoked with their access tokens."""
    now = clock.now()
    async with store.login() as tx:
        if not await tx.delete_consent(user_id, client_id):
            raise NotFoundError("no such consent")
        families = await tx.live_families(user_id, client_id)
        for family_id in families:
            await tx.revoke_family(family_id, now, settings.clock_leeway)
        await tx.add_audit(
            AuditEvent(
                now,
                actor,
                "consent.withdraw",
                user_id,
                {"client_id": client_id, "families": len(families)},
            )
        )
    return len(families)
