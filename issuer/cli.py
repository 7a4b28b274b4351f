"""``issuer``: serve, migrate, and operate keys and clients directly on the configured database."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from issuer import __version__, logs
from issuer.clock import SystemClock
from issuer.config import Settings
from issuer.context import Context
from issuer.errors import ConfigError, IssuerError, MigrationError, StoreError
from issuer.jose.keys import KeyUnwrapError
from issuer.lifecycle import open_store, start, stop
from issuer.services.accounts import client_json, create_client, set_client_disabled
from issuer.services.users import create_user, find_user, update_user, user_json, user_store

log = logging.getLogger("issuer")
Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def emit(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c) or "-")) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c) or "-").ljust(widths[c]) for c in columns).rstrip())


async def with_context(settings: Settings, fn: Callable[[Context], Awaitable[int]]) -> int:
    """Run ``fn`` on the existing installation (the database and KEK must exist)."""
    ctx = Context(settings, SystemClock())
    await start(ctx, setup=False)
    try:
        return await fn(ctx)
    finally:
        await stop(ctx)


# -- commands -----------------------------------------------------------------


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: the server (aiohttp's web side, the routes, the pages) is a third of
    # a second of imports that every other command, run by hand or by a script, skips.
    from issuer import workers

    if args.worker or settings.workers == 1:
        return await workers.serve(settings, reuse_port=args.worker)
    return await workers.supervise(settings, settings.workers)


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    store = await open_store(replace(settings, auto_migrate=False))
    try:
        applied = await store.migrate()
    finally:
        await store.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


async def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run(ctx: Context) -> int:
        views = [v.as_json() for v in await ctx.keys.list_keys()]
        if args.json:
            emit({"keys": views})
        else:
            table(views, ("kid", "alg", "state", "activates_at", "retires_at", "revoked_at"))
        return 0

    return await with_context(settings, run)


async def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    async def run(ctx: Context) -> int:
        view = await ctx.keys.rotate(immediate=args.immediate, actor=cli_actor())
        emit({"key": view.as_json()})
        return 0

    return await with_context(settings, run)


async def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def run(ctx: Context) -> int:
        view = await ctx.keys.revoke(args.kid, actor=cli_actor())
        emit({"key": view.as_json()})
        return 0

    return await with_context(settings, run)


async def cmd_keys_rewrap(settings: Settings, args: argparse.Namespace) -> int:
    async def run(ctx: Context) -> int:
        count = await ctx.keys.rewrap(actor=cli_actor())
        print(f"re-wrapped {count} private key(s) under the first KEK")
        return 0

    return await with_context(settings, run)


async def cmd_clients_create(settings: Settings, args: argparse.Namespace) -> int:
    async def run(ctx: Context) -> int:
        new = await create_client(
            ctx.store,
            ctx.clock,
            name=args.name,
            scopes=args.scope.split() if args.scope else [],
            first_party=args.first_party,
            public=args.public,
            redirect_uris=args.redirect_uri,
            post_logout_redirect_uris=args.post_logout_redirect_uri,
            web_origins=args.web_origin or None,
            actor=cli_actor(),
        )
        out = client_json(new.client)
        if new.client_secret is not None:
            out["client_secret"] = new.client_secret
        print(json.dumps(out))
        if new.client_secret is not None:
            print("store the client_secret now: it is not shown again", file=sys.stderr)
        return 0

    return await with_context(settings, run)


def _clients_set_disabled(disabled: bool) -> Command:
    async def command(settings: Settings, args: argparse.Namespace) -> int:
        async def run(ctx: Context) -> int:
            client = await set_client_disabled(
                ctx.store,
                ctx.settings,
                ctx.clock,
                args.client,
                disabled=disabled,
                actor=cli_actor(),
            )
            print(json.dumps(client_json(client)))
            return 0

        return await with_context(settings, run)

    return command


async def cmd_clients_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run(ctx: Context) -> int:
        clients = [client_json(c) for c in await ctx.store.list_clients()]
        if args.json:
            emit({"clients": clients})
        else:
            for c in clients:
                c["scopes"] = " ".join(c["scopes"])
            table(clients, ("client_id", "name", "scopes", "first_party", "public", "created_at"))
        return 0

    return await with_context(settings, run)


def read_new_password(from_stdin: bool) -> str:
    """One line from stdin, or typed twice at a prompt without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("password again: ") != first:
        raise IssuerError("the two passwords differ")
    return first


