"""Subscription schedules (``/v1/subscription_schedules``): a subscription's changes planned
in phases.

A schedule is made from an existing subscription (one phase: its current period and items)
or from a customer and phases, starting now (the subscription is created at once, billed as
a subscription create) or later (``not_started`` until then). At the end of a phase the
subscription takes the next phase's items (billed as an update with that phase's
``proration_behavior``; at a period boundary there is nothing to prorate). At the end of the
last phase ``end_behavior`` applies: ``release`` leaves the subscription running on its own,
``cancel`` cancels it; either way the schedule is ``completed``. The schedules' own clock
work (start, phase ends, the ``expiring`` notice) runs with the billing engine's
(``ScheduleWork``).
"""

from __future__ import annotations

from typing import Any

from stripe_sim.billing import ENDED_STATUSES, Engine, ItemPlan
from stripe_sim.errors import StripeError, invalid, missing_param
from stripe_sim.events import emit, tracked
from stripe_sim.listing import LIST_PARAMS, candidates, filter_created, paginate
from stripe_sim.params import as_bool, as_dict, as_int, as_list, as_str, merge_metadata
from stripe_sim.periods import add_intervals
from stripe_sim.render import render_expanded
from stripe_sim.request_schema import not_implemented
from stripe_sim.router import Ctx, Router
from stripe_sim.settings import DAY
from stripe_sim.store import Obj, Store
from stripe_sim.subscriptions import (
    _change_items,
    _check_same_interval,
    _plan_changes_billing,
    _quantity,
    _recurring_price,
    subscribe,
)

router = Router()

# Stripe: "subscription_schedule.expiring: Occurs 7 days before a subscription schedule will
# expire."
EXPIRING_NOTICE_SECONDS = 7 * DAY
MAX_PHASES = 10  # Stripe: "You can have up to 10 phases."
LIVE_STATUSES = ("not_started", "active")
# What a phase says, as the request names it (create and update).
_PHASE_FIELDS = (
    "phases.items.price",
    "phases.items.quantity",
    "phases.duration",
    "phases.end_date",
    "phases.proration_behavior",
    "phases.metadata",
)


# the object --------------------------------------------------------------------------------
def _phase(start: int, end: int, items: list[tuple[Obj, int]], proration: str, meta: Obj) -> Obj:
    """A phase in Stripe's shape; what the simulator does not implement has its "not used"
    value."""
    return {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": None,
        "billing_thresholds": None,
        "collection_method": None,
        "currency": items[0][0]["currency"],
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "end_date": end,
        "invoice_settings": None,
        "items": [
            {
                "billing_thresholds": None,
                "discounts": [],
                "metadata": {},
                "plan": price["id"],
                "price": price["id"],
                "quantity": qty,
                "tax_rates": [],
            }
            for price, qty in items
        ],
        "metadata": meta,
        "on_behalf_of": None,
        "proration_behavior": proration,
        "start_date": start,
        "transfer_data": None,
        "trial": None,
        "trial_end": None,
    }


