"""Tax rates, customer addresses and tax IDs, and the tax parameters of subscriptions.

Manual tax rates (``/v1/tax_rates``) go on a subscription as ``default_tax_rates`` or on its
items as ``tax_rates``; ``automatic_tax[enabled]`` has Stripe Tax pick the rate from the
customer's address instead. What the rates come to on an invoice is ``tax_amounts``'s work.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from stripe_sim.errors import StripeError, invalid, missing_param, no_such, no_such_referenced
from stripe_sim.events import emit, tracked
from stripe_sim.listing import LIST_PARAMS, filter_created, paginate
from stripe_sim.params import as_bool, as_dict, as_list, as_str, merge_metadata
from stripe_sim.render import list_object, public, render_expanded
from stripe_sim.request_schema import not_implemented
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj, Store
from stripe_sim.tax_amounts import SELF_LIABILITY, automatic_rate, line_taxes, location_country

router = Router()

ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
_TAX_RATE_TEXT_FIELDS = ("country", "description", "display_name", "jurisdiction", "state")
TAX_TYPES = (
    "amusement_tax",
    "communications_tax",
    "gst",
    "hst",
    "igst",
    "jct",
    "lease_tax",
    "pst",
    "qst",
    "retail_delivery_fee",
    "rst",
    "sales_tax",
    "service_tax",
    "vat",
)


# tax rates -------------------------------------------------------------------------------------
def _percentage(params: dict[str, Any]) -> float:
    raw = params.get("percentage")
    if raw is None or raw == "":
        raise missing_param("percentage")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid(f"Invalid decimal: {raw}", param="percentage") from None
    if not Decimal(0) <= value <= Decimal(100):
        # Stripe's wording is not verified.
        raise invalid("Invalid percentage: must be between 0 and 100", param="percentage")
    return float(value)


@router.route(
    "POST",
    "/v1/tax_rates",
    implements=(
        "display_name",
        "percentage",
        "inclusive",
        "active",
        "country",
        "state",
        "jurisdiction",
        "description",
        "tax_type=" + "|".join(TAX_TYPES),
        "metadata",
        "expand",
    ),
)
def create_tax_rate(ctx: Ctx) -> Obj:
    store, params = ctx.store, ctx.params
    display_name = as_str(params, "display_name")
    if not display_name:
        raise missing_param("display_name")
    percentage = _percentage(params)
    inclusive = as_bool(params, "inclusive")
    if inclusive is None:
        raise missing_param("inclusive")
    active = as_bool(params, "active")
    at = store.clock_now(None)
    rate = store.insert(
        {
            "id": store.new_id("txr_"),
            "object": "tax_rate",
            "active": True if active is None else active,
            "country": as_str(params, "country") or None,
            "created": at,
            "description": as_str(params, "description") or None,
            "display_name": display_name,
            "effective_percentage": percentage,
            "flat_amount": None,
            "inclusive": inclusive,
            "jurisdiction": as_str(params, "jurisdiction") or None,
            "jurisdiction_level": None,
            "livemode": False,
            "metadata": merge_metadata({}, params),
            "percentage": percentage,
            "rate_type": "percentage",
            "state": as_str(params, "state") or None,
            "tax_type": as_str(params, "tax_type") or None,
        }
    )
    emit(store, "tax_rate.created", rate, at=at)
    return render_expanded(store, rate, ctx.expand)


@router.route("GET", "/v1/tax_rates/{rate_id}", implements=("expand",))
def retrieve_tax_rate(ctx: Ctx, rate_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("tax_rate", rate_id), ctx.expand)


@router.route(
    "POST",
    "/v1/tax_rates/{rate_id}",
    implements=(
        *_TAX_RATE_TEXT_FIELDS,
        "active",
        "tax_type=" + "|".join(TAX_TYPES),
        "metadata",
        "expand",
    ),
)
def update_tax_rate(ctx: Ctx, rate_id: str) -> Obj:
    """Percentage and inclusiveness cannot change (Stripe: archive the rate and create a new
    one); a rate made inactive stays on the subscriptions that have it."""
    store, params = ctx.store, ctx.params
    rate = store.require("tax_rate", rate_id)
    with tracked(store, rate, "tax_rate.updated", at=store.clock_now(None)):
        for key in _TAX_RATE_TEXT_FIELDS:
            if key in params:
                value = as_str(params, key) or None
                if key == "display_name" and value is None:
                    raise missing_param("display_name")
                rate[key] = value
        active = as_bool(params, "active")
        if active is not None:
            rate["active"] = active
        if "tax_type" in params:
            rate["tax_type"] = as_str(params, "tax_type") or None
        rate["metadata"] = merge_metadata(rate["metadata"], params)
    return render_expanded(store, rate, ctx.expand)


@router.route("GET", "/v1/tax_rates", implements=(*LIST_PARAMS, "active", "inclusive", "created"))
def list_tax_rates(ctx: Ctx) -> Obj:
    params = ctx.params
    rates = [r for r in ctx.store.of_kind("tax_rate") if not r.get("_automatic")]
    for key in ("active", "inclusive"):
        wanted = as_bool(params, key)
        if wanted is not None:
            rates = [r for r in rates if r[key] == wanted]
    rates = filter_created(rates, params)
    return paginate(
        ctx.store, rates, params, "/v1/tax_rates", lambda o: render_expanded(ctx.store, o, None)
    )


def tax_rate_ids(store: Store, refs: list[Any], param: str) -> list[str]:
    """The tax rates named in a ``tax_rates`` / ``default_tax_rates`` list (active ones)."""
    ids = []
    for index, ref in enumerate(refs):
        name = f"{param}[{index}]"
        if not isinstance(ref, str) or not ref:
            raise invalid("Invalid string", param=name)
        rate = store.get(ref, "tax_rate")
        if rate is None or rate.get("_automatic"):
            raise no_such_referenced("tax rate", ref, name)
        if not rate["active"]:
            raise invalid(f"Tax rate {ref} is inactive and cannot be applied.", param=name)
        ids.append(ref)
    if len(ids) != len(set(ids)):
        raise invalid("A tax rate can only be applied once.", param=param)
    return ids


# customer addresses and tax ids ----------------------------------------------------------------
ADDRESS_PARAMS = tuple(f"address.{field}" for field in ADDRESS_FIELDS)


def parse_address(raw: Any, param: str = "address") -> dict[str, Any] | None:
    """An ``address`` hash as Stripe stores it (every field, None when not given);
    ``address=""`` unsets it."""
    if raw == "":
        return None
    values = as_dict({param: raw}, param)
    address: dict[str, Any] = {field: values.get(field) or None for field in ADDRESS_FIELDS}
    country = address["country"]
    if country is not None:
        if not re.fullmatch(r"[A-Za-z]{2}", country):
            raise invalid(
                "Country '" + country + "' is unknown. Try using a 2-character alphanumeric "
                "country code instead, such as 'US', 'EG', or 'GB'. A full list of country codes "
                "is available at https://stripe.com/docs/connect/accounts#country-codes",
                param=f"{param}[country]",
            )
        address["country"] = country.upper()
    return address


def has_automatic_tax_subscription(store: Store, cust: Obj) -> bool:
    return any(
        sub["automatic_tax"]["enabled"] and sub["status"] not in ("canceled", "incomplete_expired")
        for sub in store.where("subscription", "customer", cust["id"])
    )


def tax_location_invalid() -> StripeError:
    return invalid(
        "The customer's location isn't recognized. Set a valid customer address in order to "
        "automatically calculate tax.",
        code="customer_tax_location_invalid",
    )


def set_address(store: Store, cust: Obj, raw: Any) -> None:
    """``address`` on customer create/update. Stripe validates the location of a customer
    with automatic-tax subscriptions (``tax[validate_location]=auto``, the default): one it
    cannot locate is refused."""
    address = parse_address(raw)
    if (address is None or not address["country"]) and has_automatic_tax_subscription(store, cust):
        raise tax_location_invalid()
    cust["address"] = address


# Implemented tax id types: (value pattern, country, whether Stripe verifies the type with a
# government database). The patterns are loose: they catch a mistyped type, not a bad checksum.
_EU_COUNTRIES = (
    "AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI"
)
TAX_ID_TYPES: dict[str, tuple[str, str | None, bool]] = {
    "eu_vat": (rf"({_EU_COUNTRIES})[0-9A-Z+*]{{2,12}}", None, True),
    "gb_vat": (r"GB([0-9]{9}|[0-9]{12})", "GB", True),
    "au_abn": (r"[0-9]{11}", "AU", True),
    "us_ein": (r"[0-9]{2}-?[0-9]{7}", "US", False),
    "ch_vat": (r"CHE-?[0-9]{3}\.?[0-9]{3}\.?[0-9]{3} ?(MWST|TVA|IVA)", "CH", False),
    "no_vat": (r"[0-9]{9} ?MVA", "NO", False),
}


def validated_tax_id(
    type_: str | None, value: str | None, within: str | None = None
) -> tuple[str, str]:
    """(type, value) of a tax id to save, or Stripe's ``tax_id_invalid``. ``within``: the
    hash the two fields came in (Checkout's ``tax_id``), for the param errors name."""

    def param(field: str) -> str:
        return f"{within}[{field}]" if within else field

    if not type_:
        raise missing_param(param("type"))
    if type_ not in TAX_ID_TYPES:
        raise not_implemented(
            f"The Stripe simulator does not implement tax ids of type {type_} (it implements "
            f"{', '.join(TAX_ID_TYPES)}).",
            param=param("type"),
        )
    if not value:
        raise missing_param(param("value"))
    pattern, _, _ = TAX_ID_TYPES[type_]
    if not re.fullmatch(pattern, value):
        raise invalid(f"Invalid value for {type_}.", param=param("value"), code="tax_id_invalid")
    return type_, value


def add_tax_id(store: Store, cust: Obj, type_: str, value: str, at: int) -> Obj:
    _, country, verified_by_stripe = TAX_ID_TYPES[type_]
    if country is None:  # an EU VAT number starts with its country's code (Greece: EL)
        prefix = value[:2]
        country = {"EL": "GR", "XI": "GB"}.get(prefix, prefix)
    tax_id = store.insert(
        {
            "id": store.new_id("txi_"),
            "object": "tax_id",
            "country": country,
            "created": at,
            "customer": cust["id"],
            "customer_account": None,
            "livemode": False,
            "owner": {
                "account": None,
                "application": None,
                "customer": cust["id"],
                "customer_account": None,
                "type": "customer",
            },
            "type": type_,
            "value": value,
            # The simulator never completes a verification: verifiable types stay pending.
            "verification": {
                "status": "pending" if verified_by_stripe else "unavailable",
                "verified_address": None,
                "verified_name": None,
            },
        }
    )
    emit(store, "customer.tax_id.created", tax_id, at=at)
    return tax_id


def customer_tax_ids(store: Store, cust: Obj) -> list[Obj]:
    return [t for t in store.of_kind("tax_id") if t["customer"] == cust["id"]]


def tax_ids_list(store: Store, cust: Obj) -> Obj:
    """A customer's ``tax_ids`` (includable: sent with ``expand[]=tax_ids``)."""
    tax_ids = [public(t) for t in customer_tax_ids(store, cust)]
    return list_object(f"/v1/customers/{cust['id']}/tax_ids", tax_ids)


@router.route(
    "POST",
    "/v1/customers/{cust_id}/tax_ids",
    implements=("type=" + "|".join(TAX_ID_TYPES), "value", "expand"),
)
def create_tax_id(ctx: Ctx, cust_id: str) -> Obj:
    store = ctx.store
    cust = store.require("customer", cust_id)
    type_, value = validated_tax_id(as_str(ctx.params, "type"), as_str(ctx.params, "value"))
    tax_id = add_tax_id(store, cust, type_, value, store.now_for(cust))
    return render_expanded(store, tax_id, ctx.expand)


def _customer_tax_id(ctx: Ctx, cust_id: str, tax_id: str) -> Obj:
    cust = ctx.store.require("customer", cust_id)
    found = ctx.store.require("tax_id", tax_id)
    if found["customer"] != cust["id"]:
        raise no_such("tax ID", tax_id)  # another customer's is not found
    return found


@router.route("GET", "/v1/customers/{cust_id}/tax_ids/{tax_id}", implements=("expand",))
def retrieve_tax_id(ctx: Ctx, cust_id: str, tax_id: str) -> Obj:
    return render_expanded(ctx.store, _customer_tax_id(ctx, cust_id, tax_id), ctx.expand)


@router.route("DELETE", "/v1/customers/{cust_id}/tax_ids/{tax_id}", implements=())
def delete_tax_id(ctx: Ctx, cust_id: str, tax_id: str) -> Obj:
    found = _customer_tax_id(ctx, cust_id, tax_id)
    at = ctx.store.now_for(ctx.store.objects[cust_id])
    emit(ctx.store, "customer.tax_id.deleted", found, at=at)
    found["_deleted"] = True
    return {"id": tax_id, "object": "tax_id", "deleted": True}


@router.route("GET", "/v1/customers/{cust_id}/tax_ids", implements=LIST_PARAMS)
def list_tax_ids(ctx: Ctx, cust_id: str) -> Obj:
    cust = ctx.store.require("customer", cust_id)
    return paginate(
        ctx.store,
        customer_tax_ids(ctx.store, cust),
        ctx.params,
        f"/v1/customers/{cust_id}/tax_ids",
        public,
    )


# subscriptions -------------------------------------------------------------------------------
SUBSCRIPTION_TAX_PARAMS = ("automatic_tax.enabled", "default_tax_rates")


def apply_subscription_tax(store: Store, cust: Obj, sub: Obj, params: dict[str, Any]) -> None:
    """``automatic_tax[enabled]``, ``default_tax_rates`` and ``items[][tax_rates]`` (on create:
    ``sub``'s items are in the order of ``params["items"]``) on ``sub``, all checked before
    any is set. Changes apply from the next invoice; nothing is prorated."""
    automatic = sub["automatic_tax"]["enabled"]
    if "automatic_tax" in params:
        automatic = bool(as_bool(as_dict(params, "automatic_tax"), "enabled"))
    default_rates = sub["default_tax_rates"]
    if "default_tax_rates" in params:
        default_rates = tax_rate_ids(
            store, as_list(params, "default_tax_rates"), "default_tax_rates"
        )
    item_rates = {item_id: store.objects[item_id]["tax_rates"] for item_id in sub["_item_ids"]}
    for index, raw in enumerate(as_list(params, "items")):
        if isinstance(raw, dict) and "tax_rates" in raw:
            item_rates[sub["_item_ids"][index]] = tax_rate_ids(
                store, as_list(raw, "tax_rates"), f"items[{index}][tax_rates]"
            )
    if automatic and (default_rates or any(item_rates.values())):
        raise not_implemented(
            "The Stripe simulator does not implement manual tax rates together with "
            "automatic_tax[enabled]=true; it refuses them rather than guess which wins.",
            param="automatic_tax[enabled]",
        )
    if automatic and not location_country(cust):
        raise tax_location_invalid()
    sub["default_tax_rates"] = default_rates
    for item_id, rates in item_rates.items():
        store.objects[item_id]["tax_rates"] = rates
    sub["automatic_tax"] = {
        "disabled_reason": None,
        "enabled": automatic,
        "liability": dict(SELF_LIABILITY) if automatic else None,
    }


# checkout --------------------------------------------------------------------------------------
CHECKOUT_TAX_PARAMS = (
    "automatic_tax.enabled",
    "billing_address_collection",
    "tax_id_collection.enabled",
    "customer_update.address",
    "customer_update.name",
)


def checkout_tax_fields(store: Store, params: dict[str, Any], cust: Obj | None) -> Obj:
    """The tax fields of a new Checkout Session, checked against the customer it is for, and
    what completing it saves to that customer (``_customer_update``)."""
    automatic = bool(as_bool(as_dict(params, "automatic_tax"), "enabled"))
    collect_tax_id = bool(as_bool(as_dict(params, "tax_id_collection"), "enabled"))
    update = {
        key: as_str(as_dict(params, "customer_update"), key) or "never"
        for key in ("address", "name")
    }
    if "customer_update" in params and cust is None:
        raise invalid(
            "`customer_update` can only be used with `customer`.", param="customer_update"
        )
    if (
        automatic
        and cust is not None
        and not location_country(cust)
        and update["address"] != "auto"
    ):
        raise invalid(
            "Automatic tax calculation in Checkout requires a valid address on the Customer. "
            "Add a valid address to the Customer or set either `customer_update[address]` to "
            "'auto' or `customer_update[shipping]` to 'auto' to save the address entered in "
            "Checkout to the Customer."
        )
    if collect_tax_id and cust is not None and update["name"] != "auto":
        raise invalid(
            "Tax ID collection requires updating business name on the customer. To enable tax "
            "ID collection for an existing customer, please set `customer_update[name]` to "
            "`auto`."
        )
    return {
        "automatic_tax": {
            "enabled": automatic,
            "liability": dict(SELF_LIABILITY) if automatic else None,
            "provider": "stripe" if automatic else None,
            "status": "requires_location_inputs" if automatic else None,
        },
        "billing_address_collection": as_str(params, "billing_address_collection"),
        "tax_id_collection": {"enabled": True, "required": "never"} if collect_tax_id else None,
        "_customer_update": update,
    }


def checkout_location(session: Obj, cust: Obj | None, entered: Any) -> dict[str, Any] | None:
    """The billing address Checkout ends with: the one typed in (the page asks for one when
    ``billing_address_collection=required`` or automatic tax has no other location), else
    the customer's."""
    address = parse_address(entered) if entered else None
    if address is not None and not any(address.values()):
        address = None  # the page's empty fields
    needs_address = session["billing_address_collection"] == "required" or (
        session["automatic_tax"]["enabled"] and (cust is None or not location_country(cust))
    )
    if needs_address and (address is None or not address["country"]):
        raise invalid("Enter your billing address (at least its country).", param="address")
    return address


def checkout_tax_id(session: Obj, raw: Any) -> tuple[str, str] | None:
    """The tax id typed into Checkout (optional), when the session collects one."""
    fields = as_dict({"tax_id": raw}, "tax_id")
    if not fields.get("value"):
        return None
    if session["tax_id_collection"] is None:
        raise invalid("This Checkout Session does not collect tax ids.", param="tax_id")
    return validated_tax_id(as_str(fields, "type"), as_str(fields, "value"), "tax_id")


def save_checkout_details(
    store: Store,
    session: Obj,
    cust: Obj,
    address: dict[str, Any] | None,
    tax_id: tuple[str, str] | None,
    name: str | None,
    *,
    created: bool,
    at: int,
) -> None:
    """Save what Checkout collected on the customer: a customer it created gets the address;
    an existing one the address and the name typed in only with ``customer_update[address]``
    / ``customer_update[name]`` = ``auto``. A collected tax id is added to the customer."""
    update = session["_customer_update"]
    with tracked(store, cust, "customer.updated", at=at):
        if address is not None and (created or update["address"] == "auto"):
            cust["address"] = address
        if name and not created and update["name"] == "auto":
            cust["name"] = name
    known = {(t["type"], t["value"]) for t in customer_tax_ids(store, cust)}
    if tax_id is not None and tax_id not in known:  # not again when a card failed before
        add_tax_id(store, cust, *tax_id, at=at)


def complete_checkout_tax(
    store: Store, session: Obj, cust: Obj, address: Any, line_discounts: list[int]
) -> None:
    """The session's tax once its customer is located: Stripe Tax's rate on each line item,
    after what the session's discount takes off it (`line_discounts`, one per line item)."""
    session["customer_details"]["address"] = address or cust["address"]
    session["customer_details"]["tax_ids"] = [
        {"type": t["type"], "value": t["value"]} for t in customer_tax_ids(store, cust)
    ]
    if not session["automatic_tax"]["enabled"]:
        return
    session["automatic_tax"]["status"] = "complete"
    country = location_country(cust) or (address or {}).get("country")
    exclusive = inclusive = 0
    for item, off in zip(session["_line_items"], line_discounts, strict=True):
        price = store.objects[item["price"]]
        is_inclusive = price["tax_behavior"] == "inclusive"
        rate = automatic_rate(store, country, is_inclusive) if country else None
        taxable = price["unit_amount"] * item["quantity"] - off
        for tax in line_taxes(taxable, [rate] if rate else [], ""):
            if is_inclusive:
                inclusive += tax["amount"]
            else:
                exclusive += tax["amount"]
    session["total_details"]["amount_tax"] = exclusive + inclusive
    session["amount_total"] = (
        session["amount_subtotal"] - session["total_details"]["amount_discount"] + exclusive
    )
