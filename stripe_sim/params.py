"""Typed reads from decoded form params, failing with Stripe's ``invalid_request_error``."""

from __future__ import annotations

from typing import Any

from stripe_sim.errors import invalid, missing_param


def as_str(params: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise missing_param(key)
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", param=key)
    return value


def as_int(
    params: dict[str, Any], key: str, *, param: str | None = None, required: bool = False
) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise missing_param(param or key)
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", param=param or key) from None


def as_bool(params: dict[str, Any], key: str) -> bool | None:
    value = params.get(key)
    if value is None:
        return None
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise invalid(f"Invalid boolean: {value}", param=key)


def as_list(params: dict[str, Any], key: str) -> list[Any]:
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        # Sparse or odd indices (``a[5]=x``) arrive as a dict of index -> value.
        return [value[k] for k in sorted(value, key=lambda k: int(k) if k.isdigit() else 0)]
    return [value]


def as_dict(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = params.get(key)
    if value is None or value == "":
        return {}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {key}", param=key)
    return value


def merge_metadata(
    current: dict[str, str], params: dict[str, Any], key: str = "metadata"
) -> dict[str, str]:
    """Stripe's metadata update: keys merge, an empty value unsets a key, ``metadata=""``
    clears everything."""
    if key not in params:
        return current
    if params[key] == "":
        return {}
    merged = dict(current)
    for k, v in as_dict(params, key).items():
        if not isinstance(v, str):
            raise invalid("Metadata values must be strings.", param=f"{key}[{k}]")
        if v == "":
            merged.pop(k, None)
        else:
            if len(merged) >= 50 and k not in merged:
                raise invalid("Metadata can have at most 50 keys.", param=key)
            merged[k] = v
    return merged
