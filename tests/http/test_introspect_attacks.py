"""The verifier's table of hostile tokens, sent to POST /introspect (RFC 7662 §2.2).

Every one must come back ``{"active": false}`` with a 200: never accepted, never a 500.
Two are refused before introspection, each with its own answer: an empty token is a
missing ``token`` parameter (RFC 7662 §2.1, RFC 6749 §5.2 ``invalid_request``), and a
megabyte token is over the request body limit (413). The tokens are signed with the
issuer's own active key where a real signature is needed to reach the check under attack.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from issuer.context import Context
from issuer.jose.keys import GeneratedKey
from issuer.jose.tokens import Signer
from issuer.kek import load_kek
from issuer.services.sessions import deny_access_token
from issuer.services.users import user_store
from tests.conftest import MakeClient
from tests.verifier.attacks import REVOKED_JTI, attack_tokens, good_claims

# The cases not introspected at all, and their whole answer.
REFUSED = {
    "empty-string": (
        400,
        {"error": "invalid_request", "error_description": "missing parameter token"},
    ),
    "million-dots": (
        413,
        {"error": "invalid_request", "error_description": "request entity too large"},
    ),
}


async def issuer_signing_key(ctx: Context) -> GeneratedKey:
    active = next(v for v in ctx.keyring.views() if v.state == "active")
    wrapped = active.record.private_wrapped
    assert wrapped is not None
    pem = load_kek(ctx.settings).unwrap(wrapped, active.record.kek_id, active.kid)
    return GeneratedKey(active.kid, active.record.alg, active.record.public_jwk, pem)


@pytest.fixture
async def attacker_server(aiohttp_server: Any) -> tuple[str, list[str]]:
    """An address the tokens point at (jku, x5u); any request to it is recorded."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"keys": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app)
    return str(server.make_url("/jwks.json")), hits


async def test_no_hostile_token_is_active(
    client: TestClient[Any, Any],
    ctx: Context,
    make_client: MakeClient,
    attacker_server: tuple[str, list[str]],
) -> None:
    url, hits = attacker_server
    key = await issuer_signing_key(ctx)
    now = int(ctx.clock.now().timestamp())
    settings = ctx.settings
    store = user_store(ctx.store)
    claims = good_claims(settings.issuer, settings.audience, now, jti=REVOKED_JTI)
    claims["exp"] = int((ctx.clock.now() + timedelta(minutes=10)).timestamp())
    await deny_access_token(store, settings, ctx.clock, claims, actor="test")

    caller = await make_client()
    # The control: the same key and claims, well formed, is active.
    good = Signer(key.kid, key.alg, key.private_pem).sign(
        good_claims(settings.issuer, settings.audience, now)
    )
    resp = await client.post("/introspect", data={"token": good}, headers=caller.basic())
    assert (await resp.json())["active"] is True

    cases = attack_tokens(key, settings.issuer, settings.audience, now, url)
    assert len(cases) > 60
    assert set(REFUSED) <= {case for case, _ in cases}
    answers = {}
    for case, token in cases:
        resp = await client.post("/introspect", data={"token": token}, headers=caller.basic())
        answers[case] = (resp.status, await resp.json())
        assert resp.headers["Cache-Control"] == "no-store", case
    wrong = {
        case: answer
        for case, answer in answers.items()
        if answer != REFUSED.get(case, (200, {"active": False}))
    }
    assert wrong == {}
    assert hits == [], "introspection fetched a key from a token header"
