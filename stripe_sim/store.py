"""In-memory state: every Stripe object by id, id generation, time, idempotency records.

Objects are plain dicts in their public Stripe shape. Keys starting with ``_`` are the
simulator's own bookkeeping and are never rendered. One re-entrant lock guards everything:
API requests, clock advances, the real-time ticker and page handlers all take it.
"""

from __future__ import annotations

import io
import itertools
import pickle
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stripe_sim.errors import no_such, no_such_referenced
from stripe_sim.settings import SimulatorSettings

Obj = dict[str, Any]

_ALPHABET = string.ascii_letters + string.digits

# Human names used in "No such ..." errors, keyed by the object's ``object`` field.
_KIND_NAMES = {
    "test_helpers.test_clock": "test clock",
    "checkout.session": "checkout session",
    "billing_portal.session": "billing portal session",
    "payment_method": "PaymentMethod",
    "payment_intent": "payment_intent",
    "webhook_endpoint": "webhook endpoint",
    "subscription_item": "subscription item",
    "tax_rate": "tax rate",
    "tax_id": "tax ID",
}

# Fields an object keeps for life (Stripe never moves a subscription, invoice or invoice item
# to another customer, test clock or subscription), indexed because lookups by them run on
# every write: the due-work scan of a clock's objects, a subscription's invoices, the
# filtered list endpoints. Keeping the index exact needs no more than that immutability.
_INDEXED_FIELDS = {
    "subscription": ("customer", "test_clock"),
    "invoice": ("customer", "test_clock", "_subscription"),
    "invoiceitem": ("_subscription",),
    "subscription_schedule": ("customer", "test_clock"),
}


# What a Store holds for this process only (and its index, rebuilt from the objects), never
# saved: everything else it holds is Stripe's state, saved whole (`snapshot`), so whatever a
# module adds to the store is kept too.
_PROCESS_ATTRIBUTES = frozenset(
    {"settings", "lock", "request", "event_listeners", "event_buffer", "base_url", "_index"}
)
_COUNT_REPR = re.compile(r"count\((-?\d+)\)")


class _SnapshotPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        # Pickling an itertools.count is deprecated from Python 3.12; its repr is not.
        if isinstance(obj, itertools.count):
            found = _COUNT_REPR.fullmatch(repr(obj))
            if found is None:
                raise pickle.PicklingError(f"only unit-step counters are saved: {obj!r}")
            return itertools.count, (int(found.group(1)),)
        return NotImplemented


def _empty_index() -> dict[tuple[str, str], dict[Any, dict[str, Obj]]]:
    return {(kind, field): {} for kind, fields in _INDEXED_FIELDS.items() for field in fields}


@dataclass
class IdempotentResult:
    """The first result of a POST with an ``Idempotency-Key``, replayed to retries."""

    path: str
    fingerprint: str  # of the request's parameters
    status: int
    body: bytes
    request_id: str
    saved_at: float  # wall-clock time


@dataclass
class RequestInfo:
    """Which API request caused the events being emitted (``event.request``)."""

    id: str | None = None
    idempotency_key: str | None = None


