"""``grant_type=authorization_code`` (RFC 6749 §4.1.3) with PKCE (RFC 7636 §4.5-4.6).

One transaction holds the code's row lock from the first look to the last
write: the code is spent, the refresh family opened (it joins the ordinary
rotation and reuse machinery), the family recorded on the code and on the
browser session, all or nothing. A second use of a code finds it spent and
revokes the family it started, with every access token issued from it
(RFC 6749 §4.1.2: the code has leaked). A failed PKCE check or a redirect URI
that differs also spends the code: a guesser gets one try.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import replace
from enum import Enum

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import InvalidGrantError, UnauthorizedClientError
from issuer.jose.id_token import IdTokenRequest, id_token_claims
from issuer.jose.tokens import ID_TOKEN_TYP
from issuer.keyring import Keyring
from issuer.services.authorization import hash_code
from issuer.services.grants import TokenResponse
from issuer.services.sessions import start_session
from issuer.store.base import AuditEvent, ClientRecord
from issuer.store.login_base import AuthorizationCodeRecord, BrowserLoginStore

log = logging.getLogger(__name__)
BAD_CODE = "the authorization code is invalid, expired or used"
# RFC 7636 §4.1: 43 to 128 unreserved characters.
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


class Outcome(Enum):
    ISSUED = "issued"
    INVALID = "invalid"
    REPLAYED = "replayed"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_ok(challenge: str, verifier: str | None) -> bool:
    if verifier is None or not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)


async def exchange_code(
    store: BrowserLoginStore,
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    client: ClientRecord,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None,
) -> TokenResponse:
    if not client.redirect_uris:
        raise UnauthorizedClientError("this client has no redirect URIs registered")
    code_hash = hash_code(code[:200])
    actor = f"client:{client.client_id}"
    async with store.login() as tx:
        found = await tx.lock_code(code_hash)
        now = clock.now()  # read after the lock is held
        outcome, tokens, record = Outcome.INVALID, None, found
        if found is None or found.client_id != client.client_id:
            # Another client's code spends nothing: it would only lock the owner out.
            pass
        elif found.used_at is not None:
            outcome = Outcome.REPLAYED
            if found.family_id is not None:
                await tx.revoke_family(found.family_id, now, settings.clock_leeway)
            await tx.add_audit(
                AuditEvent(
                    now,
                    actor,
                    "authorization.code_replay",
                    found.user_id,
                    {"family": found.family_id},
                )
            )
        elif await tx.spend_code(code_hash, now):
            user = await tx.get_user(found.user_id)
            if (
                now < found.expires_at
                and redirect_uri == found.redirect_uri
                and pkce_ok(found.code_challenge, code_verifier)
                and user is not None
                and not user.disabled
            ):
                access = await start_session(
                    tx, keyring, settings, clock, user=user, client=client, scope=found.scope
                )
                family_id = await tx.family_of_access_token(str(access.claims["jti"]))
                assert family_id is not None  # recorded by start_session in this transaction
                await tx.set_code_family(code_hash, family_id)
                if found.session_hash is not None:
                    await tx.link_session_family(family_id, found.session_hash)
                await tx.add_audit(
                    AuditEvent(
                        now,
                        actor,
                        "login.success",
                        user.user_id,
                        {"scope": " ".join(found.scope), "via": "authorization_code"},
                    )
                )
                tokens = replace(
                    access,
                    id_token=_id_token(keyring, settings, clock, found, access.access_token),
                )
                outcome = Outcome.ISSUED
    if outcome is Outcome.REPLAYED:
        log.warning(
            "authorization code replayed: the tokens issued from it are revoked",
            extra={"client_id": client.client_id, "family": record and record.family_id},
        )
    if tokens is None:
        raise InvalidGrantError(BAD_CODE)
    return tokens


def _id_token(
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    code: AuthorizationCodeRecord,
    access_token: str,
) -> str | None:
    """OpenID Connect Core §3.1.3.3: an ID token when the scope has ``openid``."""
    if "openid" not in code.scope:
        return None
    now = clock.now()
    signer = keyring.signer(now)
    claims = id_token_claims(
        IdTokenRequest(
            issuer=settings.issuer,
            subject=code.user_id,
            client_id=code.client_id,
            now=int(now.timestamp()),
            ttl=settings.access_token_ttl,
            auth_time=int(code.auth_time.timestamp()),
            nonce=code.nonce,
            access_token=access_token,
            alg=signer.alg,
        )
    )
    return signer.sign(claims, typ=ID_TOKEN_TYP)
