"""Decode Stripe's form encoding (``items[0][price]=x&metadata[k]=v&expand[]=y``).

stripe-python sends nested dicts as ``a[b]``, lists as ``a[0]`` (older clients and curl users
send ``a[]``). Everything is decoded into plain dicts/lists of strings; handlers convert types.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from stripe_sim.errors import invalid

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def decode(raw: str | bytes, *, listify: bool = True) -> dict[str, Any]:
    """The params as nested dicts. With ``listify``, dicts keyed 0..n become lists; without,
    they are left for the caller, which knows where Stripe expects arrays (request_schema)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            raise invalid(f"Invalid parameter name: {key}")
        parts = [match.group(1), *_PART.findall(match.group(2))]
        _assign(root, parts, value)
    return _listify(root) if listify else root


def _assign(node: dict[str, Any], parts: list[str], value: str) -> None:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "":
            # "a[]": append a fresh slot, numbered after what is there already.
            part = str(_next_index(node))
        if last:
            node[part] = value
            return
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child


def _next_index(node: dict[str, Any]) -> int:
    numbers = [int(k) for k in node if k.isdigit()]
    return max(numbers) + 1 if numbers else 0


def _listify(value: Any) -> Any:
    """Turn dicts whose keys are all indices into lists, ordered by index."""
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
