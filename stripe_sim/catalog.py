"""Products and prices (recurring, lookup keys, archiving)."""

from __future__ import annotations

from typing import Any

from stripe_sim import objects
from stripe_sim.errors import invalid
from stripe_sim.events import emit, tracked
from stripe_sim.listing import LIST_PARAMS, SEARCH_PARAMS, filter_created, paginate, search_result
from stripe_sim.params import as_bool, as_dict, as_int, as_list, as_str, merge_metadata
from stripe_sim.render import render_expanded
from stripe_sim.request_schema import not_implemented
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj, Store

router = Router()

# What products store and render (products have no behaviour beyond being shown).
_PRODUCT_FIELDS = (
    "name",
    "description",
    "statement_descriptor",
    "unit_label",
    "url",
    "active",
    "metadata",
)


# products ------------------------------------------------------------------------------------
def _apply_product(prod: Obj, params: dict[str, Any]) -> None:
    for key in _PRODUCT_FIELDS[:5]:
        if key in params:
            prod[key] = as_str(params, key) or None
    if "active" in params:
        prod["active"] = bool(as_bool(params, "active"))
    prod["metadata"] = merge_metadata(prod["metadata"], params)


def new_product(store: Store, params: dict[str, Any], at: int) -> Obj:
    name = as_str(params, "name", required=True)
    if not name:
        raise invalid("You must supply a non-empty name.", param="name")
    prod = objects.product(store, now=at)
    if params.get("id"):
        if store.get(params["id"]) is not None:
            raise invalid("Product already exists.", param="id", code="resource_already_exists")
        prod["id"] = str(params["id"])
    _apply_product(prod, params)
    store.insert(prod)
    emit(store, "product.created", prod, at=at)
    return prod


@router.route(
    "POST",
    "/v1/products",
    implements=(
        *_PRODUCT_FIELDS,
        "id",
        "default_price_data.currency",
        "default_price_data.metadata",
        "default_price_data.recurring",
        "default_price_data.tax_behavior",
        "default_price_data.unit_amount",
        "default_price_data.unit_amount_decimal",
        "expand",
    ),
)
def create_product(ctx: Ctx) -> Obj:
    at = ctx.store.clock_now(None)
    prod = new_product(ctx.store, ctx.params, at)
    default_price = as_dict(ctx.params, "default_price_data")
    if default_price:
        price = new_price(ctx.store, {**default_price, "product": prod["id"]}, at)
        prod["default_price"] = price["id"]
    return render_expanded(ctx.store, prod, ctx.expand)


@router.route("GET", "/v1/products/search", implements=SEARCH_PARAMS)
def search_products(ctx: Ctx) -> Obj:
    return search_result(ctx.store, "product", ctx.params, "/v1/products/search")


@router.route("GET", "/v1/products/{prod_id}", implements=("expand",))
def retrieve_product(ctx: Ctx, prod_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("product", prod_id), ctx.expand)


@router.route(
    "POST", "/v1/products/{prod_id}", implements=(*_PRODUCT_FIELDS, "default_price", "expand")
)
def update_product(ctx: Ctx, prod_id: str) -> Obj:
    prod = ctx.store.require("product", prod_id)
    at = ctx.store.clock_now(None)
    with tracked(ctx.store, prod, "product.updated", at=at):
        _apply_product(prod, ctx.params)
        if "default_price" in ctx.params:
            ref = as_str(ctx.params, "default_price")
            if ref:
                ctx.store.require_referenced("price", ref, "default_price")
            prod["default_price"] = ref or None
        prod["updated"] = at
    return render_expanded(ctx.store, prod, ctx.expand)


@router.route("DELETE", "/v1/products/{prod_id}", implements=())
def delete_product(ctx: Ctx, prod_id: str) -> Obj:
    prod = ctx.store.require("product", prod_id)
    if any(p["product"] == prod_id for p in ctx.store.of_kind("price")):
        raise invalid(
            "This product cannot be deleted because it has one or more user-created prices."
        )
    prod["_deleted"] = True
    emit(ctx.store, "product.deleted", prod)
    return {"id": prod_id, "object": "product", "deleted": True}


@router.route("GET", "/v1/products", implements=(*LIST_PARAMS, "active", "ids", "created"))
def list_products(ctx: Ctx) -> Obj:
    prods = ctx.store.of_kind("product")
    active = as_bool(ctx.params, "active")
    if active is not None:
        prods = [p for p in prods if p["active"] == active]
    ids = as_list(ctx.params, "ids")
    if ids:
        prods = [p for p in prods if p["id"] in ids]
    prods = filter_created(prods, ctx.params)
    return paginate(
        ctx.store, prods, ctx.params, "/v1/products", lambda o: render_expanded(ctx.store, o, None)
    )


# prices ----------------------------------------------------------------------------------------
def _claim_lookup_key(store: Store, key: str, price_id: str, transfer: bool, at: int) -> None:
    for other in store.of_kind("price"):
        if other["lookup_key"] == key and other["id"] != price_id:
            if not transfer:
                raise invalid(
                    f"A price (`{other['id']}`) already uses that lookup key.", param="lookup_key"
                )
            with tracked(store, other, "price.updated", at=at):
                other["lookup_key"] = None


