"""OpenAPI 3.1 operations of browser login, attached to their handlers with
:func:`issuer.http.operations.operation`: the authorization endpoint, the pages,
UserInfo, and the admin's consent routes.

The pages answer HTML (``text/html``); ``/authorize`` answers a redirect, or an
error page when the client or its redirect URI cannot be trusted.
"""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]
Paths = dict[str, Doc]
ERROR = {"$ref": "#/components/schemas/OAuthError"}
HTML = {"text/html": {"schema": {"type": "string"}}}


def _page(description: str) -> Doc:
    return {"description": description, "content": HTML}


def _json(schema: Doc, description: str) -> Doc:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _redirect(description: str) -> Doc:
    return {
        "description": description,
        "headers": {"Location": {"description": "Where to go", "schema": {"type": "string"}}},
    }


def _query(name: str, description: str, required: bool = False) -> Doc:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


TOO_LARGE = _json(ERROR, "Request body larger than 64 KiB")
FORM_ERRORS = {
    "400": _page("The request expired, belongs to another browser, or is malformed"),
    "403": _page("The form did not come from this page (CSRF check failed)"),
    "413": TOO_LARGE,
}


def _form(properties: dict[str, str], required: list[str]) -> Doc:
    schema = {
        "type": "object",
        "required": required,
        "properties": {k: {"type": "string", "description": v} for k, v in properties.items()},
    }
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _public_paths() -> Paths:
    interaction = {
        "name": "interaction_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    userinfo_responses = {
        "200": _json(
            {
                "type": "object",
                "required": ["sub"],
                "properties": {
                    "sub": {"type": "string"},
                    "preferred_username": {"type": "string"},
                    "roles": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Claims about the user (OpenID Connect Core §5.3.2)",
        ),
        "401": _json(ERROR, "Missing, invalid, expired or revoked bearer token (RFC 6750 §3.1)"),
        "403": _json(ERROR, "The token lacks the openid scope (`insufficient_scope`)"),
    }
    logout_params = [
        _query("id_token_hint", "An ID token this issuer gave the client (may be expired)"),
        _query("client_id", "The client asking for the logout"),
        _query("post_logout_redirect_uri", "Registered for the client; compared exactly"),
        _query("state", "Sent back unchanged with the redirect"),
    ]
    return {
        "/authorize": {
            "get": {
                "summary": "Authorization endpoint (RFC 6749 §4.1.1, PKCE S256, OpenID Connect)",
                "tags": ["browser login"],
                "security": [],
                "parameters": [
                    _query("response_type", "`code`"),
                    _query("client_id", "The client", required=True),
                    _query("redirect_uri", "Registered for the client", required=True),
                    _query("scope", "Space-delimited; `openid` for an ID token"),
                    _query("state", "Sent back unchanged"),
                    _query("code_challenge", "BASE64URL(SHA256(code_verifier)), RFC 7636"),
                    _query("code_challenge_method", "`S256` (plain is refused)"),
                    _query("nonce", "Copied into the ID token"),
                    _query("prompt", "`none`, `login` or `consent`"),
                    _query("max_age", "Seconds since the last login before a new one"),
                ],
                "responses": {
                    "302": _redirect(
                        "Back to the client with `code`, `state`, `iss` (RFC 9207), or with "
                        "`error`, `state`, `iss`"
                    ),
                    "303": _redirect("To the login or consent page"),
                    "400": _page("Unknown client or unregistered redirect URI: never redirected"),
                },
            }
        },
        "/interaction/{interaction_id}": {
            "get": {
                "summary": "The login page, or the consent page once signed in",
                "tags": ["browser login"],
                "security": [],
                "parameters": [interaction],
                "responses": {"200": _page("The page"), "400": FORM_ERRORS["400"]},
            }
        },
        "/interaction/{interaction_id}/login": {
            "post": {
                "summary": "The login form (CSRF-protected)",
                "tags": ["browser login"],
                "security": [],
                "parameters": [interaction],
                "requestBody": _form(
                    {"csrf": "From the page", "username": "", "password": ""}, ["csrf"]
                ),
                "responses": {
                    "200": _page("The consent page (a third-party client)"),
                    "303": _redirect("Back to the client with a code"),
                    **FORM_ERRORS,
                    "429": _page("Too many failed attempts; the form again, with Retry-After"),
                },
            }
        },
        "/interaction/{interaction_id}/consent": {
            "post": {
                "summary": "The consent form (CSRF-protected)",
                "tags": ["browser login"],
                "security": [],
                "parameters": [interaction],
                "requestBody": _form(
                    {"csrf": "From the page", "decision": "`allow` or `deny`"}, ["csrf"]
                ),
                "responses": {
                    "303": _redirect("Back to the client: a code, or `error=access_denied`"),
                    **FORM_ERRORS,
                },
            }
        },
        "/end_session": {
            "get": {
                "summary": "RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0)",
                "tags": ["browser login"],
                "security": [],
                "parameters": logout_params,
                "responses": {
                    "200": _page("Asks to confirm, or says the browser is signed out"),
                    "303": _redirect("No session: straight to post_logout_redirect_uri"),
                    "400": _page("Unknown client, bad hint, or unregistered redirect URI"),
                },
            },
            "post": {
                "summary": "The sign-out confirmation form (CSRF-protected)",
                "tags": ["browser login"],
                "security": [],
                "requestBody": _form(
                    {
                        "csrf": "From the page",
                        "client_id": "",
                        "post_logout_redirect_uri": "",
                        "state": "",
                    },
                    ["csrf"],
                ),
                "responses": {
                    "200": _page("Signed out"),
                    "303": _redirect("Signed out; to post_logout_redirect_uri with state"),
                    **FORM_ERRORS,
                },
            },
        },
        "/userinfo": {
            method: {
                "summary": "UserInfo (OpenID Connect Core §5.3)",
                "tags": ["browser login"],
                "security": [{"userBearer": []}],
                "responses": userinfo_responses,
            }
            for method in ("get", "post")
        },
        "/assets/login.css": {
            "get": {
                "summary": "The pages' stylesheet (ISSUER_LOGIN_STYLESHEET replaces it)",
                "tags": ["browser login"],
                "security": [],
                "responses": {
                    "200": {"description": "CSS", "content": {"text/css": {"schema": {}}}}
                },
            }
        },
    }


def _admin_paths() -> Paths:
    user = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    client = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}
    bearer = {
        "401": _json(ERROR, "Missing, invalid or expired bearer token"),
        "403": _json(ERROR, "The token lacks the issuer:admin scope"),
        "404": _json(ERROR, "No such user, or no such consent"),
    }
    consent = {
        "type": "object",
        "required": ["client_id", "scope", "granted_at"],
        "properties": {
            "client_id": {"type": "string"},
            "scope": {"type": "string"},
            "granted_at": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "/admin/users/{id}/consents": {
            "get": {
                "summary": "The clients a user has consented to",
                "tags": ["users"],
                "parameters": [user],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["consents"],
                            "properties": {"consents": {"type": "array", "items": consent}},
                        },
                        "Consents",
                    ),
                    **bearer,
                },
            }
        },
        "/admin/users/{id}/consents/{client_id}": {
            "delete": {
                "summary": "Withdraw a consent: the client must ask the user again",
                "tags": ["users"],
                "parameters": [user, client],
                "responses": {"204": {"description": "Withdrawn"}, **bearer},
            }
        },
    }


_PUBLIC = _public_paths()
_ADMIN = _admin_paths()
AUTHORIZE = _PUBLIC["/authorize"]["get"]
INTERACTION = _PUBLIC["/interaction/{interaction_id}"]["get"]
LOGIN = _PUBLIC["/interaction/{interaction_id}/login"]["post"]
CONSENT = _PUBLIC["/interaction/{interaction_id}/consent"]["post"]
END_SESSION = _PUBLIC["/end_session"]["get"]
END_SESSION_FORM = _PUBLIC["/end_session"]["post"]
USERINFO = _PUBLIC["/userinfo"]["get"]
STYLESHEET = _PUBLIC["/assets/login.css"]["get"]
LIST_CONSENTS = _ADMIN["/admin/users/{id}/consents"]["get"]
WITHDRAW_CONSENT = _ADMIN["/admin/users/{id}/consents/{client_id}"]["delete"]
