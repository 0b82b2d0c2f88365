"""Write ``response_schema.json``: every field Stripe sends on each object the simulator renders,
taken from stripe-python's resource classes (generated from Stripe's OpenAPI spec at the pinned
API version), nested objects included.

    python -m stripe_sim.response_schema_gen          # rewrite the table
    python -m stripe_sim.response_schema_gen --check  # exit 1 when it is out of date

The simulator does not read the table; ``tests/stripe_sim/test_response_fields.py`` does, to check
that every object it returns carries exactly these fields. It is checked in (like
``request_schema.json``) rather than introspected inside the test so that a stripe-python upgrade
shows up as a readable diff of the fields Stripe added or removed, and the workarounds needed to
evaluate the SDK's annotations (names imported only under ``TYPE_CHECKING``) break here, in one
script. A test regenerates the table in memory and compares, so it cannot go stale.

Field nodes (JSON):
``"value"`` a scalar, or anything not checked deeper (unions, untyped hashes);
``{"object": {name: node}}`` a nested object (an inner class of the resource), with
``"by_type": [...]`` on hashes that send only the sub-hash of their own ``type`` (``TYPE_KEYED``)
and ``"sparse": true`` on hashes that send only the fields that apply (``SPARSE``);
``{"resource": "price"}`` a whole object of another type, rendered inline;
``{"expandable": "customer"}`` an id, or that object when expanded;
``{"list": "line_item"}`` a list object (``{"object": "list", "data": [...]}``) of that type;
``{"array": node}``; ``{"map": node}`` (string keys, like ``metadata``).
Nullability is not recorded: the checks are about which fields exist, not their values.

stripe-python declares some fields that Stripe leaves out of an object unless asked for them;
they are listed per type under ``"omitted"`` (see ``NOT_RENDERED_BY_DEFAULT``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typing_extensions

from stripe_sim.schema_tables import write_or_check

SCHEMA_PATH = Path(__file__).with_name("response_schema.json")

# The object types the simulator renders (the ``object`` of what its routes return, its events'
# ``data.object`` and what those embed). Types these reach inline are added by the generator.
RENDERED = (
    "account",
    "billing_portal.session",
    "checkout.session",
    "coupon",
    "customer",
    "discount",
    "event",
    "invoice",
    "invoice_payment",
    "invoiceitem",
    "item",
    "line_item",
    "payment_intent",
    "payment_method",
    "plan",
    "price",
    "product",
    "promotion_code",
    "subscription",
    "subscription_item",
    "subscription_schedule",
    "tax_id",
    "tax_rate",
    "test_helpers.test_clock",
    "webhook_endpoint",
)

# stripe-python types every field Stripe's OpenAPI spec has, sent or not; it does not say which
# ones Stripe leaves out. These are left out (dotted paths inside the object): fields sent only
# when asked (Stripe's reference marks them "includable": returned with ``expand[]``), only on a
# deleted object (``deleted``: that has its own shape, ``{id, object, deleted: true}``), only in
# the create response (a webhook endpoint's ``secret``), or only on ``*.updated`` events
# (``previous_attributes``). An object without them is complete.
NOT_RENDERED_BY_DEFAULT: dict[str, tuple[str, ...]] = {
    "*": ("deleted",),
    "webhook_endpoint": ("secret",),
    "event": ("account", "data.previous_attributes"),  # account: Connect events only
    "plan": ("tiers",),
    "customer": (
        "cash_balance",
        "invoice_credit_balance",
        "sources",
        "subscriptions",
        "tax",
        "tax_ids",
    ),
    "price": ("currency_options", "tiers"),
    # Includable like a price's (per-currency amounts); the simulator has no multi-currency.
    "coupon": ("currency_options",),
    "promotion_code": ("restrictions.currency_options",),
    "checkout.session": ("line_items", "total_details.breakdown"),
    "item": ("discounts", "taxes"),  # a Checkout line item's: includable
    # What only a Connect platform sees of the accounts it controls; the simulator serves its
    # own account.
    "account": (
        "company",
        "external_accounts",
        "future_requirements",
        "groups",
        "individual",
        "requirements",
        "tos_acceptance",
    ),
}

# Hashes that carry one sub-hash per ``type`` and send only the one of their own type (a card
# payment method has ``card`` and no ``sepa_debit: null``); the table lists them under
# ``"by_type"``.
TYPE_KEYED = (
    "payment_method",
    "payment_intent.next_action",
    "invoice_payment.payment",
    "invoice.issuer",  # {"type": "self"}; "account" only when type is account
    "subscription.invoice_settings.issuer",
    "subscription_schedule.default_settings.invoice_settings.issuer",
)

# Hashes Stripe sends sparse (only the fields that apply): API error objects such as
# ``last_payment_error``, a test clock's ``status_details`` (``{}`` unless advancing), the
# ``payment_method_options`` keyed by payment method type (``{}``: none configured). Only
# unknown fields are checked there; the table marks them ``"sparse"``.
SPARSE = (
    "payment_intent.last_payment_error",
    "test_helpers.test_clock.status_details",
    "payment_intent.payment_method_options",  # one hash per configured payment method type
    "checkout.session.payment_method_options",
    "account.capabilities",  # the requested capabilities only
    "account.controller",  # its details only for accounts a platform controls
    "account.settings",  # the settings of the products the account uses
)


def build_table() -> dict[str, Any]:
    import stripe
    from stripe._object_classes import OBJECT_CLASSES

    table: dict[str, Any] = {}
    todo = list(RENDERED)
    while todo:
        name = todo.pop()
        if name in table:
            continue
        module_name, class_name = OBJECT_CLASSES[name]
        cls = getattr(importlib.import_module(module_name), class_name)
        refs: set[str] = set()
        node = object_node(cls, refs, name)
        omitted = [f for f in NOT_RENDERED_BY_DEFAULT["*"] if f in node["object"]]
        for path in NOT_RENDERED_BY_DEFAULT.get(name, ()):
            if _find(node, path) is None:
                raise SystemExit(f"{name}.{path}: no such field in stripe-python")
            omitted.append(path)
        table[name] = {"class": f"{module_name}.{class_name}", **node}
        if omitted:
            table[name]["omitted"] = sorted(omitted)
        todo.extend(sorted(refs - set(table)))
    return {
        "stripe_python": stripe.VERSION,
        "api_version": stripe.api_version,
        "objects": dict(sorted(table.items())),
    }


def _namespace(cls: type) -> dict[str, Any]:
    """The module's globals plus the names it imports only for type checkers."""
    module = sys.modules[cls.__module__]
    ns = dict(vars(module))
    tree = ast.parse(Path(module.__file__ or "").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) not in ns:
                    imported = importlib.import_module(node.module)
                    ns[alias.asname or alias.name] = getattr(imported, alias.name)
    return ns