async def cmd_users_create(settings: Settings, args: argparse.Namespace) -> int:
    password = read_new_password(args.password_stdin)

    async def run(ctx: Context) -> int:
        user = await create_user(
            ctx.store,
            ctx.clock,
            username=args.name,
            password=password,
            roles=args.role or [],
            actor=cli_actor(),
        )
        print(json.dumps(user_json(user)))
        return 0

    return await with_context(settings, run)


async def cmd_users_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run(ctx: Context) -> int:
        found, after = [], None
        while True:
            page = await user_store(ctx.store).list_users(after, 500)
            found.extend(page)
            if len(page) < 500:
                break
            after = page[-1].username_key
        users = [user_json(u) for u in found]
        if args.json:
            emit({"users": users})
        else:
            for u in users:
                u["roles"] = " ".join(u["roles"])
            table(users, ("id", "username", "roles", "disabled", "created_at"))
        return 0

    return await with_context(settings, run)


def _users_change(**change: Any) -> Command:
    async def command(settings: Settings, args: argparse.Namespace) -> int:
        async def run(ctx: Context) -> int:
            user = await find_user(ctx.store, name=args.name)
            values = dict(change)
            if "roles" in values:
                values["roles"] = list(args.roles)
            updated = await update_user(
                ctx.store, ctx.clock, ctx.settings, user.user_id, actor=cli_actor(), **values
            )
            print(json.dumps(user_json(updated)))
            return 0

        return await with_context(settings, run)

    return command


# -- parser -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="issuer",
        description="Token issuer with rotating signing keys. Settings come from ISSUER_* "
        "environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"issuer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the public and admin listeners")
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: cores)"
    )
    # A worker started by the parent: shares the ports (SO_REUSEPORT) and never forks.
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(run=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    migrate.set_defaults(run=cmd_migrate)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    k = keys.add_parser("list", help="every key with its state")
    k.add_argument("--json", action="store_true", help="print JSON instead of a table")
    k.set_defaults(run=cmd_keys_list)
    k = keys.add_parser("rotate", help="publish a new key (signing after the publish lead)")
    k.add_argument("--immediate", action="store_true", help="the new key signs at once")
    k.set_defaults(run=cmd_keys_rotate)
    k = keys.add_parser("revoke", help="withdraw a key from the JWKS at once")
    k.add_argument("kid")
    k.set_defaults(run=cmd_keys_revoke)
    k = keys.add_parser("rewrap", help="re-wrap private keys under the first KEK")
    k.set_defaults(run=cmd_keys_rewrap)

    clients = sub.add_parser("clients", help="OAuth clients").add_subparsers(
        dest="clients_command", required=True, metavar="ACTION"
    )
    c = clients.add_parser("create", help="register a client; prints its secret once")
    c.add_argument("name")
    c.add_argument("--scope", default="", help='allowed scopes, space-separated: "a b"')
    c.add_argument("--first-party", action="store_true", help="may use the password grant")
    c.add_argument("--public", action="store_true", help="no secret (e.g. a native app)")
    c.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        metavar="URI",
        help="where /authorize may send the user back (repeatable; compared exactly)",
    )
    c.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        metavar="URI",
        help="where /end_session may send the user after logout (repeatable)",
    )
    c.add_argument(
        "--web-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="origins allowed to call /token, /userinfo, /revoke from a browser "
        "(default: the origins of the http(s) redirect URIs)",
    )
    c.set_defaults(run=cmd_clients_create)
    for action, disabled in (("disable", True), ("enable", False)):
        c = clients.add_parser(
            action,
            help="stop a client: no more tokens, and the ones it holds are cut off"
            if disabled
            else "let a disabled client authenticate again",
        )
        c.add_argument("client", help="the client_id or the client's name")
        c.set_defaults(run=_clients_set_disabled(disabled))
    c = clients.add_parser("list", help="every client")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(run=cmd_clients_list)

    users = sub.add_parser("users", help="users who log in with a password").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    u = users.add_parser("create", help="add a user (asks for the password twice)")
    u.add_argument("name")
    u.add_argument("--role", action="append", metavar="ROLE", help="a role (repeatable)")
    u.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin instead"
    )
    u.set_defaults(run=cmd_users_create)
    u = users.add_parser("list", help="every user")
    u.add_argument("--json", action="store_true", help="print JSON instead of a table")
    u.set_defaults(run=cmd_users_list)
    u = users.add_parser("set-roles", help="replace a user's roles (none: no roles)")
    u.add_argument("name")
    u.add_argument("roles", nargs="*", metavar="ROLE")
    u.set_defaults(run=_users_change(roles=None))
    u = users.add_parser("disable", help="refuse the user's logins and refreshes")
    u.add_argument("name")
    u.set_defaults(run=_users_change(disabled=True))
    u = users.add_parser("enable", help="allow a disabled user again")
    u.add_argument("name")
    u.set_defaults(run=_users_change(disabled=False))
    return parser


