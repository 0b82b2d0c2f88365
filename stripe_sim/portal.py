"""Billing portal sessions (``/v1/billing_portal/sessions``) and the portal's actions."""

from __future__ import annotations

from stripe_sim.customers import attach
from stripe_sim.events import tracked
from stripe_sim.params import as_str
from stripe_sim.render import public
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj
from stripe_sim.subscriptions import update_subscription

router = Router()


@router.route(
    "POST",
    "/v1/billing_portal/sessions",
    # locale is kept and shown; the simulated pages are in English whatever it says.
    implements=("customer", "return_url", "locale"),
)
def create_portal_session(ctx: Ctx) -> Obj:
    store = ctx.store
    cust = store.require_referenced(
        "customer", as_str(ctx.params, "customer", required=True), "customer"
    )
    session_id = store.new_id("bps_")
    session = store.insert(
        {
            "id": session_id,
            "object": "billing_portal.session",
            "after_expiration": None,
            "configuration": "bpc_simulator_default",
            "created": store.clock_now(None),
            "customer": cust["id"],
            "customer_account": None,
            "flow": None,
            "livemode": False,
            "locale": as_str(ctx.params, "locale"),
            "on_behalf_of": None,
            "return_url": as_str(ctx.params, "return_url"),
            "url": f"{store.base_url}/portal/{session_id}",
        }
    )
    return public(session)


def change_plan(ctx: Ctx, sub_id: str, price_id: str) -> None:
    sub = ctx.store.require("subscription", sub_id)
    item = ctx.engine.items(sub)[0]
    ctx.params = {
        "items": [{"id": item["id"], "price": price_id}],
        "proration_behavior": ctx.store.settings.portal_proration_behavior,
    }
    update_subscription(ctx, sub_id)


def set_cancel_at_period_end(ctx: Ctx, sub_id: str, flag: bool) -> None:
    ctx.params = {"cancel_at_period_end": "true" if flag else "false"}
    update_subscription(ctx, sub_id)


def update_card(ctx: Ctx, cust: Obj, pm_ref: str) -> None:
    """The portal's "update payment method": the new card becomes the customer's default
    and replaces the default of subscriptions that had one."""
    store = ctx.store
    at = store.now_for(cust)
    pm = attach(store, pm_ref, cust, at)
    with tracked(store, cust, "customer.updated", at=at):
        cust["invoice_settings"]["default_payment_method"] = pm["id"]
    for sub in store.where("subscription", "customer", cust["id"]):
        if sub["default_payment_method"]:
            with tracked(store, sub, "customer.subscription.updated", at=at):
                sub["default_payment_method"] = pm["id"]