def new_price(store: Store, params: dict[str, Any], at: int) -> Obj:
    price = objects.price(store, now=at)
    product_id = as_str(params, "product")
    product_data = as_dict(params, "product_data")
    if product_id:
        store.require_referenced("product", product_id, "product")
    elif product_data:
        product_id = new_product(store, product_data, at)["id"]
    else:
        raise invalid("Missing required param: product.", param="product", code="parameter_missing")
    currency = as_str(params, "currency", required=True) or "usd"
    amount = as_int(params, "unit_amount")
    if amount is None:
        decimal = as_str(params, "unit_amount_decimal")
        if decimal is None:
            raise invalid(
                "Missing required param: unit_amount.",
                param="unit_amount",
                code="parameter_missing",
            )
        if not decimal.lstrip("-").isdigit():
            raise not_implemented(
                "The Stripe simulator does not implement fractional amounts (unit_amount_decimal"
                f"={decimal}): it charges whole cents only, and refuses the rest rather than "
                "round it.",
                param="unit_amount_decimal",
            )
        amount = int(decimal)
    if amount < 0:
        raise invalid("Invalid integer: must be at least 0", param="unit_amount")
    price.update(
        product=product_id,
        currency=currency.lower(),
        unit_amount=amount,
        unit_amount_decimal=str(amount),
    )
    recurring = as_dict(params, "recurring")
    if recurring:
        interval = as_str(recurring, "interval")
        if interval not in ("day", "week", "month", "year"):
            raise invalid(
                "Invalid recurring[interval]: must be one of day, week, month, or year",
                param="recurring[interval]",
            )
        count = as_int(recurring, "interval_count", param="recurring[interval_count]") or 1
        price["type"] = "recurring"
        price["recurring"] = {
            "interval": interval,
            "interval_count": count,
            "meter": None,
            "trial_period_days": as_int(recurring, "trial_period_days"),
            "usage_type": "licensed",
        }
    for key in ("nickname", "tax_behavior"):
        if key in params:
            price[key] = as_str(params, key)
    if "active" in params:
        price["active"] = bool(as_bool(params, "active"))
    price["metadata"] = merge_metadata({}, params)
    lookup_key = as_str(params, "lookup_key")
    if lookup_key:
        _claim_lookup_key(
            store, lookup_key, price["id"], bool(as_bool(params, "transfer_lookup_key")), at
        )
        price["lookup_key"] = lookup_key
    store.insert(price)
    emit(store, "price.created", price, at=at)
    return price


@router.route(
    "POST",
    "/v1/prices",
    implements=(
        "product",
        "product_data.active",
        "product_data.id",
        "product_data.metadata",
        "product_data.name",
        "product_data.statement_descriptor",
        "product_data.unit_label",
        "currency",
        "unit_amount",
        "unit_amount_decimal",
        "recurring.interval",
        "recurring.interval_count",
        "recurring.trial_period_days",
        "recurring.usage_type=licensed",
        "nickname",
        "tax_behavior",
        "active",
        "metadata",
        "lookup_key",
        "transfer_lookup_key",
        "expand",
    ),
)
def create_price(ctx: Ctx) -> Obj:
    price = new_price(ctx.store, ctx.params, ctx.store.clock_now(None))
    return render_expanded(ctx.store, price, ctx.expand)


@router.route("GET", "/v1/prices/search", implements=SEARCH_PARAMS)
def search_prices(ctx: Ctx) -> Obj:
    return search_result(ctx.store, "price", ctx.params, "/v1/prices/search")


@router.route("GET", "/v1/prices/{price_id}", implements=("expand",))
def retrieve_price(ctx: Ctx, price_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("price", price_id), ctx.expand)


@router.route(
    "POST",
    "/v1/prices/{price_id}",
    implements=("active", "nickname", "metadata", "lookup_key", "transfer_lookup_key", "expand"),
)
def update_price(ctx: Ctx, price_id: str) -> Obj:
    store, params = ctx.store, ctx.params
    price = store.require("price", price_id)
    at = store.clock_now(None)
    with tracked(store, price, "price.updated", at=at):
        if "active" in params:
            price["active"] = bool(as_bool(params, "active"))
        if "nickname" in params:
            price["nickname"] = as_str(params, "nickname") or None
        price["metadata"] = merge_metadata(price["metadata"], params)
        if "lookup_key" in params:
            key = as_str(params, "lookup_key")
            if key:
                _claim_lookup_key(
                    store, key, price_id, bool(as_bool(params, "transfer_lookup_key")), at
                )
            price["lookup_key"] = key or None
    return render_expanded(store, price, ctx.expand)


@router.route(
    "GET",
    "/v1/prices",
    implements=(
        *LIST_PARAMS,
        "active",
        "product",
        "type",
        "currency",
        "lookup_keys",
        "recurring.interval",
        "created",
    ),
)
def list_prices(ctx: Ctx) -> Obj:
    params = ctx.params
    prices = ctx.store.of_kind("price")
    active = as_bool(params, "active")
    if active is not None:
        prices = [p for p in prices if p["active"] == active]
    if params.get("product"):
        prices = [p for p in prices if p["product"] == params["product"]]
    if params.get("type"):
        prices = [p for p in prices if p["type"] == params["type"]]
    if params.get("currency"):
        prices = [p for p in prices if p["currency"] == params["currency"]]
    keys = as_list(params, "lookup_keys")
    if keys:
        prices = [p for p in prices if p["lookup_key"] in keys]
    recurring = as_dict(params, "recurring")
    if recurring.get("interval"):
        prices = [
            p
            for p in prices
            if p["recurring"] and p["recurring"]["interval"] == recurring["interval"]
        ]
    prices = filter_created(prices, params)
    return paginate(
        ctx.store, prices, params, "/v1/prices", lambda o: render_expanded(ctx.store, o, None)
    )
