"""ISSUER_REFRESH_REUSE_GRACE: a retry of the previous refresh token after a lost response."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.clock import SettableClock
from tests.conftest import Login, MakeClient, MakeUser, Refresh


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"refresh_reuse_grace": 10}


async def test_retry_within_grace_gets_a_fresh_pair_and_spends_the_first_successor(
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    t0 = (await login(app, await make_user()))["refresh_token"]
    lost = await (await refresh(app, t0)).json()  # the client never saw this response
    clock.advance(5)
    resp = await refresh(app, t0)
    assert resp.status == 200
    retried = await resp.json()
    assert retried["refresh_token"] not in (t0, lost["refresh_token"])

    # The successor issued first was spent by the retry: one live token per family.
    # Presenting it now is a reuse, which revokes the family.
    resp = await refresh(app, lost["refresh_token"])
    assert resp.status == 400
    assert (await refresh(app, retried["refresh_token"])).status == 400


async def test_the_family_goes_on_normally_after_a_grace_retry(
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    t0 = (await login(app, await make_user()))["refresh_token"]
    await refresh(app, t0)
    retried = await (await refresh(app, t0)).json()
    clock.advance(30)
    resp = await refresh(app, retried["refresh_token"])
    assert resp.status == 200


async def test_no_grace_after_the_window(
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    t0 = (await login(app, await make_user()))["refresh_token"]
    t1 = (await (await refresh(app, t0)).json())["refresh_token"]
    clock.advance(10)
    assert (await refresh(app, t0)).status == 400
    assert (await refresh(app, t1)).status == 400  # the family was revoked


async def test_a_token_two_generations_old_never_gets_grace(
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    t0 = (await login(app, await make_user()))["refresh_token"]
    t1 = (await (await refresh(app, t0)).json())["refresh_token"]
    t2 = (await (await refresh(app, t1)).json())["refresh_token"]
    clock.advance(1)
    resp = await refresh(app, t0)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"
    assert (await refresh(app, t2)).status == 400  # reuse revoked the family
