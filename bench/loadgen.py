"""Load generators, run as their own process so their CPU is not the measured process's.

    python -m bench.loadgen MODE CONFIG.json   → one JSON object on stdout

Modes:
- `signal-with-start`: the Temporal SDK's signal-with-start with no HTTP in front, closed
  loop (`concurrency` in flight) for `seconds` or for `count` calls.
- `http-closed`: POST/GET requests from a file, closed loop (used where `wrk` is missing).
- `webhook-open`: signed webhooks at a fixed offered rate (open loop: latency is counted from
  the moment a request was due, so a slow server cannot hide its queueing).
- `freshness`: at a fixed rate, change an account's seats in the Stripe simulator, deliver the
  signed webhook, and time from the gateway's 2xx until the change log holds the new seats.
  The entitlement API serves it once its answer cache has next read the log (every
  `ENTITLEMENT_CACHE_POLL_SECONDS`, 50 ms by default).
- `signal-latency`: at a fixed rate, signal-with-start an event to a random live account and
  time until the workflow has recorded it (its row in `stripe_events`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import uvloop
from sqlalchemy import Engine, select

from bench.stats import summary_ms
from core.config import Settings
from core.stripe_client import SIMULATOR_API_KEY
from core.temporal import connect
from db import feed
from db.engine import make_engine, make_session_factory
from db.models import StripeEvent
from workflows.account import StripeEventSignal
from workflows.starter import signal_stripe_event

# A change not visible after this long is counted as missing, and the run still ends.
SETTLE_TIMEOUT_SECONDS = 60.0
# How often the database is asked which outstanding changes have landed.
WATCH_INTERVAL_SECONDS = 0.005


def subscription_event(
    account_id: str, customer_id: str | None, subscription_id: str, event_type: str
) -> bytes:
    """A minimal but well-formed Stripe event naming the account in the object's metadata."""
    event = {
        "id": f"evt_bench_{uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": subscription_id,
                "object": "subscription",
                "customer": customer_id,
                "metadata": {"account_id": account_id},
            }
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def http_client(base_url: str, connections: int = 0) -> aiohttp.ClientSession:
    """aiohttp: about a tenth of httpx's CPU per request (0.1 against 1.5 ms on loopback),
    which the measured processes share two cores with. `connections` 0 means no cap: an open
    loop must not be throttled by its own pool."""
    return aiohttp.ClientSession(
        base_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30),
    )


def stripe_signature(payload: bytes, secret: str) -> str:
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


async def signal_with_start(config: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(
        _env_file=None, temporal_address=config["temporal_address"], task_queue=config["task_queue"]
    )
    client = await connect(settings)
    accounts: list[str] = config["accounts"]
    count: int | None = config.get("count")
    deadline = time.perf_counter() + config.get("seconds", 1e9)
    latencies: list[float] = []
    issued = 0

    async def one_worker() -> None:
        nonlocal issued
        while time.perf_counter() < deadline and (count is None or issued < count):
            account_id = accounts[issued % len(accounts)]
            issued += 1
            event = StripeEventSignal(
                event_id=f"evt_bench_{uuid4().hex}",
                event_type="customer.subscription.updated",
                created=int(time.time()),
            )
            started = time.perf_counter()
            await signal_stripe_event(client, settings.task_queue, account_id, event)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_worker() for _ in range(config["concurrency"])))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "latency_ms": summary_ms(latencies),
    }


