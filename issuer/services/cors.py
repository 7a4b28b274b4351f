"""Which browser origins may read the answers of /token, /userinfo and /revoke (CORS).

A preflight carries no credentials, so it is allowed for any origin that some
enabled client registered; a real answer is readable only from the web origins
of the client it concerns (when the client cannot be told, as before
authentication, from any registered origin: it is an error without secrets).
"""

from __future__ import annotations

from issuer.services.browser_sessions import login_store
from issuer.store.base import Store

MAX_ORIGIN = 300


async def preflight_allowed(store: Store, origin: str) -> bool:
    if len(origin) > MAX_ORIGIN:
        return False
    return await login_store(store).origin_registered(origin)


async def may_read(store: Store, origin: str, client_id: str | None) -> bool:
    if len(origin) > MAX_ORIGIN:
        return False
    if client_id is None or "\x00" in client_id or len(client_id) > 200:
        return await login_store(store).origin_registered(origin)
    client = await store.get_client(client_id)
    return client is not None and not client.disabled and origin in client.web_origins
