"""Schemathesis over the app's own OpenAPI schema, in-process (ASGI), with the right token for
each API: for every operation, requests the schema allows and requests it does not, and the
app never answers 5xx except a 503 with `Retry-After` (the fake Temporal here is unavailable)
and Stripe's refusal (502).

Operations are listed from the schema of an app built at import (no I/O: nothing runs before
the lifespan), so each gets its own test id; the requests go to the module's running app.
(`schemathesis.pytest.from_fixture` would do this for us, but fails on pytest 9.)
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.openapi import from_asgi

from api.main import create_app
from core.config import Settings
from tests.fuzz.conftest import ADMIN_HEADERS, APP_HEADERS, FuzzApp

# The stream never ends by design; the long poll's `wait` is forced to 0 below.
ENDLESS = {"/v1/entitlements/stream"}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
SCHEMA_PATHS = create_app(Settings(_env_file=None)).openapi()["paths"]
# Negative cases need something to get wrong: operations without inputs get positive ones.
CASES = sorted(
    (path, method, mode)
    for path, methods in SCHEMA_PATHS.items()
    if path not in ENDLESS
    for method, spec in methods.items()
    if method in HTTP_METHODS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or spec.get("parameters") or spec.get("requestBody")
)


@pytest.fixture(scope="module")
def api_schema(fuzz_app: FuzzApp) -> schemathesis.BaseSchema:
    return from_asgi("/openapi.json", fuzz_app.client.app)


@pytest.mark.parametrize(
    ("path", "method", "mode"),
    [pytest.param(*case, id=f"{case[1].upper()} {case[0]} {case[2].value}") for case in CASES],
)
def test_no_operation_answers_a_server_error(
    fuzz_app: FuzzApp,
    api_schema: schemathesis.BaseSchema,
    path: str,
    method: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def never_a_server_error(case: schemathesis.Case) -> None:
        if case.query and "wait" in case.query:
            case.query["wait"] = 0
        headers = ADMIN_HEADERS if path.startswith("/admin") else APP_HEADERS
        response = send(fuzz_app, case, headers)
        # Temporal or Stripe unavailable: a 503 that says when to retry is the right answer.
        unavailable = response.status_code == 503 and "Retry-After" in response.headers
        stripe_refused = response.status_code == 502 and "Stripe" in response.text
        assert response.status_code < 500 or unavailable or stripe_refused, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )

    never_a_server_error()


def send(app: FuzzApp, case: schemathesis.Case, headers: dict[str, str]) -> httpx.Response:
    """The case through the module's app client, which turns a crash into the 500 a real
    client gets (schemathesis's own ASGI client would raise it instead)."""
    request = case.as_transport_kwargs(base_url=str(app.client.base_url), headers=headers)
    body = request.get("data")
    return app.client.request(
        request["method"],
        request["url"],
        headers=request.get("headers"),
        params=request.get("params"),
        cookies=request.get("cookies"),
        json=request.get("json"),
        content=body.encode() if isinstance(body, str) else body,
        files=request.get("files"),
    )
