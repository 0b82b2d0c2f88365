"""Strict requests: every parameter is checked against what Stripe accepts on the route
(``request_schema.json``, generated from stripe-python's ``*Params`` types by
``request_schema_gen``) and against what the simulator implements of it (each route's
``implements`` declaration), before the handler runs.

* A parameter Stripe does not know: Stripe's ``parameter_unknown``.
* A value of the wrong type, outside an enum, empty where it cannot be unset, a required one
  missing: Stripe's own errors.
* A parameter Stripe knows but the simulator does not implement (or a value of it that it
  does not implement): ``parameter_not_implemented_by_simulator``, never a silent drop.
* A route Stripe has that the simulator does not serve: ``route_not_implemented_by_simulator``;
  a URL Stripe does not have: Stripe's own "Unrecognized request URL".

A declaration names parameters with Stripe's dotted child notation (``items.price``); a name
covers everything below it; ``name=a|b`` implements only those values. Arrays are
transparent: ``items.price`` is ``items[N][price]`` for every N.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from stripe_sim.errors import StripeError, invalid, missing_param

SCHEMA_PATH = Path(__file__).with_name("request_schema.json")
NOT_IMPLEMENTED = "parameter_not_implemented_by_simulator"
ROUTE_NOT_IMPLEMENTED = "route_not_implemented_by_simulator"
_INTEGER = re.compile(r"^-?\d+$")
_PLACEHOLDER = re.compile(r"\{\w*\}")

Node = Any  # a schema node (see request_schema_gen)


def load_table() -> dict[str, Any]:
    """Route key -> {"stripe": the stripe-python method, "params": its schema node}."""
    return dict(json.loads(SCHEMA_PATH.read_text())["routes"])


def route_key(method: str, pattern: str) -> str:
    """``"POST /v1/customers/{}"``: the table's key for a route."""
    return f"{method.upper()} {_PLACEHOLDER.sub('{}', pattern)}"


# routes the simulator does not serve ---------------------------------------------------------
@dataclass(frozen=True)
class StripeRoute:
    """A route of Stripe's API, whether the simulator serves it or not."""

    method: str
    segments: tuple[str, ...]  # ("", "v1", "customers", "{}")
    regex: re.Pattern[str]
    stripe_python: str  # the method that calls it: "invoices.create"


def load_stripe_routes() -> list[StripeRoute]:
    """Every route of Stripe's API, a literal segment before a placeholder at the same place:
    ``GET /v1/customers/search`` is the search, not the retrieval of a customer "search"."""
    routes = []
    for key, stripe_python in json.loads(SCHEMA_PATH.read_text())["stripe_routes"].items():
        method, path = key.split(" ", 1)
        segments = tuple(path.split("/"))
        regex = "/".join("[^/]+" if s == "{}" else re.escape(s) for s in segments)
        routes.append(StripeRoute(method, segments, re.compile(f"^{regex}$"), stripe_python))
    return sorted(routes, key=lambda r: tuple(s == "{}" for s in r.segments))


def more_literal_routes(
    routes: list[StripeRoute], served: set[str], method: str, pattern: str
) -> list[StripeRoute]:
    """The routes the simulator does not serve that a request matching the served ``pattern``
    may mean instead, by a literal segment where the pattern has a placeholder: a request
    for ``GET /v1/invoices/search`` is Stripe's invoice search, never the retrieval of an
    invoice "search". ``served``: the route keys the simulator serves."""
    segments = route_key(method, pattern).split(" ", 1)[1].split("/")
    return [
        route
        for route in routes
        if route.method == method
        and len(route.segments) == len(segments)
        and all(
            mine in ("{}", theirs) for mine, theirs in zip(segments, route.segments, strict=True)
        )
        and route_key(method, "/".join(route.segments)) not in served
        and list(route.segments) != segments
    ]


def unserved(routes: list[StripeRoute], method: str, path: str) -> StripeError:
    """The answer to a request no route of the simulator serves. A route Stripe has is refused
    by name, so the caller knows the call is right and the simulator lacks it; any other URL
    gets Stripe's own answer for a URL it does not have."""
    for route in routes:
        if route.method == method and route.regex.match(path):
            return StripeError(
                404,
                "invalid_request_error",
                f"The Stripe simulator does not implement {method} {path} "
                f"({route.stripe_python} in stripe-python): Stripe has this route, the "
                "simulator does not serve it.",
                code=ROUTE_NOT_IMPLEMENTED,
            )
    return StripeError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