def _schedule(store: Store, cust: Obj, at: int, phases: list[Obj], params: dict[str, Any]) -> Obj:
    return {
        "id": store.new_id("sub_sched_"),
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
        "canceled_at": None,
        "completed_at": None,
        "created": at,
        "current_phase": None,
        "customer": cust["id"],
        "customer_account": None,
        "default_settings": {
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": "automatic",
            "billing_thresholds": None,
            "collection_method": "charge_automatically",
            "default_payment_method": None,
            "description": None,
            "invoice_settings": {
                "account_tax_ids": None,
                "custom_fields": None,
                "days_until_due": None,
                "description": None,
                "footer": None,
                "issuer": {"type": "self"},
            },
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": as_str(params, "end_behavior") or "release",
        "livemode": False,
        "metadata": merge_metadata({}, params),
        "pause_schedules": [],
        "phases": phases,
        "released_at": None,
        "released_subscription": None,
        "status": "not_started",
        "subscription": None,
        "test_clock": cust["test_clock"],
        "_current": 0,  # index of the current phase while active
        "_expiring_sent": False,
        "_expiring_from": at,  # the notice is not sent before this (creation, phases update)
    }


def _enter(sched: Obj, index: int) -> None:
    sched["_current"] = index
    phase = sched["phases"][index]
    sched["current_phase"] = {"end_date": phase["end_date"], "start_date": phase["start_date"]}


def _end(sched: Obj, status: str, at: int) -> None:
    sched["status"] = status
    sched["current_phase"] = None
    field = {"canceled": "canceled_at", "completed": "completed_at", "released": "released_at"}
    sched[field[status]] = at


# phases from the request -------------------------------------------------------------------
def _phases_from_params(store: Store, raw_phases: list[Any], start: int) -> list[Obj]:
    """The requested phases, one after the other from ``start``. A phase lasts its
    ``duration``, until its ``end_date``, or else one interval of its first price."""
    if not raw_phases:
        raise missing_param("phases")
    if len(raw_phases) > MAX_PHASES:
        raise invalid(
            f"A subscription schedule can have at most {MAX_PHASES} phases.", param="phases"
        )
    phases: list[Obj] = []
    begin = start
    for i, raw in enumerate(raw_phases):
        param = f"phases[{i}]"
        if not isinstance(raw, dict):
            raise invalid("Invalid hash", param=param)
        given_start = as_int(raw, "start_date", param=f"{param}[start_date]") if i > 0 else None
        if given_start is not None and given_start != begin:
            raise invalid(
                "The start_date of a phase must be the end_date of the phase before it.",
                param=f"{param}[start_date]",
            )
        raw_items = as_list(raw, "items")
        if not raw_items:
            raise missing_param(f"{param}[items]")
        plan = ItemPlan()
        for j, item in enumerate(raw_items):
            item = item if isinstance(item, dict) else {}
            price = _recurring_price(store, item.get("price"), f"{param}[items][{j}][price]")
            plan.items.append((None, price, _quantity(item, f"{param}[items][{j}][quantity]")))
        try:
            _check_same_interval(plan)
        except StripeError as exc:  # named after the phase's items, not a subscription's
            raise invalid(exc.message, param=f"{param}[items]") from None
        end = _phase_end(raw, begin, plan.items[0][1], param)
        proration = as_str(raw, "proration_behavior") or "create_prorations"
        items = [(price, qty) for _, price, qty in plan.items]
        phases.append(_phase(begin, end, items, proration, merge_metadata({}, raw)))
        begin = end
    prices = [store.objects[item["price"]] for phase in phases for item in phase["items"]]
    if len({_cadence(price) for price in prices}) > 1:
        raise not_implemented(
            "The Stripe simulator implements schedules whose phases share one billing "
            "interval and currency; it refuses phases that change them rather than guess how "
            "Stripe moves the billing cycle.",
            param="phases",
        )
    return phases


def _cadence(price: Obj) -> tuple[str, int, str]:
    recurring = price["recurring"]
    return recurring["interval"], int(recurring["interval_count"]), price["currency"]


def _phase_end(raw: dict[str, Any], start: int, price: Obj, param: str) -> int:
    duration = as_dict(raw, "duration")
    end_date = raw.get("end_date")
    if end_date == "now":
        raise not_implemented(
            "The Stripe simulator does not implement end_date=now on a phase; it refuses it "
            "rather than ignore it.",
            param=f"{param}[end_date]",
        )
    if duration and end_date not in (None, ""):
        raise invalid(
            "You may only specify one of these parameters: duration, end_date.",
            param=f"{param}[duration]",
        )
    if end_date not in (None, ""):
        end = as_int(raw, "end_date", param=f"{param}[end_date]")
        assert end is not None
        if end <= start:
            raise invalid(
                "The end_date of a phase must be after its start_date.",
                param=f"{param}[end_date]",
            )
        return end
    if duration:
        count = as_int(duration, "interval_count", param=f"{param}[duration][interval_count]")
        if count is not None and count < 1:
            raise invalid(
                "Invalid integer: must be at least 1", param=f"{param}[duration][interval_count]"
            )
        return add_intervals(start, str(duration["interval"]), count or 1)
    recurring = price["recurring"]
    return add_intervals(start, recurring["interval"], int(recurring["interval_count"]))


def _plan_for(engine: Engine, sub: Obj | None, phase: Obj) -> ItemPlan:
    """The phase's items as the subscription's (None: one to be created): an item already on
    the same price keeps its id (its quantity may change)."""
    items = engine.items(sub) if sub is not None else []
    current = {engine.price_of(item)["id"]: item["id"] for item in items}
    plan = ItemPlan()
    for entry in phase["items"]:
        price = engine.store.objects[entry["price"]]
        plan.items.append((current.get(price["id"]), price, entry["quantity"]))
    return plan


# create --------------------------------------------------------------------------------------
@router.route(
    "POST",
    "/v1/subscription_schedules",
    implements=(
        "customer",
        "from_subscription",
        "start_date",
        "end_behavior=release|cancel",
        "metadata",
        *_PHASE_FIELDS,
        "expand",
    ),
)
def create_schedule(ctx: Ctx) -> Obj:
    store, params = ctx.store, ctx.params
    source = as_str(params, "from_subscription")
    if source:
        others = sorted({"customer", "phases", "start_date", "end_behavior"} & set(params))
        if others:
            raise invalid(
                f"You cannot set `{others[0]}` when `from_subscription` is set.", param=others[0]
            )
        sched = _from_subscription(
            ctx, store.require_referenced("subscription", source, "from_subscription")
        )
    else:
        cust_id = as_str(params, "customer")
        if not cust_id:
            raise missing_param("customer")
        sched = _from_phases(ctx, store.require_referenced("customer", cust_id, "customer"))
    return render_expanded(store, sched, ctx.expand)


def _from_subscription(ctx: Ctx, sub: Obj) -> Obj:
    """One phase: the subscription's current period and items; then it is released."""
    store, engine = ctx.store, ctx.engine
    at = store.now_for(sub)
    ctx.touched_clocks.add(sub["test_clock"])
    if sub["schedule"] is not None:
        raise invalid(
            "You cannot migrate a subscription that is already attached to a schedule: "
            f"`{sub['schedule']}`.",
            param="from_subscription",
        )
    if sub["status"] in ENDED_STATUSES:
        raise invalid(
            f"You cannot create a subscription schedule from a `{sub['status']}` subscription.",
            param="from_subscription",
        )
    if (
        sub["status"] not in ("active", "past_due")
        or sub["cancel_at"] is not None
        or sub["discounts"]
        or sub["pending_update"] is not None
    ):
        raise not_implemented(
            "The Stripe simulator implements schedules from active or past_due subscriptions "
            "without a trial, pause, cancellation, discounts or pending update; it refuses "
            "this one rather than guess how Stripe turns those into phases.",
            param="from_subscription",
        )
    start, end = sub["_period"]
    items = [(engine.price_of(item), item["quantity"]) for item in engine.items(sub)]
    sched = _schedule(
        store,
        engine.customer_of(sub),
        at,
        [_phase(start, end, items, "create_prorations", {})],
        ctx.params,
    )
    sched.update(status="active", subscription=sub["id"])
    _enter(sched, 0)
    store.insert(sched)
    emit(store, "subscription_schedule.created", sched, at=at)
    with tracked(store, sub, "customer.subscription.updated", at=at):
        sub["schedule"] = sched["id"]
    return sched


def _from_phases(ctx: Ctx, cust: Obj) -> Obj:
    store, params = ctx.store, ctx.params
    at = store.now_for(cust)
    ctx.touched_clocks.add(cust["test_clock"])
    start = at
    if params.get("start_date") not in (None, "", "now"):
        requested = as_int(params, "start_date")
        assert requested is not None
        if requested < at:
            raise not_implemented(
                "The Stripe simulator does not implement backdated subscription schedules "
                "(a start_date in the past); it refuses them rather than guess the backdated "
                "invoice.",
                param="start_date",
            )
        start = requested
    sched = _schedule(
        store, cust, at, _phases_from_params(store, as_list(params, "phases"), start), params
    )
    if start == at:
        # Created before the schedule is stored: a refused subscription leaves nothing.
        sub = subscribe(
            ctx,
            cust,
            _plan_for(ctx.engine, None, sched["phases"][0]),
            {"metadata": sched["phases"][0]["metadata"]},
            "allow_incomplete",
            at,
            schedule_id=sched["id"],
        )
        sched.update(status="active", subscription=sub["id"])
        _enter(sched, 0)
    store.insert(sched)
    emit(store, "subscription_schedule.created", sched, at=at)
    return sched


# read ----------------------------------------------------------------------------------------
@router.route("GET", "/v1/subscription_schedules/{sched_id}", implements=("expand",))
def retrieve_schedule(ctx: Ctx, sched_id: str) -> Obj:
    sched = ctx.store.require("subscription_schedule", sched_id)
    return render_expanded(ctx.store, sched, ctx.expand)


@router.route(
    "GET",
    "/v1/subscription_schedules",
    implements=(
        *LIST_PARAMS,
        "customer",
        "scheduled",
        "created",
        "canceled_at",
        "completed_at",
        "released_at",
    ),
)
def list_schedules(ctx: Ctx) -> Obj:
    params = ctx.params
    scheds = candidates(ctx.store, "subscription_schedule", params, [("customer", "customer")])
    if params.get("customer"):
        scheds = [s for s in scheds if s["customer"] == params["customer"]]
    scheduled = as_bool(params, "scheduled")
    if scheduled is not None:
        scheds = [s for s in scheds if (s["status"] == "not_started") == scheduled]
    ended_at = ("canceled_at", "completed_at", "released_at")
    for field in ended_at:
        if field in params:  # only schedules that ended that way have the time to compare
            scheds = [s for s in scheds if s[field] is not None]
    for field in ("created", *ended_at):
        scheds = filter_created(scheds, params, field)
    return paginate(
        ctx.store,
        scheds,
        params,
        "/v1/subscription_schedules",
        lambda o: render_expanded(ctx.store, o, None),
    )


# update ------------------------------------------------------------------------------------
def _live(sched: Obj, verb: str) -> None:
    if sched["status"] not in LIVE_STATUSES:
        raise invalid(
            f"You cannot {verb} a subscription schedule that is currently in the "
            f"`{sched['status']}` status."
        )


@router.route(
    "POST",
    "/v1/subscription_schedules/{sched_id}",
    implements=(
        "end_behavior=release|cancel",
        "metadata",
        "proration_behavior",
        *_PHASE_FIELDS,
        "phases.start_date",
        "expand",
    ),
)
def update_schedule(ctx: Ctx, sched_id: str) -> Obj:
    store, params = ctx.store, ctx.params
    sched = store.require("subscription_schedule", sched_id)
    _live(sched, "update")
    at = store.now_for(sched)
    ctx.touched_clocks.add(sched["test_clock"])
    phases = (
        _replacement_phases(ctx, sched, as_list(params, "phases"), at)
        if "phases" in params
        else None
    )
    with tracked(store, sched, "subscription_schedule.updated", at=at):
        sched["metadata"] = merge_metadata(sched["metadata"], params)
        if "end_behavior" in params:
            sched["end_behavior"] = as_str(params, "end_behavior")
        if phases is not None:
            _replace_phases(ctx, sched, phases, as_str(params, "proration_behavior"), at)
    return render_expanded(store, sched, ctx.expand)


def _replacement_phases(ctx: Ctx, sched: Obj, raw: list[Any], at: int) -> list[Obj]:
    """The phases from the current one on (past phases stay as they were). The first one
    starts where the current phase started (not_started: where the schedule starts)."""
    current = sched["phases"][sched["_current"]]
    first = raw[0] if raw and isinstance(raw[0], dict) else {}
    requested = first.get("start_date")
    if requested == "now":
        raise not_implemented(
            "The Stripe simulator does not implement start_date=now on a phase; it refuses it "
            "rather than ignore it.",
            param="phases[0][start_date]",
        )
    start = current["start_date"]
    if requested not in (None, ""):
        start = as_int(first, "start_date", param="phases[0][start_date]") or 0
        moves_active = sched["status"] == "active" and start != current["start_date"]
        if moves_active or start < at:
            raise not_implemented(
                "The Stripe simulator implements updating a schedule's phases from its "
                "current phase on, starting where it starts (or, not started, in the future); "
                "it refuses other start dates rather than guess.",
                param="phases[0][start_date]",
            )
    phases = _phases_from_params(ctx.store, raw, start)
    if sched["status"] == "active":
        if phases[0]["end_date"] <= at:
            raise invalid(
                "The end_date of the current phase must be in the future.",
                param="phases[0][end_date]",
            )
        sub = ctx.store.objects[sched["subscription"]]
        interval, count = ctx.engine.interval_of(sub)
        if _cadence(ctx.store.objects[phases[0]["items"][0]["price"]]) != (
            interval,
            count,
            sub["currency"],
        ):
            raise not_implemented(
                "The Stripe simulator implements schedules whose phases share the "
                "subscription's billing interval and currency; it refuses others rather than "
                "guess how Stripe moves the billing cycle.",
                param="phases",
            )
    return phases


def _replace_phases(
    ctx: Ctx, sched: Obj, phases: list[Obj], proration: str | None, at: int
) -> None:
    old_end = sched["phases"][-1]["end_date"]
    sched["phases"] = sched["phases"][: sched["_current"]] + phases
    if sched["phases"][-1]["end_date"] != old_end:
        sched["_expiring_sent"] = False
        sched["_expiring_from"] = at
    if sched["status"] != "active":
        return
    _enter(sched, sched["_current"])
    sub = ctx.store.objects[sched["subscription"]]
    plan = _plan_for(ctx.engine, sub, phases[0])
    if _plan_changes_billing(ctx.engine, sub, plan):
        # The current phase's items changed: billed now, as a subscription update.
        with tracked(ctx.store, sub, "customer.subscription.updated", at=at):
            _change_items(ctx, sub, plan, proration or "create_prorations", "allow_incomplete", at)


# release / cancel ----------------------------------------------------------------------------
@router.route("POST", "/v1/subscription_schedules/{sched_id}/release", implements=("expand",))
def release_schedule(ctx: Ctx, sched_id: str) -> Obj:
    """Stop the schedule; its subscription (if any) goes on as it is, on its own."""
    store = ctx.store
    sched = store.require("subscription_schedule", sched_id)
    _live(sched, "release")
    at = store.now_for(sched)
    _end(sched, "released", at)
    sub = store.get(sched["subscription"], "subscription")
    if sub is not None:
        sched["released_subscription"] = sub["id"]
        sched["subscription"] = None
        with tracked(store, sub, "customer.subscription.updated", at=at):
            sub["schedule"] = None
    emit(store, "subscription_schedule.released", sched, at=at)
    return render_expanded(store, sched, ctx.expand)


@router.route(
    "POST",
    "/v1/subscription_schedules/{sched_id}/cancel",
    implements=("invoice_now", "prorate", "expand"),
)
def cancel_schedule(ctx: Ctx, sched_id: str) -> Obj:
    """Cancel the schedule and its subscription now. Stripe's defaults: ``prorate`` credits
    the unused time of the current period, ``invoice_now`` puts that credit and any pending
    prorations on a final invoice."""
    store, engine = ctx.store, ctx.engine
    sched = store.require("subscription_schedule", sched_id)
    _live(sched, "cancel")
    at = store.now_for(sched)
    invoice_now = as_bool(ctx.params, "invoice_now") is not False
    prorate = as_bool(ctx.params, "prorate") is not False
    sub = store.get(sched["subscription"], "subscription")
    live_sub = sub is not None and sub["status"] not in ENDED_STATUSES
    if live_sub and prorate and not invoice_now:
        raise not_implemented(
            "The Stripe simulator does not implement prorate=true with invoice_now=false (a "
            "credit left pending after the subscription ends); it refuses it rather than drop "
            "the credit.",
            param="invoice_now",
        )
    _end(sched, "canceled", at)  # first, so the subscription's cancellation leaves it be
    if sub is not None and live_sub:
        credit = engine.proration_lines(sub, ItemPlan(), at) if prorate else []
        engine.cancel(sub, at, requested_at=at)
        if invoice_now and (credit or engine.pending_invoice_items(sub)):
            inv = engine.create_invoice(
                engine.customer_of(sub),
                sub,
                "subscription_update",
                at,
                credit,
                include_pending_items=True,
            )
            engine.finalize_and_charge(inv, at)
    emit(store, "subscription_schedule.canceled", sched, at=at)
    return render_expanded(store, sched, ctx.expand)


# clock work ----------------------------------------------------------------------------------
class ScheduleWork:
    """What falls due by itself on schedules: the start of a ``not_started`` one, the end of
    the current phase, the ``expiring`` notice. Phase ends come before the subscription's
    renewal at the same moment (priority 2 < 3), so that the renewal invoices the new
    phase's items."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    def due_actions(self, clock_id: str | None, until: int) -> list[tuple[int, int, int, Any]]:
        due: list[tuple[int, int, int, Any]] = []
        for sched in self.store.where("subscription_schedule", "test_clock", clock_id):
            if sched["status"] not in LIVE_STATUSES:
                continue
            seq = sched["_seq"]
            if sched["status"] == "not_started":
                when, perform = sched["phases"][0]["start_date"], self.start
            else:
                when, perform = sched["phases"][sched["_current"]]["end_date"], self.end_phase
            if when <= until:
                due.append((when, 2, seq, (perform, sched)))
            if not sched["_expiring_sent"]:
                end = sched["phases"][-1]["end_date"]
                notice = max(sched["_expiring_from"], end - EXPIRING_NOTICE_SECONDS)
                if notice <= until:
                    due.append((notice, 0, seq, (self.expiring, sched)))
        return due

    def _ctx(self) -> Ctx:
        """What the subscription code a schedule drives needs of a request."""
        return Ctx(self.store, self.engine, "POST", "/v1/subscription_schedules", {})

    def start(self, sched: Obj, at: int) -> None:
        cust = self.store.objects[sched["customer"]]
        if cust.get("_deleted"):
            _end(sched, "canceled", at)
            emit(self.store, "subscription_schedule.canceled", sched, at=at)
            return
        phase = sched["phases"][0]
        # Without a payment method the first invoice waits open, as with default_incomplete
        # (a create request would be refused instead; nobody is there to refuse).
        has_pm = self.engine.payment_method_for(None, cust) is not None
        with tracked(self.store, sched, "subscription_schedule.updated", at=at):
            sub = subscribe(
                self._ctx(),
                cust,
                _plan_for(self.engine, None, phase),
                {"metadata": phase["metadata"]},
                "allow_incomplete" if has_pm else "default_incomplete",
                at,
                schedule_id=sched["id"],
            )
            sched.update(status="active", subscription=sub["id"])
            _enter(sched, 0)

    def end_phase(self, sched: Obj, at: int) -> None:
        sub = self.store.objects[sched["subscription"]]
        if sub["status"] in ENDED_STATUSES:  # expired incomplete: nothing left to schedule
            _end(sched, "canceled", at)
            emit(self.store, "subscription_schedule.canceled", sched, at=at)
            return
        following = sched["_current"] + 1
        if following < len(sched["phases"]):
            self._enter_phase(sched, sub, following, at)
        else:
            self._complete(sched, sub, at)

    def _enter_phase(self, sched: Obj, sub: Obj, index: int, at: int) -> None:
        phase = sched["phases"][index]
        plan = _plan_for(self.engine, sub, phase)
        with tracked(self.store, sub, "customer.subscription.updated", at=at):
            sub["metadata"] = merge_metadata(sub["metadata"], {"metadata": phase["metadata"]})
            if _plan_changes_billing(self.engine, sub, plan):
                if at == sub["_period"][1]:
                    # At the period boundary there is nothing to prorate: the renewal that
                    # follows bills the new items.
                    self.engine.apply_plan(sub, plan, at)
                else:
                    _change_items(
                        self._ctx(), sub, plan, phase["proration_behavior"], "allow_incomplete", at
                    )
        with tracked(self.store, sched, "subscription_schedule.updated", at=at):
            _enter(sched, index)

    def _complete(self, sched: Obj, sub: Obj, at: int) -> None:
        _end(sched, "completed", at)
        if sched["end_behavior"] == "cancel":
            self.engine.cancel(sub, at)
        else:
            with tracked(self.store, sub, "customer.subscription.updated", at=at):
                sub["schedule"] = None
        emit(self.store, "subscription_schedule.completed", sched, at=at)

    def expiring(self, sched: Obj, at: int) -> None:
        sched["_expiring_sent"] = True
        emit(self.store, "subscription_schedule.expiring", sched, at=at)

    def subscription_canceled(self, sub: Obj, at: int, reason: str) -> None:
        """The subscription ended outside the schedule (a cancel request, failed payments):
        the schedule ends too; ``aborted`` when it was for delinquency."""
        sched = self.store.get(sub["schedule"], "subscription_schedule")
        if sched is None or sched["status"] != "active":
            return
        _end(sched, "canceled", at)
        aborted = reason == "payment_failed"
        event = "subscription_schedule.aborted" if aborted else "subscription_schedule.canceled"
        emit(self.store, event, sched, at=at)


def attach(engine: Engine) -> None:
    """Run the schedules' clock work with the engine's, and end a schedule whose subscription
    is canceled."""
    work = ScheduleWork(engine)
    engine.other_work.append(work)
    engine.cancel_listeners.append(work.subscription_canceled)