def setup_logging(level: str, fmt: str = "text") -> None:
    logs.configure(level, fmt)


# Commands whose last argument is an identifier that may begin with "-" (a kid is
# base64url, so one in 64 does): argparse would take it for an option.
_TAKES_IDENTIFIER = {("keys", "revoke"), ("clients", "disable"), ("clients", "enable")}


def _protect_identifier(argv: list[str]) -> list[str]:
    if (
        len(argv) == 3
        and (argv[0], argv[1]) in _TAKES_IDENTIFIER
        and argv[2].startswith("-")
        and argv[2] not in ("-h", "--help", "--")
    ):
        return [argv[0], argv[1], "--", argv[2]]
    return argv


def _loop_factory(
    settings: Settings, command: Command, args: argparse.Namespace
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for a process that serves requests, when installed and not turned off
    (``ISSUER_UVLOOP``); asyncio's own loop for every other command, and for the
    supervisor of several workers.

    The supervisor spawns its workers with SIGHUP blocked, so a reload forwarded to
    one still starting waits for its handler. libuv's spawn unblocks every signal in
    the child (and resets every disposition): under uvloop such a worker died of the
    SIGHUP. The supervisor serves nothing, so asyncio's loop costs nothing there.
    """
    serves = command is cmd_serve and (args.worker or settings.workers == 1)
    if not serves or not settings.uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(
        _protect_identifier(list(sys.argv[1:] if argv is None else argv))
    )
    try:
        settings = Settings.from_env()
        if getattr(args, "workers", None) is not None:
            settings = replace(settings, workers=args.workers)
    except ConfigError as exc:
        print(f"issuer: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        command: Command = args.run
        with asyncio.Runner(loop_factory=_loop_factory(settings, command, args)) as runner:
            return runner.run(command(settings, args))
    except ConfigError as exc:
        print(f"issuer: configuration error: {exc}", file=sys.stderr)
        return 2
    # Exit 2: the installation or its settings stop the command before it starts (the
    # same code as a configuration error); exit 1: the command ran and failed.
    except (MigrationError, StoreError) as exc:
        print(f"issuer: {exc}", file=sys.stderr)
        return 2
    except (asyncpg.PostgresError, sqlite3.Error) as exc:
        # "database ... does not exist", "role ... does not exist", "unable to open ...":
        # the operator's to fix, so one line rather than a driver traceback.
        print(f"issuer: ISSUER_DATABASE_URL: database error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"issuer: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except (IssuerError, KeyUnwrapError) as exc:
        print(f"issuer: {exc}", file=sys.stderr)
        return 1
    except EOFError:
        print("issuer: no input (no terminal?): use --password-stdin", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
