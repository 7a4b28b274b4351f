"""Shared fixtures: a settable clock, a fresh database per test on each store, the real app.

PostgreSQL tests run when ``ISSUER_TEST_POSTGRES`` is ``required`` (``./run test`` sets it
when a server answers) and fail if the server is then unreachable; with ``off`` they are
skipped; unset, they run when a server answers and are skipped otherwise (failing under CI).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from issuer.app import create_app
from issuer.appkeys import admin_app_key, context_key
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.context import Context
from issuer.jose.keys import GeneratedKey, generate_key
from issuer.services.accounts import create_client

PG_DSN = os.environ.get("ISSUER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def _dsn_with_db(dsn: str, db: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{db}"


async def _postgres_answers() -> bool:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    mode = os.environ.get("ISSUER_TEST_POSTGRES", "")
    if mode == "off":
        pytest.skip("PostgreSQL half skipped (ISSUER_TEST_POSTGRES=off)")
    if not await _postgres_answers():
        if mode == "required" or os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL does not answer on {PG_DSN}")
        pytest.skip(f"PostgreSQL does not answer on {PG_DSN}")
    name = f"issuer_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _dsn_with_db(PG_DSN, name)
    finally:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=STORES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database on each store: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/issuer.db"
        return
    async with fresh_postgres_database() as url:
        yield url


_KEY_POOL: dict[tuple[str, int], list[GeneratedKey]] = {}


@pytest.fixture(autouse=True)
def pooled_signing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reuse generated key pairs across tests (each test has its own database), never
    twice within one test: RSA generation would otherwise dominate the suite's time."""
    used: dict[tuple[str, int], int] = {}

    def generate(alg: str, rsa_key_size: int = 2048) -> GeneratedKey:
        slot = (alg, rsa_key_size)
        pool = _KEY_POOL.setdefault(slot, [])
        index = used[slot] = used.get(slot, -1) + 1
        while len(pool) <= index:
            pool.append(generate_key(alg, rsa_key_size))
        return pool[index]

    monkeypatch.setattr("issuer.keyring.generate_key", generate)


@pytest.fixture
def clock() -> SettableClock:
    # Real time at the start, so third-party verifiers (PyJWT) agree; tests move it on.
    return SettableClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "issuer": "http://issuer.test",
        "audience": "test-api",
        "kek": (os.urandom(32),),
        "kek_file": tmp_path / "kek.json",
        "workers": 1,
    }
    values.update(settings_overrides)
    return Settings(**values)


@pytest.fixture
def app(settings: Settings, clock: SettableClock) -> web.Application:
    return create_app(settings, clock=clock)


@pytest.fixture
async def client(app: web.Application, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    """The public listener."""
    return await aiohttp_client(app)


@pytest.fixture
async def admin(
    app: web.Application, client: TestClient[Any, Any], aiohttp_client: ClientFactory
) -> TestClient[Any, Any]:
    """The admin listener (started after the public app, which opens what both share)."""
    return await aiohttp_client(app[admin_app_key])


@pytest.fixture
def ctx(app: web.Application, client: TestClient[Any, Any]) -> Context:
    return app[context_key]


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    client_secret: str | None

    def basic(self) -> dict[str, str]:
        """``Authorization: Basic`` headers for this client (RFC 6749 §2.3.1)."""
        assert self.client_secret is not None
        return basic_auth(self.client_id, self.client_secret)


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


MakeClient = Callable[..., Awaitable[RegisteredClient]]


@pytest.fixture
def make_client(ctx: Context) -> MakeClient:
    async def make(
        name: str | None = None,
        scopes: str = "read write",
        *,
        first_party: bool = False,
        public: bool = False,
    ) -> RegisteredClient:
        new = await create_client(
            ctx.store,
            ctx.clock,
            name=name or f"client-{uuid.uuid4().hex[:8]}",
            scopes=scopes.split(),
            first_party=first_party,
            public=public,
            actor="test",
        )
        return RegisteredClient(new.client.client_id, new.client_secret)

    return make


GetToken = Callable[..., Awaitable[str]]


@pytest.fixture
def get_token(client: TestClient[Any, Any], make_client: MakeClient) -> GetToken:
    """A client-credentials access token with the given scope, from the real /token."""

    async def get(scopes: str = "read") -> str:
        registered = await make_client(scopes=scopes)
        resp = await client.post(
            "/token",
            data={"grant_type": "client_credentials"},
            headers=registered.basic(),
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        token: str = body["access_token"]
        return token

    return get


@pytest.fixture
async def admin_token(get_token: GetToken) -> str:
    return await get_token("issuer:admin")
