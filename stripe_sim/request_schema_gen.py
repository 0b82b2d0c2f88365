"""Write ``request_schema.json``: what Stripe accepts on every route the simulator serves,
taken from stripe-python's ``*Params`` TypedDicts (generated from Stripe's OpenAPI spec at the
pinned API version), and every route of Stripe's API, served or not, with the stripe-python
method that calls it (so that a route the simulator lacks is refused by name).

    python -m stripe_sim.request_schema_gen          # rewrite the table
    python -m stripe_sim.request_schema_gen --check  # exit 1 when it is out of date

The table is checked in rather than built when the simulator starts because: the simulator
stays free of stripe-python at run time; evaluating the generated TypedDicts needs workarounds
(names imported only under ``TYPE_CHECKING``, forward references) that a new stripe-python may
break, and that should break here, in a script, not in every simulator start; and a library
upgrade shows up as a reviewable diff of what Stripe added or changed. A test regenerates the
table in memory and compares, so it cannot drift from the installed stripe-python.

``"routes"`` holds the served routes' schemas; ``"stripe_routes"`` maps every route to its
stripe-python method as reached from ``StripeClient.v1`` (``"POST /v1/invoices":
"invoices.create"``). Schema nodes (JSON):
``"string" | "integer" | "boolean" | "number" | "decimal"`` scalars;
``{"enum": [...]}`` the wire values allowed (``[""]`` is "unset it");
``{"object": {name: node}, "required": [...]}``; ``{"array": node}``; ``{"map": node}``
(string keys, like ``metadata``); ``{"anyOf": [node, ...]}``.
stripe-python writes every enum as ``Literal[...]|str`` so that new values do not break old
clients; Stripe's API refuses values outside the enum, so the ``str`` is dropped here.
"""

from __future__ import annotations

import ast
import decimal
import importlib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typing_extensions

from stripe_sim.request_schema import SCHEMA_PATH, route_key
from stripe_sim.schema_tables import write_or_check


def build_table() -> dict[str, Any]:
    """The table for the routes the simulator serves (read from its routers)."""
    import stripe

    from stripe_sim.app import served_routes

    endpoints = stripe_endpoints()
    table: dict[str, Any] = {}
    missing = []
    for method, pattern in served_routes():
        key = route_key(method, pattern)
        found = endpoints.get(key)
        if found is None:
            missing.append(key)
            continue
        source, params_class = found
        table[key] = {"stripe": source, "params": typed_dict_node(params_class, top=True)}
    if missing:
        raise SystemExit(f"routes Stripe does not have (no stripe-python method): {missing}")
    return {
        "stripe_python": stripe.VERSION,
        "api_version": stripe.api_version,
        "routes": dict(sorted(table.items())),
        "stripe_routes": stripe_route_names(),
    }


def stripe_route_names() -> dict[str, str]:
    """Every route of Stripe's v1 API -> the stripe-python method that calls it, named by the
    path from ``StripeClient.v1`` (``customers.tax_ids.create``): the walk follows each
    service's ``_subservices``, which is how the client reaches them. A route two methods call
    (a legacy one beside its sub-service) names both."""
    names: dict[str, list[str]] = {}

    def walk(module_name: str, class_name: str, prefix: str) -> None:
        module = importlib.import_module(module_name)
        tree = ast.parse(Path(str(module.__file__)).read_text())
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name):
            for func in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                endpoint = _endpoint_of(func)
                if endpoint is not None:
                    names.setdefault(route_key(*endpoint), []).append(prefix + func.name)
        for attr, (sub_module, sub_class) in sorted(getattr(module, "_subservices", {}).items()):
            walk(sub_module, sub_class, f"{prefix}{attr}.")

    walk("stripe._v1_services", "V1Services", "")
    return {key: " or ".join(sorted(found)) for key, found in sorted(names.items())}


# stripe-python's service methods: which HTTP route each sends, with which *Params class -------
def stripe_endpoints() -> dict[str, tuple[str, type]]:
    import stripe

    root = Path(stripe.__file__).parent
    found: dict[str, tuple[str, type]] = {}
    for file in sorted(root.rglob("_*_service.py")):
        if "v2" in file.relative_to(root).parts:
            continue  # API v2: other conventions (JSON bodies), nothing the simulator serves
        module = ".".join(("stripe", *file.relative_to(root).with_suffix("").parts))
        tree = ast.parse(file.read_text())
        imports = {
            alias.asname or alias.name: node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names
        }
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for func in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                endpoint = _endpoint_of(func)
                params_name = _params_class_of(func)
                if endpoint is None or params_name is None:
                    continue
                params_module = imports.get(params_name)
                if params_module is None:
                    raise SystemExit(f"{module}.{cls.name}.{func.name}: {params_name} not imported")
                params_class = getattr(__import__(params_module, fromlist=["_"]), params_name)
                key = route_key(*endpoint)
                source = f"{cls.name}.{func.name} ({params_name})"
                if key in found and found[key][1] is not params_class:
                    # Two services, one route (a sub-service and a legacy method): they must
                    # agree on what the route accepts.
                    if typed_dict_node(found[key][1], top=True) != typed_dict_node(
                        params_class, top=True
                    ):
                        raise SystemExit(f"{key}: {found[key][0]} and {source} disagree")
                    continue
                found.setdefault(key, (source, params_class))
    return found


