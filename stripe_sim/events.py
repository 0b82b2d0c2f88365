"""Event creation: the envelope Stripe sends and lists (``/v1/events``).

``created`` is the time at which the change happened for the object, i.e. its test clock's
time when it lives on a clock. ``data.object`` is a snapshot taken at emission.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stripe_sim.render import render
from stripe_sim.store import Obj, Store


def endpoint_wants(endpoint: Obj, event_type: str) -> bool:
    if endpoint.get("status") != "enabled":
        return False
    wanted = endpoint.get("enabled_events") or []
    return "*" in wanted or event_type in wanted


def emit(
    store: Store,
    event_type: str,
    obj: Obj,
    *,
    previous_attributes: dict[str, Any] | None = None,
    at: int | None = None,
    snapshot: Obj | None = None,
) -> Obj:
    data: dict[str, Any] = {"object": snapshot if snapshot is not None else render(store, obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    endpoints = [e for e in store.of_kind("webhook_endpoint") if endpoint_wants(e, event_type)]
    event: Obj = {
        "id": store.new_id("evt_"),
        "object": "event",
        "api_version": store.settings.api_version,
        "context": None,
        "created": at if at is not None else store.now_for(obj),
        "data": data,
        "livemode": False,
        "pending_webhooks": len(endpoints),
        "request": {"id": store.request.id, "idempotency_key": store.request.idempotency_key},
        "type": event_type,
        "_endpoint_ids": [e["id"] for e in endpoints],
    }
    if store.event_buffer is not None:
        store.event_buffer.append(event)
    else:
        publish(store, event)
    return event


def publish(store: Store, event: Obj) -> None:
    store.insert(event)
    for listener in store.event_listeners:
        listener(event)


@contextmanager
def buffered(store: Store) -> Iterator[list[Obj]]:
    """Collect events instead of publishing them, so a multi-step operation can publish them
    in Stripe's order (or drop them when the operation is rolled back)."""
    outer = store.event_buffer
    buffer: list[Obj] = []
    store.event_buffer = buffer
    try:
        yield buffer
    finally:
        store.event_buffer = outer


def type_matches(event_type: str, pattern: str) -> bool:
    """``type`` filters accept ``*`` wildcards, e.g. ``invoice.*``."""
    return fnmatch.fnmatchcase(event_type, pattern)


def previous_attributes(before: Obj, after: Obj) -> dict[str, Any]:
    """Top-level values that changed, as they were before (Stripe's ``previous_attributes``)."""
    keys = sorted(set(before) | set(after))
    return {k: before.get(k) for k in keys if before.get(k) != after.get(k)}


@contextmanager
def tracked(
    store: Store,
    obj: Obj,
    event_type: str,
    *,
    at: int | None = None,
) -> Iterator[None]:
    """Emit ``event_type`` with ``previous_attributes`` if the block changed the object."""
    before = render(store, obj)
    yield
    after = render(store, obj)
    changed = previous_attributes(before, after)
    if changed:
        emit(store, event_type, obj, previous_attributes=changed, at=at, snapshot=after)
