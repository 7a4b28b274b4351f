"""Why a token was refused: one hierarchy, one class per failed check (after PyJWT)."""

from __future__ import annotations


class TokenError(Exception):
    """Base: the token must not be accepted. ``reason`` is a short stable code."""

    reason = "invalid_token"


class MalformedTokenError(TokenError):
    """Not a well-formed JWS compact serialization with JSON-object header and claims."""

    reason = "malformed"


class DisallowedAlgorithmError(TokenError):
    """The header's alg is not in the verifier's allow-list (RFC 8725 §3.1)."""

    reason = "disallowed_alg"


class UnknownKeyError(TokenError):
    """No key in the JWKS has the token's kid (or the kid is missing)."""

    reason = "unknown_key"


class BadSignatureError(TokenError):
    """The signature does not verify with the key named by kid."""

    reason = "bad_signature"


class ExpiredTokenError(TokenError):
    """exp is in the past, beyond the leeway."""

    reason = "expired"


class NotYetValidError(TokenError):
    """nbf or iat is in the future, beyond the leeway."""

    reason = "not_yet_valid"


class WrongIssuerError(TokenError):
    """iss is not exactly the expected issuer."""

    reason = "wrong_issuer"


class WrongAudienceError(TokenError):
    """aud does not contain the expected audience."""

    reason = "wrong_audience"


class WrongTypeError(TokenError):
    """The header typ is not at+jwt (RFC 9068 §4, RFC 8725 §3.11)."""

    reason = "wrong_type"


class RevokedTokenError(TokenError):
    """The token's jti is deny-listed, or its subject's tokens were cut off."""

    reason = "revoked"


class MissingClaimError(MalformedTokenError):
    """A required claim is absent or of the wrong type."""

    reason = "missing_claim"


class ExcessiveLifetimeError(TokenError):
    """exp - iat is longer than the issuer ever issues (Policy.max_lifetime)."""

    reason = "excessive_lifetime"


class KeySetUnavailableError(UnknownKeyError):
    """The JWKS could not be fetched and the cached copy is past its stale-if-error bound."""

    reason = "keys_unavailable"
