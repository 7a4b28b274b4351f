"""Offline verification of this issuer's access tokens, for resource services.

Imports nothing else from ``issuer`` and none of the server's dependencies: the
base install (``cryptography``, ``jwcrypto``) verifies with the standard
library (:class:`SyncVerifier`); the async :class:`JWKSClient` and
:class:`RevocationFeed` need the ``aiohttp`` extra and are imported on first
use. Adapters: :mod:`issuer.verifier.middleware` (aiohttp),
:mod:`issuer.verifier.asgi` (Starlette), :mod:`issuer.verifier.fastapi`,
:mod:`issuer.verifier.flask` and :mod:`issuer.verifier.wsgi`.
"""

from typing import TYPE_CHECKING, Any

from issuer.verifier.clock import ManualClock, UnixClock, system_clock
from issuer.verifier.core import (
    HeaderCache,
    Policy,
    VerificationKey,
    check_claims,
    check_header,
    load_jwks,
    parse_compact,
    verify_parsed,
    verify_token,
)
from issuer.verifier.errors import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExcessiveLifetimeError,
    ExpiredTokenError,
    KeySetUnavailableError,
    MalformedTokenError,
    MissingClaimError,
    NotYetValidError,
    RevokedTokenError,
    TokenError,
    UnknownKeyError,
    WrongAudienceError,
    WrongIssuerError,
    WrongTypeError,
)
from issuer.verifier.revocation import (
    FeedState,
    KeyRevocationChecker,
    RevocationChecker,
    RevocationList,
)
from issuer.verifier.sync import SyncJWKSClient, SyncRevocationFeed
from issuer.verifier.verifier import SyncVerifier, Verifier

if TYPE_CHECKING:
    from issuer.verifier.feed import RevocationFeed
    from issuer.verifier.jwks import JWKSClient


def __getattr__(name: str) -> Any:
    # The async transport needs aiohttp (``pip install 'issuer[aiohttp]'``): imported on use.
    if name == "JWKSClient":
        from issuer.verifier.jwks import JWKSClient

        return JWKSClient
    if name == "RevocationFeed":
        from issuer.verifier.feed import RevocationFeed

        return RevocationFeed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BadSignatureError",
    "DisallowedAlgorithmError",
    "ExcessiveLifetimeError",
    "ExpiredTokenError",
    "FeedState",
    "HeaderCache",
    "JWKSClient",
    "KeyRevocationChecker",
    "KeySetUnavailableError",
    "MalformedTokenError",
    "ManualClock",
    "MissingClaimError",
    "NotYetValidError",
    "Policy",
    "RevocationChecker",
    "RevocationFeed",
    "RevocationList",
    "RevokedTokenError",
    "SyncJWKSClient",
    "SyncRevocationFeed",
    "SyncVerifier",
    "TokenError",
    "UnixClock",
    "UnknownKeyError",
    "VerificationKey",
    "Verifier",
    "WrongAudienceError",
    "WrongIssuerError",
    "WrongTypeError",
    "check_claims",
    "check_header",
    "load_jwks",
    "parse_compact",
    "system_clock",
    "verify_parsed",
    "verify_token",
]
