"""What one steady event costs, counted: `python -m bench.event_cost` (issue 28).

The e2e stack (`tests/e2e/stack.py`: simulator, API, production worker, in this process)
against the Temporal dev server with the bench's tuning and PostgreSQL. One account is
subscribed (its first events counted as one row: the workflow's start and rebuild, the
customer link, the first write, the welcome email) and warmed up (one seat change), then
its seats are changed `--events` more times, one at a time; for each change the simulator
delivers `customer.subscription.updated`, and the script counts what the stack did until
the account's workflow is idle again:

- the history events appended (by type), the workflow tasks and the activity tasks
  (regular: `ActivityTaskScheduled`; local: `MarkerRecorded`) among them, and the bytes of
  the payloads they carry;
- the Stripe requests the service made (every `StripeClient` request in the process, the
  script's own seat change excepted) and the webhooks the simulator delivered;
- the worker's SQL statements and transactions (an event listener on its engine; the API's
  engine is apart and not counted);
- the gateway's Temporal calls (one signal-with-start per webhook, `workflows/starter.py`).

Counts, not timings: a busy machine changes none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import socket
import tempfile
import urllib.request
from pathlib import Path
from typing import Any
from uuid import uuid4

import stripe
from sqlalchemy import event
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.payloads import DATA_CONVERTER
from core.temporal import installed_binary, register_search_attributes
from core.workflow_ids import workflow_id_for
from db.engine import make_engine, make_session_factory, migrate
from ops.local_stack import DEV_SERVER_TUNING
from tests.e2e.stack import Stack, running_stack
from tests.fixtures_db import fresh_database
from workflows.account import SEARCH_ATTRIBUTES

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class Counter:
    """Stripe requests made by the service in this process, by path."""

    def __init__(self) -> None:
        self.requests: collections.Counter[str] = collections.Counter()

    def install(self) -> None:
        """Every Stripe call of the service is raw and asynchronous (`activities/`)."""
        counter = self
        original = stripe.StripeClient.raw_request_async

        async def counted(self: Any, method: str, url: str, **params: Any) -> Any:
            counter.requests[f"{method.upper()} {url}"] += 1
            return await original(self, method, url, **params)

        setattr(stripe.StripeClient, "raw_request_async", counted)  # noqa: B010


class SqlCounter:
    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0
        self.rollbacks = 0
        self.kinds: collections.Counter[str] = collections.Counter()

    def install(self, engine: Any) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.statements += 1
            self.kinds[" ".join(statement.split()[:3])[:60]] += 1

        @event.listens_for(engine, "commit")
        def _commit(conn: Any) -> None:
            self.commits += 1

        @event.listens_for(engine, "rollback")
        def _rollback(conn: Any) -> None:
            self.rollbacks += 1

    def snapshot(self) -> tuple[int, int, int, collections.Counter[str]]:
        return self.statements, self.commits, self.rollbacks, collections.Counter(self.kinds)


def payload_bytes(history_event: HistoryEvent) -> int:
    """Bytes of every Payload in the event (data and metadata), found by walking its fields."""
    total = 0

    def walk(message: Any) -> None:
        nonlocal total
        if type(message).__name__ == "Payload":
            total += message.ByteSize()
            return
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if hasattr(value, "ListFields"):
                walk(value)
            elif hasattr(value, "keys"):  # a map
                for item in value.values():
                    if hasattr(item, "ListFields"):
                        walk(item)
            else:
                for item in value:
                    walk(item)

    walk(history_event)
    return total


async def history_of(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return list((await handle.fetch_history()).events)


async def wait_idle(handle: WorkflowHandle[Any, Any], stack: Stack) -> None:
    """Until the history stops growing: no change over 1.5 s."""
    await stack.deliveries_done()
    last = -1
    while True:
        length = len(await history_of(handle))
        if length == last:
            return
        last = length
        await asyncio.sleep(1.5)


def summarize(events: list[HistoryEvent]) -> dict[str, Any]:
    kinds = collections.Counter(
        EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events
    )
    markers = collections.Counter(
        e.marker_recorded_event_attributes.marker_name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    )
    activities = collections.Counter(
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    local_activities = collections.Counter(
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)[
            "activity_type"
        ]
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    )
    return {
        "history_events": len(events),
        "history_bytes": sum(e.ByteSize() for e in events),
        "payload_bytes": sum(payload_bytes(e) for e in events),
        "by_type": dict(kinds),
        "markers": dict(markers),
        "local_activities": dict(local_activities),
        "regular_activities": dict(activities),
        "payload_by_type": {
            k: sum(
                payload_bytes(e)
                for e in events
                if EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") == k
            )
            for k in kinds
        },
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_counters(port: int) -> collections.Counter[str]:
    """The dev server's request counters (Prometheus text), by service and operation."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counters: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name not in ("persistence_requests", "service_requests"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        key = f"{name}:{labels.get('service_name', '')}:{labels.get('operation', '')}"
        counters[key] += int(float(line.rsplit(" ", 1)[1]))
    return counters


