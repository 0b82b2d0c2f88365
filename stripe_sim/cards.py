"""Stripe's documented test cards: magic PaymentMethod ids, tokens and card numbers.

Behaviours (https://docs.stripe.com/testing):
  * ``ok``        - attaches and every charge succeeds.
  * ``decline``   - the card is refused when attached to a customer (and on any charge).
  * ``fail``      - attaches fine, every charge fails (``pm_card_chargeCustomerFail``,
                    4000000000000341).
  * ``auth``      - every payment needs customer authentication (3DS); off-session charges
                    end in ``requires_action``, on-session ones succeed once authenticated.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CardProfile:
    brand: str
    last4: str
    behaviour: str = "ok"
    # For "decline"/"fail": the error Stripe returns.
    code: str = "card_declined"
    decline_code: str = "generic_decline"
    message: str = "Your card was declined."
    funding: str = "credit"


_VISA = CardProfile("visa", "4242")
_MASTERCARD = CardProfile("mastercard", "4444")
_AMEX = CardProfile("amex", "0005")
_DECLINED = CardProfile("visa", "0002", "decline")
_INSUFFICIENT = CardProfile(
    "visa",
    "9995",
    "decline",
    decline_code="insufficient_funds",
    message="Your card has insufficient funds.",
)
_EXPIRED = CardProfile(
    "visa",
    "0069",
    "decline",
    code="expired_card",
    decline_code="expired_card",
    message="Your card has expired.",
)
_CUSTOMER_FAIL = CardProfile("visa", "0341", "fail")
_THREE_DS2 = CardProfile("visa", "3220", "auth")
_AUTH_REQUIRED = CardProfile("visa", "3184", "auth")

# Magic PaymentMethod ids and their ``tok_`` / ``pm_card_visa_…`` aliases.
MAGIC_PAYMENT_METHODS: dict[str, CardProfile] = {
    "pm_card_visa": _VISA,
    "pm_card_mastercard": _MASTERCARD,
    "pm_card_amex": _AMEX,
    "pm_card_chargeDeclined": _DECLINED,
    "pm_card_visa_chargeDeclined": _DECLINED,
    "pm_card_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "pm_card_visa_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "pm_card_chargeDeclinedExpiredCard": _EXPIRED,
    "pm_card_visa_chargeDeclinedExpiredCard": _EXPIRED,
    "pm_card_chargeCustomerFail": _CUSTOMER_FAIL,
    "pm_card_threeDSecure2Required": _THREE_DS2,
    "pm_card_authenticationRequired": _AUTH_REQUIRED,
}

TOKENS: dict[str, CardProfile] = {
    "tok_visa": _VISA,
    "tok_mastercard": _MASTERCARD,
    "tok_amex": _AMEX,
    "tok_chargeDeclined": _DECLINED,
    "tok_visa_chargeDeclined": _DECLINED,
    "tok_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "tok_visa_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "tok_chargeDeclinedExpiredCard": _EXPIRED,
    "tok_visa_chargeDeclinedExpiredCard": _EXPIRED,
    "tok_chargeCustomerFail": _CUSTOMER_FAIL,
    "tok_threeDSecure2Required": _THREE_DS2,
    "tok_authenticationRequired": _AUTH_REQUIRED,
}

NUMBERS: dict[str, CardProfile] = {
    "4242424242424242": _VISA,
    "5555555555554444": _MASTERCARD,
    "378282246310005": _AMEX,
    "4000000000000002": _DECLINED,
    "4000000000009995": _INSUFFICIENT,
    "4000000000000069": _EXPIRED,
    "4000000000000341": _CUSTOMER_FAIL,
    "4000000000003220": _THREE_DS2,
    "4000002760003184": _AUTH_REQUIRED,
}

# Offered on the simulator's hosted pages.
PAGE_CHOICES: list[tuple[str, str]] = [
    ("pm_card_visa", "Visa 4242 — succeeds"),
    ("pm_card_mastercard", "Mastercard 4444 — succeeds"),
    ("pm_card_chargeCustomerFail", "Visa 0341 — attaches, charges fail"),
    ("pm_card_authenticationRequired", "Visa 3184 — needs 3D Secure"),
    ("pm_card_chargeDeclined", "Visa 0002 — declined"),
    ("pm_card_chargeDeclinedInsufficientFunds", "Visa 9995 — insufficient funds"),
]


def card_for_number(number: str) -> CardProfile:
    digits = "".join(ch for ch in number if ch.isdigit())
    known = NUMBERS.get(digits)
    if known is not None:
        return known
    brand = {"4": "visa", "5": "mastercard", "3": "amex"}.get(digits[:1], "unknown")
    return CardProfile(brand, digits[-4:] or "0000")
