"""Subscriptions API: create, retrieve, list, search, update (prorations, pending updates),
cancel, resume."""

from __future__ import annotations

from typing import Any

from stripe_sim import objects
from stripe_sim.anchors import requested_anchor
from stripe_sim.billing import ENDED_STATUSES, Engine, ItemPlan, LineSpec
from stripe_sim.coupons import redeem
from stripe_sim.customers import resolve_owned
from stripe_sim.errors import (
    StripeError,
    card_error,
    invalid,
    missing_param,
    no_such_referenced,
)
from stripe_sim.events import buffered, emit, publish, tracked
from stripe_sim.listing import (
    LIST_PARAMS,
    SEARCH_PARAMS,
    candidates,
    filter_created,
    paginate,
    search_result,
)
from stripe_sim.params import as_bool, as_dict, as_int, as_list, as_str, merge_metadata
from stripe_sim.payments import Outcome
from stripe_sim.periods import period_bounds
from stripe_sim.render import plan_from_price, public, render_expanded
from stripe_sim.request_schema import not_implemented
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj, Store
from stripe_sim.tax import SUBSCRIPTION_TAX_PARAMS, apply_subscription_tax

router = Router()

NO_PAYMENT_METHOD_MESSAGE = (
    "This customer has no attached payment source or default payment method. Please consider "
    "adding a default payment method. For more information, visit "
    "https://docs.stripe.com/billing/subscriptions/payment-methods-setting"
    "#payment-method-priority."
)
PAYMENT_BEHAVIORS = (
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
)
PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")
# On create, proration_behavior is only about the first period a billing cycle anchor makes.
CREATE_PRORATION_BEHAVIORS = ("create_prorations", "none")
# Implemented by both create and update.
_SUBSCRIPTION_FIELDS = (
    "default_payment_method",
    "description",
    "metadata",
    "trial_end",
    "trial_settings.end_behavior.missing_payment_method",
    "cancel_at",
    "cancel_at_period_end",
    "collection_method=charge_automatically",
    *SUBSCRIPTION_TAX_PARAMS,
)


def _recurring_price(store: Store, ref: Any, param: str) -> Obj:
    if not ref:
        raise missing_param(param)
    price = store.require_referenced("price", ref, param)
    if price["type"] != "recurring":
        raise invalid(
            "The price specified is set to `type=one_time` but this field only "
            "accepts prices with `type=recurring`.",
            param=param,
        )
    if not price["active"]:
        raise invalid(
            "The price specified is inactive. This field only accepts active prices.", param=param
        )
    return price


def _quantity(raw: dict[str, Any], param: str) -> int:
    qty = as_int(raw, "quantity", param=param)
    if qty is None:
        return 1
    if qty < 0:
        raise invalid("Invalid integer: must be at least 0", param=param)
    return qty


def _check_same_interval(plan: ItemPlan) -> None:
    intervals = {
        (p["recurring"]["interval"], p["recurring"]["interval_count"]) for _, p, _ in plan.items
    }
    currencies = {p["currency"] for _, p, _ in plan.items}
    if len(intervals) > 1 or len(currencies) > 1:
        raise invalid(
            "Currency and interval fields must match across all plans on this "
            "subscription. Found mismatches in interval and currency.",
            param="items",
        )
    prices = [p["id"] for _, p, _ in plan.items]
    if len(prices) != len(set(prices)):
        raise invalid("Cannot add multiple subscription items with the same price.", param="items")


