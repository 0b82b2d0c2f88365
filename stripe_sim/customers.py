"""Customers and PaymentMethods (including Stripe's magic test ids and test card numbers)."""

from __future__ import annotations

from typing import Any

from stripe_sim import objects
from stripe_sim.cards import MAGIC_PAYMENT_METHODS, TOKENS, card_for_number
from stripe_sim.errors import card_error, invalid, no_such, no_such_referenced
from stripe_sim.events import buffered, emit, publish, tracked
from stripe_sim.listing import (
    LIST_PARAMS,
    SEARCH_PARAMS,
    filter_created,
    paginate,
    search_result,
)
from stripe_sim.params import as_dict, as_int, as_str, merge_metadata
from stripe_sim.render import public, render_expanded
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj, Store
from stripe_sim.tax import ADDRESS_PARAMS, set_address, tax_ids_list

router = Router()

_CUSTOMER_FIELDS = ("email", "name", "description", "phone")
_BILLING_DETAILS = ("billing_details.email", "billing_details.name", "billing_details.phone")


# payment methods ---------------------------------------------------------------------------
def payment_method_from_magic(store: Store, pm_id: str, at: int) -> Obj | None:
    card = MAGIC_PAYMENT_METHODS.get(pm_id)
    if card is None:
        return None
    return store.insert(objects.payment_method(store, card, now=at))


def attach(store: Store, pm_ref: str, cust: Obj, at: int, param: str = "payment_method") -> Obj:
    """Attach a PaymentMethod (or a magic test id, which makes a new one) to ``cust``.

    Cards that Stripe documents as declined are refused here, like Stripe's attach does:
    the card is checked with the issuer when it is saved to a customer.
    """
    pm = store.get(pm_ref, "payment_method")
    if pm is None:
        pm = payment_method_from_magic(store, pm_ref, at)
    if pm is None:
        raise no_such_referenced("PaymentMethod", pm_ref, param)
    if pm["customer"] == cust["id"]:
        return pm
    if pm["customer"] is not None:
        raise invalid(
            "The payment method you provided has already been attached to a customer.",
            param=param,
            code="payment_method_unexpected_state",
        )
    card = pm["_card"]
    if card.behaviour == "decline":
        raise card_error(card.message, code=card.code, decline_code=card.decline_code, param=None)
    pm["customer"] = cust["id"]
    emit(store, "payment_method.attached", pm, at=at)
    return pm


def resolve_owned(store: Store, pm_ref: str, cust: Obj, at: int, param: str) -> Obj:
    """A PaymentMethod the customer owns. Magic test ids are attached on the fly, which is
    what Stripe's test mode allows for ``pm_card_*``."""
    if pm_ref in MAGIC_PAYMENT_METHODS:
        return attach(store, pm_ref, cust, at, param)
    pm = store.get(pm_ref, "payment_method")
    if pm is None:
        raise no_such_referenced("PaymentMethod", pm_ref, param)
    if pm["customer"] != cust["id"]:
        raise invalid(
            f"The customer does not have a payment method with the ID {pm_ref}. The payment "
            "method must be attached to the customer.",
            param=param,
        )
    return pm


@router.route(
    "POST",
    "/v1/payment_methods",
    implements=(
        "type=card",
        "card.number",
        "card.token",
        "card.exp_month",
        "card.exp_year",
        "card.cvc",  # test mode takes any CVC
        *_BILLING_DETAILS,
        "metadata",
        "expand",
    ),
)
def create_payment_method(ctx: Ctx) -> Obj:
    params = ctx.params
    if (as_str(params, "type") or "card") != "card":
        raise invalid("Only type=card is simulated.", param="type")
    card_params = as_dict(params, "card")
    if "token" in card_params:
        profile = TOKENS.get(str(card_params["token"]))
        if profile is None:
            raise no_such_referenced("token", str(card_params["token"]), "card[token]")
    elif "number" in card_params:
        profile = card_for_number(str(card_params["number"]))
    else:
        raise invalid("Missing required param: card[number] or card[token].", param="card")
    pm = objects.payment_method(
        ctx.store,
        profile,
        now=ctx.store.clock_now(None),
        exp_month=as_int(card_params, "exp_month", param="card[exp_month]") or 12,
        exp_year=as_int(card_params, "exp_year", param="card[exp_year]") or 2034,
    )
    _apply_billing_details(pm, params)
    pm["metadata"] = merge_metadata({}, params)
    ctx.store.insert(pm)
    return render_expanded(ctx.store, pm, ctx.expand)


def _apply_billing_details(pm: Obj, params: dict[str, Any]) -> None:
    details = as_dict(params, "billing_details")
    for key in ("email", "name", "phone"):
        if key in details:
            pm["billing_details"][key] = details[key] or None


