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
from issuer.context import Context
from issuer.http import admin, browser_login, openapi, ops, public, sessions, users
from issuer.http.auth import require_admin
from issuer.http.cors import cors
from issuer.http.metrics import handle_metrics
from issuer.http.middleware import edge, install
from issuer.lifecycle import start, stop
from issuer.notify import follow_key_changes
from issuer.services import housekeeping, passwords
from issuer.services.keys import run_key_schedule
from issuer.services.users import user_store
from issuer.store.postgres import PostgresStore

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """The public app; the admin app rides along as ``app[admin_app_key]``.

    Start the public app first: its cleanup context opens what both share.
    """
    ctx = Context(settings, clock or SystemClock())
    # Routes are declared on two tables, then served by the two apps, each handler inside
    # its listener's edge (``middleware.install``: a wrapper per route, not middleware).
    public_routes, admin_routes = web.Application(), web.Application()
    app = web.Application(client_max_size=MAX_BODY)
    admin_app = web.Application(client_max_size=MAX_BODY)
    for a in (app, admin_app, public_routes, admin_routes):
        a[context_key] = ctx
    for table in (public_routes, admin_routes):
        ops.add_routes(table)
    public.add_routes(public_routes)
    sessions.add_routes(public_routes)
    browser_login.add_routes(public_routes)
    admin.add_routes(admin_routes)
    users.add_routes(admin_routes)
    browser_login.add_admin_routes(admin_routes)
    admin_routes.router.add_get("/metrics", handle_metrics)
    openapi.add_route(public_routes, "issuer: public API", [])
    openapi.add_route(admin_routes, "issuer: admin API", [{"adminBearer": []}])
    install(app, public_routes, edge(cors=cors))
    install(admin_app, admin_routes, edge(check=require_admin))
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