def _find(node: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node.get("object", {}):
            return None
        node = node["object"][part]
    return node


def object_node(cls: type, refs: set[str], path: str) -> dict[str, Any]:
    annotations = {k: v for k, v in inspect.get_annotations(cls).items() if k != "OBJECT_NAME"}
    shim = type("_Hints", (), {"__annotations__": annotations, "__module__": cls.__module__})
    hints = typing_extensions.get_type_hints(shim, globalns=_namespace(cls))
    fields = {name: type_node(hint, refs, f"{path}.{name}") for name, hint in sorted(hints.items())}
    node: dict[str, Any] = {"object": fields}
    if path in TYPE_KEYED:
        # The names are the ``type`` enum's values; a plain ``str`` type (next_action) means
        # every other field is one type's.
        enum = typing_extensions.get_args(_strip_optional(hints["type"])) or tuple(fields)
        node["by_type"] = sorted(
            t for t in enum if isinstance(t, str) and t in fields and t != "type"
        )
        if not node["by_type"]:
            raise SystemExit(f"{path}: no fields named after its types")
    if path in SPARSE:
        node["sparse"] = True
    return node


def _strip_optional(tp: Any) -> Any:
    args = [a for a in typing_extensions.get_args(tp) if a is not type(None)]
    origin = typing_extensions.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    if origin in (typing.Union, types.UnionType):  # Union[Literal[...], str]
        return next(a for a in args if typing_extensions.get_origin(a) is typing.Literal)
    return tp


def _object_name(tp: Any) -> str | None:
    name = getattr(tp, "OBJECT_NAME", None)
    return name if isinstance(name, str) else None


def type_node(tp: Any, refs: set[str], path: str) -> Any:
    from stripe._stripe_object import StripeObject

    origin, args = typing_extensions.get_origin(tp), typing_extensions.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        alternatives = [a for a in args if a is not type(None)]
        if len(alternatives) == 1:
            return type_node(alternatives[0], refs, path)
        return "value"
    origin_name = getattr(origin, "__name__", "")
    if origin_name == "ExpandableField":
        inner = [a for a in typing_extensions.get_args(args[0]) or args if a is not type(None)]
        name = _object_name(inner[0]) if len(inner) == 1 else None
        if name is not None:  # checked when expanded, if its type is in the table
            return {"expandable": name}
        return "value"
    if origin_name == "ListObject":
        name = _object_name(args[0])
        if name is not None:
            refs.add(name)
        return {"list": name}
    if origin_name == "UntypedStripeObject":
        return {"map": type_node(args[0], refs, path)}
    if origin is list:
        return {"array": type_node(args[0], refs, path)}
    if isinstance(tp, type) and issubclass(tp, StripeObject):
        name = _object_name(tp)
        if name is not None:
            refs.add(name)
            return {"resource": name}
        return object_node(tp, refs, path)
    return "value"


def main(argv: list[str] | None = None) -> int:
    return write_or_check(
        SCHEMA_PATH, build_table, "stripe_sim.response_schema_gen", __doc__.split("\n\n")[0], argv
    )


if __name__ == "__main__":
    sys.exit(main())
