"""Browser sessions: who is signed in at the login page, and CSRF tokens for its forms.

The session cookie holds 256 random bits; only their SHA-256 is stored, so a
database dump signs no one in. A second cookie, the browser binding, is also
random: pending login requests are tied to it, and each form's CSRF token is an
HMAC under it, which a page on another site can neither read nor compute.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from issuer.clock import Clock
from issuer.config import Settings
from issuer.jose.tokens import b64url
from issuer.store.base import Store
from issuer.store.login_base import (
    BrowserLoginStore,
    BrowserSessionRecord,
    LoginTx,
    browser_login_store,
)


def login_store(store: Store) -> BrowserLoginStore:
    """The store as browser login uses it (both stores implement it)."""
    return browser_login_store(store)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(browser_secret: str, purpose: str) -> str:
    mac = hmac.new(browser_secret.encode(), purpose.encode(), hashlib.sha256).digest()
    return b64url(mac).decode("ascii")


def csrf_ok(browser_secret: str | None, purpose: str, presented: str | None) -> bool:
    if not browser_secret or not presented:
        return False
    return hmac.compare_digest(csrf_token(browser_secret, purpose), presented)


async def current_session(
    store: BrowserLoginStore, clock: Clock, secret: str | None
) -> BrowserSessionRecord | None:
    """The live session the cookie names, if its user may still sign in."""
    if not secret or len(secret) > 200:
        return None
    session = await store.get_browser_session(hash_secret(secret))
    if session is None or session.ended_at is not None or clock.now() >= session.expires_at:
        return None
    user = await store.get_user(session.user_id)
    if user is None or user.disabled:
        return None
    return session


async def open_browser_session(
    tx: LoginTx, settings: Settings, now: datetime, user_id: str
) -> tuple[str, BrowserSessionRecord]:
    """A new session (a new id at every login: no fixation); the cookie value and row."""
    secret = new_secret()
    record = BrowserSessionRecord(
        session_hash=hash_secret(secret),
        user_id=user_id,
        auth_time=now,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.browser_session_ttl),
    )
    await tx.insert_browser_session(record)
    return secret, record
