"""Stripe list pagination: newest first, ``limit``, ``starting_after``, ``ending_before``,
``created[gt|gte|lt|lte]`` filters; and what search endpoints answer (``search_result``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stripe_sim.errors import invalid
from stripe_sim.params import as_int, as_str
from stripe_sim.render import expand_list, list_object, render_expanded
from stripe_sim.search import matches_query
from stripe_sim.store import Obj, Store

# What every list endpoint implements (route declarations start from these).
LIST_PARAMS = ("limit", "starting_after", "ending_before", "expand")
SEARCH_PARAMS = ("query", "limit", "page", "expand")


def candidates(
    store: Store, kind: str, params: dict[str, Any], filters: list[tuple[str, str]]
) -> list[Obj]:
    """The objects of ``kind`` a list request can return, narrowed by the first of its
    (param, field) equality ``filters`` that is given, through the store's index. The
    caller still applies every filter; this only spares looking at all objects of the kind."""
    for param, field in filters:
        value = params.get(param)
        if value and isinstance(value, str):
            return store.where(kind, field, value)
    return store.of_kind(kind)


def filter_created(objs: list[Obj], params: dict[str, Any], field: str = "created") -> list[Obj]:
    spec = params.get(field)
    if spec is None:
        return objs
    if not isinstance(spec, dict):
        value = as_int(params, field)
        return [o for o in objs if o.get(field) == value]
    checks: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op in spec:
        if op not in checks:
            raise invalid(f"Invalid {field} filter: {op}", param=f"{field}[{op}]")
        bound = as_int(spec, op, param=f"{field}[{op}]")
        assert bound is not None
        objs = [o for o in objs if checks[op](int(o.get(field, 0)), bound)]
    return objs


def paginate(
    store: Store,
    objs: list[Obj],
    params: dict[str, Any],
    url: str,
    render: Callable[[Obj], Obj],
) -> Obj:
    limit = _limit(params)
    ordered = store.newest_first(objs)
    ids = [o["id"] for o in ordered]
    after, before = params.get("starting_after"), params.get("ending_before")
    if after:
        if after not in ids:
            raise invalid(f"No such object: '{after}'", param="starting_after")
        window = ordered[ids.index(after) + 1 :]
        page, has_more = window[:limit], len(window) > limit
    elif before:
        if before not in ids:
            raise invalid(f"No such object: '{before}'", param="ending_before")
        window = ordered[: ids.index(before)]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    listing = list_object(url, [render(o) for o in page], has_more)
    return expand_list(store, listing, params.get("expand"))


def _limit(params: dict[str, Any]) -> int:
    limit = as_int(params, "limit")
    if limit is None:
        return 10
    if not 1 <= limit <= 100:
        raise invalid("Invalid limit: must be between 1 and 100", param="limit")
    return limit


def search_result(store: Store, kind: str, params: dict[str, Any], url: str) -> Obj:
    """What a search endpoint (``url``) answers: the objects of ``kind`` matching the
    ``query`` param, newest first, ``limit`` of them from the ``page`` offset."""
    query = as_str(params, "query", required=True) or ""
    found = [o for o in store.of_kind(kind) if matches_query(o, query)]
    limit = _limit(params)
    ordered = store.newest_first(found)
    start = as_int(params, "page") or 0
    page = ordered[start : start + limit]
    has_more = len(ordered) > start + limit
    result = {
        "object": "search_result",
        "data": [render_expanded(store, o, None) for o in page],
        "has_more": has_more,
        "next_page": str(start + limit) if has_more else None,
        "url": url,
    }
    return expand_list(store, result, params.get("expand"))