def _pm(ctx: Ctx, pm_id: str) -> Obj:
    pm = ctx.store.get(pm_id, "payment_method")
    if pm is None:
        pm = payment_method_from_magic(ctx.store, pm_id, ctx.store.clock_now(None))
    if pm is None:
        raise no_such("PaymentMethod", pm_id)
    return pm


@router.route("GET", "/v1/payment_methods/{pm_id}", implements=("expand",))
def retrieve_payment_method(ctx: Ctx, pm_id: str) -> Obj:
    return render_expanded(ctx.store, _pm(ctx, pm_id), ctx.expand)


@router.route(
    "POST", "/v1/payment_methods/{pm_id}", implements=("metadata", *_BILLING_DETAILS, "expand")
)
def update_payment_method(ctx: Ctx, pm_id: str) -> Obj:
    pm = ctx.store.require("payment_method", pm_id)
    with tracked(ctx.store, pm, "payment_method.updated"):
        pm["metadata"] = merge_metadata(pm["metadata"], ctx.params)
        _apply_billing_details(pm, ctx.params)
    return render_expanded(ctx.store, pm, ctx.expand)


@router.route("POST", "/v1/payment_methods/{pm_id}/attach", implements=("customer", "expand"))
def attach_payment_method(ctx: Ctx, pm_id: str) -> Obj:
    cust_id = as_str(ctx.params, "customer", required=True)
    cust = ctx.store.require_referenced("customer", cust_id, "customer")
    pm = attach(ctx.store, _pm(ctx, pm_id)["id"], cust, ctx.store.now_for(cust))
    return render_expanded(ctx.store, pm, ctx.expand)


@router.route("POST", "/v1/payment_methods/{pm_id}/detach", implements=("expand",))
def detach_payment_method(ctx: Ctx, pm_id: str) -> Obj:
    pm = ctx.store.require("payment_method", pm_id)
    cust = ctx.store.get(pm["customer"], "customer")
    if cust is None:
        raise invalid(
            "The payment method you provided is not attached to a customer so "
            "detachment is impossible.",
            code="payment_method_unexpected_state",
        )
    at = ctx.store.now_for(cust)
    with tracked(ctx.store, cust, "customer.updated", at=at):
        if cust["invoice_settings"]["default_payment_method"] == pm["id"]:
            cust["invoice_settings"]["default_payment_method"] = None
    for sub in ctx.store.of_kind("subscription"):
        if sub["default_payment_method"] == pm["id"]:
            with tracked(ctx.store, sub, "customer.subscription.updated", at=at):
                sub["default_payment_method"] = None
    snapshot = public(pm)
    pm["customer"] = None
    emit(
        ctx.store,
        "payment_method.detached",
        pm,
        at=at,
        previous_attributes={"customer": snapshot["customer"]},
    )
    return render_expanded(ctx.store, pm, ctx.expand)


@router.route("GET", "/v1/payment_methods", implements=(*LIST_PARAMS, "customer", "type=card"))
def list_payment_methods(ctx: Ctx) -> Obj:
    cust_id = as_str(ctx.params, "customer")
    pms = [pm for pm in ctx.store.of_kind("payment_method") if pm["customer"] is not None]
    if cust_id:
        pms = [pm for pm in pms if pm["customer"] == cust_id]
    return paginate(
        ctx.store,
        pms,
        ctx.params,
        "/v1/payment_methods",
        lambda o: render_expanded(ctx.store, o, None),
    )


@router.route(
    "GET", "/v1/customers/{cust_id}/payment_methods", implements=(*LIST_PARAMS, "type=card")
)
def list_customer_payment_methods(ctx: Ctx, cust_id: str) -> Obj:
    ctx.store.require("customer", cust_id)
    pms = [pm for pm in ctx.store.of_kind("payment_method") if pm["customer"] == cust_id]
    return paginate(
        ctx.store,
        pms,
        ctx.params,
        f"/v1/customers/{cust_id}/payment_methods",
        lambda o: render_expanded(ctx.store, o, None),
    )


@router.route("GET", "/v1/customers/{cust_id}/payment_methods/{pm_id}", implements=("expand",))
def retrieve_customer_payment_method(ctx: Ctx, cust_id: str, pm_id: str) -> Obj:
    pm = ctx.store.require("payment_method", pm_id)
    if pm["customer"] != cust_id:
        raise no_such("PaymentMethod", pm_id)
    return render_expanded(ctx.store, pm, ctx.expand)


