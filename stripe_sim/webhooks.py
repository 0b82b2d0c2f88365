"""Signed webhook delivery with retries and fault injection.

A single worker thread posts each event to every matching endpoint, signed like Stripe:
``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. The timestamp is
the wall-clock time of the attempt (never a test clock's time) because receivers check it
against their own clock. Non-2xx answers and connection errors are retried with backoff.
The store lock is never held while posting, so receivers may call back into the API.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field

import httpx

from stripe_sim.render import public
from stripe_sim.settings import SimulatorSettings
from stripe_sim.store import Obj, Store

log = logging.getLogger("stripe_sim.webhooks")


def sign(payload: str, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    event_id: str = field(compare=False)
    endpoint_id: str = field(compare=False)
    url: str = field(compare=False)
    secret: str = field(compare=False)
    payload: str = field(compare=False)
    attempt: int = field(default=0, compare=False)
    # Only the original of a duplicated delivery counts towards pending_webhooks.
    counts: bool = field(default=True, compare=False)


@dataclass
class DeliveryRecord:
    event_id: str
    event_type: str
    endpoint_id: str
    attempt: int
    status: int | None  # None: connection error


class WebhookDispatcher:
    def __init__(self, store: Store, settings: SimulatorSettings) -> None:
        self.store = store
        self.settings = settings
        self._cv = threading.Condition()
        self._queue: list[_Delivery] = []
        self._held: list[_Delivery] = []
        self._held_since = 0.0
        self._in_flight = 0
        self._seq = itertools.count()
        self._stopping = False
        self._rng = random.Random(settings.faults.seed)
        self._thread: threading.Thread | None = None
        self.records: list[DeliveryRecord] = []
        store.event_listeners.append(self.enqueue)

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stripe-sim-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reseed(self) -> None:
        self._rng = random.Random(self.settings.faults.seed)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until nothing is queued, held back or being posted."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._held or self._in_flight:
                if self._held and not self._queue and not self._in_flight:
                    self._release_held()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"webhook deliveries still pending: {len(self._queue)} queued, "
                        f"{len(self._held)} held, {self._in_flight} in flight"
                    )
                self._cv.wait(remaining)

    # producer (called under the store lock from events.emit) -------------------------------
    def enqueue(self, event: Obj) -> None:
        endpoints = [self.store.objects[i] for i in event["_endpoint_ids"]]
        if not endpoints:
            return
        payload = json.dumps(public(event), indent=2)
        faults = self.settings.faults
        now = time.monotonic()
        with self._cv:
            for endpoint in endpoints:
                if faults.drop_rate and self._rng.random() < faults.drop_rate:
                    log.info("fault injection: dropped %s to %s", event["id"], endpoint["url"])
                    self._settle(event["id"], counted=True)
                    continue
                copies = 1
                if faults.duplicate_rate and self._rng.random() < faults.duplicate_rate:
                    copies = 2
                for copy_index in range(copies):
                    delivery = _Delivery(
                        due=now + faults.delay_seconds,
                        seq=next(self._seq),
                        event_id=event["id"],
                        endpoint_id=endpoint["id"],
                        url=endpoint["url"],
                        secret=endpoint["secret"],
                        payload=payload,
                        counts=copy_index == 0,
                    )
                    if faults.reorder_window > 1:
                        if not self._held:
                            self._held_since = now
                        self._held.append(delivery)
                        if len(self._held) >= faults.reorder_window:
                            self._release_held()
                    else:
                        heapq.heappush(self._queue, delivery)
            self._cv.notify_all()

    def _release_held(self) -> None:
        """Send the held-back window in shuffled order (caller holds the condition)."""
        batch, self._held = self._held, []
        self._rng.shuffle(batch)
        base = time.monotonic()
        for delivery in batch:
            delivery.due = max(delivery.due, base)
            delivery.seq = next(self._seq)
            heapq.heappush(self._queue, delivery)
        self._cv.notify_all()

    def _settle(self, event_id: str, counted: bool) -> None:
        if not counted:
            return
        with self.store.lock:
            event = self.store.objects.get(event_id)
            if event is not None and event["pending_webhooks"] > 0:
                event["pending_webhooks"] -= 1

    # worker --------------------------------------------------------------------------------
    def _next_due(self) -> _Delivery | None:
        with self._cv:
            while not self._stopping:
                now = time.monotonic()
                hold = self.settings.faults.reorder_hold_seconds
                if self._held and now - self._held_since >= hold:
                    self._release_held()
                if self._queue and self._queue[0].due <= now:
                    self._in_flight += 1
                    return heapq.heappop(self._queue)
                waits = [self._queue[0].due - now] if self._queue else []
                if self._held:
                    waits.append(self._held_since + hold - now)
                self._cv.wait(max(0.001, min(waits)) if waits else None)
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=self.settings.webhook_timeout_seconds) as client:
            while True:
                delivery = self._next_due()
                if delivery is None:
                    return
                try:
                    self._attempt(client, delivery)
                finally:
                    with self._cv:
                        self._in_flight -= 1
                        self._cv.notify_all()

    def _attempt(self, client: httpx.Client, delivery: _Delivery) -> None:
        endpoint = self.store.objects.get(delivery.endpoint_id)
        if endpoint is None or endpoint.get("status") != "enabled":
            self._settle(delivery.event_id, delivery.counts)
            return
        delivery.attempt += 1
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(delivery.payload, delivery.secret, timestamp),
        }
        status: int | None = None
        try:
            response = client.post(delivery.url, content=delivery.payload.encode(), headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            log.info("webhook %s to %s failed: %s", delivery.event_id, delivery.url, exc)
        event_type = json.loads(delivery.payload)["type"]
        self.records.append(
            DeliveryRecord(
                delivery.event_id, event_type, delivery.endpoint_id, delivery.attempt, status
            )
        )
        if status is not None and 200 <= status < 300:
            self._settle(delivery.event_id, delivery.counts)
            return
        if delivery.attempt >= self.settings.webhook_max_attempts:
            log.warning(
                "giving up on %s to %s after %d attempts",
                delivery.event_id,
                delivery.url,
                delivery.attempt,
            )
            self._settle(delivery.event_id, delivery.counts)
            return
        backoff = self.settings.webhook_backoff_seconds
        delay = backoff[min(delivery.attempt - 1, len(backoff) - 1)] if backoff else 0.0
        with self._cv:
            delivery.due = time.monotonic() + delay
            delivery.seq = next(self._seq)
            heapq.heappush(self._queue, delivery)
            self._cv.notify_all()
