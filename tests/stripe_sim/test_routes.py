"""Routes: a route Stripe has that the simulator does not serve is refused by name, never
answered as if the URL did not exist; a URL Stripe does not have gets Stripe's answer."""

from __future__ import annotations

import httpx
import pytest
import stripe

from stripe_sim.app import served_routes
from stripe_sim.request_schema import ROUTE_NOT_IMPLEMENTED, load_stripe_routes, route_key
from stripe_sim.server import SimulatorServer

UNRECOGNIZED = "Unrecognized request URL"


def unserved_routes() -> list[tuple[str, str, str]]:
    """(method, path with ids in it, stripe-python method) of every Stripe route the
    simulator does not serve."""
    served = {route_key(method, pattern) for method, pattern in served_routes()}
    found = []
    for route in load_stripe_routes():
        pattern = "/".join(route.segments)
        if route_key(route.method, pattern) not in served:
            path = pattern.replace("{}", "obj_123")
            found.append((route.method, path, route.stripe_python))
    return found


def test_every_stripe_route_the_simulator_does_not_serve_is_refused_by_name(
    sim: SimulatorServer,
) -> None:
    routes = unserved_routes()
    assert len(served_routes()) + len(routes) == len(load_stripe_routes())
    wrong = []
    with httpx.Client(base_url=sim.url, auth=("sk_test_routes", "")) as http:
        for method, path, stripe_python in routes:
            response = http.request(method, path)
            error = response.json()["error"]
            expected = (
                f"The Stripe simulator does not implement {method} {path} ({stripe_python} "
                "in stripe-python)"
            )
            if (
                response.status_code != 404
                or error.get("code") != ROUTE_NOT_IMPLEMENTED
                or not error["message"].startswith(expected)
            ):
                wrong.append(f"{method} {path}: {response.status_code} {error}")
    assert wrong == []
    assert len(routes) > 400


def test_stripe_python_sees_the_refusal_with_its_code(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoices.create(params={"customer": "cus_123"})
    assert info.value.http_status == 404
    assert info.value.code == ROUTE_NOT_IMPLEMENTED
    assert info.value.user_message == (
        "The Stripe simulator does not implement POST /v1/invoices (invoices.create in "
        "stripe-python): Stripe has this route, the simulator does not serve it."
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.tax_ids.list("cus_123")  # served: a missing customer, not a refusal
    assert info.value.code == "resource_missing"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing_here"),
        ("DELETE", "/v1/invoices"),  # a path Stripe has, with a method it does not
        ("POST", "/v1/invoices/in_123/nothing"),
    ],
)
def test_a_url_stripe_does_not_have_is_unrecognized(
    sim: SimulatorServer, method: str, path: str
) -> None:
    response = httpx.request(method, f"{sim.url}{path}", auth=("sk_test_routes", ""))
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["message"] == (
        f"{UNRECOGNIZED} ({method}: {path}). Please see https://stripe.com/docs or we can help "
        "at https://support.stripe.com/."
    )
    assert "code" not in error
