"""Opening and closing what a process works with: store, KEK, keyring, key and client services.

Shared by the server (``issuer.app``) and the CLI, and free of the HTTP edge, so a
CLI command starts without importing aiohttp's server or the pages.
"""

from __future__ import annotations

import logging

from issuer.config import Settings
from issuer.context import Context, Opened
from issuer.errors import ConfigError, StoreError
from issuer.kek import load_kek
from issuer.keyring import Keyring
from issuer.services.clients import ClientCache
from issuer.services.keys import KeyService
from issuer.store.postgres import PostgresStore
from issuer.store.sqlite import SQLiteStore, sqlite_path

log = logging.getLogger(__name__)
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
