"""Subscribe an account through the local Stripe simulator and watch its entitlements move.

The simulator signs and delivers the webhooks (customer.subscription.created, invoice.paid, …)
to the gateway exactly as Stripe would; the account's workflow re-reads the subscription and
writes the entitlements this script then prints.

    .venv/bin/python scripts/subscribe_demo_account.py acct_demo [--plan pro] [--card pm_card_visa]
"""

from __future__ import annotations

import argparse
import json
import time

import httpx

from core.config import get_settings
from core.stripe_client import make_stripe_client
from domain.catalog import default_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("account_id")
    parser.add_argument("--plan", default="pro")
    parser.add_argument("--interval", default="month")
    parser.add_argument("--seats", type=int, default=1)
    parser.add_argument("--card", default="pm_card_visa", help="a Stripe test payment method")
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    args = parser.parse_args()

    settings = get_settings()
    stripe = make_stripe_client(settings)
    price = default_catalog().price(args.plan, args.interval)
    customer = stripe.v1.customers.create(
        params={
            "email": f"{args.account_id}@example.com",
            "metadata": {"account_id": args.account_id},
        }
    )
    payment_method = stripe.v1.payment_methods.attach(args.card, params={"customer": customer.id})
    stripe.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": payment_method.id}}
    )
    [stripe_price] = stripe.v1.prices.list(params={"lookup_keys": [price.lookup_key]}).data
    subscription = stripe.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": stripe_price.id, "quantity": args.seats}],
            "metadata": {"account_id": args.account_id},
        }
    )
    print(f"Stripe: customer {customer.id}, subscription {subscription.id} ({subscription.status})")

    url = f"{args.api}/v1/accounts/{args.account_id}/entitlements"
    headers = {"Authorization": f"Bearer {settings.app_api_token}"}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = httpx.get(url, headers=headers).json()
        if answer["version"] > 0:
            print(json.dumps(answer, indent=2))
            return
        time.sleep(0.2)
    raise SystemExit("the entitlements did not change within 15 s: is ./scripts/run up?")


if __name__ == "__main__":
    main()
