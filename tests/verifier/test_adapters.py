"""One table of requests, every adapter: aiohttp, Starlette, FastAPI and Flask answer alike.

Each app runs in a real server (aiohttp, uvicorn, waitress) and is asked over
real HTTP; the error answers must be the same status, the same
``WWW-Authenticate`` and ``Cache-Control`` and the same body bytes (RFC 6750 §3).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from issuer.jose.keys import GeneratedKey
from issuer.verifier import ManualClock, SyncJWKSClient, SyncVerifier, Verifier

from .conftest import AUDIENCE, ISSUER, NOW, mint
from .servers import (
    Answer,
    KeyServer,
    aiohttp_server,
    request,
    uvicorn_server,
    waitress_server,
)

REALM = "api"


def aiohttp_app(keys: KeyServer, clock: ManualClock) -> AbstractContextManager[int]:
    from aiohttp import web

    from issuer.verifier import JWKSClient
    from issuer.verifier.middleware import claims_of, public, require_role, require_scope, setup

    @public
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"sub": claims_of(request)["sub"]})

    @require_scope("write")
    async def things(request: web.Request) -> web.Response:
        return web.json_response({"sub": claims_of(request)["sub"]})

    @require_role("admin")
    async def admin(request: web.Request) -> web.Response:
        return web.json_response({"sub": claims_of(request)["sub"]})

    def make() -> web.Application:
        jwks = JWKSClient(f"{keys.url}/.well-known/jwks.json", clock=clock)
        verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock)
        app = web.Application()
        setup(app, verifier, realm=REALM)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/me", me)
        app.router.add_get("/things", things)
        app.router.add_get("/admin", admin)
        return app

    return aiohttp_server(make)


def starlette_app(keys: KeyServer, clock: ManualClock) -> AbstractContextManager[int]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from issuer.verifier import JWKSClient
    from issuer.verifier.asgi import BearerAuth, claims_of

    jwks = JWKSClient(f"{keys.url}/.well-known/jwks.json", clock=clock)
    auth = BearerAuth(
        Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock), realm=REALM
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @auth.requires()
    async def me(request: Request) -> Response:
        return JSONResponse({"sub": claims_of(request)["sub"]})

    @auth.requires(scopes=["write"])
    async def things(request: Request) -> Response:
        return JSONResponse({"sub": claims_of(request)["sub"]})

    @auth.requires(roles=["admin"])
    async def admin(request: Request) -> Response:
        return JSONResponse({"sub": claims_of(request)["sub"]})

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/me", me),
            Route("/things", things),
            Route("/admin", admin),
        ]
    )
    auth.setup(app)
    return uvicorn_server(app)


def fastapi_app(keys: KeyServer, clock: ManualClock) -> AbstractContextManager[int]:
    from fastapi import Depends, FastAPI

    from issuer.verifier import JWKSClient
    from issuer.verifier.fastapi import Claims, FastAPIBearer

    jwks = JWKSClient(f"{keys.url}/.well-known/jwks.json", clock=clock)
    auth = FastAPIBearer(
        Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock), realm=REALM
    )
    app = FastAPI()
    auth.setup(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me(claims: Claims = Depends(auth.claims())) -> dict[str, str]:  # noqa: B008
        return {"sub": claims["sub"]}

    @app.get("/things")
    async def things(claims: Claims = Depends(auth.claims(scopes=["write"]))) -> dict[str, str]:  # noqa: B008
        return {"sub": claims["sub"]}

    @app.get("/admin")
    async def admin(claims: Claims = Depends(auth.claims(roles=["admin"]))) -> dict[str, str]:  # noqa: B008
        return {"sub": claims["sub"]}

    return uvicorn_server(app)


def flask_app(keys: KeyServer, clock: ManualClock) -> AbstractContextManager[int]:
    from flask import Flask, jsonify
    from flask.typing import ResponseReturnValue

    from issuer.verifier.flask import FlaskBearer, current_claims

    jwks = SyncJWKSClient(f"{keys.url}/.well-known/jwks.json", clock=clock)
    auth = FlaskBearer(
        SyncVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock), realm=REALM
    )
    app = Flask("adapters")
    auth.init_app(app)

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify(ok=True)

    @app.get("/me")
    @auth.required()
    def me() -> ResponseReturnValue:
        return jsonify(sub=current_claims()["sub"])

    @app.get("/things")
    @auth.required(scopes=["write"])
    def things() -> ResponseReturnValue:
        return jsonify(sub=current_claims()["sub"])

    @app.get("/admin")
    @auth.required(roles=["admin"])
    def admin() -> ResponseReturnValue:
        return jsonify(sub=current_claims()["sub"])

    return waitress_server(app)


ADAPTERS: dict[str, Callable[[KeyServer, ManualClock], AbstractContextManager[int]]] = {
    "aiohttp": aiohttp_app,
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "flask": flask_app,
}


@pytest.fixture(scope="module")
def key_server(rsa_key: GeneratedKey) -> Iterator[KeyServer]:
    with KeyServer(keys=[rsa_key.public_jwk]).running() as server:
        yield server


@pytest.fixture(scope="module", params=list(ADAPTERS))
def served(request: pytest.FixtureRequest, key_server: KeyServer) -> Iterator[tuple[str, int]]:
    clock = ManualClock(float(NOW))
    with ADAPTERS[request.param](key_server, clock) as port:
        yield request.param, port


def challenge(status: int, www_authenticate: str, body: dict[str, str]) -> Answer:
    return Answer(
        status,
        {"www-authenticate": www_authenticate, "cache-control": "no-store"},
        json.dumps(body).encode(),
    )


def case(token: Callable[[GeneratedKey], list[tuple[str, str]]], path: str, expected: Any) -> Any:
    return (token, path, expected)


def bearer(**claims: Any) -> Callable[[GeneratedKey], list[tuple[str, str]]]:
    return lambda key: [("Authorization", f"Bearer {mint(key, **claims)}")]


NO_TOKEN = 'Bearer realm="api"'
CASES = {
    "no token": case(
        lambda key: [],
        "/me",
        challenge(401, NO_TOKEN, {"error_description": "A bearer access token is required"}),
    ),
    "another scheme": case(
        lambda key: [("Authorization", "Basic YTpi")],
        "/me",
        challenge(401, NO_TOKEN, {"error_description": "A bearer access token is required"}),
    ),
    "malformed header": case(
        lambda key: [("Authorization", "Bearer a b")],
        "/me",
        challenge(
            400,
            'Bearer realm="api", error="invalid_request"',
            {"error": "invalid_request", "error_description": "Malformed Authorization header"},
        ),
    ),
    "two headers": case(
        lambda key: [("Authorization", "Bearer a.b.c"), ("Authorization", "Bearer d.e.f")],
        "/me",
        challenge(
            400,
            'Bearer realm="api", error="invalid_request"',
            {"error": "invalid_request", "error_description": "More than one Authorization header"},
        ),
    ),
    "garbage token": case(
        lambda key: [("Authorization", "Bearer x.y.z")],
        "/me",
        challenge(
            401,
            'Bearer realm="api", error="invalid_token"',
            {"error": "invalid_token", "error_description": "The access token is invalid"},
        ),
    ),
    "expired": case(
        bearer(exp=NOW - 3600, iat=NOW - 4000, nbf=NOW - 4000),
        "/me",
        challenge(
            401,
            'Bearer realm="api", error="invalid_token"',
            {"error": "invalid_token", "error_description": "The access token expired"},
        ),
    ),
    "missing scope": case(
        bearer(scope="read"),
        "/things",
        challenge(
            403,
            'Bearer error="insufficient_scope", scope="write"',
            {
                "error": "insufficient_scope",
                "error_description": "The access token lacks the privileges this resource needs",
            },
        ),
    ),
    "missing role": case(
        bearer(),
        "/admin",
        challenge(
            403,
            'Bearer error="insufficient_scope"',
            {
                "error": "insufficient_scope",
                "error_description": "The access token lacks the privileges this resource needs",
            },
        ),
    ),
    "valid": case(bearer(sub="alice"), "/me", {"sub": "alice"}),
    "scope granted": case(bearer(sub="bob", scope="read write"), "/things", {"sub": "bob"}),
    "role granted": case(bearer(sub="carol", roles=["admin"]), "/admin", {"sub": "carol"}),
    "public": case(lambda key: [], "/healthz", {"ok": True}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_adapter_answers_alike(
    served: tuple[str, int], rsa_key: GeneratedKey, name: str
) -> None:
    headers, path, expected = CASES[name]
    answer = request(served[1], path, headers(rsa_key))
    if isinstance(expected, Answer):
        assert answer.status == expected.status
        assert answer.body == expected.body
        for header, value in expected.headers.items():
            assert answer.headers.get(header) == value
        assert answer.headers.get("content-type") == "application/json"
    else:
        assert answer.status == 200
        assert answer.json() == expected


def test_each_adapter_names_its_framework_when_it_fetches(
    served: tuple[str, int], key_server: KeyServer, rsa_key: GeneratedKey
) -> None:
    framework, port = served
    assert request(port, "/me", bearer()(rsa_key)).status == 200
    assert f"issuer-verifier/0.1.0 ({framework})" in key_server.user_agents
