"""Shared fixtures: a settable clock, a fresh database per test on each store, the real app.

PostgreSQL tests run when ``ISSUER_TEST_POSTGRES`` is ``required`` (``./run test`` sets it
when a server answers) and fail if the server is then unreachable; with ``off`` they are
skipped; unset, they run when a server answers and are skipped otherwise (failing under CI).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

import issuer
from issuer.app import create_app
from issuer.appkeys import admin_app_key, context_key
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.context import Context
from issuer.http import render
from issuer.jose.keys import GeneratedKey, generate_key
from issuer.services import passwords
from issuer.services.accounts import create_client
from issuer.services.grants import TokenResponse
from issuer.services.users import create_user

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


# Databases this test process created, and those of them free for the next test. CREATE
# and DROP DATABASE cost ~0.3 s each on a small machine; emptying the public schema of a
# used one costs ~0.03 s and leaves it as empty as a new one.
_PG_CREATED: list[str] = []
_PG_FREE: list[str] = []


async def _empty(name: str) -> bool:
    admin = await asyncpg.connect(PG_DSN)
    try:
        # Whatever the test left connected (a served subprocess, a listener, a proxy).
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()
    try:
        conn = await asyncpg.connect(_dsn_with_db(PG_DSN, name))
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()
    return True


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """An empty PostgreSQL database of this test's own; emptied again afterwards."""
    mode = os.environ.get("ISSUER_TEST_POSTGRES", "")
    if mode == "off":
        pytest.skip("PostgreSQL half skipped (ISSUER_TEST_POSTGRES=off)")
    if not await _postgres_answers():
        if mode == "required" or os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL does not answer on {PG_DSN}")
        pytest.skip(f"PostgreSQL does not answer on {PG_DSN}")
    if _PG_FREE:
        name = _PG_FREE.pop()
    else:
        name = f"issuer_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        _PG_CREATED.append(name)
    try:
        yield _dsn_with_db(PG_DSN, name)
    finally:
        if await _empty(name):
            _PG_FREE.append(name)


async def _drop_created_databases() -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        for name in _PG_CREATED:
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


@functools.cache
def _cheap_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_password_hashing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """argon2id at 1 MiB and one pass in this process: at the service's 64 MiB and three
    passes the suite's logins alone would take minutes. Tests marked ``real_argon2`` (the
    timing and rehash tests) keep the real parameters; a served subprocess always has them."""
    passwords._dummy_hash.cache_clear()
    if request.node.get_closest_marker("real_argon2") is None:
        monkeypatch.setattr(passwords, "_hasher", _cheap_hasher)
    yield
    passwords._dummy_hash.cache_clear()


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

    monkeypatch.setattr("issuer.services.keys.generate_key", generate)


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
        redirect_uris: tuple[str, ...] = (),
        post_logout_redirect_uris: tuple[str, ...] = (),
        web_origins: tuple[str, ...] | None = None,
    ) -> RegisteredClient:
        new = await create_client(
            ctx.store,
            ctx.clock,
            name=name or f"client-{uuid.uuid4().hex[:8]}",
            scopes=scopes.split(),
            first_party=first_party,
            public=public,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            web_origins=web_origins,
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


# -- Users, logins, and the secrets that must never reach a log -----------------------

# Every password hashed or verified and every token issued during the run, gathered at
# the source (argon2 and the token response), so no test has to remember to register.
ISSUED_SECRETS: set[str] = set()
LOG_MESSAGES: list[str] = []


class _RecordEverything(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            LOG_MESSAGES.append(self.format(record))
        except Exception:  # a malformed record must not break the run
            LOG_MESSAGES.append(repr(record.msg) + repr(record.args))


def find_leaks(messages: list[str], secrets: set[str]) -> list[str]:
    """Secrets (shortened) that appear in any message."""
    joined = "\n".join(messages)
    return sorted(s[:6] + "…" for s in secrets if len(s) >= 8 and s in joined)


_RECORDER = _RecordEverything(level=logging.DEBUG)
_RECORDER.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))


def _attach_recorder() -> None:
    root = logging.getLogger()
    if _RECORDER not in root.handlers:
        root.addHandler(_RECORDER)
    root.setLevel(logging.DEBUG)
    # aiohttp's default access logger writes raw request lines (query strings included).
    # Only the test server has it: `issuer serve` turns it off and logs its own access
    # lines. Left at DEBUG it would make other tests' log assertions fail.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _record_every_log_record() -> None:
    # Re-attached before every test: a test that configures logging (the CLI does)
    # may drop root handlers, and the run must go on recording after it.
    _attach_recorder()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Files with a slow test first: pytest-xdist (--dist loadfile) hands files out in
    # this order, and one started last would keep one worker busy while the other idles.
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


