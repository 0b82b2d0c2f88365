"""Found by the schema fuzzing: the routes that call Stripe (checkout, portal) let Stripe's
errors escape as a bare 500, so the Dataface app could not tell "Stripe is down, retry" from a
crash of this service. They now answer 409 / 502 / 503."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from db import repository
from tests.api.conftest import closed_port
from tests.fuzz.conftest import APP_HEADERS, FuzzApp


def test_portal_for_a_customer_stripe_does_not_know_is_not_a_server_error(
    fuzz_app: FuzzApp,
) -> None:
    with fuzz_app.sessions.begin() as session:
        repository.link_customer(session, "acct_stripe_forgot", "cus_deleted_in_stripe")
    response = fuzz_app.client.post("/v1/accounts/acct_stripe_forgot/portal", headers=APP_HEADERS)
    assert response.status_code in (404, 409, 502), response.text


def test_checkout_while_stripe_is_unreachable_says_retry(fuzz_app: FuzzApp) -> None:
    settings = fuzz_app.settings.model_copy(
        update={"stripe_simulator_url": f"http://127.0.0.1:{closed_port()}"}
    )
    app = create_app(settings, temporal_client=fuzz_app.temporal)  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/accounts/acct_stripe_down/checkout", json={"plan": "pro"}, headers=APP_HEADERS
        )
    assert response.status_code in (502, 503), response.text
