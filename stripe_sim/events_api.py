"""Webhook endpoints, the Events API (``/v1/events``) and the account."""

from __future__ import annotations

import secrets

from stripe_sim.errors import invalid
from stripe_sim.events import type_matches
from stripe_sim.listing import LIST_PARAMS, filter_created, paginate
from stripe_sim.params import as_bool, as_list, as_str, merge_metadata
from stripe_sim.render import public
from stripe_sim.router import Ctx, Router
from stripe_sim.settings import API_VERSION
from stripe_sim.store import Obj

router = Router()


# webhook endpoints -----------------------------------------------------------------------------
def _enabled_events(ctx: Ctx) -> list[str]:
    events = [str(e) for e in as_list(ctx.params, "enabled_events")]
    if not events:
        raise invalid(
            "Missing required param: enabled_events.",
            param="enabled_events",
            code="parameter_missing",
        )
    return events


@router.route(
    "POST",
    "/v1/webhook_endpoints",
    implements=(
        "url",
        "enabled_events",
        # Events are rendered in the one version the simulator knows.
        f"api_version={API_VERSION}",
        "description",
        "metadata",
    ),
)
def create_endpoint(ctx: Ctx) -> Obj:
    store = ctx.store
    url = as_str(ctx.params, "url", required=True)
    if not url or not url.startswith(("http://", "https://")):
        raise invalid(
            "Invalid URL: must be an absolute http(s) URL.", param="url", code="url_invalid"
        )
    endpoint = store.insert(
        {
            "id": store.new_id("we_"),
            "object": "webhook_endpoint",
            "api_version": as_str(ctx.params, "api_version") or store.settings.api_version,
            "application": None,
            "created": store.clock_now(None),
            "description": as_str(ctx.params, "description"),
            "enabled_events": _enabled_events(ctx),
            "livemode": False,
            "metadata": merge_metadata({}, ctx.params),
            "secret": "whsec_" + secrets.token_hex(24),
            "status": "enabled",
            "url": url,
        }
    )
    return public(endpoint)


def _without_secret(endpoint: Obj) -> Obj:
    # Stripe only reveals the secret in the create response.
    return {k: v for k, v in public(endpoint).items() if k != "secret"}


@router.route("GET", "/v1/webhook_endpoints/{we_id}", implements=())
def retrieve_endpoint(ctx: Ctx, we_id: str) -> Obj:
    return _without_secret(ctx.store.require("webhook_endpoint", we_id))


@router.route(
    "POST",
    "/v1/webhook_endpoints/{we_id}",
    implements=("url", "enabled_events", "disabled", "description", "metadata"),
)
def update_endpoint(ctx: Ctx, we_id: str) -> Obj:
    endpoint = ctx.store.require("webhook_endpoint", we_id)
    if "url" in ctx.params:
        endpoint["url"] = as_str(ctx.params, "url")
    if "enabled_events" in ctx.params:
        endpoint["enabled_events"] = _enabled_events(ctx)
    disabled = as_bool(ctx.params, "disabled")
    if disabled is not None:
        endpoint["status"] = "disabled" if disabled else "enabled"
    if "description" in ctx.params:
        endpoint["description"] = as_str(ctx.params, "description")
    endpoint["metadata"] = merge_metadata(endpoint["metadata"], ctx.params)
    return _without_secret(endpoint)


@router.route("DELETE", "/v1/webhook_endpoints/{we_id}", implements=())
def delete_endpoint(ctx: Ctx, we_id: str) -> Obj:
    endpoint = ctx.store.require("webhook_endpoint", we_id)
    endpoint["_deleted"] = True
    endpoint["status"] = "disabled"
    return {"id": we_id, "object": "webhook_endpoint", "deleted": True}


@router.route(
    "GET", "/v1/webhook_endpoints", implements=("limit", "starting_after", "ending_before")
)
def list_endpoints(ctx: Ctx) -> Obj:
    return paginate(
        ctx.store,
        ctx.store.of_kind("webhook_endpoint"),
        ctx.params,
        "/v1/webhook_endpoints",
        _without_secret,
    )


# events ------------------------------------------------------------------------------------------
@router.route("GET", "/v1/events/{evt_id}", implements=())
def retrieve_event(ctx: Ctx, evt_id: str) -> Obj:
    return public(ctx.store.require("event", evt_id))


@router.route(
    "GET",
    "/v1/events",
    implements=(*LIST_PARAMS, "type", "types", "delivery_success", "created"),
)
def list_events(ctx: Ctx) -> Obj:
    events = ctx.store.of_kind("event")
    single = as_str(ctx.params, "type")
    if single:
        events = [e for e in events if type_matches(e["type"], single)]
    types = [str(t) for t in as_list(ctx.params, "types")]
    if types:
        events = [e for e in events if any(type_matches(e["type"], t) for t in types)]
    delivery_success = as_bool(ctx.params, "delivery_success")
    if delivery_success is not None:
        events = [e for e in events if (e["pending_webhooks"] == 0) == delivery_success]
    events = filter_created(events, ctx.params)
    return paginate(ctx.store, events, ctx.params, "/v1/events", public)


# account --------------------------------------------------------------------------------
def account(ctx: Ctx) -> Obj:
    """The simulator's own (platform) account. Stripe leaves out what only a Connect platform
    sees of the accounts it controls (company, requirements, external_accounts, ...)."""
    settings = ctx.store.settings
    return {
        "id": settings.account_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": None,
            "minority_owned_business_designation": None,
            "monthly_estimated_revenue": None,
            "name": settings.account_name,
            "product_description": None,
            "specified_commercial_transactions_act_url": None,
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": 1700000000,
        "default_currency": "usd",
        "details_submitted": True,
        "email": "billing@dataface.example",
        "metadata": {},
        "payouts_enabled": True,
        "settings": {
            "branding": {
                "icon": None,
                "logo": None,
                "primary_color": None,
                "secondary_color": None,
            },
            "card_payments": {
                "decline_on": {"avs_failure": False, "cvc_failure": False},
                "statement_descriptor_prefix": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "dashboard": {"display_name": settings.account_name, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": None},
            "payments": {
                "statement_descriptor": None,
                "statement_descriptor_kana": None,
                "statement_descriptor_kanji": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
        },
        "type": "standard",
    }


router.route("GET", "/v1/account", implements=())(account)
router.route("GET", "/v1/accounts/{acct_id}", implements=())(lambda ctx, acct_id: account(ctx))
