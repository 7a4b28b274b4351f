"""The only place that wires things: settings -> store, keyring, apps, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from issuer.appkeys import admin_app_key, context_key
from issuer.clock import Clock, SystemClock
from issuer.config import Settings
from issuer.context import Context, Opened
from issuer.errors import ConfigError, StoreError
from issuer.http import admin, browser_login, openapi, ops, public, sessions, users
from issuer.http.auth import require_admin
from issuer.http.cors import cors
from issuer.http.metrics import handle_metrics, observe
from issuer.http.middleware import read_body, request_context
from issuer.http.requests import storable_text
from issuer.kek import load_kek
from issuer.keyring import Keyring
from issuer.notify import follow_key_changes
from issuer.services import housekeeping, passwords
from issuer.services.clients import ClientCache
from issuer.services.keys import KeyService, run_key_schedule
from issuer.services.users import user_store
from issuer.store.postgres import PostgresStore
from issuer.store.sqlite import SQLiteStore, sqlite_path

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
AnyStore = PostgresStore | SQLiteStore


async def open_store(settings: Settings, *, create: bool = True) -> AnyStore:
    """The store named by ``ISSUER_DATABASE_URL``, migrated when auto-migrate is on.

    ``create=False`` refuses to start a new SQLite file: a command that works on an
    existing installation must not quietly make an empty one elsewhere.
    """
    url = settings.database_url
    store: AnyStore
    if url.startswith(("postgresql://", "postgres://")):
        store = await PostgresStore.open(
            url,
            acquire_timeout=settings.db_acquire_timeout,
            statement_timeout=settings.db_statement_timeout,
        )
    else:
        path = sqlite_path(url)
        if not create and not path.exists():
            relative = "" if path.is_absolute() else " (relative to the current directory)"
            raise StoreError(
                f"ISSUER_DATABASE_URL: no database at {path.absolute()}{relative}: run "
                "`issuer serve` or `issuer migrate` first, or set ISSUER_DATABASE_URL"
            )
        store = await SQLiteStore.open(
            url,
            acquire_timeout=settings.db_acquire_timeout,
            statement_timeout=settings.db_statement_timeout,
        )
    if settings.auto_migrate:
        try:
            applied = await store.migrate()
        except BaseException:
            await store.close()
            raise
        for name in applied:
            log.info("applied migration %s", name)
    return store


async def start(ctx: Context, *, setup: bool = True) -> None:
    """Open store, KEK and keyring for ``ctx``, with the key schedule brought up to date.

    ``setup=False`` (CLI commands): use an existing installation as it is: no new
    database file, no new KEK file, no keys created.
    """
    settings, clock = ctx.settings, ctx.clock
    store = await open_store(settings, create=setup)
    try:
        if setup and settings.kek is None and not settings.kek_file.exists():
            wrapped = [r.kid for r in await store.list_keys() if r.private_wrapped is not None]
            if wrapped:
                # A new KEK could open none of them: the file was lost or this is the
                # wrong directory. Say so rather than start unable to sign.
                raise ConfigError(
                    f"ISSUER_KEK_FILE: {settings.kek_file} is missing, but the database holds "
                    f"{len(wrapped)} private key(s) wrapped by another KEK: restore the file "
                    "or set ISSUER_KEK"
                )
        kek = load_kek(settings, create=setup)
        keyring = Keyring(store, settings, kek, clock)
        keys = KeyService(store, keyring, settings, kek, clock)
        if setup:
            await keys.maintain()
        await keyring.load()
    except BaseException:
        await store.close()
        raise
    clients = ClientCache(store, clock, float(settings.key_refresh_interval))
    ctx.attach(Opened(store, keyring, keys, clients))


async def stop(ctx: Context) -> None:
    if ctx.started:
        store = ctx.store
        ctx.detach()
        await store.close()


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """The public app; the admin app rides along as ``app[admin_app_key]``.

    Start the public app first: its cleanup context opens what both share.
    """
    ctx = Context(settings, clock or SystemClock())
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[request_context, observe, read_body, storable_text, cors],
    )
    admin_app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[request_context, observe, read_body, require_admin, storable_text],
    )
    for a in (app, admin_app):
        a[context_key] = ctx
        ops.add_routes(a)
    public.add_routes(app)
    sessions.add_routes(app)
    browser_login.add_routes(app)
    admin.add_routes(admin_app)
    users.add_routes(admin_app)
    browser_login.add_admin_routes(admin_app)
    admin_app.router.add_get("/metrics", handle_metrics)
    openapi.add_route(app, "issuer: public API", [])
    openapi.add_route(admin_app, "issuer: admin API", [{"adminBearer": []}])
    app[admin_app_key] = admin_app

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await start(ctx)
        # The dummy hash for unknown users, made now: made on the first such login, it
        # would make that one answer slower than a wrong password (a timing oracle).
        await passwords.warm_up()
        wake = asyncio.Event()  # set by a key-change notification: reload now
        schedule = run_key_schedule(
            ctx.keys, ctx.keyring, wake, float(settings.key_refresh_interval)
        )
        purger = housekeeping.run_purger(user_store(ctx.store), settings, ctx.clock)
        tasks = [
            asyncio.create_task(schedule, name="key-schedule"),
            asyncio.create_task(purger, name="session-purger"),
        ]
        if isinstance(ctx.store, PostgresStore):
            follow = follow_key_changes(ctx.store.dsn, wake.set, ctx.clients.forget)
            tasks.append(asyncio.create_task(follow, name="key-changes"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await stop(ctx)

    app.cleanup_ctx.append(lifecycle)
    return app