# what a route implements ---------------------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    """An implemented parameter: all of it, or only these wire values."""

    values: frozenset[str] | None = None


Declared = dict[str, "Declared | Leaf"]


def compile_declaration(specs: Iterable[str]) -> Declared:
    tree: Declared = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        *parents, last = name.split(".")
        node = tree
        for part in parents:
            child = node.setdefault(part, {})
            if isinstance(child, Leaf):
                raise ValueError(f"{spec}: {part} is already implemented whole")
            node = child
        if last in node:
            raise ValueError(f"{spec}: declared twice")
        node[last] = Leaf(frozenset(values.split("|")) if values else None)
    return tree


def undeclarable(schema: Node, declared: Declared, prefix: str = "") -> list[str]:
    """Declared names Stripe does not have on this route (a declaration must not claim what
    Stripe would refuse), and declared values outside the parameter's type."""
    problems = []
    for name, child in declared.items():
        props = _object_props(schema)
        if props is None or name not in props:
            problems.append(prefix + name)
            continue
        if isinstance(child, Leaf):
            for value in sorted(child.values or ()):
                try:
                    _scalar(props[name], value, prefix + name)
                except StripeError:
                    problems.append(f"{prefix}{name}={value}")
        else:
            problems.extend(undeclarable(props[name], child, f"{prefix}{name}."))
    return problems


# checking a request --------------------------------------------------------------------------
def conform(schema: Node, declared: Declared, params: dict[str, Any], where: str) -> dict[str, Any]:
    """The request's params, checked, with index-keyed dicts turned into lists where Stripe
    expects arrays. ``where`` (``"POST /v1/subscriptions"``) names the request in errors."""
    _unknown(schema, params, [])
    typed = _typed(schema, params, [])
    _required(schema, typed, [])
    _implemented(declared, typed, [], where)
    assert isinstance(typed, dict)
    return typed


def param_name(path: list[str]) -> str:
    """Stripe's bracketed parameter name: ``items[0][price]``."""
    return path[0] + "".join(f"[{p}]" for p in path[1:])


def _alternatives(node: Node) -> list[Node]:
    return list(node["anyOf"]) if isinstance(node, dict) and "anyOf" in node else [node]


def _kind(node: Node) -> str:
    if isinstance(node, str):
        return node
    return next(k for k in ("enum", "object", "array", "map") if k in node)


def _object_props(node: Node) -> dict[str, Node] | None:
    """The children of an object parameter (of its elements, for an array of objects)."""
    for alt in _alternatives(node):
        if _kind(alt) == "object":
            return dict(alt["object"])
        if _kind(alt) == "array":
            return _object_props(alt["array"])
    return None


def _is_index_dict(value: dict[str, Any]) -> bool:
    return bool(value) and all(k.isdigit() for k in value)


def _container(node: Node, value: dict[str, Any]) -> Node | None:
    """Which alternative of ``node`` a nested (dict) value is read as."""
    by_kind = {_kind(alt): alt for alt in _alternatives(node)}
    if "array" in by_kind and (_is_index_dict(value) or not value):
        return by_kind["array"]
    for kind in ("object", "map", "array"):
        if kind in by_kind:
            return by_kind[kind]
    return None


def _unknown(node: Node, value: Any, path: list[str]) -> None:
    if not isinstance(value, dict):
        return
    alt = _container(node, value)
    if alt is None:
        return  # a scalar was expected: a type error, reported by _typed
    kind = _kind(alt)
    for key, child in value.items():
        if kind == "object":
            props = alt["object"]
            if key not in props:
                name = param_name([*path, key])
                raise invalid(
                    f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
                )
            _unknown(props[key], child, [*path, key])
        elif kind == "array":
            _unknown(alt["array"], child, [*path, key])
        else:
            _unknown(alt["map"], child, [*path, key])


def _typed(node: Node, value: Any, path: list[str]) -> Any:
    name = param_name(path) if path else ""
    if isinstance(value, str):
        return _scalar(node, value, name)
    alt = _container(node, value)
    if alt is None:
        raise _type_error(node, json.dumps(value), name)
    kind = _kind(alt)
    if kind == "object":
        return {k: _typed(alt["object"][k], v, [*path, k]) for k, v in value.items()}
    if kind == "map":
        # An empty value unsets that key (metadata[key]=""), whatever the values' type.
        return {k: v if v == "" else _typed(alt["map"], v, [*path, k]) for k, v in value.items()}
    if value and not _is_index_dict(value):
        raise invalid("Invalid array", param=name)
    return [_typed(alt["array"], value[k], [*path, k]) for k in sorted(value, key=int)]


