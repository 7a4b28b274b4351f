"""The FastAPI adapter as FastAPI sees it: a bearer security scheme in the OpenAPI document."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from issuer.jose.keys import GeneratedKey
from issuer.verifier import JWKSClient, Verifier
from issuer.verifier.fastapi import Claims, FastAPIBearer

from .conftest import AUDIENCE, ISSUER


def test_the_fastapi_dependency_is_a_bearer_security_scheme_in_openapi(
    rsa_key: GeneratedKey,
) -> None:
    jwks = JWKSClient("https://issuer.example/.well-known/jwks.json")
    auth = FastAPIBearer(Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks))
    app = FastAPI()
    auth.setup(app)

    @app.get("/invoices")
    async def invoices(claims: Claims = Depends(auth.claims(scopes=["invoices:read"]))) -> Claims:  # noqa: B008
        return claims

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    doc = app.openapi()
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "JWT"
    assert doc["paths"]["/invoices"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]
