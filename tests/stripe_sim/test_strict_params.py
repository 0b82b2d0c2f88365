"""Strict requests: parameters Stripe does not know are refused as Stripe refuses them, and
parameters Stripe knows but the simulator does not implement are refused loudly, on every
route the simulator serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import stripe

from stripe_sim.app import route_schemas
from stripe_sim.request_schema import (
    NOT_IMPLEMENTED,
    Declared,
    Leaf,
    Node,
    load_table,
)
from stripe_sim.request_schema_gen import SCHEMA_PATH, build_table
from stripe_sim.router import Route
from stripe_sim.schema_tables import render_table
from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import make_customer


def refusal(call: Any) -> Any:
    with pytest.raises(stripe.InvalidRequestError) as info:
        call()
    assert info.value.http_status == 400
    return info.value


# unknown parameters ------------------------------------------------------------------------------
def test_unknown_parameter_is_stripes_parameter_unknown(client: stripe.StripeClient) -> None:
    params: Any = {"not_a_param": 1}
    error = refusal(lambda: client.v1.customers.create(params=params))
    assert error.code == "parameter_unknown"
    assert error.param == "not_a_param"
    assert error.user_message == "Received unknown parameter: not_a_param"
    assert client.v1.customers.list().data == []


def test_unknown_nested_parameter_is_named_with_brackets(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    params: Any = {"customer": cust.id, "items": [{"pricee": catalog["pro"].id}]}
    error = refusal(lambda: client.v1.subscriptions.create(params=params))
    assert error.code == "parameter_unknown"
    assert error.param == "items[0][pricee]"
    assert error.user_message == "Received unknown parameter: items[0][pricee]"


# known to Stripe, not implemented by the simulator -----------------------------------------------
def test_a_value_not_implemented_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    params: Any = {
        "customer": cust.id,
        "items": [{"price": catalog["pro"].id}],
        "collection_method": "send_invoice",
    }
    error = refusal(lambda: client.v1.subscriptions.create(params=params))
    assert error.code == NOT_IMPLEMENTED
    assert error.param == "collection_method"
    assert "collection_method=send_invoice" in error.user_message
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []
    # What the simulator does (charge the card) may be asked for explicitly.
    sub = client.v1.subscriptions.create(
        params={**params, "collection_method": "charge_automatically"}
    )
    assert sub.collection_method == "charge_automatically"


def test_invoice_items_and_backdating_are_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    base: Any = {"customer": cust.id, "items": [{"price": catalog["pro"].id}]}
    error = refusal(
        lambda: client.v1.subscriptions.create(params={**base, "backdate_start_date": 1760000000})
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "backdate_start_date")
    sub = client.v1.subscriptions.create(params=base)
    error = refusal(
        lambda: client.v1.subscriptions.update(
            sub.id, params={"add_invoice_items": [{"price": catalog["pro"].id}]}
        )
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "add_invoice_items")
    assert (
        "add_invoice_items" in error.user_message
        and "POST /v1/subscriptions/" in error.user_message
    )


def test_checkout_consent_collection_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    error = refusal(
        lambda: client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": cust.id,
                "line_items": [{"price": catalog["pro"].id, "quantity": 1}],
                "success_url": "https://example.com/ok",
                "consent_collection": {"terms_of_service": "required"},
            }
        )
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "consent_collection")
    assert client.v1.checkout.sessions.list().data == []


def test_an_unimplemented_value_of_an_implemented_parameter_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    error = refusal(
        lambda: client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "customer": cust.id,
                "line_items": [{"price": catalog["pro"].id}],
                "success_url": "https://example.com/ok",
            }
        )
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "mode")
    assert "mode=payment" in error.user_message and "subscription" in error.user_message


def test_refusals_that_depend_on_the_object(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": catalog["pro"].id}]}
    )
    # Stripe starts a new trial on an active subscription; the simulator does not.
    error = refusal(
        lambda: client.v1.subscriptions.update(sub.id, params={"trial_end": 1800000000})
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "trial_end")
    error = refusal(
        lambda: client.v1.subscriptions.update(sub.id, params={"cancel_at": "max_billed_until"})
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "cancel_at")
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at is None
    product = catalog["pro"].product
    params: Any = {"product": product, "currency": "usd", "unit_amount_decimal": "12.5"}
    error = refusal(lambda: client.v1.prices.create(params=params))
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "unit_amount_decimal")
    price = client.v1.prices.create(params={**params, "unit_amount_decimal": "1250"})
    assert price.unit_amount == 1250


# Stripe's type checks ----------------------------------------------------------------------------
def raw_post(sim: SimulatorServer, path: str, data: Any) -> Any:
    response = httpx.post(f"{sim.url}{path}", auth=("sk_test_x", ""), data=data)
    assert response.status_code == 400, response.text
    return response.json()["error"]


def test_type_errors_are_stripes(sim: SimulatorServer) -> None:
    error = raw_post(sim, "/v1/test_helpers/test_clocks", {"frozen_time": "1.5"})
    assert error["code"] == "parameter_invalid_integer"
    assert (error["param"], error["message"]) == ("frozen_time", "Invalid integer: 1.5")

    error = raw_post(sim, "/v1/prices", {"currency": "usd", "active": "yes"})
    assert (error["param"], error["message"]) == ("active", "Invalid boolean: yes")

    error = raw_post(
        sim,
        "/v1/prices",
        {"currency": "usd", "product": "prod_x", "recurring[interval]": "fortnight"},
    )
    assert error["param"] == "recurring[interval]"
    assert error["message"] == (
        "Invalid recurring[interval]: must be one of day, month, week, or year"
    )

    error = raw_post(sim, "/v1/customers", {"email": ""})
    assert error["code"] == "parameter_invalid_empty"
    assert error["message"].startswith("You passed an empty string for 'email'.")

    error = raw_post(sim, "/v1/customers", {"expand": "customer"})
    assert (error["param"], error["message"]) == ("expand", "Invalid array")

    error = raw_post(sim, "/v1/prices", {"product": "prod_x"})
    assert error["code"] == "parameter_missing"
    assert (error["param"], error["message"]) == ("currency", "Missing required param: currency.")


def test_metadata_keys_are_unset_with_empty_values(client: stripe.StripeClient) -> None:
    cust = client.v1.customers.create(params={"metadata": {"a": "1", "b": "2"}})
    cust = client.v1.customers.update(cust.id, params={"metadata": {"a": ""}})
    assert cust.metadata.to_dict() == {"b": "2"}
    cust = client.v1.customers.update(cust.id, params={"metadata": ""})
    assert cust.metadata.to_dict() == {}


# every route -------------------------------------------------------------------------------------
def test_the_table_matches_the_installed_stripe_python() -> None:
    """request_schema.json is what request_schema_gen makes from this stripe-python."""
    assert SCHEMA_PATH.read_text() == render_table(build_table())


def test_every_route_has_a_schema_and_claims_only_what_stripe_has() -> None:
    schemas = route_schemas()  # raises otherwise
    assert len(schemas) == len(load_table())


def alternatives_of(node: Node) -> list[Node]:
    return list(node["anyOf"]) if isinstance(node, dict) and "anyOf" in node else [node]


def sample(node: Node, declared: Declared | Leaf | None = None, top: bool = False) -> Any:
    """A value Stripe accepts for ``node`` (an implemented one where ``declared`` says which),
    with only the required children of objects (or their first child)."""
    alternatives = [a for a in alternatives_of(node) if a != {"enum": [""]}]
    alt = alternatives[0]
    if isinstance(declared, Leaf) and declared.values:
        return sorted(declared.values)[0]
    if isinstance(alt, str):
        return {"boolean": "true"}.get(alt, "1")
    if "enum" in alt:
        return alt["enum"][0]
    if "array" in alt:
        return [sample(alt["array"], declared)]
    if "map" in alt:
        return {"k": sample(alt["map"])}
    children = declared if isinstance(declared, dict) else {}
    # The required children; or one, so that the object is on the wire at all.
    keys = alt.get("required") or ([] if top else sorted(alt["object"])[:1])
    return {key: sample(alt["object"][key], children.get(key)) for key in keys}


def with_value(
    node: Node, declared: Declared | Leaf | None, path: list[str], value: Any
) -> tuple[Any, list[str]]:
    """A value for ``node`` holding ``value`` at ``path`` (dotted names, arrays transparent),
    with the required siblings along the way, and the bracketed parameter path of it."""
    alternatives = alternatives_of(node)
    alt = next(a for a in alternatives if isinstance(a, dict) and ("object" in a or "array" in a))
    if "array" in alt:
        inner, where = with_value(alt["array"], declared, path, value)
        return [inner], ["0", *where]
    key, rest = path[0], path[1:]
    children = declared if isinstance(declared, dict) else {}
    child = alt["object"][key]
    inner, where = with_value(child, children.get(key), rest, value) if rest else (value, [])
    required = {
        k: sample(alt["object"][k], children.get(k)) for k in alt.get("required", ()) if k != key
    }
    return {key: inner, **required}, [key, *where]


def other_values(node: Node, implemented: frozenset[str]) -> list[str]:
    alternatives = alternatives_of(node)
    values: list[str] = []
    for alt in alternatives:
        if alt == "boolean":
            values += ["true", "false"]
        elif isinstance(alt, dict) and "enum" in alt:
            values += [v for v in alt["enum"] if v]
    return [v for v in values if v not in implemented]


def refused_cases(node: Node, declared: Declared, prefix: list[str]) -> Iterator[tuple[Any, ...]]:
    """(dotted path, value) for every parameter Stripe knows that the declaration leaves out,
    highest first (children of a refused parameter are refused with it), and for every value
    of an implemented parameter that it does not implement."""
    alternatives = alternatives_of(node)
    for alt in alternatives:
        if isinstance(alt, dict) and "array" in alt:
            yield from refused_cases(alt["array"], declared, prefix)
            return
        if isinstance(alt, dict) and "object" in alt:
            for key, child in sorted(alt["object"].items()):
                spec = declared.get(key)
                if spec is None:
                    yield [*prefix, key], sample(child)
                elif isinstance(spec, Leaf):
                    for value in other_values(child, spec.values or frozenset())[:1]:
                        if spec.values:
                            yield [*prefix, key], value
                else:
                    yield from refused_cases(child, spec, [*prefix, key])
            return


def encode(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [
            pair
            for key, item in value.items()
            for pair in encode(item, f"{prefix}[{key}]" if prefix else key)
        ]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in encode(item, f"{prefix}[{i}]")]
    return [(prefix, str(value))]


def send(http: httpx.Client, route: Route, params: dict[str, Any]) -> httpx.Response:
    path = route.pattern.replace("{", "").replace("}", "")  # /v1/customers/cust_id
    pairs = encode(params)
    if route.method == "POST":
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        return http.post(path, content=urlencode(pairs), headers=form)
    return http.request(route.method, path, params=pairs)


def test_no_route_accepts_an_unknown_or_unimplemented_parameter(sim: SimulatorServer) -> None:
    """Every route refuses a parameter Stripe does not know with parameter_unknown, and every
    parameter (and value) Stripe knows that the route does not implement with
    parameter_not_implemented_by_simulator, naming it."""
    routes = route_schemas()
    checked = 0
    with httpx.Client(base_url=sim.url, auth=("sk_test_x", "")) as http:
        for route, schema in routes.items():
            where = f"{route.method} {route.pattern}"
            base = sample(schema, route.implements, top=True)
            baseline = send(http, route, base)
            if baseline.status_code == 400:
                code = baseline.json()["error"].get("code")
                assert code not in ("parameter_unknown", NOT_IMPLEMENTED), (where, baseline.text)

            error = send(http, route, {"not_a_param": "1", **base}).json()["error"]
            assert error["code"] == "parameter_unknown", (where, error)
            assert error["param"] == "not_a_param"

            for path, value in refused_cases(schema, route.implements, []):
                params, bracketed = with_value(schema, route.implements, path, value)
                response = send(
                    http, route, {**params, **{k: v for k, v in base.items() if k not in params}}
                )
                name = bracketed[0] + "".join(f"[{p}]" for p in bracketed[1:])
                if not any(k == name or k.startswith(f"{name}[") for k, _ in encode(params)):
                    continue  # an object without fields (affirm={}) is nothing on the wire
                assert response.status_code == 400, (where, name, response.text)
                error = response.json()["error"]
                assert (error.get("code"), error.get("param")) == (NOT_IMPLEMENTED, name), (
                    where,
                    name,
                    error,
                )
                checked += 1
    assert checked > 250