class Store:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.objects: dict[str, Obj] = {}
        self._kinds: dict[str, list[str]] = {}
        # (kind, field) -> field value -> the objects with that value, in insertion order.
        self._index: dict[tuple[str, str], dict[Any, dict[str, Obj]]] = _empty_index()
        self._seq = itertools.count(1)
        self.idempotency: dict[str, IdempotentResult] = {}
        self.request = RequestInfo()
        # Called with every new event (the webhook dispatcher subscribes here).
        self.event_listeners: list[Callable[[Obj], None]] = []
        self.invoice_numbers = itertools.count(1)
        # When set, events.emit collects new events here instead of publishing them.
        self.event_buffer: list[Obj] | None = None
        # Public base URL of the simulator, for hosted pages (set by the server).
        self.base_url = "http://127.0.0.1:12111"

    # saved state -----------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Stripe's state (objects, counters, idempotency records) as bytes that `restore`
        reads back. Pickle takes whatever the store holds, a dict held twice staying one dict,
        with no shape per type to keep up; it also runs code from what it loads, so restore
        only the simulator's own snapshots."""
        state = {k: v for k, v in vars(self).items() if k not in _PROCESS_ATTRIBUTES}
        buffer = io.BytesIO()
        with self.lock:
            _SnapshotPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
        return buffer.getvalue()

    def restore(self, snapshot: bytes) -> None:
        with self.lock:
            vars(self).update(pickle.loads(snapshot))
            # Rebuilt, not saved: the code restoring may index kinds the saving code did not.
            self._index = _empty_index()
            for obj in self.objects.values():
                self._add_to_index(obj)

    # ids -----------------------------------------------------------------------------------
    @staticmethod
    def new_id(prefix: str, length: int = 24) -> str:
        return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))

    # objects -------------------------------------------------------------------------------
    def insert(self, obj: Obj) -> Obj:
        obj["_seq"] = next(self._seq)
        self.objects[obj["id"]] = obj
        self._kinds.setdefault(obj["object"], []).append(obj["id"])
        self._add_to_index(obj)
        return obj

    def _add_to_index(self, obj: Obj) -> None:
        for field in _INDEXED_FIELDS.get(obj["object"], ()):
            self._index[obj["object"], field].setdefault(obj[field], {})[obj["id"]] = obj

    def get(self, object_id: Any, kind: str | None = None) -> Obj | None:
        if not isinstance(object_id, str):
            return None
        obj = self.objects.get(object_id)
        if obj is None or (kind is not None and obj["object"] != kind):
            return None
        return obj

    def require(self, kind: str, object_id: Any) -> Obj:
        """The object the URL names; Stripe's 404 if there is none."""
        obj = self._live(kind, object_id)
        if obj is None:
            raise no_such(_KIND_NAMES.get(kind, kind), str(object_id))
        return obj

    def require_referenced(self, kind: str, object_id: Any, param: str) -> Obj:
        """The object the request parameter ``param`` names; a 400 naming it if there is
        none."""
        obj = self._live(kind, object_id)
        if obj is None:
            raise no_such_referenced(_KIND_NAMES.get(kind, kind), str(object_id), param)
        return obj

    def _live(self, kind: str, object_id: Any) -> Obj | None:
        obj = self.get(object_id, kind)
        return None if obj is None or obj.get("_deleted") else obj

    def of_kind(self, kind: str) -> list[Obj]:
        return [
            self.objects[i]
            for i in self._kinds.get(kind, [])
            if i in self.objects and not self.objects[i].get("_deleted")
        ]

    def where(self, kind: str, field: str, value: Any) -> list[Obj]:
        """``of_kind(kind)`` restricted to ``obj[field] == value``, in the same order, without
        looking at the other objects; ``field`` must be one of ``_INDEXED_FIELDS``."""
        matching = self._index[kind, field].get(value, {})
        return [obj for obj in matching.values() if not obj.get("_deleted")]

    def remove(self, object_id: str) -> None:
        obj = self.objects.pop(object_id, None)
        if obj is not None:
            self._kinds[obj["object"]].remove(object_id)
            for field in _INDEXED_FIELDS.get(obj["object"], ()):
                del self._index[obj["object"], field][obj[field]][object_id]

    # time ----------------------------------------------------------------------------------
    def clock_now(self, clock_id: str | None) -> int:
        """The current time for objects on ``clock_id`` (wall clock when there is none)."""
        if clock_id:
            clock = self.objects.get(clock_id)
            if clock is not None:
                return int(clock["frozen_time"])
        return int(time.time())

    def clock_of(self, obj: Obj) -> str | None:
        clock = obj.get("test_clock")
        if isinstance(clock, str):
            return clock
        customer = self.get(obj.get("customer"), "customer")
        if customer is not None and isinstance(customer.get("test_clock"), str):
            return str(customer["test_clock"])
        return None

    def now_for(self, obj: Obj) -> int:
        return self.clock_now(self.clock_of(obj))

    @staticmethod
    def newest_first(objs: Iterable[Obj]) -> list[Obj]:
        return sorted(objs, key=lambda o: (o.get("created", 0), o.get("_seq", 0)), reverse=True)
