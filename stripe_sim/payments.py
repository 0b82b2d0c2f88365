"""Charging an invoice with a PaymentMethod: PaymentIntents, InvoicePayments and outcomes.

The outcome follows the card's documented test behaviour. API-driven charges (subscription
create/update, renewals, retries, ``/pay``) are off-session: cards that need authentication
end in ``requires_action``. Payments made on the simulator's hosted pages are on-session and
the customer completes authentication there.
"""

from __future__ import annotations

from dataclasses import dataclass

from stripe_sim.cards import CardProfile
from stripe_sim.events import emit
from stripe_sim.store import Obj, Store


@dataclass
class Outcome:
    status: str  # "succeeded" | "failed" | "requires_action"
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


NO_PAYMENT_METHOD = Outcome(
    "failed",
    code="payment_method_unavailable",
    message=("This customer has no attached payment source or default payment method."),
)


def card_outcome(card: CardProfile, *, on_session: bool) -> Outcome:
    if card.behaviour in ("decline", "fail"):
        return Outcome("failed", card.code, card.decline_code, card.message)
    if card.behaviour == "auth" and not on_session:
        return Outcome(
            "requires_action",
            "authentication_required",
            "authentication_required",
            "Your card was declined. This transaction requires authentication.",
        )
    return Outcome("succeeded")


def ensure_payment_intent(store: Store, invoice: Obj, at: int) -> Obj:
    """The invoice's PaymentIntent (one per invoice, reused by every attempt)."""
    existing = store.get(invoice["_payment_intent"], "payment_intent")
    if existing is not None:
        existing["amount"] = invoice["amount_due"]
        return existing
    pi_id = store.new_id("pi_")
    intent = store.insert(
        {
            "id": pi_id,
            "object": "payment_intent",
            "allowed_payment_method_types": None,
            "amount": invoice["amount_due"],
            "amount_capturable": 0,
            "amount_details": None,
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pi_id}_secret_{store.new_id('', 20)}",
            "confirmation_method": "automatic",
            "created": at,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "customer_account": None,
            "description": _description(invoice),
            "excluded_payment_method_types": None,
            "hooks": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "managed_payments": None,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_details": None,
            "payment_method": None,
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_record": None,
            "presentment_details": None,
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
    )
    invoice["_payment_intent"] = pi_id
    payment = store.insert(
        {
            "id": store.new_id("inpay_"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": invoice["amount_due"],
            "created": at,
            "currency": invoice["currency"],
            "invoice": invoice["id"],
            "is_default": True,
            "livemode": False,
            "payment": {"payment_intent": pi_id, "type": "payment_intent"},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
    )
    invoice["_payment_ids"].append(payment["id"])
    invoice["confirmation_secret"] = {
        "client_secret": intent["client_secret"],
        "type": "payment_intent",
    }
    emit(store, "payment_intent.created", intent, at=at)
    return intent


def _description(invoice: Obj) -> str:
    return {
        "subscription_create": "Subscription creation",
        "subscription_update": "Subscription update",
    }.get(invoice["billing_reason"], "Subscription cycle")


def charge(store: Store, invoice: Obj, pm: Obj | None, *, at: int, on_session: bool) -> Outcome:
    intent = ensure_payment_intent(store, invoice, at)
    if pm is None:
        outcome = NO_PAYMENT_METHOD
    else:
        intent["payment_method"] = pm["id"]
        outcome = card_outcome(pm["_card"], on_session=on_session)
    payment = store.objects[invoice["_payment_ids"][-1]]
    if outcome.ok:
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            last_payment_error=None,
            next_action=None,
        )
        payment.update(status="paid", amount_paid=intent["amount"])
        payment["status_transitions"]["paid_at"] = at
        emit(store, "payment_intent.succeeded", intent, at=at)
        return outcome
    error = {
        "code": outcome.code,
        "decline_code": outcome.decline_code,
        "message": outcome.message,
        "payment_method": _public_pm(pm),
        "type": "card_error",
    }
    if outcome.status == "requires_action":
        intent.update(
            status="requires_action",
            last_payment_error=error,
            next_action={
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect"},
            },
        )
        emit(store, "payment_intent.requires_action", intent, at=at)
    else:
        intent.update(status="requires_payment_method", last_payment_error=error, next_action=None)
        emit(store, "payment_intent.payment_failed", intent, at=at)
    return outcome


def _public_pm(pm: Obj | None) -> Obj | None:
    if pm is None:
        return None
    return {k: v for k, v in pm.items() if not k.startswith("_")}
