"""Offline verification of this issuer's access tokens, for resource services.

Imports nothing else from ``issuer`` and none of the server's dependencies: a
resource service needs only ``cryptography``, ``jwcrypto`` and ``aiohttp``.
The aiohttp middleware lives in :mod:`issuer.verifier.middleware`.
"""

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
from issuer.verifier.jwks import JWKSClient
from issuer.verifier.revocation import RevocationChecker, RevocationFeed, RevocationList
from issuer.verifier.verifier import Verifier

__all__ = [
    "BadSignatureError",
    "DisallowedAlgorithmError",
    "ExcessiveLifetimeError",
    "ExpiredTokenError",
    "HeaderCache",
    "JWKSClient",
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