# customers -----------------------------------------------------------------------------------
def _apply_customer_params(store: Store, cust: Obj, params: dict[str, Any], at: int) -> None:
    for key in _CUSTOMER_FIELDS:
        if key in params:
            cust[key] = as_str(params, key) or None
    if "balance" in params:
        cust["balance"] = as_int(params, "balance") or 0
    if "address" in params:
        set_address(store, cust, params["address"])
    cust["metadata"] = merge_metadata(cust["metadata"], params)
    if params.get("payment_method"):
        attach(store, str(params["payment_method"]), cust, at)
    settings = as_dict(params, "invoice_settings")
    if "default_payment_method" in settings:
        ref = settings["default_payment_method"]
        param = "invoice_settings[default_payment_method]"
        if ref:
            if ref == params.get("payment_method"):
                # The magic id given as payment_method in the same request: use that one.
                attached = [
                    pm for pm in store.of_kind("payment_method") if pm["customer"] == cust["id"]
                ]
                pm = attached[-1]
            else:
                pm = resolve_owned(store, str(ref), cust, at, param)
            cust["invoice_settings"]["default_payment_method"] = pm["id"]
        else:
            cust["invoice_settings"]["default_payment_method"] = None


@router.route(
    "POST",
    "/v1/customers",
    implements=(
        *_CUSTOMER_FIELDS,
        *ADDRESS_PARAMS,
        "balance",
        "metadata",
        "payment_method",
        "invoice_settings.default_payment_method",
        "test_clock",
        "expand",
    ),
)
def create_customer(ctx: Ctx) -> Obj:
    store, params = ctx.store, ctx.params
    clock_id = as_str(params, "test_clock")
    if clock_id:
        clock = store.require_referenced("test_helpers.test_clock", clock_id, "test_clock")
        if clock["status"] != "ready":
            raise invalid(
                "The test clock is advancing; try again once it is ready.", param="test_clock"
            )
    at = store.clock_now(clock_id)
    cust = store.insert(objects.customer(store, now=at, clock=clock_id))
    with buffered(store) as events:
        try:
            _apply_customer_params(store, cust, params, at)
        except Exception:
            store.remove(cust["id"])
            raise
    # customer.created comes first and already shows the attached default payment method.
    emit(store, "customer.created", cust, at=at)
    for event in events:
        publish(store, event)
    ctx.touched_clocks.add(clock_id)
    return render_expanded(store, cust, ctx.expand)


@router.route("GET", "/v1/customers/search", implements=SEARCH_PARAMS)
def search_customers(ctx: Ctx) -> Obj:
    return search_result(ctx.store, "customer", ctx.params, "/v1/customers/search")


@router.route("GET", "/v1/customers/{cust_id}", implements=("expand",))
def retrieve_customer(ctx: Ctx, cust_id: str) -> Obj:
    cust = ctx.store.get(cust_id, "customer")
    if cust is not None and cust.get("_deleted"):
        return {"id": cust_id, "object": "customer", "deleted": True}
    cust = ctx.store.require("customer", cust_id)
    out = render_expanded(ctx.store, cust, [p for p in ctx.expand if p != "tax_ids"])
    if "tax_ids" in ctx.expand:
        out["tax_ids"] = tax_ids_list(ctx.store, cust)
    return out


@router.route(
    "POST",
    "/v1/customers/{cust_id}",
    implements=(
        *_CUSTOMER_FIELDS,
        *ADDRESS_PARAMS,
        "balance",
        "metadata",
        "invoice_settings.default_payment_method",
        "expand",
    ),
)
def update_customer(ctx: Ctx, cust_id: str) -> Obj:
    store = ctx.store
    cust = store.require("customer", cust_id)
    at = store.now_for(cust)
    with tracked(store, cust, "customer.updated", at=at):
        _apply_customer_params(store, cust, ctx.params, at)
    ctx.touched_clocks.add(cust["test_clock"])
    return render_expanded(store, cust, ctx.expand)


@router.route("DELETE", "/v1/customers/{cust_id}", implements=())
def delete_customer(ctx: Ctx, cust_id: str) -> Obj:
    cust = ctx.store.require("customer", cust_id)
    delete_customer_and_subscriptions(ctx, cust)
    return {"id": cust_id, "object": "customer", "deleted": True}


def delete_customer_and_subscriptions(ctx: Ctx, cust: Obj) -> None:
    store = ctx.store
    at = store.now_for(cust)
    for sub in store.where("subscription", "customer", cust["id"]):
        if sub["status"] not in ("canceled", "incomplete_expired"):
            ctx.engine.cancel(sub, at)
    emit(store, "customer.deleted", cust, at=at)
    cust["_deleted"] = True


@router.route("GET", "/v1/customers", implements=(*LIST_PARAMS, "email", "test_clock", "created"))
def list_customers(ctx: Ctx) -> Obj:
    custs = ctx.store.of_kind("customer")
    email = as_str(ctx.params, "email")
    if email:
        custs = [c for c in custs if c["email"] == email]
    clock = as_str(ctx.params, "test_clock")
    if clock:
        custs = [c for c in custs if c["test_clock"] == clock]
    custs = filter_created(custs, ctx.params)
    return paginate(
        ctx.store, custs, ctx.params, "/v1/customers", lambda o: render_expanded(ctx.store, o, None)
    )
