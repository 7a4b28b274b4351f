"""FastAPI adapter: a dependency that gives the route the verified claims.

    auth = FastAPIBearer(verifier)
    app = FastAPI()
    auth.setup(app)

    @app.get("/invoices")
    async def invoices(claims: dict = Depends(auth.claims(scopes=["invoices:read"]))): ...

The dependency goes through FastAPI's ``HTTPBearer`` scheme, so the generated
OpenAPI document lists an ``http``/``bearer`` security scheme and each guarded
operation requires it. Errors are answered by the handler :meth:`setup`
installs, exactly as the aiohttp middleware answers (RFC 6750 §3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

try:
    from fastapi import Request, Security
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ImportError as exc:  # pragma: no cover - exercised by the slim-install test
    raise ImportError(
        "issuer.verifier.fastapi needs FastAPI: pip install 'issuer[fastapi]'"
    ) from exc

from issuer.verifier.asgi import BearerAuth, claims_of
from issuer.verifier.bearer import BearerError
from issuer.verifier.verifier import Verifier

Claims = dict[str, Any]


class FastAPIBearer(BearerAuth):
    framework = "fastapi"

    def __init__(
        self,
        verifier: Verifier,
        *,
        realm: str | None = None,
        scheme_name: str = "bearer",
        description: str = "An access token from the issuer (RFC 9068 JWT, RS256)",
    ) -> None:
        super().__init__(verifier, realm=realm)
        # auto_error=False: this adapter answers, with RFC 6750 errors, not FastAPI's 403.
        self.scheme = HTTPBearer(
            auto_error=False, scheme_name=scheme_name, bearerFormat="JWT", description=description
        )

    def claims(
        self, *, scopes: Collection[str] = (), roles: Collection[str] = ()
    ) -> Callable[..., Awaitable[Claims]]:
        """A dependency: the claims of a valid token with every scope and role listed."""
        scheme = self.scheme

        async def dependency(
            request: Request,
            _credentials: HTTPAuthorizationCredentials | None = Security(scheme),  # noqa: B008
        ) -> Claims:
            claims = await self.authenticate(request)
            self.check(claims, scopes, roles)
            return claims

        return dependency


__all__ = ["BearerError", "Claims", "FastAPIBearer", "claims_of"]
