"""Reading OAuth requests: form bodies (RFC 6749 §3.2) and client authentication (§2.3)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aiohttp import web

from issuer.errors import InvalidClientError, InvalidRequestError
from issuer.http.requests import body_of, require_storable
from issuer.services.accounts import ClientCredentials

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 50


@dataclass(frozen=True, slots=True)
class Form:
    fields: dict[str, str]

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    def require(self, name: str) -> str:
        value = self.fields.get(name)
        if value is None:
            raise InvalidRequestError(f"missing parameter {name}")
        return value


async def read_form(request: web.Request) -> Form:
    if request.content_type != FORM_TYPE:
        raise InvalidRequestError(f"the body must be {FORM_TYPE}")
    raw = await body_of(request)
    try:
        pairs = parse_form(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("the form body is not valid UTF-8 form encoding") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            # RFC 6749 §3.1: request parameters MUST NOT be included more than once.
            raise InvalidRequestError(f"parameter {name} is repeated")
        require_storable(name, "a parameter name")
        require_storable(value, f"parameter {name}")
        fields[name] = value
    # RFC 6749 §3.1: parameters sent without a value are treated as omitted.
    return Form({k: v for k, v in fields.items() if v != ""})


def parse_form(text: str) -> list[tuple[str, str]]:
    """The pairs ``parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)``
    gives (WHATWG URL §5.1), without its per-field work where a field has nothing to
    decode: a token request is a few such fields, parsed on every call."""
    fields = text.split("&")
    if len(fields) > MAX_FIELDS:
        raise ValueError("too many fields")
    pairs = []
    for field in fields:
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append((form_decoded(name), form_decoded(value)))
    return pairs


def form_decoded(text: str) -> str:
    """``unquote_plus(text)``, which has nothing to do where there is no ``%`` or ``+``."""
    if "%" in text or "+" in text:
        return unquote_plus(text, errors="replace")
    return text


def client_credentials_of(request: web.Request, form: Form) -> ClientCredentials:
    """Who the client says it is; at most one authentication method (RFC 6749 §2.3)."""
    auth = request.headers.get("Authorization")
    if auth is not None:
        scheme, _, param = auth.partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClientError("use HTTP Basic or client_secret_post")
        if form.get("client_secret") is not None:
            raise InvalidRequestError("use only one client authentication method")
        try:
            decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            # binascii.Error, or characters outside ASCII that b64decode refuses itself.
            raise InvalidClientError("malformed Basic credentials") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise InvalidClientError("malformed Basic credentials")
        # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
        basic_id, secret = form_decoded(user), form_decoded(password)
        if "\x00" in basic_id or "\x00" in secret:
            # No client has one, and PostgreSQL cannot even compare a text with NUL in it.
            raise InvalidClientError("malformed Basic credentials")
        if form.get("client_id") not in (None, basic_id):
            raise InvalidRequestError("client_id in the body differs from the Basic credentials")
        return ClientCredentials(basic_id, secret, "client_secret_basic")
    posted_id = form.get("client_id")
    if posted_id is None:
        raise InvalidClientError("client authentication is required")
    posted_secret = form.get("client_secret")
    method = "client_secret_post" if posted_secret else "none"
    return ClientCredentials(posted_id, posted_secret, method)
