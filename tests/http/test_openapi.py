"""The OpenAPI documents: valid 3.1, complete, and true of the running service (schemathesis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from issuer.appkeys import admin_app_key
from tests.live import Served, issuer_env, serve

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Bounded: about 10 operations x this many examples, against one live process.
EXAMPLES = settings(
    max_examples=15,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def registered_routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        resource = route.resource
        # HEAD comes with each GET; "*" is the edge's catch-all for what nothing matches.
        if resource is None or route.method in ("HEAD", "*"):
            continue
        out.add((resource.canonical, route.method.lower()))
    return out


def documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item}


async def test_each_listener_documents_exactly_its_routes(
    app: web.Application, client: TestClient[Any, Any], admin: TestClient[Any, Any]
) -> None:
    for listener, served in ((client, app), (admin, app[admin_app_key])):
        resp = await listener.get("/openapi.json")
        assert resp.status == 200
        doc = await resp.json()
        validate(doc)
        assert doc["openapi"].startswith("3.1")
        assert registered_routes(served) == documented_routes(doc)


async def test_token_grant_types_follow_the_registered_grants(client: TestClient[Any, Any]) -> None:
    from issuer.http.public import GRANTS

    doc = await (await client.get("/openapi.json")).json()
    form = doc["paths"]["/token"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]
    assert form["properties"]["grant_type"]["enum"] == sorted(GRANTS)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["clientBasic"] == {**schemes["clientBasic"], "type": "http", "scheme": "basic"}
    assert schemes["adminBearer"]["scheme"] == "bearer"


# -- against the running service --------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    env = issuer_env(tmp, ISSUER_WORKERS="1", ISSUER_LOG_LEVEL="WARNING")
    with serve(env, tmp / "issuer.log") as served:
        served.wait_ready()
        yield served, served.admin_token()
        assert "Traceback" not in served.logs()


def exercise(url: str, base_url: str, headers: dict[str, str], checks: list[Any]) -> list[str]:
    """Every operation, schema-valid and schema-invalid data; the failures, one line each."""
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @EXAMPLES
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                case.call_and_validate(base_url=base_url, headers=headers, checks=checks)

            try:
                check()
            except Unsatisfiable:
                # No parameter or body can be made invalid (e.g. GET /livez): nothing to send.
                assert mode is GenerationMode.NEGATIVE, operation.path
            except Exception as exc:  # one operation's failure must not hide the others'
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}")
    return failures


@pytest.mark.slow
def test_public_listener_conforms(live: tuple[Served, str]) -> None:
    served, _ = live
    failures = exercise(served.public, served.public, {}, CHECKS)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_admin_listener_conforms(live: tuple[Served, str]) -> None:
    served, token = live
    failures = exercise(
        served.admin, served.admin, {"Authorization": f"Bearer {token}"}, [*CHECKS, ignored_auth]
    )
    assert not failures, "\n\n".join(failures)