def _choice(params: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = as_str(params, key) or default
    if value not in allowed:
        raise invalid(f"Invalid {key}: must be one of {', '.join(allowed)}", param=key)
    return value


# create ----------------------------------------------------------------------------------------
@router.route(
    "POST",
    "/v1/subscriptions",
    implements=(
        "customer",
        "items.price",
        "items.quantity",
        "items.metadata",
        "items.tax_rates",
        "payment_behavior=" + "|".join(PAYMENT_BEHAVIORS[:3]),
        *_SUBSCRIPTION_FIELDS,
        "trial_from_plan",
        "trial_period_days",
        "discounts.coupon",
        "discounts.promotion_code",
        "billing_cycle_anchor",
        "billing_cycle_anchor_config",
        "proration_behavior=create_prorations|none",
        "expand",
    ),
)
def create_subscription(ctx: Ctx) -> Obj:
    store, params = ctx.store, ctx.params
    cust_id = as_str(params, "customer", required=True)
    cust = store.require_referenced("customer", cust_id, "customer")
    raw_items = as_list(params, "items")
    if not raw_items:
        raise missing_param("items")
    plan = ItemPlan()
    for i, raw in enumerate(raw_items):
        raw = raw if isinstance(raw, dict) else {}
        price = _recurring_price(store, raw.get("price"), f"items[{i}][price]")
        plan.items.append((None, price, _quantity(raw, f"items[{i}][quantity]")))
        plan.metadata.append(merge_metadata({}, raw) if "metadata" in raw else None)
    _check_same_interval(plan)
    behavior = _choice(params, "payment_behavior", PAYMENT_BEHAVIORS[:3], "allow_incomplete")
    at = store.now_for(cust)
    ctx.touched_clocks.add(cust["test_clock"])
    sub = subscribe(ctx, cust, plan, params, behavior, at)
    return render_expanded(store, sub, ctx.expand)


def subscribe(
    ctx: Ctx,
    cust: Obj,
    plan: ItemPlan,
    params: dict[str, Any],
    behavior: str,
    at: int,
    *,
    on_session: bool = False,
    schedule_id: str | None = None,
) -> Obj:
    """Create a subscription and its first invoice, finalized and charged at once.

    Events are buffered so that ``customer.subscription.created`` goes out first, carrying
    the status the subscription ended up with (active, trialing or incomplete).
    """
    store, engine = ctx.store, ctx.engine
    trial_end = _trial_end(params, plan, at)
    anchor = requested_anchor(params, plan.items[0][1], at)
    proration = _choice(
        params, "proration_behavior", CREATE_PRORATION_BEHAVIORS, "create_prorations"
    )
    if anchor is not None:
        _refuse_with_anchor(params, trial_end, proration)
    # proration_behavior=none with an anchor: the first period is free and not invoiced.
    invoiced_now = anchor is None or proration != "none"
    with buffered(store) as events:
        pm = None
        if params.get("default_payment_method"):
            pm = resolve_owned(
                store, str(params["default_payment_method"]), cust, at, "default_payment_method"
            )
        if trial_end is None and invoiced_now and behavior != "default_incomplete":
            has_amount = any(p["unit_amount"] * q > 0 for _, p, q in plan.items)
            if has_amount and pm is None and engine.payment_method_for(None, cust) is None:
                raise StripeError(
                    400, "invalid_request_error", NO_PAYMENT_METHOD_MESSAGE, code="resource_missing"
                )
        end_behavior = as_dict(as_dict(params, "trial_settings"), "end_behavior")
        missing = end_behavior.get("missing_payment_method")
        if missing not in (None, "cancel", "pause", "create_invoice"):
            raise invalid(
                "Invalid missing_payment_method: must be one of cancel, pause, or create_invoice",
                param="trial_settings[end_behavior][missing_payment_method]",
            )
        sub = store.insert(
            objects.subscription(store, now=at, customer_id=cust["id"], clock=cust["test_clock"])
        )
        sub["default_payment_method"] = pm["id"] if pm else None
        sub["schedule"] = schedule_id
        sub["metadata"] = merge_metadata({}, params)
        sub["description"] = as_str(params, "description")
        sub["currency"] = plan.items[0][1]["currency"]
        if missing:
            sub["trial_settings"]["end_behavior"]["missing_payment_method"] = missing
        engine.apply_plan(sub, plan, at)
        if trial_end is not None:
            sub.update(
                status="trialing",
                trial_start=at,
                trial_end=trial_end,
                billing_cycle_anchor=trial_end,
                _anchor=trial_end,
            )
            if anchor is not None:
                # The trial's end keeps the anchor (Engine.end_trial prorates up to it).
                sub.update(
                    billing_cycle_anchor=anchor.at,
                    billing_cycle_anchor_config=anchor.config,
                    _anchor=anchor.at,
                    _requested_anchor=True,
                )
            engine.set_period(sub, at, trial_end)
        elif anchor is not None:
            engine.start_anchored_cycle(sub, at, anchor.at)
            sub["billing_cycle_anchor_config"] = anchor.config
            sub["_requested_anchor"] = True
        else:
            engine.start_cycle(sub, at)
        try:
            _apply_cancel_params(sub, params, at)
            if trial_end is None and anchor is None and proration != "none":
                _end_first_period_at_cancel_at(engine, sub, params, at)
            apply_subscription_tax(store, cust, sub, params)
            _redeem_discounts(ctx, cust, sub, plan, params, at)
        except StripeError:
            _discard(store, sub, None)
            raise
        if trial_end is not None:
            lines = engine.trial_lines(sub)
        else:
            lines = engine.first_period_lines(sub, at)
        if invoiced_now:
            _invoice_first_period(ctx, sub, lines, behavior, at, on_session=on_session)
        else:
            sub["status"] = "active"
        created = emit(store, "customer.subscription.created", sub, at=at)
    # Publish: created first; the incomplete->active update inside this request is folded
    # into the created event's snapshot, as Stripe reports it.
    publish(store, created)
    for event in events:
        if event is created:
            continue
        if (
            event["type"] == "customer.subscription.updated"
            and event["data"]["object"]["id"] == sub["id"]
        ):
            continue
        publish(store, event)
    return sub


def _invoice_first_period(
    ctx: Ctx, sub: Obj, lines: list[LineSpec], behavior: str, at: int, *, on_session: bool
) -> None:
    """The first invoice, finalized and charged at once (unless ``default_incomplete``)."""
    store, engine = ctx.store, ctx.engine
    inv = engine.create_invoice(engine.customer_of(sub), sub, "subscription_create", at, lines)
    sub["latest_invoice"] = inv["id"]
    engine.finalize(inv, at)
    outcome: Outcome | None = None
    if inv["status"] == "open" and behavior != "default_incomplete":
        outcome = engine.pay(inv, at, on_session=on_session)
    if sub["status"] == "incomplete":
        sub["_incomplete_deadline"] = at + store.settings.incomplete_expiry_seconds
    if outcome is not None and not outcome.ok and behavior == "error_if_incomplete":
        _discard(store, sub, inv)
        raise _payment_error(outcome, inv)


def _refuse_with_anchor(params: dict[str, Any], trial_end: int | None, proration: str) -> None:
    """What the simulator does not combine with a billing cycle anchor, refused loudly."""
    if trial_end is not None and proration == "none":
        raise not_implemented(
            "The Stripe simulator does not implement proration_behavior=none with a billing "
            "cycle anchor and a trial (whether the period after the trial is free is not "
            "modelled); it refuses it rather than guess.",
            param="proration_behavior",
        )
    for param in ("discounts", "cancel_at", "cancel_at_period_end"):
        if params.get(param) not in (None, "", [], "false", False):
            raise not_implemented(
                f"The Stripe simulator does not implement {param} together with a billing "
                "cycle anchor (how Stripe combines them with the prorated first period is "
                "not modelled); it refuses it rather than guess.",
                param=param,
            )


def _end_first_period_at_cancel_at(
    engine: Engine, sub: Obj, params: dict[str, Any], at: int
) -> None:
    """Created with ``cancel_at`` before the first renewal (and prorations on): Stripe resets
    the billing cycle anchor to ``cancel_at``, so the only period, up to it, is prorated."""
    cancel_at = sub["cancel_at"]
    if cancel_at is None or cancel_at >= sub["_period"][1]:
        return
    if as_list(params, "discounts"):
        raise not_implemented(
            "The Stripe simulator does not implement discounts on a subscription created with "
            "a cancel_at inside its first period (how Stripe discounts the prorated period is "
            "not modelled); it refuses them rather than guess.",
            param="discounts",
        )
    engine.start_anchored_cycle(sub, at, cancel_at)


def _redeem_discounts(
    ctx: Ctx,
    cust: Obj,
    sub: Obj,
    plan: ItemPlan,
    params: dict[str, Any],
    at: int,
) -> None:
    refs = as_list(params, "discounts")
    if not refs:
        return
    if len(refs) > 1:
        raise not_implemented(
            "The Stripe simulator implements one discount per subscription; it refuses "
            f"{len(refs)} rather than guess how Stripe stacks them.",
            param="discounts",
        )
    amount = sum(p["unit_amount"] * q for _, p, q in plan.items)
    for index, ref in enumerate(refs):
        param = f"discounts[{index}]"
        if not isinstance(ref, dict):
            raise invalid("Invalid hash", param=param)
        discount = redeem(ctx.store, ref, param, cust=cust, sub=sub, amount=amount, at=at)
        sub["discounts"].append(discount["id"])


def _replace_discounts(ctx: Ctx, cust: Obj, sub: Obj, refs: list[Any], at: int) -> None:
    """``discounts`` on update replaces the subscription's discounts (``[{discount: di_…}]``
    keeps one, ``discounts=""`` removes them all); the next invoice applies the new ones, and
    nothing is prorated."""
    store = ctx.store
    if len(refs) > 1:
        raise not_implemented(
            "The Stripe simulator implements one discount per subscription; it refuses "
            f"{len(refs)} rather than guess how Stripe stacks them.",
            param="discounts",
        )
    kept: list[str] = []
    added: list[str] = []
    for index, ref in enumerate(refs):
        param = f"discounts[{index}]"
        if not isinstance(ref, dict):
            raise invalid("Invalid hash", param=param)
        existing = as_str(ref, "discount")
        if existing:
            if set(ref) - {"discount"}:
                raise invalid(
                    "You may only specify one of these parameters: coupon, discount, "
                    "promotion_code.",
                    param=param,
                )
            if existing not in sub["discounts"]:
                raise no_such_referenced("discount", existing, f"{param}[discount]")
            kept.append(existing)
            continue
        if any(ii["proration"] for ii in ctx.engine.pending_invoice_items(sub)):
            raise not_implemented(
                "The Stripe simulator does not implement adding a discount to a subscription "
                "with pending prorations (how Stripe discounts them is not modelled); it "
                "refuses it rather than guess.",
                param="discounts",
            )
        amount = sum(_item_amounts(ctx.engine, sub))
        discount = redeem(store, ref, param, cust=cust, sub=sub, amount=amount, at=at)
        added.append(discount["id"])
    for old in sub["discounts"]:
        if old not in kept:
            emit(store, "customer.discount.deleted", store.objects[old], at=at)
    sub["discounts"] = kept + added


def _item_amounts(engine: Engine, sub: Obj) -> list[int]:
    return [engine.price_of(item)["unit_amount"] * item["quantity"] for item in engine.items(sub)]


def _discard(store: Store, sub: Obj, inv: Obj | None) -> None:
    """Undo a subscription creation that failed part-way (its events are never published)."""
    for discount_id in sub["discounts"]:
        discount = store.objects[discount_id]
        store.objects[discount["source"]["coupon"]]["times_redeemed"] -= 1
        if discount["promotion_code"]:
            store.objects[discount["promotion_code"]]["times_redeemed"] -= 1
        store.remove(discount_id)
    sub["discounts"] = []
    for item_id in sub["_item_ids"]:
        store.remove(item_id)
    store.remove(sub["id"])
    if inv is not None:
        for line_id in inv["_line_ids"]:
            store.remove(line_id)
        store.remove(inv["id"])  # before detaching it: the store indexes it by subscription
        inv["_subscription"] = None


def _payment_error(outcome: Outcome, inv: Obj) -> StripeError:
    return card_error(
        outcome.message or "Your card was declined.",
        code=outcome.code or "card_declined",
        decline_code=outcome.decline_code,
        payment_intent={"id": inv["_payment_intent"]},
    )


def _trial_end(params: dict[str, Any], plan: ItemPlan, at: int) -> int | None:
    raw = params.get("trial_end")
    if raw == "now":
        return None
    if raw:
        end = as_int(params, "trial_end")
        assert end is not None
        if end <= at:
            raise invalid(
                "Invalid timestamp: must be an integer Unix timestamp in the future.",
                param="trial_end",
            )
        return end
    days = as_int(params, "trial_period_days")
    if days is None and as_bool(params, "trial_from_plan"):
        days = plan.items[0][1]["recurring"].get("trial_period_days")
    if days:
        if days < 0 or days > 730:
            raise invalid("Invalid trial_period_days", param="trial_period_days")
        return at + days * 86400
    return None


def _apply_cancel_params(sub: Obj, params: dict[str, Any], at: int) -> None:
    _, period_end = sub["_period"]
    if "cancel_at_period_end" in params:
        flag = bool(as_bool(params, "cancel_at_period_end"))
        sub["cancel_at_period_end"] = flag
        sub["cancel_at"] = period_end if flag else None
        sub["canceled_at"] = at if flag else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None
    if "cancel_at" in params:
        raw = params["cancel_at"]
        if raw in ("", None):
            sub["cancel_at"] = None
            sub["canceled_at"] = None
            sub["cancel_at_period_end"] = False
        elif raw == "max_billed_until":
            raise not_implemented(
                "The Stripe simulator does not implement cancel_at=max_billed_until (billing "
                "schedules); it refuses it rather than ignore it.",
                param="cancel_at",
            )
        else:
            when = (
                period_end
                if raw in ("max_period_end", "min_period_end")
                else as_int(params, "cancel_at")
            )
            assert when is not None
            if when <= at:
                raise invalid(
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                    param="cancel_at",
                )
            if when > period_end:
                raise not_implemented(
                    "The Stripe simulator does not implement a cancel_at after the current "
                    "period's end (Stripe prorates the final period); it refuses it rather "
                    "than charge that period in full.",
                    param="cancel_at",
                )
            sub["cancel_at"] = when
            sub["canceled_at"] = at
            sub["cancel_at_period_end"] = when == period_end
            sub["cancellation_details"]["reason"] = "cancellation_requested"
    details = as_dict(params, "cancellation_details")
    for key in ("comment", "feedback"):
        if key in details:
            sub["cancellation_details"][key] = details[key] or None


# read ------------------------------------------------------------------------------------------
@router.route("GET", "/v1/subscriptions/search", implements=SEARCH_PARAMS)
def search_subscriptions(ctx: Ctx) -> Obj:
    return search_result(ctx.store, "subscription", ctx.params, "/v1/subscriptions/search")


@router.route("GET", "/v1/subscriptions/{sub_id}", implements=("expand",))
def retrieve_subscription(ctx: Ctx, sub_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("subscription", sub_id), ctx.expand)


@router.route(
    "GET",
    "/v1/subscriptions",
    implements=(*LIST_PARAMS, "customer", "test_clock", "status", "price", "created"),
)
def list_subscriptions(ctx: Ctx) -> Obj:
    params = ctx.params
    subs = candidates(
        ctx.store, "subscription", params, [("customer", "customer"), ("test_clock", "test_clock")]
    )
    status = as_str(params, "status")
    if status is None:
        subs = [s for s in subs if s["status"] not in ENDED_STATUSES]
    elif status == "ended":
        subs = [s for s in subs if s["status"] in ENDED_STATUSES]
    elif status != "all":
        subs = [s for s in subs if s["status"] == status]
    for key in ("customer", "test_clock"):
        if params.get(key):
            subs = [s for s in subs if s[key] == params[key]]
    if params.get("price"):
        subs = [
            s
            for s in subs
            if any(ctx.engine.price_of(i)["id"] == params["price"] for i in ctx.engine.items(s))
        ]
    subs = filter_created(subs, params)
    return paginate(
        ctx.store, subs, params, "/v1/subscriptions", lambda o: render_expanded(ctx.store, o, None)
    )


@router.route("GET", "/v1/subscription_items", implements=(*LIST_PARAMS, "subscription"))
def list_subscription_items(ctx: Ctx) -> Obj:
    sub = ctx.store.require_referenced(
        "subscription", as_str(ctx.params, "subscription", required=True), "subscription"
    )
    return paginate(
        ctx.store,
        ctx.engine.items(sub),
        ctx.params,
        "/v1/subscription_items",
        lambda o: render_expanded(ctx.store, o, None),
    )


@router.route("GET", "/v1/subscription_items/{item_id}", implements=("expand",))
def retrieve_subscription_item(ctx: Ctx, item_id: str) -> Obj:
    item = ctx.store.require("subscription_item", item_id)
    return render_expanded(ctx.store, item, ctx.expand)


# update ----------------------------------------------------------------------------------------
def _plan_from_params(engine: Engine, sub: Obj, raw_items: list[Any]) -> ItemPlan:
    current = engine.items(sub)
    entries: dict[str | None, tuple[Obj, int, dict[str, str] | None]] = {
        item["id"]: (engine.price_of(item), item["quantity"], None) for item in current
    }
    order: list[str | None] = [item["id"] for item in current]
    added: list[tuple[Obj, int, dict[str, str] | None]] = []
    for i, raw in enumerate(raw_items):
        raw = raw if isinstance(raw, dict) else {}
        item_id = raw.get("id")
        if item_id:
            if item_id not in entries:
                raise invalid(
                    f"Subscription item {item_id} does not belong to this subscription.",
                    param=f"items[{i}][id]",
                )
            if as_bool(raw, "deleted"):
                order.remove(item_id)
                continue
            price, qty, meta = entries[item_id]
            if raw.get("price"):
                price = _recurring_price(engine.store, raw["price"], f"items[{i}][price]")
            if "quantity" in raw:
                qty = _quantity(raw, f"items[{i}][quantity]")
            if "metadata" in raw:
                meta = merge_metadata(engine.store.objects[item_id]["metadata"], raw)
            entries[item_id] = (price, qty, meta)
        else:
            price = _recurring_price(engine.store, raw.get("price"), f"items[{i}][price]")
            added.append(
                (
                    price,
                    _quantity(raw, f"items[{i}][quantity]"),
                    merge_metadata({}, raw) if "metadata" in raw else None,
                )
            )
    plan = ItemPlan()
    for item_id in order:
        price, qty, meta = entries[item_id]
        plan.items.append((item_id, price, qty))
        plan.metadata.append(meta)
    for price, qty, meta in added:
        plan.items.append((None, price, qty))
        plan.metadata.append(meta)
    if not plan.items:
        raise invalid("A subscription must have at least one active plan.", param="items")
    _check_same_interval(plan)
    return plan


def _plan_changes_billing(engine: Engine, sub: Obj, plan: ItemPlan) -> bool:
    current = [(i["id"], engine.price_of(i)["id"], i["quantity"]) for i in engine.items(sub)]
    return current != [(item_id, p["id"], q) for item_id, p, q in plan.items]


@router.route(
    "POST",
    "/v1/subscriptions/{sub_id}",
    implements=(
        "items.id",
        "items.price",
        "items.quantity",
        "items.metadata",
        "items.deleted",
        "proration_behavior",
        "payment_behavior",
        "billing_cycle_anchor.type",
        *_SUBSCRIPTION_FIELDS,
        "cancellation_details.comment",
        "cancellation_details.feedback",
        "pause_collection.behavior",
        "discounts.coupon",
        "discounts.promotion_code",
        "discounts.discount",
        "expand",
    ),
)
def update_subscription(ctx: Ctx, sub_id: str) -> Obj:
    store, engine, params = ctx.store, ctx.engine, ctx.params
    sub = store.require("subscription", sub_id)
    cust = engine.customer_of(sub)
    at = store.now_for(sub)
    ctx.touched_clocks.add(sub["test_clock"])
    status = sub["status"]
    allowed_when_ended = {"metadata", "cancellation_details", "expand"}
    if status in ENDED_STATUSES and set(params) - allowed_when_ended:
        raise invalid(
            "A canceled subscription can only update its cancellation_details and metadata."
        )
    if status == "incomplete" and set(params) - {
        "metadata",
        "default_payment_method",
        "expand",
        "description",
    }:
        raise invalid(
            "A subscription in `incomplete` status can only update its metadata, "
            "default payment method and description."
        )
    if params.get("trial_end") not in (None, "now") and status != "trialing":
        raise not_implemented(
            "The Stripe simulator does not implement trial_end on a subscription that is not "
            "trialing (Stripe starts a new trial); it refuses it rather than ignore it.",
            param="trial_end",
        )
    if params.get("trial_end") not in (None, "now") and sub["_requested_anchor"]:
        raise not_implemented(
            "The Stripe simulator does not implement moving the trial end of a subscription "
            "with a billing cycle anchor (Stripe moves the anchor to it otherwise); it refuses "
            "it rather than guess.",
            param="trial_end",
        )
    if sub["schedule"] is not None:
        _refuse_what_the_schedule_manages(sub, params)
    proration = _choice(params, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations")
    behavior = _choice(params, "payment_behavior", PAYMENT_BEHAVIORS, "allow_incomplete")
    if sub["_cancel_at_credited"] and ("cancel_at" in params or "cancel_at_period_end" in params):
        raise not_implemented(
            "The Stripe simulator does not implement changing cancel_at after a credit for the "
            "time after it was made (how Stripe reverses the credit is not modelled); it "
            "refuses it rather than guess.",
            param="cancel_at" if "cancel_at" in params else "cancel_at_period_end",
        )
    plan = _plan_from_params(engine, sub, as_list(params, "items")) if "items" in params else None
    discounted = sub["discounts"] or as_list(params, "discounts")
    if plan is not None and discounted and _plan_changes_billing(engine, sub, plan):
        raise not_implemented(
            "The Stripe simulator does not implement changing the items of a subscription "
            "with discounts (how Stripe discounts the prorations is not modelled); it refuses "
            "it rather than guess.",
            param="items",
        )
    if params.get("cancel_at") and plan is not None and _plan_changes_billing(engine, sub, plan):
        raise not_implemented(
            "The Stripe simulator does not implement cancel_at together with an item change "
            "(how Stripe prorates both at once is not modelled); it refuses it rather than "
            "guess.",
            param="cancel_at",
        )
    reset_cycle = as_dict(params, "billing_cycle_anchor").get("type") == "now"
    if reset_cycle:
        _refuse_with_reset_cycle(ctx, sub, params, plan, behavior)
    error: StripeError | None = None
    with tracked(store, sub, "customer.subscription.updated", at=at):
        sub["metadata"] = merge_metadata(sub["metadata"], params)
        if "description" in params:
            sub["description"] = as_str(params, "description") or None
        if "default_payment_method" in params:
            ref = as_str(params, "default_payment_method")
            sub["default_payment_method"] = (
                resolve_owned(store, ref, cust, at, "default_payment_method")["id"] if ref else None
            )
        if "pause_collection" in params:
            pause = as_dict(params, "pause_collection")
            sub["pause_collection"] = (
                {
                    "behavior": pause.get("behavior"),
                    "resumes_at": as_int(pause, "resumes_at"),
                }
                if pause
                else None
            )
        if "trial_settings" in params:
            missing = as_dict(as_dict(params, "trial_settings"), "end_behavior").get(
                "missing_payment_method"
            )
            if missing:
                sub["trial_settings"]["end_behavior"]["missing_payment_method"] = missing
        _apply_cancel_params(sub, params, at)
        taxes = {k: v for k, v in params.items() if k in ("automatic_tax", "default_tax_rates")}
        if taxes:
            apply_subscription_tax(store, cust, sub, taxes)
        if params.get("cancel_at") and proration != "none":
            error = _credit_time_after_cancel_at(ctx, sub, proration, behavior, at)
        if "discounts" in params:
            _replace_discounts(ctx, cust, sub, as_list(params, "discounts"), at)
        if plan is not None and _plan_changes_billing(engine, sub, plan):
            error = _change_items(ctx, sub, plan, proration, behavior, at)
        if reset_cycle:
            error = _reset_billing_cycle(ctx, sub, proration, behavior, at)
        if params.get("trial_end") == "now" and sub["status"] == "trialing":
            sub["trial_end"] = at
            engine.end_trial(sub, at)
            latest = store.get(sub["latest_invoice"], "invoice")
            if latest is not None and latest["status"] == "draft":
                engine.finalize_and_charge(latest, at)
        elif (
            params.get("trial_end")
            and params.get("trial_end") != "now"
            and sub["status"] == "trialing"
        ):
            new_end = as_int(params, "trial_end")
            assert new_end is not None
            sub["trial_end"] = new_end
            sub["_trial_will_end_sent"] = False
            sub["billing_cycle_anchor"] = sub["_anchor"] = new_end
            engine.set_period(sub, sub["_period"][0], new_end)
    if error is not None:
        raise error
    return render_expanded(store, sub, ctx.expand)


def _refuse_with_reset_cycle(
    ctx: Ctx, sub: Obj, params: dict[str, Any], plan: ItemPlan | None, behavior: str
) -> None:
    """What the simulator does not combine with ``billing_cycle_anchor[type]=now``."""
    if sub["status"] != "active":
        raise not_implemented(
            "The Stripe simulator implements billing_cycle_anchor[type]=now on an active "
            f"subscription only, not a {sub['status']} one; it refuses it rather than guess.",
            param="billing_cycle_anchor[type]",
        )
    changes_items = plan is not None and _plan_changes_billing(ctx.engine, sub, plan)
    for param, combined in (
        ("items", changes_items),
        ("trial_end", "trial_end" in params),
        ("cancel_at", bool(params.get("cancel_at"))),
        ("payment_behavior", behavior == "pending_if_incomplete"),
    ):
        if combined:
            raise not_implemented(
                f"The Stripe simulator does not implement billing_cycle_anchor[type]=now "
                f"together with this {param} (how Stripe combines them is not modelled); it "
                "refuses it rather than guess.",
                param=param,
            )


def _refuse_what_the_schedule_manages(sub: Obj, params: dict[str, Any]) -> None:
    """A subscription on a schedule: Stripe refuses changing when it cancels; the simulator
    refuses the changes that would make the schedule's phases disagree with the
    subscription (how Stripe reconciles them is not modelled)."""
    if {"cancel_at", "cancel_at_period_end"} & set(params):
        raise invalid(
            f"The subscription is managed by the subscription schedule `{sub['schedule']}`, "
            "and updating any cancelation behavior directly is not allowed. Please update "
            "the schedule instead."
        )
    managed = sorted({"items", "discounts", "trial_end", "pause_collection"} & set(params))
    if managed:
        raise not_implemented(
            f"The Stripe simulator does not implement changing {', '.join(managed)} of a "
            "subscription managed by a subscription schedule (how Stripe keeps the schedule's "
            "phases consistent is not modelled); update the schedule instead.",
            param=managed[0],
        )


def _change_items(
    ctx: Ctx, sub: Obj, plan: ItemPlan, proration: str, behavior: str, at: int
) -> StripeError | None:
    """Change price/quantity with Stripe's proration rules; an interval change restarts the
    billing cycle and invoices at once."""
    engine = ctx.engine
    old_interval = engine.interval_of(sub)
    new_price = plan.items[0][1]["recurring"]
    interval_changes = old_interval != (new_price["interval"], new_price["interval_count"])
    if sub["status"] == "trialing" and not interval_changes:
        engine.apply_plan(sub, plan, at)  # nothing to prorate during a free trial
        return None
    # Against an empty plan, proration_lines yields only the unused-time credits.
    credit = (
        []
        if proration == "none" or sub["status"] == "trialing"
        else engine.proration_lines(sub, ItemPlan(), at)
    )
    if interval_changes:
        lines = credit
        invoice_now = True
    else:
        lines = [] if proration == "none" else engine.proration_lines(sub, plan, at)
        invoice_now = proration == "always_invoice"
    if not invoice_now:
        engine.apply_plan(sub, plan, at)
        if lines:
            _pending_items(ctx, sub, lines, at)
        return None
    if behavior == "pending_if_incomplete":
        _pending_if_incomplete(ctx, sub, plan, lines, interval_changes, at)
        return None
    engine.apply_plan(sub, plan, at)
    if interval_changes:
        engine.start_cycle(sub, at)
        lines = lines + engine.cycle_lines(sub)
    return _invoice_update_now(ctx, sub, lines, behavior, at)


def _invoice_update_now(
    ctx: Ctx, sub: Obj, lines: list[LineSpec], behavior: str, at: int
) -> StripeError | None:
    """An update invoiced at once, with the pending invoice items; the payment error to
    raise, with ``error_if_incomplete``, once the update's events are out."""
    engine = ctx.engine
    inv = engine.create_invoice(
        engine.customer_of(sub), sub, "subscription_update", at, lines, include_pending_items=True
    )
    sub["latest_invoice"] = inv["id"]
    engine.finalize(inv, at)
    if inv["status"] == "open" and behavior != "default_incomplete":
        outcome = engine.pay(inv, at)
        if not outcome.ok and behavior == "error_if_incomplete":
            return _payment_error(outcome, inv)
    return None


def _reset_billing_cycle(
    ctx: Ctx, sub: Obj, proration: str, behavior: str, at: int
) -> StripeError | None:
    """``billing_cycle_anchor[type]=now``: a full period starts now and is invoiced at once;
    with prorations the unused time of the old period is credited on the same invoice."""
    engine = ctx.engine
    # Against an empty plan, proration_lines yields only the unused-time credits.
    credit = [] if proration == "none" else engine.proration_lines(sub, ItemPlan(), at)
    engine.start_cycle(sub, at)
    sub["billing_cycle_anchor_config"] = None
    sub["_requested_anchor"] = False
    return _invoice_update_now(ctx, sub, credit + engine.cycle_lines(sub), behavior, at)


def _credit_time_after_cancel_at(
    ctx: Ctx, sub: Obj, proration: str, behavior: str, at: int
) -> StripeError | None:
    """``cancel_at`` inside a paid period: Stripe credits the time from it to the period's
    end, as a pending proration (``create_prorations``) or invoiced now (``always_invoice``)."""
    if sub["status"] == "trialing" or sub["cancel_at"] >= sub["_period"][1]:
        return None  # nothing paid for the time after cancel_at
    # Against an empty plan, proration_lines yields only the unused-time credits.
    credits = ctx.engine.proration_lines(sub, ItemPlan(), sub["cancel_at"])
    if not credits:
        return None
    sub["_cancel_at_credited"] = True
    if proration == "create_prorations":
        _pending_items(ctx, sub, credits, at)
        return None
    return _invoice_update_now(ctx, sub, credits, behavior, at)


def _pending_items(ctx: Ctx, sub: Obj, lines: list[Any], at: int) -> None:
    """create_prorations: the proration lines wait as invoice items for the next invoice."""
    store = ctx.store
    for spec in lines:
        ii = store.insert(
            {
                "id": store.new_id("ii_"),
                "object": "invoiceitem",
                "amount": spec.amount,
                "currency": spec.price["currency"],
                "customer": sub["customer"],
                "customer_account": None,
                "date": at,
                "description": spec.description,
                "discountable": False,
                "discounts": [],
                "frozen_fields": None,
                "invoice": None,
                "invoicing_rules": None,
                "livemode": False,
                "metadata": {},
                "net_amount": spec.amount,
                "parent": {
                    "subscription_details": {
                        "subscription": sub["id"],
                        "subscription_item": spec.subscription_item,
                    },
                    "type": "subscription_details",
                },
                "period": {"end": spec.period[1], "start": spec.period[0]},
                "pricing": {
                    "price_details": {"price": spec.price["id"], "product": spec.price["product"]},
                    "type": "price_details",
                    "unit_amount_decimal": str(spec.price["unit_amount"]),
                },
                "proration": True,
                "proration_details": {"credited_items": None, "discount_amounts": []},
                "quantity": spec.quantity,
                "quantity_decimal": str(spec.quantity),
                "tax_rates": [],
                "test_clock": sub["test_clock"],
                "_subscription": sub["id"],
                "_subscription_item": spec.subscription_item,
                "_price": spec.price["id"],
            }
        )
        emit(store, "invoiceitem.created", ii, at=at)


def _pending_item(
    store: Store, sub: Obj, item_id: str | None, price: Obj, qty: int, at: int
) -> Obj:
    """A whole subscription item as it will be once the pending update applies (Stripe sends
    whole items there): the current item, or a new one, with the new price and quantity."""
    current = store.objects.get(item_id) if item_id else None
    if current is None:
        current = objects.subscription_item(
            store, now=at, subscription_id=sub["id"], price=price, quantity=qty
        )
    item = public(current)
    item.update(price=public(price), plan=plan_from_price(public(price)), quantity=qty)
    item["tax_rates"] = [public(store.objects[i]) for i in current["tax_rates"]]
    return item


def _pending_if_incomplete(
    ctx: Ctx, sub: Obj, plan: ItemPlan, lines: list[Any], interval_changes: bool, at: int
) -> None:
    """Invoice the change first; apply it only if the payment succeeds, otherwise record it
    as ``pending_update`` (Stripe's pending updates) and leave the subscription as it was."""
    store, engine = ctx.store, ctx.engine
    cust = engine.customer_of(sub)
    if interval_changes:
        # The new period (starting now) is charged in full, as Stripe does on an interval
        # change; the subscription itself is not touched until the payment succeeds.
        recurring = plan.items[0][1]["recurring"]
        period = period_bounds(at, recurring["interval"], recurring["interval_count"], 0)
        lines = lines + [
            LineSpec(price["unit_amount"] * qty, engine.describe(price, qty), price, qty, period)
            for _, price, qty in plan.items
        ]
    inv = engine.create_invoice(cust, sub, "subscription_update", at, lines)
    inv["_pending_update"] = True
    sub["latest_invoice"] = inv["id"]
    sub["_pending_plan"] = (plan, interval_changes)
    sub["pending_update"] = {
        "billing_cycle_anchor": at if interval_changes else None,
        # Only the items are updated here; the rest is null ("not part of the update").
        "cancel_at_period_end": None,
        "discount": None,
        "discounts": None,
        "expires_at": at + store.settings.pending_update_expiry_seconds,
        "metadata": None,
        "subscription_items": [
            _pending_item(store, sub, item_id, price, qty, at) for item_id, price, qty in plan.items
        ],
        "trial_end": None,
        "trial_from_plan": None,
    }
    engine.finalize(inv, at)  # a zero-amount invoice is paid here and applies the update
    if inv["status"] == "open":
        engine.pay(inv, at)


# cancel / resume -----------------------------------------------------------------------------
@router.route(
    "DELETE",
    "/v1/subscriptions/{sub_id}",
    implements=(
        "cancellation_details.comment",
        "cancellation_details.feedback",
        "invoice_now",
        "prorate=false",  # Stripe's default: no credit for the unused time
        "expand",
    ),
)
def cancel_subscription(ctx: Ctx, sub_id: str) -> Obj:
    store = ctx.store
    sub = store.require("subscription", sub_id)
    if sub["status"] in ENDED_STATUSES:
        raise invalid(
            f"No such subscription: '{sub_id}'; it has already been canceled.",
            code="resource_missing",
        )
    at = store.now_for(sub)
    details = as_dict(ctx.params, "cancellation_details")
    for key in ("comment", "feedback"):
        if key in details:
            sub["cancellation_details"][key] = details[key] or None
    sub["cancellation_details"]["reason"] = "cancellation_requested"
    ctx.engine.cancel(sub, at, requested_at=at)
    if as_bool(ctx.params, "invoice_now"):
        pending = ctx.engine.pending_invoice_items(sub)
        if pending:
            inv = ctx.engine.create_invoice(
                ctx.engine.customer_of(sub),
                sub,
                "subscription_update",
                at,
                [],
                include_pending_items=True,
            )
            ctx.engine.finalize_and_charge(inv, at)
    return render_expanded(store, sub, ctx.expand)


@router.route(
    "POST",
    "/v1/subscriptions/{sub_id}/resume",
    # With ``unchanged`` Stripe prorates the rest of the current period; the simulator would
    # charge it in full, so it implements only ``now`` (the default).
    implements=("billing_cycle_anchor.type=now", "expand"),
)
def resume_subscription(ctx: Ctx, sub_id: str) -> Obj:
    store, engine = ctx.store, ctx.engine
    sub = store.require("subscription", sub_id)
    if sub["status"] != "paused":
        raise invalid("Only a paused subscription can be resumed.")
    at = store.now_for(sub)
    ctx.touched_clocks.add(sub["test_clock"])
    anchor = as_dict(ctx.params, "billing_cycle_anchor").get("type") or "now"
    with tracked(store, sub, "customer.subscription.updated", at=at):
        sub["status"] = "active"
        if anchor == "now" or sub["_period"][1] <= at:
            engine.start_cycle(sub, at)
        inv = engine.create_invoice(
            engine.customer_of(sub),
            sub,
            "subscription_cycle",
            at,
            engine.cycle_lines(sub),
            include_pending_items=True,
        )
        sub["latest_invoice"] = inv["id"]
        engine.finalize_and_charge(inv, at)
    emit(store, "customer.subscription.resumed", sub, at=at)
    return render_expanded(store, sub, ctx.expand)
