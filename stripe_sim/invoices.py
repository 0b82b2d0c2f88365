"""Invoices API (retrieve, list, pay, finalize, void, mark_uncollectible, lines), invoice
items, PaymentIntents and InvoicePayments (read-only)."""

from __future__ import annotations

from stripe_sim.customers import resolve_owned
from stripe_sim.errors import card_error, invalid
from stripe_sim.events import emit
from stripe_sim.listing import LIST_PARAMS, candidates, filter_created, paginate
from stripe_sim.params import as_bool, as_str
from stripe_sim.render import public, render_expanded
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj

router = Router()


@router.route("GET", "/v1/invoices/{inv_id}", implements=("expand",))
def retrieve_invoice(ctx: Ctx, inv_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("invoice", inv_id), ctx.expand)


@router.route(
    "GET",
    "/v1/invoices",
    implements=(*LIST_PARAMS, "subscription", "customer", "status", "created"),
)
def list_invoices(ctx: Ctx) -> Obj:
    params = ctx.params
    indexed = [
        ("subscription", "_subscription"),
        ("customer", "customer"),
        ("test_clock", "test_clock"),
    ]
    invoices = candidates(ctx.store, "invoice", params, indexed)
    for key, field in [*indexed, ("status", "status")]:
        if params.get(key):
            invoices = [i for i in invoices if i[field] == params[key]]
    invoices = filter_created(invoices, params)
    return paginate(
        ctx.store, invoices, params, "/v1/invoices", lambda o: render_expanded(ctx.store, o, None)
    )


@router.route("GET", "/v1/invoices/{inv_id}/lines", implements=LIST_PARAMS)
def list_invoice_lines(ctx: Ctx, inv_id: str) -> Obj:
    inv = ctx.store.require("invoice", inv_id)
    lines = [ctx.store.objects[i] for i in inv["_line_ids"]]
    # Lines keep invoice order (oldest first), unlike other lists.
    listing = paginate(ctx.store, lines, ctx.params, f"/v1/invoices/{inv_id}/lines", public)
    listing["data"].reverse()
    return listing


@router.route(
    "POST",
    "/v1/invoices/{inv_id}/pay",
    implements=("payment_method", "paid_out_of_band", "off_session=true", "expand"),
)
def pay_invoice(ctx: Ctx, inv_id: str) -> Obj:
    store, engine = ctx.store, ctx.engine
    inv = store.require("invoice", inv_id)
    at = store.now_for(inv)
    ctx.touched_clocks.add(inv["test_clock"])
    if inv["status"] == "paid":
        raise invalid("Invoice is already paid.", code="invoice_already_paid")
    if inv["status"] == "draft":
        engine.finalize(inv, at)
        if inv["status"] == "paid":
            return render_expanded(store, inv, ctx.expand)
    if inv["status"] != "open":
        raise invalid(
            f"You cannot pay an invoice with status {inv['status']}.", code="invoice_not_editable"
        )
    pm = None
    if ctx.params.get("payment_method"):
        cust = engine.customer_of(inv)
        pm = resolve_owned(store, str(ctx.params["payment_method"]), cust, at, "payment_method")
    if as_bool(ctx.params, "paid_out_of_band"):
        inv["_paid_out_of_band"] = True
        engine._mark_paid(inv, at)
        return render_expanded(store, inv, ctx.expand)
    outcome = engine.pay(inv, at, pm=pm, automatic=False)
    if not outcome.ok:
        raise card_error(
            outcome.message or "Your card was declined.",
            code=outcome.code or "card_declined",
            decline_code=outcome.decline_code,
            payment_intent={"id": inv["_payment_intent"]},
        )
    return render_expanded(store, inv, ctx.expand)


@router.route("POST", "/v1/invoices/{inv_id}/finalize", implements=("auto_advance", "expand"))
def finalize_invoice(ctx: Ctx, inv_id: str) -> Obj:
    inv = ctx.store.require("invoice", inv_id)
    if inv["status"] != "draft":
        raise invalid(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    at = ctx.store.now_for(inv)
    ctx.engine.finalize(inv, at)
    if as_bool(ctx.params, "auto_advance") is not False and inv["status"] == "open":
        ctx.engine.pay(inv, at)
    return render_expanded(ctx.store, inv, ctx.expand)


@router.route("POST", "/v1/invoices/{inv_id}/void", implements=("expand",))
def void_invoice(ctx: Ctx, inv_id: str) -> Obj:
    inv = ctx.store.require("invoice", inv_id)
    if inv["status"] not in ("open", "uncollectible"):
        raise invalid(
            f"You can only void an open or uncollectible invoice; this one is {inv['status']}."
        )
    ctx.engine.void(inv, ctx.store.now_for(inv))
    return render_expanded(ctx.store, inv, ctx.expand)


@router.route("POST", "/v1/invoices/{inv_id}/mark_uncollectible", implements=("expand",))
def mark_uncollectible(ctx: Ctx, inv_id: str) -> Obj:
    inv = ctx.store.require("invoice", inv_id)
    if inv["status"] != "open":
        raise invalid("You can only mark an open invoice as uncollectible.")
    at = ctx.store.now_for(inv)
    inv.update(status="uncollectible", next_payment_attempt=None)
    inv["status_transitions"]["marked_uncollectible_at"] = at
    emit(ctx.store, "invoice.marked_uncollectible", inv, at=at)
    return render_expanded(ctx.store, inv, ctx.expand)


@router.route(
    "GET", "/v1/invoiceitems", implements=(*LIST_PARAMS, "customer", "pending", "invoice")
)
def list_invoice_items(ctx: Ctx) -> Obj:
    items = ctx.store.of_kind("invoiceitem")
    if ctx.params.get("customer"):
        items = [i for i in items if i["customer"] == ctx.params["customer"]]
    pending = as_bool(ctx.params, "pending")
    if pending is not None:
        items = [i for i in items if (i["invoice"] is None) == pending]
    if ctx.params.get("invoice"):
        items = [i for i in items if i["invoice"] == ctx.params["invoice"]]
    return paginate(
        ctx.store,
        items,
        ctx.params,
        "/v1/invoiceitems",
        lambda o: render_expanded(ctx.store, o, None),
    )


@router.route("GET", "/v1/invoiceitems/{ii_id}", implements=("expand",))
def retrieve_invoice_item(ctx: Ctx, ii_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("invoiceitem", ii_id), ctx.expand)


@router.route("GET", "/v1/payment_intents/{pi_id}", implements=("expand",))
def retrieve_payment_intent(ctx: Ctx, pi_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("payment_intent", pi_id), ctx.expand)


@router.route("GET", "/v1/invoice_payments", implements=(*LIST_PARAMS, "invoice"))
def list_invoice_payments(ctx: Ctx) -> Obj:
    payments = ctx.store.of_kind("invoice_payment")
    invoice = as_str(ctx.params, "invoice")
    if invoice:
        payments = [p for p in payments if p["invoice"] == invoice]
    return paginate(
        ctx.store,
        payments,
        ctx.params,
        "/v1/invoice_payments",
        lambda o: render_expanded(ctx.store, o, None),
    )
