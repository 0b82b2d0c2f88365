"""The Stripe pages a customer is sent to: Checkout for a first subscription, the customer
portal for the rest. Stripe calls and the records kept beside them, nothing of HTTP.

Stripe's own errors pass through (`api.edge.stripe_failed` answers them); what is this
module's to say is a `CheckoutConflict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy.orm import Session, sessionmaker
from stripe.params import CustomerCreateParams

from db import repository
from domain.catalog import Catalog
from domain.lifecycle import Purchase

# The success URL's query parameter that carries the Checkout Session's id.
CHECKOUT_SESSION_ID_PARAM = "session_id"

# Stripe statuses of a subscription that is over: its checkout no longer stands in the way.
_ENDED_SUBSCRIPTION = frozenset({"canceled", "incomplete_expired"})


class CheckoutConflict(Exception):
    """The account's checkout cannot be opened now; the message says why (and whether a retry
    helps)."""


@dataclass(frozen=True)
class CheckoutPage:
    url: str
    session_id: str


def open_checkout(
    client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    catalog: Catalog,
    account_id: str,
    purchase: Purchase,
    *,
    email: str | None,
    name: str | None,
    success_url: str,
    cancel_url: str,
    automatic_tax: bool,
    allow_promotion_codes: bool,
) -> CheckoutPage:
    """A Checkout page for `purchase`: the account's open one when it is for the same purchase,
    else a new one (an open page for another purchase is expired first), so an account never
    has two pages it could complete. The account's Stripe customer is created on the way
    (once, with `email` and `name`) if it has none. With `automatic_tax` the page collects
    the billing address and a tax id, and the subscription is taxed by Stripe Tax; with
    `allow_promotion_codes` the customer may enter a Stripe promotion code."""
    customer_id = _customer_for(client, sessions, account_id, email=email, name=name)
    with sessions() as session:
        stored = repository.stored_checkout(session, account_id)
    attempt = 1
    if stored is not None:
        reused = _reuse_or_end(client, stored, purchase)
        if reused is not None:
            return reused
        attempt = stored.attempt + 1
    [price] = client.v1.prices.list(
        params={"lookup_keys": [purchase.lookup_key], "active": True}
    ).data
    subscription_data: dict[str, Any] = {"metadata": {"account_id": account_id}}
    if trial_days := catalog.plan(purchase.plan).trial_days:
        subscription_data["trial_period_days"] = trial_days
    params: dict[str, Any] = {
        "mode": "subscription",
        "customer": customer_id,
        "client_reference_id": account_id,
        "line_items": [{"price": price.id, "quantity": purchase.seats}],
        "subscription_data": subscription_data,
        "metadata": {"account_id": account_id},
        "success_url": success_url_with_session_id(success_url),
        "cancel_url": cancel_url,
        "allow_promotion_codes": allow_promotion_codes,
    }
    if automatic_tax:
        # Stripe Tax locates the customer by the billing address typed into Checkout, saved
        # on the (existing) customer for the renewals; a tax id typed in goes there too,
        # which Stripe allows for an existing customer only when it may update the name.
        params.update(
            automatic_tax={"enabled": True},
            billing_address_collection="required",
            tax_id_collection={"enabled": True},
            customer_update={"address": "auto", "name": "auto"},
        )
    # One key per attempt: concurrent checkouts of the same purchase get one session, of
    # another purchase Stripe's idempotency error; a new attempt (the last one ended) gets a
    # new session even within Stripe's 24-hour key window. A key reused after that window
    # finds its session expired too (sessions last 24 hours).
    try:
        created = client.v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"checkout-{account_id}-{attempt}"},
        )
    except stripe.IdempotencyError as err:
        raise CheckoutConflict(
            "another checkout for this account, for another purchase, is being opened"
        ) from err
    assert created.url is not None
    record = repository.StoredCheckout(created.id, purchase.lookup_key, purchase.seats, attempt)
    with sessions.begin() as session:
        repository.store_checkout(session, account_id, record)
    return CheckoutPage(url=created.url, session_id=created.id)


def success_url_with_session_id(success_url: str) -> str:
    """`success_url` with Stripe's `{CHECKOUT_SESSION_ID}` template added: Stripe replaces it
    by the session's id when it sends the customer back (the braces must stay unescaped)."""
    separator = "&" if "?" in success_url else "?"
    return f"{success_url}{separator}{CHECKOUT_SESSION_ID_PARAM}={{CHECKOUT_SESSION_ID}}"


def open_portal(
    client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    account_id: str,
    *,
    return_url: str,
) -> str | None:
    """The URL of a customer portal page for the account; None when it has no customer."""
    with sessions() as session:
        customer_id = repository.customer_for_account(session, account_id)
    if customer_id is None:
        return None
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer_id, "return_url": return_url}
    )
    return portal.url


def _reuse_or_end(
    client: stripe.StripeClient, stored: repository.StoredCheckout, purchase: Purchase
) -> CheckoutPage | None:
    """The stored session when it is open for this purchase; None when it is over (expired
    by this call if it was open for another purchase), so a new one may be made."""
    previous = client.v1.checkout.sessions.retrieve(
        stored.session_id, params={"expand": ["subscription"]}
    )
    if previous.status == "complete":
        subscription = previous.subscription
        if not isinstance(subscription, stripe.Subscription) or (
            subscription.status not in _ENDED_SUBSCRIPTION
        ):
            raise CheckoutConflict("a checkout already completed; the subscription is being set up")
        return None
    if previous.status != "open":
        return None
    if (stored.lookup_key, stored.seats) == (purchase.lookup_key, purchase.seats):
        assert previous.url is not None
        return CheckoutPage(url=previous.url, session_id=previous.id)
    try:
        client.v1.checkout.sessions.expire(previous.id)
    except stripe.InvalidRequestError as err:
        # Completed or expired by someone else since it was read: look again.
        raise CheckoutConflict("the account's open checkout changed meanwhile; retry") from err
    return None


def _customer_for(
    client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    account_id: str,
    *,
    email: str | None,
    name: str | None,
) -> str:
    """The account's Stripe customer, created (once, with the contact given) and linked when
    it has none."""
    with sessions() as session:
        existing = repository.customer_for_account(session, account_id)
    if existing is not None:
        return existing
    params: CustomerCreateParams = {"metadata": {"account_id": account_id}}
    if email is not None:
        params["email"] = email
    if name is not None:
        params["name"] = name
    customer = client.v1.customers.create(
        params=params,
        options={"idempotency_key": f"customer-for-{account_id}"},
    )
    with sessions.begin() as session:
        repository.link_customer(session, account_id, customer.id)
    return customer.id