def pytest_configure(config: pytest.Config) -> None:
    _attach_recorder()
    # Catch secrets at their source, whichever test or fixture produced them.
    real_hash, real_verify = PasswordHasher.hash, PasswordHasher.verify
    real_as_json = TokenResponse.as_json

    def hash_(self: PasswordHasher, password: str | bytes, *, salt: bytes | None = None) -> str:
        ISSUED_SECRETS.add(password if isinstance(password, str) else password.decode())
        return real_hash(self, password, salt=salt)

    def verify(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> Literal[True]:
        ISSUED_SECRETS.add(password if isinstance(password, str) else password.decode())
        return real_verify(self, hash, password)

    real_token_body = render.token_body

    def issued(result: TokenResponse) -> None:
        ISSUED_SECRETS.add(result.access_token)
        if result.refresh_token is not None:
            ISSUED_SECRETS.add(result.refresh_token)

    def as_json(self: TokenResponse) -> dict[str, Any]:
        issued(self)
        return real_as_json(self)

    def token_body(result: TokenResponse) -> bytes:
        issued(result)  # what the token endpoint answers with
        return real_token_body(result)

    PasswordHasher.hash = hash_  # type: ignore[method-assign]
    PasswordHasher.verify = verify  # type: ignore[method-assign]
    TokenResponse.as_json = as_json  # type: ignore[method-assign]
    render.token_body = token_body


LEAKS: list[str] = []


def _source_text() -> str:
    """Every Python and SQL file of the issuer package, as one text."""
    root = Path(issuer.__file__).parent
    return "\n".join(p.read_text() for p in sorted(root.rglob("*")) if p.suffix in (".py", ".sql"))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    # pytest-xdist, in the controller: a worker's leaks (its exit status is not ours).
    LEAKS.extend(getattr(node, "workeroutput", {}).get("secret_leaks", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _PG_CREATED:
        asyncio.run(_drop_created_databases())
    # At the very end, whatever ran and in whatever order: no secret in any log record.
    leaks = find_leaks(LOG_MESSAGES, ISSUED_SECRETS - {"not the password of anyone"})
    if leaks:
        # Hypothesis draws text from the constants of the code under test too: a fuzzed
        # "password" that is a word of our own source (a SQL column name) is in the logs
        # because the code is, and was never a secret.
        source = _source_text()
        public = {s for s in ISSUED_SECRETS if len(s) >= 8 and s in source}
        leaks = find_leaks(LOG_MESSAGES, ISSUED_SECRETS - public - {"not the password of anyone"})
    LEAKS.extend(leaks)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports and fails
        workeroutput["secret_leaks"] = list(LEAKS)
    if LEAKS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LEAKS:
        terminalreporter.write_line(
            f"FAILED: {len(LEAKS)} secret(s) issued during the run appear in log records: "
            f"{LEAKS[:5]} (see tests/test_no_secrets_in_logs.py)",
            red=True,
            bold=True,
        )


@dataclass(frozen=True)
class RegisteredUser:
    user_id: str
    username: str
    password: str = field(repr=False)


MakeUser = Callable[..., Awaitable[RegisteredUser]]


@pytest.fixture
def make_user(ctx: Context) -> MakeUser:
    async def make(
        username: str | None = None,
        password: str | None = None,
        roles: tuple[str, ...] = ("reader",),
    ) -> RegisteredUser:
        name = username or f"user-{uuid.uuid4().hex[:8]}"
        secret = password or f"pw-{uuid.uuid4().hex}"
        user = await create_user(
            ctx.store, ctx.clock, username=name, password=secret, roles=roles, actor="test"
        )
        return RegisteredUser(user.user_id, name, secret)

    return make


Login = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def login(client: TestClient[Any, Any]) -> Login:
    """``grant_type=password`` on the real /token; the JSON body of a 200."""

    async def do(
        app_client: RegisteredClient, user: RegisteredUser, **extra: str
    ) -> dict[str, Any]:
        data = {"grant_type": "password", "username": user.username, "password": user.password}
        headers: dict[str, str] = {}
        if app_client.client_secret is None:
            data["client_id"] = app_client.client_id
        else:
            headers = app_client.basic()
        resp = await client.post("/token", data={**data, **extra}, headers=headers)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    return do


Refresh = Callable[..., Awaitable[Any]]


@pytest.fixture
def refresh(client: TestClient[Any, Any]) -> Refresh:
    """``grant_type=refresh_token`` on the real /token; the raw response."""

    async def do(app_client: RegisteredClient, token: str, **extra: str) -> Any:
        data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
        headers: dict[str, str] = {}
        if app_client.client_secret is None:
            data["client_id"] = app_client.client_id
        else:
            headers = app_client.basic()
        return await client.post("/token", data=data, headers=headers)

    return do