async def http_closed(config: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop HTTP load from `requests` ([method, path, headers, body]), cycled."""
    requests: list[list[Any]] = config["requests"]
    deadline = time.perf_counter() + config["seconds"]
    latencies: list[float] = []
    failures = 0
    issued = 0
    async with http_client(config["url"], config["concurrency"]) as http:

        async def one_connection() -> None:
            nonlocal issued, failures
            while time.perf_counter() < deadline:
                method, path, headers, body = requests[issued % len(requests)]
                issued += 1
                started = time.perf_counter()
                async with http.request(method, path, headers=headers, data=body) as answer:
                    await answer.read()
                latencies.append(time.perf_counter() - started)
                failures += answer.status >= 400

        started = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(config["concurrency"])))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "failures": failures,
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "latency_ms": summary_ms(latencies),
    }


async def open_loop(
    rate: float, seconds: float, send: Callable[[int], Coroutine[Any, Any, None]]
) -> tuple[float, int]:
    """Call `send(n)` at `rate` per second for `seconds`, each on its own task; returns the
    time it took and how many were sent."""
    total = max(1, int(rate * seconds))
    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for n in range(total):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(n)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - started, total


async def webhook_open(config: dict[str, Any]) -> dict[str, Any]:
    accounts: list[str] = config["accounts"]
    latencies: list[float] = []
    failures = 0
    async with http_client(config["url"]) as http:

        async def send(n: int) -> None:
            nonlocal failures
            due = time.perf_counter()
            account_id = accounts[n % len(accounts)]
            body = subscription_event(
                account_id, None, f"sub_bench_{n}", "customer.subscription.updated"
            )
            headers = {
                "stripe-signature": stripe_signature(body, config["secret"]),
                "content-type": "application/json",
            }
            async with http.post("/webhooks/stripe", data=body, headers=headers) as answer:
                await answer.read()
            failures += answer.status != 200
            latencies.append(time.perf_counter() - due)

        elapsed, sent = await open_loop(config["rate"], config["seconds"], send)
    return {
        "offered_rate": config["rate"],
        "requests": sent,
        "failures": failures,
        "seconds": elapsed,
        "latency_ms": summary_ms(latencies),
    }


class Watcher:
    """Times outstanding changes until `landed` (a blocking look, run on a thread) says each
    has landed."""

    def __init__(self, landed: Callable[[dict[str, Any]], Iterable[str]]) -> None:
        self._landed = landed
        # key → (what must be seen, when it was accepted)
        self.outstanding: dict[str, tuple[Any, float]] = {}
        self.latencies: list[float] = []

    def expect(self, key: str, wanted: Any, accepted_at: float) -> None:
        self.outstanding[key] = (wanted, accepted_at)

    async def run_until(self, sending: asyncio.Task[Any]) -> int:
        """Watch until sending is done and nothing is outstanding (or the settle timeout);
        returns how many never landed."""
        settle_deadline: float | None = None
        while True:
            if self.outstanding:
                wanted = {key: value for key, (value, _) in self.outstanding.items()}
                landed = await asyncio.to_thread(self._landed, wanted)
                now = time.perf_counter()
                for key in landed:
                    _, accepted_at = self.outstanding.pop(key)
                    self.latencies.append(now - accepted_at)
            if sending.done():
                sending.result()
                if not self.outstanding:
                    return 0
                settle_deadline = settle_deadline or time.perf_counter() + SETTLE_TIMEOUT_SECONDS
                if time.perf_counter() > settle_deadline:
                    return len(self.outstanding)
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)


class SeatsInChangeLog:
    """`wanted`: key → (account id, seats); an account may have several changes in flight.

    Each look reads only the change log's rows since the last one (the log the entitlement
    API's answer cache follows), so it costs what changed, not how many changes are
    outstanding: asking for every outstanding account each look took a quarter of the load
    generator's core at 50 events/s. One connection in autocommit serves every look (200 a
    second): a session opened per look, with the statement then built per call, cost the
    load generator 0.03 of a core.
    """

    def __init__(self, engine: Engine) -> None:
        self._connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        # Taken before anything is sent, so no change can land unseen.
        self._cursor = feed.newest_cursor(self._connection)
        self._seats: dict[str, int] = {}

    def __call__(self, wanted: dict[str, Any]) -> Iterable[str]:
        for change in feed.changes_after(self._connection, self._cursor, limit=10_000):
            seats = int(change.entitlements["seats"])
            self._seats[change.account_id] = max(seats, self._seats.get(change.account_id, 0))
            self._cursor = change.cursor
        landed = self._seats
        return [key for key, (account, seats) in wanted.items() if landed.get(account, 0) >= seats]

    def close(self) -> None:
        self._connection.close()


class EventsRecorded:
    """`wanted`: event id → True, landed once the account workflow recorded the event."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = make_session_factory(engine)

    def __call__(self, wanted: dict[str, Any]) -> Iterable[str]:
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(StripeEvent.event_id).where(StripeEvent.event_id.in_(wanted))
                )
            )


