"""Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive, NQCHAR tokens."""

from __future__ import annotations

import re
from collections.abc import Iterable

from issuer.errors import InvalidRequestError, InvalidScopeError

# NQCHAR = %x21 / %x23-5B / %x5D-7E (RFC 6749 Appendix A.4)
SCOPE_TOKEN_PATTERN = r"[\x21\x23-\x5b\x5d-\x7e]+"  # noqa: S105 (a grammar, not a secret)
_SCOPE_TOKEN = re.compile(SCOPE_TOKEN_PATTERN)


def parse_scope(text: str) -> tuple[str, ...]:
    """Tokens in order, without repeats; a malformed token is ``invalid_scope``."""
    tokens: list[str] = []
    for token in text.split(" "):
        if not token:
            continue
        if not _SCOPE_TOKEN.fullmatch(token):
            raise InvalidScopeError("scope tokens must be printable ASCII without quotes or \\")
        if token not in tokens:
            tokens.append(token)
    return tuple(tokens)


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """For operator input (creating a client): the same grammar, as ``invalid_request``."""
    out: list[str] = []
    for token in " ".join(scopes).split():
        if not _SCOPE_TOKEN.fullmatch(token):
            raise InvalidRequestError(f"invalid scope token {token!r}")
        if token not in out:
            out.append(token)
    return tuple(out)


def grant_scope(requested: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 6749 §3.3: no scope asked means all allowed; more than allowed is refused."""
    if requested is None:
        return allowed
    asked = parse_scope(requested)
    extra = [s for s in asked if s not in allowed]
    if extra:
        raise InvalidScopeError("the requested scope exceeds what this client may have")
    return asked
