"""Offline verification of this issuer's access tokens, for resource services.

Imports nothing else from ``issuer``: a resource service can use it alone.
"""

from issuer.verifier.core import Policy, VerificationKey, load_jwks, parse_compact, verify_token
from issuer.verifier.errors import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExpiredTokenError,
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

__all__ = [
    "BadSignatureError",
    "DisallowedAlgorithmError",
    "ExpiredTokenError",
    "MalformedTokenError",
    "MissingClaimError",
    "NotYetValidError",
    "Policy",
    "RevokedTokenError",
    "TokenError",
    "UnknownKeyError",
    "VerificationKey",
    "WrongAudienceError",
    "WrongIssuerError",
    "WrongTypeError",
    "load_jwks",
    "parse_compact",
    "verify_token",
]