async def freshness(config: dict[str, Any]) -> dict[str, Any]:
    """`accounts`: [{account_id, customer_id, subscription_id, item_id, seats}]. With
    `change_seats` false, only delivers `customer.subscription.created` and waits for the
    current seats (the warm-up that makes every account live)."""
    accounts: list[dict[str, Any]] = config["accounts"]
    engine = make_engine(config["database_url"])
    change_log = SeatsInChangeLog(engine)
    watcher = Watcher(change_log)
    # Webhook sent → its 2xx: what Stripe waits for, and for a handler that writes before it
    # answers (the bench's peer) nearly all of its delay.
    accept_latencies: list[float] = []
    failures = 0
    stripe_auth = {"authorization": f"Bearer {SIMULATOR_API_KEY}"}
    async with (
        http_client(config["url"]) as gateway,
        http_client(config["simulator_url"]) as stripe,
    ):

        async def send(n: int) -> None:
            nonlocal failures
            try:
                await change_and_deliver(n)
            except (aiohttp.ClientError, TimeoutError):
                # An overloaded stack times out: counted, not fatal to the figure.
                failures += 1

        async def change_and_deliver(n: int) -> None:
            nonlocal failures
            account = accounts[n % len(accounts)]
            event_type = "customer.subscription.created"
            if config["change_seats"]:
                account["seats"] += 1
                event_type = "customer.subscription.updated"
                form = {
                    "items[0][id]": account["item_id"],
                    "items[0][quantity]": str(account["seats"]),
                    "proration_behavior": "none",
                }
                async with stripe.post(
                    f"/v1/subscriptions/{account['subscription_id']}",
                    data=form,
                    headers=stripe_auth,
                ) as changed:
                    await changed.read()
                    changed.raise_for_status()
            body = subscription_event(
                account["account_id"],
                account["customer_id"],
                account["subscription_id"],
                event_type,
            )
            headers = {
                "stripe-signature": stripe_signature(body, config["secret"]),
                "content-type": "application/json",
            }
            posted = time.perf_counter()
            async with gateway.post("/webhooks/stripe", data=body, headers=headers) as answer:
                await answer.read()
            if answer.status != 200:
                failures += 1
                return
            accept_latencies.append(time.perf_counter() - posted)
            key = f"{account['account_id']}/{account['seats']}"
            watcher.expect(key, (account["account_id"], account["seats"]), time.perf_counter())

        sending = asyncio.create_task(open_loop(config["rate"], config["seconds"], send))
        missing = await watcher.run_until(sending)
        _, sent = sending.result()
    change_log.close()
    engine.dispose()
    return {
        "rate": config["rate"],
        "events": sent,
        "accounts": len(accounts),
        "failures": failures,
        "missing": missing,
        "latency_ms": summary_ms(watcher.latencies),
        "accept_latency_ms": summary_ms(accept_latencies),
    }


async def signal_latency(config: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(
        _env_file=None, temporal_address=config["temporal_address"], task_queue=config["task_queue"]
    )
    client = await connect(settings)
    engine = make_engine(config["database_url"])
    watcher = Watcher(EventsRecorded(engine))
    accounts: list[str] = config["accounts"]
    chooser = random.Random(7)
    accept_latencies: list[float] = []

    async def send(_: int) -> None:
        event_id = f"evt_bench_{uuid4().hex}"
        event = StripeEventSignal(event_id, "customer.subscription.updated", int(time.time()))
        started = time.perf_counter()
        await signal_stripe_event(client, settings.task_queue, chooser.choice(accounts), event)
        accepted_at = time.perf_counter()
        accept_latencies.append(accepted_at - started)
        watcher.expect(event_id, True, accepted_at)

    sending = asyncio.create_task(open_loop(config["rate"], config["seconds"], send))
    missing = await watcher.run_until(sending)
    engine.dispose()
    return {
        "rate": config["rate"],
        "signals": sending.result()[1],
        "missing": missing,
        "accept_latency_ms": summary_ms(accept_latencies),
        "processed_latency_ms": summary_ms(watcher.latencies),
    }


MODES: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "signal-with-start": signal_with_start,
    "http-closed": http_closed,
    "webhook-open": webhook_open,
    "freshness": freshness,
    "signal-latency": signal_latency,
}


def run_in_own_process(mode: str, config: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """`python -m bench.loadgen MODE CONFIG` in its own process; its JSON answer."""
    config_file = scratch / f"loadgen-{mode}.json"
    config_file.write_text(json.dumps(config))
    completed = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", mode, str(config_file)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load generator {mode} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    mode, config_path = sys.argv[1], Path(sys.argv[2])
    result: dict[str, Any] = uvloop.run(MODES[mode](json.loads(config_path.read_text())))
    print(json.dumps(result), flush=True)
    # Skip interpreter finalization: the Temporal SDK's runtime threads can abort it
    # ("PyGILState_Release ... finalizing") after the work is done and reported.
    os._exit(0)


if __name__ == "__main__":
    main()