def _endpoint_of(func: ast.FunctionDef) -> tuple[str, str] | None:
    for node in ast.walk(func):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("_request", "_request_stream")  # stream: PDF downloads
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Constant)
        ):
            path = node.args[1]
            if isinstance(path, ast.Call) and isinstance(path.func, ast.Attribute):
                path = path.func.value  # "/v1/customers/{customer}".format(...)
            if isinstance(path, ast.Constant) and isinstance(path.value, str):
                return str(node.args[0].value), path.value
    return None


def _params_class_of(func: ast.FunctionDef) -> str | None:
    for arg in func.args.args + func.args.kwonlyargs:
        if arg.arg == "params" and arg.annotation is not None:
            found = re.search(r"(\w+Params)\b", ast.unparse(arg.annotation))
            return found.group(1) if found else None
    return None


# TypedDicts -> schema nodes ---------------------------------------------------------------------
def _request_option_keys() -> set[str]:
    from stripe._request_options import RequestOptions

    return set(RequestOptions.__annotations__)


def _hints(td: type, top: bool) -> dict[str, Any]:
    """The evaluated annotations of a TypedDict. Top-level params classes inherit
    stripe-python's RequestOptions (api_key, idempotency_key...): client options, not API
    parameters, and typed with names that exist only for type checkers, so they are left out
    before evaluating."""
    annotations = dict(td.__annotations__)
    if top:
        for key in _request_option_keys():
            annotations.pop(key, None)
    shim = type("_Hints", (), {"__annotations__": annotations, "__module__": td.__module__})
    return typing_extensions.get_type_hints(shim, include_extras=True)


def typed_dict_node(td: type, top: bool = False, stack: tuple[type, ...] = ()) -> dict[str, Any]:
    if td in stack:
        raise SystemExit(f"recursive params type {td.__name__}: not supported by the table")
    hints = _hints(td, top)
    required = sorted(k for k in td.__required_keys__ if k in hints)  # type: ignore[attr-defined]
    node: dict[str, Any] = {
        "object": {name: type_node(hint, (*stack, td)) for name, hint in sorted(hints.items())}
    }
    if required:
        node["required"] = required
    return node


def type_node(tp: Any, stack: tuple[type, ...]) -> Any:
    origin, args = typing_extensions.get_origin(tp), typing_extensions.get_args(tp)
    if origin in (typing_extensions.NotRequired, typing_extensions.Required):
        return type_node(args[0], stack)
    scalars = {str: "string", int: "integer", bool: "boolean", float: "number"}
    if tp in scalars:
        return scalars[tp]
    if tp is decimal.Decimal:
        return "decimal"
    if origin is typing_extensions.Literal or origin is typing.Literal:
        return {"enum": [_wire(v) for v in args]}
    if origin in (typing.Union, types.UnionType):
        return _union([type_node(a, stack) for a in args])
    if origin is list:
        return {"array": type_node(args[0], stack)}
    if origin is dict:
        return {"map": type_node(args[1], stack)}
    if origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject":
        return {"map": type_node(args[0], stack)}
    if typing_extensions.is_typeddict(tp):
        return typed_dict_node(tp, stack=stack)
    raise SystemExit(f"unsupported type in stripe-python params: {tp!r}")


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _union(alternatives: list[Any]) -> Any:
    unique: list[Any] = []
    for alt in alternatives:
        if alt not in unique:
            unique.append(alt)
    enums = [a for a in unique if isinstance(a, dict) and "enum" in a and a["enum"] != [""]]
    if enums and "string" in unique:
        unique.remove("string")  # ``Literal[...]|str``: the enum, open only in the client
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def main(argv: list[str] | None = None) -> int:
    return write_or_check(
        SCHEMA_PATH, build_table, "stripe_sim.request_schema_gen", __doc__.split("\n\n")[0], argv
    )


if __name__ == "__main__":
    sys.exit(main())
