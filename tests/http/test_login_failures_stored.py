"""What a failed login leaves in the database: never the text typed as an unknown username
(it may be a password typed into the wrong field), only a keyed tag that correlates."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from issuer.config import Settings
from issuer.context import Context
from issuer.kek import KeyEncryptionKeys
from issuer.services.throttle import TAG_PURPOSE, username_tag
from issuer.services.users import username_key
from tests.conftest import MakeClient, MakeUser, RegisteredClient

# What a user typed into the username field: their password.
TYPED = "Correct-Horse-Battery-9"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"login_max_failures": 2}


async def every_row(settings: Settings) -> str:
    """Every row of every table, as text."""
    url = settings.database_url
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return "\n".join(
                repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"')
            )
        finally:
            db.close()
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        rows = [
            r[0]
            for t in tables
            for r in await conn.fetch(f'SELECT t::text FROM "{t["table_name"]}" t')
        ]
        return "\n".join(rows)
    finally:
        await conn.close()


async def fail(client: TestClient[Any, Any], app: RegisteredClient, username: str) -> int:
    resp = await client.post(
        "/token",
        data={"grant_type": "password", "username": username, "password": "whatever"},
        headers=app.basic(),
    )
    return resp.status


async def test_an_unknown_username_is_stored_only_as_a_keyed_tag(
    client: TestClient[Any, Any],
    ctx: Context,
    make_client: MakeClient,
    make_user: MakeUser,
    settings: Settings,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    # Failures and a throttled attempt: audit rows of both kinds, and every counter.
    assert [await fail(client, app, TYPED) for _ in range(3)] == [400, 400, 429]
    assert await fail(client, app, TYPED.upper()) == 429  # the same username, differently cased
    assert await fail(client, app, user.username) == 400

    dump = await every_row(settings)
    for text in (TYPED, TYPED.lower(), TYPED.upper(), username_key(TYPED)):
        assert text not in dump
    if settings.database_url.startswith("sqlite:///"):
        files = Path(settings.database_url.removeprefix("sqlite:///")).parent.glob("issuer.db*")
        for f in files:
            assert TYPED.lower().encode() not in f.read_bytes().lower(), f.name

    audit = [e for e in await ctx.store.list_audit(limit=500) if e.action.startswith("login.")]
    unknown = [e for e in audit if e.target is None]
    assert [e.action for e in unknown] == ["login.failure"] * 2 + ["login.throttled"] * 2
    # One tag for every spelling of the same username, so an operator can correlate them,
    # and it is the HMAC under the key derived from the KEK (nothing a dump alone can undo).
    tags = {e.detail["username_tag"] for e in unknown}
    secret = KeyEncryptionKeys(settings.kek or ()).derive(TAG_PURPOSE)
    assert tags == {username_tag(secret, username_key(TYPED))}
    assert all("username" not in e.detail for e in unknown)
    # A username that names an account is kept as the account's name, with its id.
    [known] = [e for e in audit if e.target == user.user_id]
    assert known.detail == {
        "username": user.username,
        "reason": "wrong_password",
        "address": "127.0.0.1",
    }
    # The counters are keyed by the tag too, never by the typed text.
    assert tags.pop() in dump
