"""The client-authenticated OAuth endpoints, as one call each for their handlers.

Each function authenticates the client (RFC 6749 §2.3) and then does the one thing
the endpoint is for: a grant at ``/token``, ``/revoke`` (RFC 7009), ``/introspect``
(RFC 7662) or a page of the revocation feed. The handler only parses the request
and renders what comes back.
"""

from __future__ import annotations

from typing import Any

from issuer.context import Context
from issuer.services import authorization_code, grants, login, revocation, sessions
from issuer.services.accounts import (
    ClientCredentials,
    authenticate_client,
    authenticate_confidential_client,
)
from issuer.services.browser_sessions import login_store
from issuer.services.grants import TokenResponse
from issuer.services.revocation import FeedPage
from issuer.services.users import user_store


async def client_credentials_grant(
    ctx: Context, creds: ClientCredentials, *, scope: str | None
) -> TokenResponse:
    client = await authenticate_client(ctx.clients, creds.client_id, creds.client_secret)
    return grants.client_credentials(ctx.keyring, ctx.settings, ctx.clock, client, scope)


async def password_grant(
    ctx: Context,
    creds: ClientCredentials,
    *,
    username: str,
    password: str,
    scope: str | None,
    address: str | None,
) -> TokenResponse:
    client = await authenticate_client(ctx.clients, creds.client_id, creds.client_secret)
    return await login.password_grant(
        user_store(ctx.store),
        ctx.keyring,
        ctx.settings,
        ctx.clock,
        client=client,
        username=username,
        password=password,
        requested_scope=scope,
        address=address,
    )


async def refresh_token_grant(
    ctx: Context, creds: ClientCredentials, *, refresh_token: str, scope: str | None
) -> TokenResponse:
    client = await authenticate_client(ctx.clients, creds.client_id, creds.client_secret)
    return await sessions.refresh(
        user_store(ctx.store),
        ctx.keyring,
        ctx.settings,
        ctx.clock,
        client=client,
        presented=refresh_token,
        requested_scope=scope,
    )


async def authorization_code_grant(
    ctx: Context,
    creds: ClientCredentials,
    *,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None,
) -> TokenResponse:
    client = await authenticate_client(ctx.clients, creds.client_id, creds.client_secret)
    return await authorization_code.exchange_code(
        login_store(ctx.store),
        ctx.keyring,
        ctx.settings,
        ctx.clock,
        client=client,
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
    )


async def revoke(ctx: Context, creds: ClientCredentials, *, token: str) -> None:
    client = await authenticate_client(ctx.clients, creds.client_id, creds.client_secret)
    await revocation.revoke(
        user_store(ctx.store), ctx.keyring, ctx.settings, ctx.clock, client=client, token=token
    )


async def introspect(ctx: Context, creds: ClientCredentials, *, token: str) -> dict[str, Any]:
    client = await authenticate_confidential_client(
        ctx.clients, creds.client_id, creds.client_secret
    )
    return await revocation.introspect(
        user_store(ctx.store), ctx.keyring, ctx.clock, client=client, token=token
    )


async def revocation_feed(ctx: Context, creds: ClientCredentials, *, after: str | None) -> FeedPage:
    await authenticate_confidential_client(ctx.clients, creds.client_id, creds.client_secret)
    return await revocation.revocation_feed(user_store(ctx.store), ctx.clock, after)
