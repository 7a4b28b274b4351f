"""GET /metrics on the admin listener: Prometheus names, bounded labels, key gauges."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from issuer import __version__
from issuer.app import create_app
from issuer.appkeys import admin_app_key
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.context import Context
from tests.conftest import ClientFactory, Login, MakeClient, MakeUser, Refresh, basic_auth

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(admin: TestClient[Any, Any]) -> tuple[str, Samples]:
    resp = await admin.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; a missing series fails (it is not 0)."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no series {name}{labels or ''} in /metrics"
    return samples[key]


def increase(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a counter rose; a labelled counter appears at its first increment."""
    start = before.get((name, frozenset(labels.items())), 0.0)
    return value(after, name, **labels) - start


async def test_metrics_needs_no_token_and_is_not_on_the_public_listener(
    client: TestClient[Any, Any], admin: TestClient[Any, Any]
) -> None:
    _, samples = await scrape(admin)
    assert value(samples, "issuer_build_info", version=__version__) == 1
    assert (await client.get("/metrics")).status == 404


async def test_token_jwks_and_request_counters(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    make_client: MakeClient,
    admin_token: str,
) -> None:
    _, before = await scrape(admin)
    reg = await make_client(scopes="read")
    ok = await client.post("/token", data={"grant_type": "client_credentials"}, headers=reg.basic())
    assert ok.status == 200
    token = (await ok.json())["access_token"]
    bad = basic_auth(reg.client_id, "wrong-secret")
    assert (
        await client.post("/token", data={"grant_type": "client_credentials"}, headers=bad)
    ).status == 401
    assert (await client.post("/token", data={"grant_type": "nope"})).status == 400
    jwks = await client.get("/.well-known/jwks.json")
    etag = jwks.headers["ETag"]
    assert (
        await client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    ).status == 304
    keys = await (
        await admin.get("/admin/keys", headers={"Authorization": f"Bearer {admin_token}"})
    ).json()
    kid = keys["keys"][0]["kid"]
    revoke = await admin.post(
        f"/admin/keys/{kid}/revoke", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert revoke.status == 200

    text, after = await scrape(admin)

    def delta(name: str, **labels: str) -> float:
        return increase(before, after, name, **labels)

    # admin_token's own issuance happened before the first scrape.
    assert delta("issuer_tokens_issued_total", grant="client_credentials") == 1
    assert delta("issuer_token_errors_total", error="invalid_client") == 1
    assert delta("issuer_token_errors_total", error="unsupported_grant_type") == 1
    assert delta("issuer_jwks_requests_total", status="200") == 1
    assert delta("issuer_jwks_requests_total", status="304") == 1
    assert (
        delta(
            "issuer_http_request_duration_seconds_count",
            route="/token",
            method="POST",
            status="200",
        )
        == 1
    )
    # The route template, never the raw path.
    assert (
        delta(
            "issuer_http_request_duration_seconds_count",
            route="/admin/keys/{kid}/revoke",
            method="POST",
            status="200",
        )
        == 1
    )
    for secret in (kid, reg.client_id, reg.client_secret or "?", token, "wrong-secret"):
        assert secret not in text


async def test_key_gauges_follow_the_schedule(
    admin: TestClient[Any, Any], ctx: Context, clock: SettableClock
) -> None:
    _, samples = await scrape(admin)
    assert value(samples, "issuer_keys", state="active") == 1
    assert value(samples, "issuer_keys", state="pending") == 1
    assert value(samples, "issuer_keys", state="revoked") == 0
    assert value(samples, "issuer_signing_key_age_seconds") == 0
    interval = ctx.settings.key_rotation_interval
    assert value(samples, "issuer_next_key_rotation_seconds") == interval

    clock.advance(3600)
    _, samples = await scrape(admin)
    assert value(samples, "issuer_signing_key_age_seconds") == 3600
    assert value(samples, "issuer_next_key_rotation_seconds") == interval - 3600


async def test_unmatched_paths_share_one_label(
    client: TestClient[Any, Any], admin: TestClient[Any, Any]
) -> None:
    for path in ("/a", "/b/c", "/d?x=1"):
        assert (await client.get(path)).status == 404
    text, _ = await scrape(admin)
    assert 'route="unmatched"' in text
    assert "/b/c" not in text


async def test_login_failures_and_refresh_reuse_are_counted(
    admin: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    client: TestClient[Any, Any],
) -> None:
    _, before = await scrape(admin)
    app = await make_client(first_party=True)
    user = await make_user()
    resp = await client.post(
        "/token",
        data={"grant_type": "password", "username": user.username, "password": "wrong"},
        headers=app.basic(),
    )
    assert resp.status == 400
    tokens = await login(app, user)
    assert (await refresh(app, tokens["refresh_token"])).status == 200
    assert (await refresh(app, tokens["refresh_token"])).status == 400  # reuse
    _, after = await scrape(admin)
    for name in ("issuer_login_failures_total", "issuer_refresh_reuse_detected_total"):
        assert increase(before, after, name) == 1, name


async def test_signing_key_available_drops_when_the_key_will_not_open(
    admin: TestClient[Any, Any],
    settings: Settings,
    clock: SettableClock,
    aiohttp_client: ClientFactory,
) -> None:
    _, samples = await scrape(admin)
    assert value(samples, "issuer_signing_key_available") == 1
    # The KEK that wrapped the keys is gone: a worker on the same database restarted
    # with a wrong ISSUER_KEK after a redeploy.
    restarted = create_app(replace(settings, kek=(b"\x09" * 32,)), clock=clock)
    await aiohttp_client(restarted)
    other = await aiohttp_client(restarted[admin_app_key])
    _, samples = await scrape(other)
    assert value(samples, "issuer_signing_key_available") == 0
    assert value(samples, "issuer_keys", state="active") == 1, "why the old alert missed it"