def _scalar(node: Node, value: str, name: str) -> str:
    alternatives = _alternatives(node)
    if value == "":
        if {"enum": [""]} in alternatives:
            return value
        raise invalid(
            f"You passed an empty string for '{name}'. We assume empty values are an attempt "
            f"to unset a parameter; however '{name}' cannot be unset. You should remove "
            f"'{name}' from your request or supply a non-empty value.",
            param=name,
            code="parameter_invalid_empty",
        )
    for alt in alternatives:
        kind = _kind(alt)
        if (
            kind == "string"
            or (kind == "enum" and value in alt["enum"])
            or (kind == "integer" and _INTEGER.match(value))
            or (kind == "boolean" and value in ("true", "false"))
            or (kind in ("number", "decimal") and _is_number(value))
        ):
            return value
    raise _type_error(node, value, name)


def _is_number(value: str) -> bool:
    try:
        return Decimal(value).is_finite()
    except InvalidOperation:
        return False


def _type_error(node: Node, shown: str, name: str) -> StripeError:
    kinds = [_kind(alt) for alt in _alternatives(node)]
    if "integer" in kinds:
        return invalid(f"Invalid integer: {shown}", param=name, code="parameter_invalid_integer")
    if "boolean" in kinds:
        return invalid(f"Invalid boolean: {shown}", param=name)
    if "number" in kinds or "decimal" in kinds:
        return invalid(f"Invalid decimal: {shown}", param=name)
    if "string" in kinds:
        return invalid(f"Invalid string: {shown}", param=name)
    allowed = [v for alt in _alternatives(node) if _kind(alt) == "enum" for v in alt["enum"] if v]
    if allowed:
        return invalid(f"Invalid {name}: must be one of {_one_of(allowed)}", param=name)
    if "array" in kinds:
        return invalid("Invalid array", param=name)
    return invalid("Invalid hash", param=name)


def _one_of(values: list[str]) -> str:
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return f"{values[0]} or {values[1]}"
    return ", ".join(values[:-1]) + f", or {values[-1]}"


def _required(node: Node, value: Any, path: list[str]) -> None:
    if isinstance(value, list):
        alt = next(a for a in _alternatives(node) if _kind(a) == "array")
        for index, item in enumerate(value):
            _required(alt["array"], item, [*path, str(index)])
        return
    if not isinstance(value, dict):
        return
    alt = _container(node, value)
    assert alt is not None
    if _kind(alt) == "map":
        for key, item in value.items():
            _required(alt["map"], item, [*path, key])
        return
    for key in alt.get("required", ()):
        if key not in value:
            raise missing_param(param_name([*path, key]))
    for key, item in value.items():
        _required(alt["object"][key], item, [*path, key])


def _implemented(declared: Declared, value: Any, path: list[str], where: str) -> None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            _implemented(declared, item, [*path, str(index)], where)
        return
    if not isinstance(value, dict):
        return  # "" on a partly implemented object: unsetting it is implemented
    for key, item in value.items():
        child = declared.get(key)
        name = param_name([*path, key])
        if child is None:
            raise not_implemented(
                f"The Stripe simulator does not implement the parameter {name} on {where}. "
                "Stripe accepts it; the simulator refuses it rather than ignore it.",
                param=name,
            )
        if isinstance(child, Leaf):
            if child.values is not None and not (isinstance(item, str) and item in child.values):
                shown = item if isinstance(item, str) else json.dumps(item)
                raise not_implemented(
                    f"The Stripe simulator does not implement {name}={shown} on {where} "
                    f"(it implements {_one_of(sorted(child.values))}). Stripe accepts it; the "
                    "simulator refuses it rather than ignore it.",
                    param=name,
                )
            continue
        _implemented(child, item, [*path, key], where)


def not_implemented(message: str, *, param: str | None = None) -> StripeError:
    """A 400 for something Stripe does that the simulator does not (yet)."""
    return StripeError(400, "invalid_request_error", message, code=NOT_IMPLEMENTED, param=param)
