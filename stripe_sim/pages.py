"""Hosted pages: Checkout, the hosted invoice page and the billing portal.

Plain HTML forms (no JavaScript) so a browser, curl or a test can drive them. Payments made
here are on-session: a card that needs 3D Secure is "authenticated" by the customer on the
page and succeeds; declined cards show Stripe's decline message and change nothing.
Headless use: ``POST <session url>`` with ``payment_method=pm_card_visa`` answers 303 to the
success URL (402 with the message when the card fails); a session that collects a billing
address or tax id also takes ``address[country]=DE`` (``line1``, ``postal_code``, ``city``,
``state``) and ``tax_id[type]=eu_vat`` + ``tax_id[value]=DE123456789``; ``promotion_code=CODE``
applies a code first (400 with the reason when it does not apply, and nothing is paid).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from stripe_sim import checkout, checkout_discounts, portal
from stripe_sim.billing import money
from stripe_sim.cards import PAGE_CHOICES
from stripe_sim.customers import resolve_owned
from stripe_sim.errors import StripeError
from stripe_sim.formdata import decode
from stripe_sim.periods import format_date
from stripe_sim.render import public
from stripe_sim.router import Ctx
from stripe_sim.store import RequestInfo
from stripe_sim.tax import TAX_ID_TYPES

if TYPE_CHECKING:
    from stripe_sim.app import Simulator

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
_templates.filters["money"] = money
_templates.filters["date"] = lambda ts: format_date(ts) if ts else "—"


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(cards=PAGE_CHOICES, **context)
    return HTMLResponse(html, status)


def page_routes(sim: Simulator) -> list[Route]:
    def act(fn: Callable[[Ctx], Any]) -> Any:
        """Run a page action like an API request: under the lock, then due work."""
        with sim.store.lock:
            ctx = Ctx(sim.store, sim.engine, "POST", "", {})
            sim.store.request = RequestInfo()
            try:
                return fn(ctx)
            finally:
                sim.run_due_after_write(ctx.touched_clocks)

    async def form(request: Request) -> dict[str, Any]:
        return decode(await request.body())

    # checkout ----------------------------------------------------------------------------------
    async def checkout_page(request: Request) -> Response:
        cs_id = request.path_params["cs_id"]
        with sim.store.lock:
            session = sim.store.get(cs_id, "checkout.session")
            if session is None:
                return _page(
                    "message.html",
                    404,
                    title="Not found",
                    message="This checkout session does not exist.",
                )
            ctx = Ctx(sim.store, sim.engine, "GET", "", {})
            lines = checkout.line_items_list(ctx, session)["data"]
            customer = sim.store.get(session["customer"], "customer")
            promo_ids = [d["promotion_code"] for d in session["discounts"] if d["promotion_code"]]
            return _page(
                "checkout.html",
                session=public(session),
                lines=lines,
                email_on_file=customer["email"] if customer else None,
                address_on_file=customer["address"] if customer else None,
                tax_id_types=list(TAX_ID_TYPES),
                session_updates_name=session["_customer_update"]["name"] == "auto",
                promotion_code=sim.store.objects[promo_ids[0]]["code"] if promo_ids else None,
            )

    async def checkout_submit(request: Request) -> Response:
        cs_id = request.path_params["cs_id"]
        data = await form(request)
        pm = str(data.get("payment_method") or "pm_card_visa")
        code = str(data.get("promotion_code") or "").strip()

        def apply_code(ctx: Ctx) -> None:
            session = ctx.store.require("checkout.session", cs_id)
            checkout_discounts.apply_promotion_code(ctx.store, session, code)

        def complete(ctx: Ctx) -> str:
            session = ctx.store.require("checkout.session", cs_id)
            return checkout.complete(
                ctx,
                session,
                pm,
                data.get("email") or None,
                data.get("name") or None,
                address=data.get("address"),
                tax_id=data.get("tax_id"),
            )

        if code:
            try:
                act(apply_code)
            except StripeError as exc:
                return _page(
                    "message.html",
                    exc.status,
                    title="Promotion code not applied",
                    message=exc.message,
                    back=f"/checkout/{cs_id}",
                )
        if data.get("apply"):  # the page's Apply button: back to the page, showing the new total
            return RedirectResponse(f"/checkout/{cs_id}", status_code=303)
        try:
            target = act(complete)
        except StripeError as exc:
            return _page(
                "message.html",
                exc.status,
                title="Payment failed",
                message=exc.message,
                back=f"/checkout/{cs_id}",
            )
        return RedirectResponse(target, status_code=303)

    # hosted invoice page -----------------------------------------------------------------------
    async def invoice_page(request: Request) -> Response:
        with sim.store.lock:
            inv = sim.store.get(request.path_params["in_id"], "invoice")
            if inv is None or inv["status"] == "draft":
                return _page(
                    "message.html", 404, title="Not found", message="This invoice does not exist."
                )
            lines = [public(sim.store.objects[i]) for i in inv["_line_ids"]]
            return _page("invoice.html", invoice=public(inv), lines=lines)

    async def invoice_pay(request: Request) -> Response:
        in_id = request.path_params["in_id"]
        data = await form(request)
        pm_ref = str(data.get("payment_method") or "default")

        def pay(ctx: Ctx) -> None:
            inv = ctx.store.require("invoice", in_id)
            if inv["status"] != "open":
                raise StripeError(400, "invalid_request_error", f"This invoice is {inv['status']}.")
            at = ctx.store.now_for(inv)
            ctx.touched_clocks.add(inv["test_clock"])
            pm = None
            if pm_ref != "default":
                cust = ctx.engine.customer_of(inv)
                pm = resolve_owned(ctx.store, pm_ref, cust, at, "payment_method")
            outcome = ctx.engine.pay(inv, at, pm=pm, on_session=True, automatic=False)
            if not outcome.ok:
                raise StripeError(402, "card_error", outcome.message or "Payment failed.")

        try:
            act(pay)
        except StripeError as exc:
            return _page(
                "message.html",
                exc.status,
                title="Payment failed",
                message=exc.message,
                back=f"/invoices/{in_id}",
            )
        return RedirectResponse(f"/invoices/{in_id}", status_code=303)

    async def invoice_pdf(request: Request) -> Response:
        with sim.store.lock:
            inv = sim.store.get(request.path_params["in_id"], "invoice")
            if inv is None:
                return PlainTextResponse("Not found", 404)
            return PlainTextResponse(
                f"Invoice {inv['number']}\nTotal {money(inv['total'])}\nStatus {inv['status']}\n"
            )

    # billing portal ----------------------------------------------------------------------------
    async def portal_page(request: Request) -> Response:
        with sim.store.lock:
            session = sim.store.get(request.path_params["bps_id"], "billing_portal.session")
            if session is None:
                return _page(
                    "message.html",
                    404,
                    title="Not found",
                    message="This portal session does not exist.",
                )
            store = sim.store
            cust = store.objects[session["customer"]]
            live = [
                s
                for s in store.where("subscription", "customer", cust["id"])
                if s["status"] not in ("canceled", "incomplete_expired")
            ]
            subs = []
            for s in live:
                price = sim.engine.price_of(sim.engine.items(s)[0])
                subs.append(
                    {
                        **public(s),
                        "price": public(price),
                        "product_name": price.get("nickname") or sim.engine.product_name(price),
                        "period_end": s["_period"][1],
                    }
                )
            prices = [
                {**public(p), "product_name": sim.engine.product_name(p)}
                for p in store.of_kind("price")
                if p["active"] and p["type"] == "recurring"
            ]
            # What the next invoice is charged to: the customer's invoice default, else a
            # subscription's own default (Checkout sets only the subscription's).
            pm = next(
                (
                    pm
                    for pm in (
                        store.get(ref, "payment_method")
                        for ref in [
                            cust["invoice_settings"]["default_payment_method"],
                            *(s["default_payment_method"] for s in live),
                        ]
                    )
                    if pm is not None
                ),
                None,
            )
            open_invoices = [
                public(i)
                for i in store.where("invoice", "customer", cust["id"])
                if i["status"] == "open"
            ]
            return _page(
                "portal.html",
                session=public(session),
                customer=public(cust),
                subscriptions=subs,
                prices=prices,
                payment_method=public(pm) if pm else None,
                open_invoices=open_invoices,
            )

    async def portal_action(request: Request) -> Response:
        bps_id = request.path_params["bps_id"]
        data = await form(request)
        action = data.get("action")

        def run(ctx: Ctx) -> None:
            session = ctx.store.require("billing_portal.session", bps_id)
            cust = ctx.store.objects[session["customer"]]
            sub_id = str(data.get("subscription") or "")
            if action == "change_plan":
                portal.change_plan(ctx, sub_id, str(data.get("price")))
            elif action == "cancel":
                portal.set_cancel_at_period_end(ctx, sub_id, True)
            elif action == "renew":
                portal.set_cancel_at_period_end(ctx, sub_id, False)
            elif action == "update_card":
                portal.update_card(ctx, cust, str(data.get("payment_method") or "pm_card_visa"))
            else:
                raise StripeError(400, "invalid_request_error", f"Unknown action: {action}")

        try:
            act(run)
        except StripeError as exc:
            return _page(
                "message.html",
                exc.status,
                title="That did not work",
                message=exc.message,
                back=f"/portal/{bps_id}",
            )
        return RedirectResponse(f"/portal/{bps_id}", status_code=303)

    return [
        Route("/checkout/{cs_id}", checkout_page, methods=["GET"]),
        Route("/checkout/{cs_id}", checkout_submit, methods=["POST"]),
        Route("/invoices/{in_id}", invoice_page, methods=["GET"]),
        Route("/invoices/{in_id}", invoice_pay, methods=["POST"]),
        Route("/invoices/{in_id}/pdf", invoice_pdf, methods=["GET"]),
        Route("/portal/{bps_id}", portal_page, methods=["GET"]),
        Route("/portal/{bps_id}", portal_action, methods=["POST"]),
    ]