async def measure(events: int, extra_server_args: list[str]) -> None:
    stripe_counter = Counter()
    stripe_counter.install()
    sql = SqlCounter()
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(installed_binary("temporal")),
            data_converter=DATA_CONVERTER,
            dev_server_database_filename=str(Path(tmp) / "temporal.db"),
            dev_server_extra_args=[
                *DEV_SERVER_TUNING,
                "--metrics-port",
                str(metrics_port),
                *extra_server_args,
            ],
        )
        os.environ.setdefault("TEST_DATABASE_URL", POSTGRES)
        try:
            await register_search_attributes(env.client, SEARCH_ATTRIBUTES, "default")
            with fresh_database(Path(tmp)) as url:
                migrate(url)
                engine = make_engine(url)
                sql.install(engine)
                try:
                    async with running_stack(env, url, make_session_factory(engine)) as stack:
                        await _measure(stack, events, stripe_counter, sql, metrics_port)
                finally:
                    engine.dispose()
        finally:
            await env.shutdown()


async def _measure(
    stack: Stack, events: int, stripe_counter: Counter, sql: SqlCounter, metrics_port: int
) -> None:
    account = f"acct_cost_{uuid4().hex[:8]}"
    customer = stack.new_customer(account)
    stack.attach_card(customer)
    deliveries_before = len(stack.sim.deliveries)
    subscription = stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": stack.price_id("team_monthly_per_seat"), "quantity": 2}],
            "metadata": {"account_id": account},
        }
    )
    stripe_counter.requests.clear()
    sql_before = sql.snapshot()
    server_before = server_counters(metrics_port)
    await stack.wait_for_entitlements(account, billing_state="active")
    handle = stack.env.client.get_workflow_handle(workflow_id_for(account))
    # The account's first events: its workflow's start and rebuild, the customer link, the
    # first write and the welcome email, over the webhooks a new subscription sends.
    await wait_idle(handle, stack)
    print_row(
        "first events of the account (workflow start)",
        counted(
            await history_of(handle),
            stack.sim.deliveries[deliveries_before:],
            stripe_counter,
            sql_before,
            sql.snapshot(),
            server_counters(metrics_port) - server_before,
        ),
    )
    item_id = subscription["items"]["data"][0]["id"]
    seats = 2
    for i in range(events + 1):  # the first is the warm-up
        seats += 1
        await wait_idle(handle, stack)
        before = len(await history_of(handle))
        deliveries_before = len(stack.sim.deliveries)
        stack.stripe.v1.subscriptions.update(
            subscription.id,
            params={
                "items": [{"id": item_id, "quantity": seats}],
                "proration_behavior": "none",
            },
        )
        stripe_counter.requests.clear()
        sql_before = sql.snapshot()
        server_before = server_counters(metrics_port)
        # No Temporal call of this script's own until the counts are taken: the entitlement
        # API reads the database, then a fixed wait for the email's round trip.
        await stack.wait_for_entitlements(account, seats=seats)
        await stack.deliveries_done()
        await asyncio.sleep(2.0)
        server = server_counters(metrics_port) - server_before
        history = await history_of(handle)
        row = counted(
            history[before:],
            stack.sim.deliveries[deliveries_before:],
            stripe_counter,
            sql_before,
            sql.snapshot(),
            server,
        )
        print_row("warm-up" if i == 0 else f"event {i}", row)
    # What the dev server does on its own over the same wait, with no event.
    await wait_idle(handle, stack)
    idle_before = server_counters(metrics_port)
    await stack.wait_for_entitlements(account, seats=seats)
    await asyncio.sleep(2.0)
    idle = server_counters(metrics_port) - idle_before
    print("--- idle, same wait")
    print(f"  server_requests: {dict(sorted(idle.items()))}")


def counted(
    history: list[HistoryEvent],
    delivered: list[Any],
    stripe_counter: Counter,
    sql_before: tuple[int, int, int, collections.Counter[str]],
    sql_after: tuple[int, int, int, collections.Counter[str]],
    server: collections.Counter[str],
) -> dict[str, Any]:
    """Everything counted over one stretch: the history it appended, the webhooks delivered,
    the service's Stripe requests, the worker's SQL and the dev server's requests."""
    row = summarize(history)
    row["webhooks"] = [d.event_type for d in delivered]
    row["stripe_requests"] = dict(stripe_counter.requests)
    row["sql_statements"] = sql_after[0] - sql_before[0]
    row["sql_commits"] = sql_after[1] - sql_before[1]
    row["sql_rollbacks"] = sql_after[2] - sql_before[2]
    row["sql_by_kind"] = dict(sql_after[3] - sql_before[3])
    row["server_requests"] = dict(sorted(server.items()))
    row["server_persistence_total"] = sum(
        v for k, v in server.items() if k.startswith("persistence")
    )
    return row


def print_row(label: str, row: dict[str, Any]) -> None:
    print(f"--- {label}")
    for key, value in row.items():
        print(f"  {key}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="more dev server flags, e.g. "
        "--server-arg=--dynamic-config-value --server-arg=system.enableActivityEagerExecution=true",
    )
    args = parser.parse_args()
    asyncio.run(measure(args.events, args.server_arg))


if __name__ == "__main__":
    main()
