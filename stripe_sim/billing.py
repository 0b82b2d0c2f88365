"""The subscription and invoice engine: periods, invoices, charging, retries, trials.

Every function takes the time ``at`` at which it happens (the object's test-clock time, or
the wall clock), so the same code serves API requests, clock advances and the real-time
ticker. Events are emitted as Stripe documents them for each transition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from stripe_sim import objects
from stripe_sim.events import emit, tracked
from stripe_sim.payments import Outcome, charge
from stripe_sim.periods import format_date, period_bounds
from stripe_sim.settings import DAY
from stripe_sim.store import Obj, Store
from stripe_sim.tax_amounts import apply_taxes, tax_totals

ENDED_STATUSES = ("canceled", "incomplete_expired")


@dataclass
class LineSpec:
    amount: int
    description: str
    price: Obj
    quantity: int
    period: tuple[int, int]
    proration: bool = False
    subscription_item: str | None = None
    invoice_item: str | None = None


@dataclass
class ItemPlan:
    """The items a subscription should end up with: (existing item id or None, price, qty)."""

    items: list[tuple[str | None, Obj, int]] = field(default_factory=list)
    # Metadata for items, by position in ``items``.
    metadata: list[dict[str, str] | None] = field(default_factory=list)


def money(amount: int, currency: str = "usd") -> str:
    sign = "-" if amount < 0 else ""
    symbol = "$" if currency == "usd" else ""
    return f"{sign}{symbol}{abs(amount) / 100:,.2f}"


def prorated(amount: int, period: tuple[int, int], at: int) -> int:
    """The share of ``amount`` (a whole ``period``'s price) for the time from ``at`` to the
    period's end; Stripe prorates to the second and rounds to the currency's smallest unit."""
    start, end = period
    return round(amount * (end - at) / (end - start))


def discount_amounts(coupon: Obj, amounts: list[int]) -> list[int]:
    """What ``coupon`` takes off each of an invoice's discountable line ``amounts``.

    The discount is worked out on their sum (Stripe applies ``percent_off`` to the subtotal,
    rounded half up to the currency's smallest unit; ``amount_off`` is already in that unit),
    is never more than the sum (a discount never takes an invoice below zero), and is shared
    among the lines in proportion to their amounts, the rounding remainder on the last line.
    Negative lines (credits) take no discount.
    """
    positive = [max(a, 0) for a in amounts]
    base = sum(positive)
    if base == 0:
        return [0 for _ in amounts]
    if coupon["percent_off"] is not None:
        share = Decimal(str(coupon["percent_off"])) / 100
        off = int((Decimal(base) * share).quantize(Decimal(1), ROUND_HALF_UP))
    else:
        off = int(coupon["amount_off"])
    off = min(off, base)
    result = [off * a // base for a in positive]
    last = max(i for i, a in enumerate(positive) if a > 0)
    result[last] += off - sum(result)
    return result


class DueWork(Protocol):
    """Work another module schedules on the same clocks (subscription schedules). Its
    actions are ``(perform, obj)``: ``perform(obj, at)`` does it."""

    def due_actions(self, clock_id: str | None, until: int) -> list[tuple[int, int, int, Any]]: ...


class Engine:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.other_work: list[DueWork] = []
        # Called as (subscription, time, reason) once a subscription is canceled, so that
        # what depends on it (its schedule) follows.
        self.cancel_listeners: list[Callable[[Obj, int, str], None]] = []

    @property
    def settings(self) -> Any:
        return self.store.settings

    # lookups -------------------------------------------------------------------------------
    def items(self, sub: Obj) -> list[Obj]:
        return [self.store.objects[i] for i in sub["_item_ids"] if i in self.store.objects]

    def price_of(self, item: Obj) -> Obj:
        return self.store.objects[item["_price"]]

    def product_name(self, price: Obj) -> str:
        prod = self.store.get(price.get("product"), "product")
        return prod["name"] if prod else price["id"]

    def interval_of(self, sub: Obj) -> tuple[str, int]:
        recurring = self.price_of(self.items(sub)[0])["recurring"]
        return recurring["interval"], int(recurring["interval_count"])

    def customer_of(self, obj: Obj) -> Obj:
        return self.store.objects[obj["customer"]]

    def payment_method_for(self, sub: Obj | None, cust: Obj) -> Obj | None:
        """Stripe's order: the subscription's default, then the customer's invoice default."""
        candidates = [
            sub.get("default_payment_method") if sub else None,
            cust["invoice_settings"].get("default_payment_method"),
        ]
        for pm_id in candidates:
            pm = self.store.get(pm_id, "payment_method")
            if pm is not None and pm.get("customer") == cust["id"]:
                return pm
        return None

    # periods -------------------------------------------------------------------------------
    def set_period(self, sub: Obj, start: int, end: int) -> None:
        sub["_period"] = (start, end)
        sub["_full_period"] = None
        for item in self.items(sub):
            item["current_period_start"] = start
            item["current_period_end"] = end

    def start_cycle(self, sub: Obj, anchor: int) -> None:
        """Restart billing periods at ``anchor`` (subscription start, trial end, resume...)."""
        interval, count = self.interval_of(sub)
        sub["_anchor"] = anchor
        sub["billing_cycle_anchor"] = anchor
        sub["_cycle"] = 0
        self.set_period(sub, *period_bounds(anchor, interval, count, 0))

    def start_anchored_cycle(self, sub: Obj, at: int, anchor: int) -> None:
        """Periods aligned with ``anchor`` (``billing_cycle_anchor``): a shortened first
        period from ``at`` to the next period boundary, then full periods. The full period
        the first one is cut from is kept: prorations are fractions of it. (A trial can end
        after the anchor, or on a boundary: then the first period is a full one.)"""
        interval, count = self.interval_of(sub)
        cycle = 0
        while period_bounds(anchor, interval, count, cycle)[0] > at:
            cycle -= 1
        while period_bounds(anchor, interval, count, cycle)[1] <= at:
            cycle += 1
        full = period_bounds(anchor, interval, count, cycle)
        sub["_anchor"] = anchor
        sub["billing_cycle_anchor"] = anchor
        sub["_cycle"] = cycle
        self.set_period(sub, at, full[1])
        if full[0] != at:
            sub["_full_period"] = full

    def proration_period(self, sub: Obj) -> tuple[int, int]:
        """What a proration in the current period is a fraction of: the period itself, or
        the full period a shortened first period was cut from."""
        full: tuple[int, int] | None = sub["_full_period"]
        return full or sub["_period"]

    def next_cycle(self, sub: Obj) -> None:
        interval, count = self.interval_of(sub)
        sub["_cycle"] += 1
        self.set_period(sub, *period_bounds(sub["_anchor"], interval, count, sub["_cycle"]))

    # invoice lines ---------------------------------------------------------------------------
    def cycle_lines(self, sub: Obj, items: list[Obj] | None = None) -> list[LineSpec]:
        start, end = sub["_period"]
        lines = []
        for item in items if items is not None else self.items(sub):
            price = self.price_of(item)
            amount = price["unit_amount"] * item["quantity"]
            lines.append(
                LineSpec(
                    amount,
                    self.describe(price, item["quantity"]),
                    price,
                    item["quantity"],
                    (start, end),
                    subscription_item=item["id"],
                )
            )
        return lines

    def describe(self, price: Obj, qty: int) -> str:
        """Stripe's line description: ``1 × Pro (at $20.00 / month)``."""
        return (
            f"{qty} × {self.product_name(price)} "
            f"(at {money(price['unit_amount'], price['currency'])} / "
            f"{price['recurring']['interval']})"
        )

    def first_period_lines(self, sub: Obj, at: int) -> list[LineSpec]:
        """The lines of a subscription's first paid period, starting ``at``: the full charge,
        or a prorated one when a billing cycle anchor shortened it."""
        if sub["_full_period"] is None:
            return self.cycle_lines(sub)
        _, end = sub["_period"]
        when = format_date(at)
        lines = []
        for item in self.items(sub):
            price, qty = self.price_of(item), item["quantity"]
            lines.append(
                LineSpec(
                    prorated(price["unit_amount"] * qty, self.proration_period(sub), at),
                    f"Remaining time on {self._qty_name(price, qty)} after {when}",
                    price,
                    qty,
                    (at, end),
                    proration=True,
                    subscription_item=item["id"],
                )
            )
        return lines

    def trial_lines(self, sub: Obj) -> list[LineSpec]:
        start, end = sub["_period"]
        return [
            LineSpec(
                0,
                f"Trial period for {self.product_name(self.price_of(item))}",
                self.price_of(item),
                item["quantity"],
                (start, end),
                subscription_item=item["id"],
            )
            for item in self.items(sub)
        ]

    def proration_lines(self, sub: Obj, plan: ItemPlan, at: int) -> list[LineSpec]:
        """Credit for the unused time of what changes, charge for the remaining time of what
        replaces it, both from ``at`` to the end of the current period (Stripe prorates to
        the second)."""
        start, end = self.proration_period(sub)
        if end <= start or at >= end:
            return []
        current = {item["id"]: (self.price_of(item), item["quantity"]) for item in self.items(sub)}
        planned = {item_id: (price, qty) for item_id, price, qty in plan.items if item_id}
        lines: list[LineSpec] = []
        when = format_date(at)
        for item_id, (price, qty) in current.items():
            new = planned.get(item_id)
            if new is not None and new[0]["id"] == price["id"] and new[1] == qty:
                continue
            amount = -prorated(price["unit_amount"] * qty, (start, end), at)
            lines.append(
                LineSpec(
                    amount,
                    f"Unused time on {self._qty_name(price, qty)} after {when}",
                    price,
                    qty,
                    (at, end),
                    proration=True,
                    subscription_item=item_id,
                )
            )
        for item_id, price, qty in plan.items:
            old = current.get(item_id) if item_id else None
            if old is not None and old[0]["id"] == price["id"] and old[1] == qty:
                continue
            amount = prorated(price["unit_amount"] * qty, (start, end), at)
            lines.append(
                LineSpec(
                    amount,
                    f"Remaining time on {self._qty_name(price, qty)} after {when}",
                    price,
                    qty,
                    (at, end),
                    proration=True,
                    subscription_item=item_id,
                )
            )
        return lines

    def _qty_name(self, price: Obj, qty: int) -> str:
        name = self.product_name(price)
        return f"{qty} × {name}" if qty != 1 else name

    # invoices --------------------------------------------------------------------------------
    def create_invoice(
        self,
        cust: Obj,
        sub: Obj | None,
        reason: str,
        at: int,
        lines: list[LineSpec],
        *,
        period: tuple[int, int] | None = None,
        include_pending_items: bool = False,
    ) -> Obj:
        """A draft invoice. ``invoice.created`` is emitted."""
        store = self.store
        inv = store.insert(
            objects.invoice(store, now=at, cust=cust, billing_reason=reason, subscription=sub)
        )
        inv["period_start"], inv["period_end"] = period or (at, at)
        if include_pending_items and sub is not None:
            for ii in self.pending_invoice_items(sub):
                ii["invoice"] = inv["id"]
                self._add_line(
                    inv,
                    sub,
                    LineSpec(
                        ii["amount"],
                        ii["description"],
                        store.objects[ii["_price"]],
                        ii["quantity"],
                        (ii["period"]["start"], ii["period"]["end"]),
                        proration=ii["proration"],
                        subscription_item=ii["_subscription_item"],
                        invoice_item=ii["id"],
                    ),
                )
        for spec in lines:
            self._add_line(inv, sub, spec)
        if sub is not None:
            self._apply_discounts(inv, sub, at)
            apply_taxes(store, inv, sub)
        self._recompute(inv)
        emit(store, "invoice.created", inv, at=at)
        return inv

    # discounts -------------------------------------------------------------------------------
    def _apply_discounts(self, inv: Obj, sub: Obj, at: int) -> None:
        """Apply the subscription's discounts that are still running to the invoice's
        discountable lines. A discount that has run its course (``repeating``: ``end``
        reached; ``once``: already applied to an invoice) leaves the subscription first,
        with ``customer.discount.deleted``. Stripe ignores coupons on zero-cost invoices
        (API changelog 2013-10-29), so a trial's $0 invoice leaves a ``once`` discount for
        the first invoice with an amount."""
        store = self.store
        running = []
        for discount_id in sub["discounts"]:
            discount = store.objects[discount_id]
            ended = discount["end"] is not None and at >= discount["end"]
            if ended or discount.get("_used_once"):
                emit(store, "customer.discount.deleted", discount, at=at)
                continue
            running.append(discount)
        sub["discounts"] = [d["id"] for d in running]
        lines = [store.objects[i] for i in inv["_line_ids"] if store.objects[i]["discountable"]]
        if not any(line["amount"] > 0 for line in lines):
            return
        for discount in running:
            coupon = store.objects[discount["source"]["coupon"]]
            amounts = discount_amounts(coupon, [line["amount"] for line in lines])
            for line, amount in zip(lines, amounts, strict=True):
                line["discount_amounts"].append({"amount": amount, "discount": discount["id"]})
            inv["discounts"].append(discount["id"])
            inv["total_discount_amounts"].append(
                {"amount": sum(amounts), "discount": discount["id"]}
            )
            if coupon["duration"] == "once":
                discount["_used_once"] = True

    def _recompute(self, inv: Obj) -> None:
        subtotal = sum(self.store.objects[i]["amount"] for i in inv["_line_ids"])
        off = sum(d["amount"] for d in inv["total_discount_amounts"])
        taxes = tax_totals(self.store, inv)
        total = subtotal - off + taxes.exclusive
        inv.update(
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal - taxes.inclusive_before_discounts,
            total=total,
            total_excluding_tax=subtotal - off - taxes.inclusive,
        )
        if inv["status"] == "draft":
            due = max(total, 0)
            inv.update(amount_due=due, amount_remaining=due)

    def pending_invoice_items(self, sub: Obj) -> list[Obj]:
        return [
            ii
            for ii in self.store.where("invoiceitem", "_subscription", sub["id"])
            if ii["invoice"] is None
        ]

    def _add_line(self, inv: Obj, sub: Obj | None, spec: LineSpec) -> None:
        sub_id = sub["id"] if sub else None
        if spec.invoice_item:
            parent = {
                "invoice_item_details": {
                    "invoice_item": spec.invoice_item,
                    "proration": spec.proration,
                    "proration_details": {"credited_items": None},
                    "subscription": sub_id,
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            }
        else:
            parent = {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": spec.proration,
                    "proration_details": {"credited_items": None},
                    "subscription": sub_id,
                    "subscription_item": spec.subscription_item,
                },
                "type": "subscription_item_details",
            }
        line = self.store.insert(
            {
                "id": self.store.new_id("il_"),
                "object": "line_item",
                "amount": spec.amount,
                "currency": spec.price["currency"],
                "description": spec.description,
                "discount_amounts": [],
                "discountable": not spec.proration,
                "discounts": [],
                "invoice": inv["id"],
                "livemode": False,
                "metadata": {},
                "parent": parent,
                "period": {"end": spec.period[1], "start": spec.period[0]},
                "pretax_credit_amounts": [],
                "pricing": {
                    "price_details": {"price": spec.price["id"], "product": spec.price["product"]},
                    "type": "price_details",
                    "unit_amount_decimal": str(spec.price["unit_amount"]),
                },
                "quantity": spec.quantity,
                "quantity_decimal": str(spec.quantity),
                "subscription": sub_id,
                "subtotal": spec.amount,
                "taxes": [],
                "_subscription_item": spec.subscription_item,
            }
        )
        inv["_line_ids"].append(line["id"])

    def finalize(self, inv: Obj, at: int) -> None:
        """draft -> open: apply the customer's balance, number it, give it a hosted page.
        An invoice with nothing to pay is paid at once."""
        store = self.store
        cust = self.customer_of(inv)
        total = inv["total"]
        balance = cust["balance"]  # negative = credit the customer has with us
        if total < 0:
            amount_due, new_balance = 0, balance + total
        elif balance < 0:
            applied = min(-balance, total)
            amount_due, new_balance = total - applied, balance + applied
        else:
            amount_due, new_balance = total + balance, 0
        number = f"{cust['invoice_prefix']}-{cust['next_invoice_sequence']:04d}"
        cust["next_invoice_sequence"] += 1
        if cust["currency"] is None:
            cust["currency"] = inv["currency"]
        if new_balance != balance:
            with tracked(store, cust, "customer.updated", at=at):
                cust["balance"] = new_balance
        base = store.base_url
        inv.update(
            status="open",
            number=number,
            amount_due=amount_due,
            amount_remaining=amount_due,
            starting_balance=balance,
            ending_balance=new_balance,
            effective_at=at,
            automatically_finalizes_at=None,
            hosted_invoice_url=f"{base}/invoices/{inv['id']}",
            invoice_pdf=f"{base}/invoices/{inv['id']}/pdf",
        )
        inv["status_transitions"]["finalized_at"] = at
        if inv["_subscription"] and inv["parent"]:
            sub = store.objects[inv["_subscription"]]
            inv["parent"]["subscription_details"]["metadata"] = dict(sub["metadata"])
        emit(store, "invoice.finalized", inv, at=at)
        if amount_due == 0:
            self._mark_paid(inv, at)

    def _mark_paid(self, inv: Obj, at: int) -> None:
        inv.update(
            status="paid",
            amount_paid=inv["amount_due"],
            amount_remaining=0,
            next_payment_attempt=None,
            confirmation_secret=None,
        )
        inv["status_transitions"]["paid_at"] = at
        emit(self.store, "invoice.paid", inv, at=at)
        emit(self.store, "invoice.payment_succeeded", inv, at=at)
        self._after_paid(inv, at)

    def void(self, inv: Obj, at: int) -> None:
        inv.update(
            status="void",
            next_payment_attempt=None,
            amount_remaining=0,
            automatically_finalizes_at=None,
            confirmation_secret=None,
        )
        inv["status_transitions"]["voided_at"] = at
        emit(self.store, "invoice.voided", inv, at=at)

    def pay(
        self,
        inv: Obj,
        at: int,
        *,
        pm: Obj | None = None,
        on_session: bool = False,
        automatic: bool = True,
    ) -> Outcome:
        """One payment attempt on an open invoice. ``pm`` defaults to the subscription's /
        customer's default payment method."""
        store = self.store
        cust = self.customer_of(inv)
        sub = store.get(inv["_subscription"], "subscription")
        if pm is None:
            pm = self.payment_method_for(sub, cust)
        outcome = charge(store, inv, pm, at=at, on_session=on_session)
        inv["attempt_count"] += 1
        inv["attempted"] = True
        if outcome.ok:
            self._mark_paid(inv, at)
            return outcome
        if inv["_first_failed_at"] is None:
            inv["_first_failed_at"] = at
        exhausted = False
        if self._retries_apply(inv) and automatic:
            # Only automatic attempts walk the retry schedule; a manual /pay does not move it.
            inv["_automatic_failures"] = inv.get("_automatic_failures", 0) + 1
            inv["next_payment_attempt"], exhausted = self._next_retry(inv, at)
        emit(store, "invoice.payment_failed", inv, at=at)
        if outcome.status == "requires_action":
            emit(store, "invoice.payment_action_required", inv, at=at)
        self._after_failed(inv, at, exhausted)
        return outcome

    def _retries_apply(self, inv: Obj) -> bool:
        """Smart Retries cover renewals and updates; a first invoice is not retried (the
        subscription stays incomplete and expires), nor is a pending update's invoice."""
        return inv["billing_reason"] != "subscription_create" and not inv["_pending_update"]

    def _next_retry(self, inv: Obj, at: int) -> tuple[int | None, bool]:
        schedule = self.settings.retry_schedule_days
        done_retries = inv["_automatic_failures"] - 1
        if done_retries >= len(schedule):
            return None, True
        due = int(inv["_first_failed_at"] + schedule[done_retries] * DAY)
        return max(due, at + 1), False

    def _after_paid(self, inv: Obj, at: int) -> None:
        sub = self.store.get(inv["_subscription"], "subscription")
        if sub is None or sub["status"] in ENDED_STATUSES:
            return
        with tracked(self.store, sub, "customer.subscription.updated", at=at):
            if inv["_pending_update"] and sub["_pending_plan"] is not None:
                self.apply_pending_update(sub, at)
            if sub["status"] in ("incomplete", "past_due", "unpaid") and not self._unpaid_open(sub):
                trial_running = sub["trial_end"] is not None and sub["trial_end"] > at
                sub["status"] = "trialing" if trial_running else "active"
                sub["_incomplete_deadline"] = None

    def _unpaid_open(self, sub: Obj) -> bool:
        return any(
            inv["status"] == "open" and inv["attempt_count"] > 0 and not inv["_pending_update"]
            for inv in self.store.where("invoice", "_subscription", sub["id"])
        )

    def _after_failed(self, inv: Obj, at: int, exhausted: bool) -> None:
        sub = self.store.get(inv["_subscription"], "subscription")
        if sub is None or sub["status"] in ENDED_STATUSES:
            return
        if inv["billing_reason"] == "subscription_create" or inv["_pending_update"]:
            return  # incomplete stays incomplete; a pending update leaves the sub as it was
        if sub["status"] in ("active", "trialing"):
            with tracked(self.store, sub, "customer.subscription.updated", at=at):
                sub["status"] = "past_due"
        if exhausted:
            self.retries_exhausted(sub, at)

    def retries_exhausted(self, sub: Obj, at: int) -> None:
        action = self.settings.retries_exhausted_action
        if action == "cancel":
            self.cancel(sub, at, reason="payment_failed")
        elif action == "unpaid":
            with tracked(self.store, sub, "customer.subscription.updated", at=at):
                sub["status"] = "unpaid"

    # subscription transitions -------------------------------------------------------------------
    def cancel(
        self,
        sub: Obj,
        at: int,
        *,
        reason: str = "cancellation_requested",
        requested_at: int | None = None,
    ) -> None:
        """End the subscription now; ``customer.subscription.deleted``."""
        sub["status"] = "canceled"
        sub["ended_at"] = at
        if sub["canceled_at"] is None or requested_at is not None:
            sub["canceled_at"] = requested_at if requested_at is not None else at
        sub["cancellation_details"]["reason"] = sub["cancellation_details"]["reason"] or reason
        sub["pending_update"] = None
        sub["_pending_plan"] = None
        for inv in self.store.where("invoice", "_subscription", sub["id"]):
            if inv["status"] == "draft":
                inv["automatically_finalizes_at"] = None
            if inv["status"] == "open":
                inv["next_payment_attempt"] = None
        emit(self.store, "customer.subscription.deleted", sub, at=at)
        for listener in self.cancel_listeners:
            listener(sub, at, reason)

    def renew(self, sub: Obj, at: int) -> None:
        """Period boundary: start the next period and draft its invoice, which is finalized
        and charged ``renewal_finalize_delay_seconds`` later."""
        old_start, _ = sub["_period"]
        with tracked(self.store, sub, "customer.subscription.updated", at=at):
            self.next_cycle(sub)
            inv = self._cycle_invoice(sub, at, period=(old_start, at))
            sub["latest_invoice"] = inv["id"]

    def _cycle_invoice(
        self, sub: Obj, at: int, *, period: tuple[int, int], lines: list[LineSpec] | None = None
    ) -> Obj:
        inv = self.create_invoice(
            self.customer_of(sub),
            sub,
            "subscription_cycle",
            at,
            self.cycle_lines(sub) if lines is None else lines,
            period=period,
            include_pending_items=True,
        )
        inv["automatically_finalizes_at"] = at + self.settings.renewal_finalize_delay_seconds
        pause = sub.get("pause_collection")
        if pause and pause.get("behavior") in ("void", "mark_uncollectible"):
            inv["automatically_finalizes_at"] = None
            self.finalize(inv, at)
            if inv["status"] == "open":
                if pause["behavior"] == "void":
                    self.void(inv, at)
                else:
                    inv["status"] = "uncollectible"
                    inv["status_transitions"]["marked_uncollectible_at"] = at
                    emit(self.store, "invoice.marked_uncollectible", inv, at=at)
        elif pause and pause.get("behavior") == "keep_as_draft":
            inv["automatically_finalizes_at"] = None
            inv["auto_advance"] = False
        return inv

    def finalize_and_charge(self, inv: Obj, at: int) -> None:
        self.finalize(inv, at)
        if inv["status"] != "open":
            return
        sub = self.store.get(inv["_subscription"], "subscription")
        if sub is not None and sub["status"] == "unpaid":
            # Stripe creates invoices for unpaid subscriptions but does not attempt them.
            inv["auto_advance"] = False
            return
        self.pay(inv, at)

    def end_trial(self, sub: Obj, at: int) -> None:
        cust = self.customer_of(sub)
        if self.payment_method_for(sub, cust) is None:
            behaviour = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
            if behaviour == "cancel":
                self.cancel(sub, at, reason="cancellation_requested")
                return
            if behaviour == "pause":
                with tracked(self.store, sub, "customer.subscription.updated", at=at):
                    sub["status"] = "paused"
                emit(self.store, "customer.subscription.paused", sub, at=at)
                return
        old_start, _ = sub["_period"]
        with tracked(self.store, sub, "customer.subscription.updated", at=at):
            sub["status"] = "active"
            if sub["_requested_anchor"]:
                # A trial with a billing cycle anchor: the period up to the anchor's next
                # boundary is prorated (Stripe's free-trials guide).
                self.start_anchored_cycle(sub, at, sub["_anchor"])
                lines = self.first_period_lines(sub, at)
            else:
                self.start_cycle(sub, at)
                lines = self.cycle_lines(sub)
            inv = self._cycle_invoice(sub, at, period=(old_start, at), lines=lines)
            sub["latest_invoice"] = inv["id"]

    def trial_will_end(self, sub: Obj, at: int) -> None:
        sub["_trial_will_end_sent"] = True
        emit(self.store, "customer.subscription.trial_will_end", sub, at=at)

    def expire_incomplete(self, sub: Obj, at: int) -> None:
        """23 hours without a paid first invoice: void it, status ``incomplete_expired``."""
        latest = self.store.get(sub["latest_invoice"], "invoice")
        if latest is not None and latest["status"] == "open":
            self.void(latest, at)
        with tracked(self.store, sub, "customer.subscription.updated", at=at):
            sub["status"] = "incomplete_expired"
            sub["ended_at"] = at
            sub["_incomplete_deadline"] = None

    def expire_pending_update(self, sub: Obj, at: int) -> None:
        with tracked(self.store, sub, "customer.subscription.updated", at=at):
            sub["pending_update"] = None
            sub["_pending_plan"] = None
        emit(self.store, "customer.subscription.pending_update_expired", sub, at=at)

    def apply_plan(self, sub: Obj, plan: ItemPlan, at: int) -> None:
        """Make the subscription's items match ``plan`` (existing ids kept)."""
        store = self.store
        keep: list[str] = []
        start, end = sub["_period"]
        for index, (item_id, price, qty) in enumerate(plan.items):
            item = store.get(item_id, "subscription_item") if item_id else None
            if item is None:
                item = store.insert(
                    objects.subscription_item(
                        store, now=at, subscription_id=sub["id"], price=price, quantity=qty
                    )
                )
            item["_price"] = price["id"]
            item["quantity"] = qty
            item["current_period_start"], item["current_period_end"] = start, end
            meta = plan.metadata[index] if index < len(plan.metadata) else None
            if meta is not None:
                item["metadata"] = meta
            keep.append(item["id"])
        for old in sub["_item_ids"]:
            if old not in keep:
                store.objects[old]["_deleted"] = True
        sub["_item_ids"] = keep

    def apply_pending_update(self, sub: Obj, at: int) -> None:
        plan, reset_anchor = sub["_pending_plan"]
        self.apply_plan(sub, plan, at)
        if reset_anchor:
            self.start_cycle(sub, at)
        sub["pending_update"] = None
        sub["_pending_plan"] = None
        emit(self.store, "customer.subscription.pending_update_applied", sub, at=at)

    # scheduling ----------------------------------------------------------------------------------
    def due_actions(self, clock_id: str | None, until: int) -> list[tuple[int, int, int, Any]]:
        """What happens by itself, by ``until``, to objects on ``clock_id`` (None: objects on
        real time), as (time, priority, sequence, action). It runs after every write, when
        usually nothing is due, so it looks only at the clock's objects and allocates only
        for what is due."""
        due: list[tuple[int, int, int, Any]] = []
        notice = self.settings.trial_will_end_notice_seconds
        for sub in self.store.where("subscription", "test_clock", clock_id):
            status = sub["status"]
            if status in ENDED_STATUSES:
                continue
            seq = sub["_seq"]
            if status == "incomplete":
                deadline = sub["_incomplete_deadline"]
                if deadline is not None and deadline <= until:
                    due.append((deadline, 2, seq, ("expire", sub)))
                continue
            pending = sub["pending_update"]
            if pending is not None and pending["expires_at"] <= until:
                due.append((pending["expires_at"], 2, seq, ("expire_pending", sub)))
            if status == "paused":
                continue
            _, period_end = sub["_period"]
            if (
                status == "trialing"
                and sub["trial_end"] is not None
                and not sub["_trial_will_end_sent"]
            ):
                when = max(sub["trial_start"] or sub["created"], sub["trial_end"] - notice)
                if when <= until:
                    due.append((when, 0, seq, ("trial_will_end", sub)))
            if sub["cancel_at"] is not None and sub["cancel_at"] <= period_end:
                when, kind = sub["cancel_at"], "cancel_at"
            elif status == "trialing":
                when, kind = sub["trial_end"], "trial_end"
            elif sub["cancel_at_period_end"]:
                when, kind = period_end, "cancel_at"
            else:
                when, kind = period_end, "renew"
            if when <= until:
                due.append((when, 3, seq, (kind, sub)))
        for inv in self.store.where("invoice", "test_clock", clock_id):
            status = inv["status"]
            if status == "draft" and inv["automatically_finalizes_at"] is not None:
                when, kind = inv["automatically_finalizes_at"], "finalize"
            elif status == "open" and inv["next_payment_attempt"] is not None:
                when, kind = inv["next_payment_attempt"], "retry"
            else:
                continue
            if when <= until:
                due.append((when, 1, inv["_seq"], (kind, inv)))
        for work in self.other_work:
            due.extend(work.due_actions(clock_id, until))
        return due

    def perform(self, action: tuple[Any, Obj], at: int) -> None:
        kind, obj = action
        if callable(kind):  # another module's work (DueWork)
            kind(obj, at)
        elif kind == "expire":
            self.expire_incomplete(obj, at)
        elif kind == "expire_pending":
            self.expire_pending_update(obj, at)
        elif kind == "trial_will_end":
            self.trial_will_end(obj, at)
        elif kind == "cancel_at":
            self.cancel(obj, at)
        elif kind == "trial_end":
            self.end_trial(obj, at)
        elif kind == "renew":
            self.renew(obj, at)
        elif kind == "finalize":
            self.finalize_and_charge(obj, at)
        elif kind == "retry":
            obj["next_payment_attempt"] = None
            self.pay(obj, at)

    def run_due(self, clock_id: str | None, until: int) -> None:
        """Perform, in time order, everything due up to ``until``. On a test clock the clock's
        time steps through each moment so objects and events carry that time."""
        clock = self.store.get(clock_id, "test_helpers.test_clock") if clock_id else None
        for _ in range(100_000):
            due = self.due_actions(clock_id, until)
            if not due:
                return
            at, _, _, action = min(due, key=lambda a: a[:3])
            if clock is not None and at > clock["frozen_time"]:
                clock["frozen_time"] = at
            self.perform(action, max(at, clock["frozen_time"]) if clock is not None else at)
        raise RuntimeError("run_due did not settle")  # a bug: an action that never completes
