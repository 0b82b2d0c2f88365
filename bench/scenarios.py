"""The five measurements, each against the reference that bounds it, in the same run."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from uuid import uuid4

from sqlalchemy import func, select

from api.answer_cache import etag_for
from bench.loadgen import run_in_own_process, stripe_signature, subscription_event
from bench.speed import python_speed
from bench.stack import APP_TOKEN, REPO, WEBHOOK_SECRET, Stack, cpu_seconds, peak_rss_bytes
from bench.wrk import Request, closed_loop
from core.stripe_client import make_stripe_client
from db import repository
from db.engine import make_engine, make_session_factory
from db.models import StripeEvent
from domain.catalog import default_catalog
from domain.entitlements import free_entitlements
from workflows.account import workflow_id_for

# Signal-with-starts here go to a queue no worker polls: ingest measures acceptance alone,
# and the worker never has to chew through the ingest backlog afterwards.
UNPOLLED_QUEUE = "bench-ingest-unpolled"
# Waiting for workflows to take in what was sent never takes longer than this.
DRAIN_TIMEOUT_SECONDS = 300.0
# Signed webhooks prepared per gateway round and second; past this rate `wrk` sends them again.
WEBHOOKS_PER_SECOND_PREPARED = 1500
# The stack is quiet once its processes use less than this between them (idle: about 0.08).
QUIET_CORES = 0.25


@dataclass(frozen=True)
class Profile:
    name: str
    seconds: float  # each closed-loop throughput measurement
    connections: int
    # Fewer for reads: their p99 target only means something below saturation.
    read_connections: int
    ingest_accounts: int
    gateway_offered_rate: float
    read_accounts: int
    fresh_accounts: int
    fresh_rate: float
    fresh_seconds: float
    scale_accounts: int
    signal_rate: float
    history_events: int
    catch_up_subscriptions: int
    # Freshness as a capacity curve: one steady phase per offered rate, in rising order.
    capacity_rates: tuple[float, ...]
    capacity_seconds: float


# Positional as the fields run, the capacity curve by name; kept on few lines by hand.
FULL = Profile(
    "full", 15, 32, 8, 2000, 100, 10_000, 1000, 50, 60, 10_000, 20, 5000, 250,
    capacity_rates=(25, 50, 75, 100, 125, 150), capacity_seconds=30,
)  # fmt: skip
QUICK = Profile(
    "quick", 4, 32, 8, 500, 100, 2000, 100, 50, 6, 500, 20, 500, 25,
    capacity_rates=(25, 50, 100, 150), capacity_seconds=8,
)  # fmt: skip
# The tiniest end-to-end pass: it proves the harness works, its figures mean nothing.
SMOKE = Profile(
    "smoke", 1, 4, 4, 10, 10, 20, 4, 4, 1, 10, 4, 12, 2,
    capacity_rates=(4, 8), capacity_seconds=1,
)  # fmt: skip
PROFILES = {profile.name: profile for profile in (FULL, QUICK, SMOKE)}


def measure_ingest(stack: Stack, profile: Profile) -> dict[str, Any]:
    """Gateway webhooks/s vs the SDK's raw signal-with-start/s, same server, same concurrency.

    Both sides signal account workflows that already exist, as the service does all but once
    per account; were the first signals timed, the slower side would spend more of its window
    on workflow starts, which cost the server more than signals. The sides alternate (raw,
    gateway, gateway, raw), so what drifts over the run (the server's store grows) falls on
    both alike.
    """
    raw_accounts = [f"ingest-raw-{n}" for n in range(profile.ingest_accounts)]
    gateway_accounts = [f"ingest-gw-{n}" for n in range(profile.ingest_accounts)]

    def signal_with_start(accounts: list[str], **bound: float) -> dict[str, Any]:
        """The SDK's raw signal-with-start to `accounts`, bounded by `count` or `seconds`."""
        return run_in_own_process(
            "signal-with-start",
            {
                "temporal_address": stack.temporal_address,
                "task_queue": UNPOLLED_QUEUE,
                "accounts": accounts,
                "concurrency": profile.connections,
                **bound,
            },
            stack.scratch,
        )

    every_account = raw_accounts + gateway_accounts
    signal_with_start(every_account, count=len(every_account))
    round_seconds = profile.seconds / 2

    with stack.api(task_queue=UNPOLLED_QUEUE) as url:
        # Signed now: the whole measurement stays well inside the 300 s tolerance.
        def signed_webhooks(round_number: int) -> list[Request]:
            requests: list[Request] = []
            for n in range(max(200, int(WEBHOOKS_PER_SECOND_PREPARED * round_seconds))):
                account_id = gateway_accounts[n % len(gateway_accounts)]
                subscription_id = f"sub_{round_number}_{n}"
                body = subscription_event(
                    account_id, None, subscription_id, "customer.subscription.updated"
                )
                headers = {"stripe-signature": stripe_signature(body, WEBHOOK_SECRET)}
                requests.append(("POST", "/webhooks/stripe", body, headers))
            return requests

        raw_rounds = [signal_with_start(raw_accounts, seconds=round_seconds)]
        gateway_rounds = [
            closed_loop(url, signed_webhooks(n), round_seconds, profile.connections, stack.scratch)
            for n in range(2)
        ]
        raw_rounds.append(signal_with_start(raw_accounts, seconds=round_seconds))
        at_fixed_load = run_in_own_process(
            "webhook-open",
            {
                "url": url,
                "secret": WEBHOOK_SECRET,
                "accounts": gateway_accounts,
                "rate": profile.gateway_offered_rate,
                "seconds": profile.seconds,
            },
            stack.scratch,
        )
    raw, gateway = _combined(raw_rounds), _combined(gateway_rounds)
    return {
        "raw_signal_with_start": raw,
        "gateway": gateway,
        "ratio": gateway["rate"] / raw["rate"],
        "gateway_at_fixed_load": at_fixed_load,
    }


def _combined(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One rate over several closed-loop rounds; each round's own figures are kept."""
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    return {
        "requests": requests,
        "failures": sum(r.get("failures", 0) for r in rounds),
        "seconds": seconds,
        "rate": requests / seconds,
        "rounds": rounds,
    }


def measure_reads(stack: Stack, profile: Profile) -> dict[str, Any]:
    """Entitlement reads/s (with and without If-None-Match) vs `/healthz`, warm account set."""
    accounts = [f"read-{n}" for n in range(profile.read_accounts)]
    seed_entitlements(stack, accounts)
    auth = {"authorization": f"Bearer {APP_TOKEN}"}
    reads: list[Request] = [
        ("GET", f"/v1/accounts/{account}/entitlements", None, auth) for account in accounts
    ]
    revalidations: list[Request] = [
        (method, path, body, {**headers, "if-none-match": etag_for(account, 1)})
        for account, (method, path, body, headers) in zip(accounts, reads, strict=True)
    ]
    with stack.api() as url:

        def load(requests: list[Request]) -> dict[str, Any]:
            return closed_loop(
                url, requests, profile.seconds, profile.read_connections, stack.scratch
            )

        # A first pass warms the connection pool and the database's cache.
        load(reads)
        constant = load([("GET", "/healthz", None, {})])
        plain = load(reads)
        conditional = load(revalidations)
    return {
        "accounts": len(accounts),
        "constant_endpoint": constant,
        "entitlements": plain,
        "entitlements_if_none_match": conditional,
        "ratio": plain["rate"] / constant["rate"],
        "ratio_if_none_match": conditional["rate"] / constant["rate"],
    }


def seed_entitlements(stack: Stack, accounts: list[str]) -> None:
    engine = make_engine(stack.database_url)
    sessions = make_session_factory(engine)
    paid = replace(free_entitlements(default_catalog()), plan="pro", billing_state="active")
    for start in range(0, len(accounts), 500):
        with sessions.begin() as session:
            for account in accounts[start : start + 500]:
                repository.write_entitlements(session, account, 1, paid, {}, "bench", [])
    engine.dispose()


def measure_freshness(stack: Stack, profile: Profile) -> dict[str, Any]:
    """Webhook accepted → new seats readable, at a steady rate over many live accounts."""
    accounts = create_subscribed_accounts(stack, "fresh", profile.fresh_accounts)
    if stack.worker is None:
        stack.start_worker()
    with stack.api() as url:
        return timed_freshness(stack, profile, url, accounts)


def measure_peer(stack: Stack, profile: Profile) -> dict[str, Any]:
    """Freshness through the handler a user would write instead (bench/peer.py: synchronous,
    in the request, no Temporal): the same load, rate, seconds and watcher as ours, on
    accounts of its own. Beside ours, its CPU per event is what durability costs."""
    accounts = create_subscribed_accounts(stack, "peer", profile.fresh_accounts)
    with stack.peer() as url:
        return timed_freshness(stack, profile, url, accounts)


def timed_freshness(
    stack: Stack, profile: Profile, url: str, accounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every account's first event, then the steady minute, through the handler at `url`."""
    load = freshness_load(stack, url, accounts)
    warm_up = first_event_per_account(stack, profile, load)
    steady = steady_freshness(stack, load, profile.fresh_rate, profile.fresh_seconds)
    return {"first_event_per_account": warm_up, "steady": steady.result}


def freshness_load(stack: Stack, url: str, accounts: list[dict[str, Any]]) -> dict[str, Any]:
    """What every freshness load generator is given: the handler at `url`, the simulator
    whose subscriptions it changes, the log it watches, and the accounts (whose seats
    `steady_freshness` keeps in step with the simulator's, so phases can follow each other)."""
    return {
        "url": url,
        "secret": WEBHOOK_SECRET,
        "simulator_url": stack.simulator_url,
        "database_url": stack.database_url,
        "accounts": accounts,
    }


def first_event_per_account(stack: Stack, profile: Profile, load: dict[str, Any]) -> dict[str, Any]:
    """Every account gets its first event (ours: workflow start, customer link, first write),
    then the stack is left to go quiet, so no steady phase pays for the warm-up."""
    warm_rate = max(profile.fresh_rate, 100.0)
    before = cpu_by_process(stack)
    warm_up = run_in_own_process(
        "freshness",
        {
            **load,
            "change_seats": False,
            "rate": warm_rate,
            "seconds": len(load["accounts"]) / warm_rate,
        },
        stack.scratch,
    )
    # The warm-up's tail (each account's welcome email and the workflow task after it)
    # runs on after its changes landed: about 17 CPU-seconds for 1,000 accounts, which
    # would otherwise be measured as part of the steady minute.
    warm_up["settled_after_s"] = wait_until_quiet(stack)
    # What an account's first event costs, its tail included: the figure that bounds the
    # first-event latency and the catch-up (issue 28).
    warm_up["cpu_ms_per_event"] = per_event_ms(before, cpu_by_process(stack), landed_count(warm_up))
    return warm_up


def landed_count(report: dict[str, Any]) -> int:
    """Changes a freshness load generator saw readable."""
    return report["latency_ms"]["count"] if report["latency_ms"] else 0


def per_event_ms(
    before: dict[str, float], after: dict[str, float], events: int
) -> dict[str, float]:
    """Each process's CPU between two `cpu_by_process` readings, in ms per event. Divided by
    at least 1: an overloaded phase may land nothing and still have used CPU."""
    return {name: (after[name] - before[name]) * 1000 / max(1, events) for name in before}


@dataclass(frozen=True)
class SteadyPhase:
    """One steady phase: the load generator's report (with CPU per event by process, as the
    JSON shows it) and what capacity derives its cores from."""

    result: dict[str, Any]
    landed: int  # changes seen readable
    # Used by each process from the phase's start until its last change landed.
    cpu_seconds: dict[str, float]
    wall_seconds: float


def steady_freshness(
    stack: Stack, load: dict[str, Any], rate: float, seconds: float
) -> SteadyPhase:
    """Seat changes at `rate` for `seconds`, each delivered and watched until readable; the
    CPU of every process from the load generator's start until the stack is quiet again."""
    before = cpu_by_process(stack)
    started = time.perf_counter()
    steady = run_in_own_process(
        "freshness",
        {**load, "change_seats": True, "rate": rate, "seconds": seconds},
        stack.scratch,
    )
    wall_seconds = time.perf_counter() - started
    landed_at = cpu_by_process(stack)
    # What the events caused after their changes landed is theirs too: under load the
    # worker runs the accounts' workflow tasks first and their emails when it can, so a
    # third of the emails of a quick run went out after the last change landed (issue 28).
    steady["tail_until_quiet_s"] = wait_until_quiet(stack)
    after = cpu_by_process(stack)
    # The load generator counted seats up in its own process, event n on account n modulo
    # their number: counted alike here, so a next phase changes them upward again rather
    # than to seats they already have (a change that changes nothing lands nothing).
    accounts = load["accounts"]
    for n in range(steady["events"]):
        accounts[n % len(accounts)]["seats"] += 1
    landed = landed_count(steady)
    # CPU per event is the figure a busy machine moves least: it says what a rate costs.
    # Every process on the two cores is counted: the load generator and the simulator
    # stand in for Stripe, but they take CPU from the rest all the same.
    steady["cpu_ms_per_event"] = per_event_ms(before, after, landed)
    # As reported before issue 28: up to the last change landed, without the tail.
    steady["cpu_ms_per_event_until_landed"] = per_event_ms(before, landed_at, landed)
    used = {name: landed_at[name] - before[name] for name in before}
    return SteadyPhase(steady, landed, used, wall_seconds)


# A point of the capacity curve passes when its p99 stays under this and nothing is missing
# or failed.
KNEE_P99_MS = 1000.0


def measure_capacity(stack: Stack, profile: Profile) -> dict[str, Any]:
    """Freshness at rising offered rates on one set of accounts: where latency and CPU per
    event turn, and the knee, the highest rate the stack keeps fresh. One warm-up as
    freshness's; each phase starts once the stack is quiet (the warm-up and every phase wait
    for it before they end), with the machine's speed, which changes from minute to minute,
    measured beside it."""
    accounts = create_subscribed_accounts(stack, "capacity", profile.fresh_accounts)
    if stack.worker is None:
        stack.start_worker()
    with stack.api() as url:
        load = freshness_load(stack, url, accounts)
        warm_up = first_event_per_account(stack, profile, load)
        points = []
        for rate in sorted(profile.capacity_rates):
            speed = python_speed()
            phase = steady_freshness(stack, load, rate, profile.capacity_seconds)
            points.append(capacity_point(phase, speed))
    return {
        "accounts": len(accounts),
        "first_event_per_account": warm_up,
        "points": points,
        "knee_rate": knee_rate(points),
    }


def capacity_point(phase: SteadyPhase, speed: float) -> dict[str, Any]:
    """One rate of the curve: its latency, and what it costs the stack (our event path, the
    load generator and harness left out) per event and in cores."""
    steady = phase.result
    by_process = steady["cpu_ms_per_event"]
    path_cpu_seconds = sum(phase.cpu_seconds[name] for name in OUR_EVENT_PATH)
    return {
        "offered_rate": steady["rate"],
        "python_speed": speed,
        "events": phase.landed,
        "latency_ms": steady["latency_ms"],
        "missing": steady["missing"],
        "failures": steady["failures"],
        "cpu_ms_per_event": sum(by_process[name] for name in OUR_EVENT_PATH),
        "cpu_ms_per_event_by_process": by_process,
        "cores": path_cpu_seconds / phase.wall_seconds,
        "wall_seconds": phase.wall_seconds,
    }


def knee_rate(points: list[dict[str, Any]]) -> float | None:
    """The highest offered rate whose p99 is under KNEE_P99_MS with nothing missing or failed
    (a failed webhook is one Stripe must deliver again), every lower rate passing too (a
    rate that passes above one that failed is luck, not capacity); None when the lowest rate
    already fails."""
    knee = None
    for point in sorted(points, key=lambda point: point["offered_rate"]):
        latency = point["latency_ms"]
        if (
            latency is None
            or latency["p99"] >= KNEE_P99_MS
            or point["missing"]
            or point["failures"]
        ):
            break
        knee = point["offered_rate"]
    return knee


# What handles an event, Stripe's stand-in included, on each side (not the load generator,
# which is the same on both, nor an idle process).
OUR_EVENT_PATH = ("worker", "email_sender", "temporal_server", "api", "stripe_simulator")
PEER_EVENT_PATH = ("peer", "stripe_simulator")


def durability_cost(freshness: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """CPU per steady event of our stack and of the peer's, and how many times the peer's
    ours takes (None when the peer's rounds to nothing: /proc counts in 10 ms ticks, which a
    handful of events may not reach)."""
    ours_cpu = freshness["steady"]["cpu_ms_per_event"]
    peer_cpu = peer["steady"]["cpu_ms_per_event"]
    ours = sum(ours_cpu[name] for name in OUR_EVENT_PATH)
    theirs = sum(peer_cpu[name] for name in PEER_EVENT_PATH)
    return {
        "ours_cpu_ms_per_event": ours,
        "peer_cpu_ms_per_event": theirs,
        "ratio": ours / theirs if theirs else None,
    }


def wait_until_quiet(stack: Stack) -> float:
    """Seconds until the stack's own processes use less than QUIET_CORES over a second."""
    started = time.perf_counter()
    busy = _service_cpu_seconds(stack)
    while time.perf_counter() - started < DRAIN_TIMEOUT_SECONDS:
        time.sleep(1.0)  # a rate needs an interval: this is a measurement, not a wait on state
        now = _service_cpu_seconds(stack)
        if now - busy < QUIET_CORES:
            break
        busy = now
    return round(time.perf_counter() - started, 1)


def _service_cpu_seconds(stack: Stack) -> float:
    """The CPU used so far by the stack's own processes (not the load generator's or ours)."""
    used = cpu_by_process(stack)
    return sum(used.get(name, 0.0) for name in (*OUR_EVENT_PATH, "peer"))


def cpu_by_process(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each running process of the stack; the load generator's
    are those of this process's finished children, the harness's (the SMTP sink) this
    process's."""
    running = {
        "worker": stack.worker,
        "email_sender": stack.email_sender,
        "temporal_server": stack.temporal,
        "api": stack.api_process,
        "peer": stack.peer_process,
        "stripe_simulator": stack.simulator,
    }
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    harness = resource.getrusage(resource.RUSAGE_SELF)
    return {
        **{name: cpu_seconds(process) for name, process in running.items() if process is not None},
        "load_generator": children.ru_utime + children.ru_stime,
        "harness": harness.ru_utime + harness.ru_stime,
    }


def create_subscribed_accounts(stack: Stack, prefix: str, count: int) -> list[dict[str, Any]]:
    """Accounts with a Stripe customer and a trialing per-seat subscription (1 seat)."""
    stripe = make_stripe_client(stack.settings())
    [price] = stripe.v1.prices.list(params={"lookup_keys": ["team_monthly_per_seat"]}).data
    run = uuid4().hex[:6]
    accounts = []
    for n in range(count):
        account_id = f"{prefix}-{run}-{n}"
        metadata = {"account_id": account_id}
        customer = stripe.v1.customers.create(
            params={"email": f"{account_id}@example.com", "metadata": metadata}
        )
        subscription = stripe.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price.id, "quantity": 1}],
                "trial_period_days": 30,
                "metadata": metadata,
            }
        )
        accounts.append(
            {
                "account_id": account_id,
                "customer_id": customer.id,
                "subscription_id": subscription.id,
                "item_id": subscription["items"].data[0].id,
                "seats": 1,
            }
        )
    return accounts


def measure_scale(stack: Stack, profile: Profile) -> dict[str, Any]:
    """Many live account workflows on one worker: its memory and signal latency; one account
    sent many events keeps each run's history bounded."""
    if stack.worker is None:
        stack.start_worker()
    accounts = [f"scale-{n}" for n in range(profile.scale_accounts)]
    started = time.perf_counter()
    run_in_own_process(
        "signal-with-start",
        {
            "temporal_address": stack.temporal_address,
            "task_queue": stack.settings().task_queue,
            "accounts": accounts,
            "count": len(accounts),
            "concurrency": profile.connections,
        },
        stack.scratch,
    )
    wait_for_events(stack, StripeEvent.account_id.like("scale-%"), len(accounts))
    ramp_seconds = time.perf_counter() - started
    latency = run_in_own_process(
        "signal-latency",
        {
            "temporal_address": stack.temporal_address,
            "task_queue": stack.settings().task_queue,
            "database_url": stack.database_url,
            "accounts": accounts,
            "rate": profile.signal_rate,
            "seconds": profile.seconds,
        },
        stack.scratch,
    )
    assert stack.worker is not None
    return {
        "live_workflows": len(accounts),
        "ramp_seconds": ramp_seconds,
        "signal": latency,
        "worker_peak_rss_bytes": peak_rss_bytes(stack.worker),
        "history": measure_history(stack, profile.history_events),
    }


def measure_history(stack: Stack, events: int) -> dict[str, Any]:
    account_id = f"history-{uuid4().hex[:6]}"
    started = time.perf_counter()
    run_in_own_process(
        "signal-with-start",
        {
            "temporal_address": stack.temporal_address,
            "task_queue": stack.settings().task_queue,
            "accounts": [account_id],
            "count": events,
            "concurrency": 16,
        },
        stack.scratch,
    )
    wait_for_events(stack, StripeEvent.account_id == account_id, events)
    elapsed = time.perf_counter() - started
    events_per_run = asyncio.run(history_lengths(stack, workflow_id_for(account_id)))
    return {
        "events_sent": events,
        "seconds": elapsed,
        "runs": len(events_per_run),
        "history_events_per_run": events_per_run,
        "max_history_events_per_run": max(events_per_run),
    }


async def history_lengths(stack: Stack, workflow_id: str) -> list[int]:
    """History events of every run of one workflow id, oldest run first."""
    client = await stack.client()
    runs = [execution async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda execution: execution.start_time)
    lengths = []
    for execution in runs:
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        lengths.append(len((await handle.fetch_history()).events))
    return lengths


def wait_for_events(stack: Stack, condition: Any, count: int) -> None:
    """Until `count` stripe_events rows match `condition` (the workflows took them in)."""
    engine = make_engine(stack.database_url)
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    try:
        while True:
            with engine.connect() as connection:
                held = connection.scalar(select(func.count()).where(condition)) or 0
            if held >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {held} of {count} events were taken in")
            time.sleep(0.2)
    finally:
        engine.dispose()


def measure_catch_up(stack: Stack, profile: Profile) -> dict[str, Any]:
    """Missed events (never delivered) replayed by the events reconciliation: wall time until
    every one is held by its account."""
    if not (REPO / "workflows" / "reconciliation.py").exists():
        return {"measured": False, "reason": "workflows/reconciliation.py does not exist"}
    from activities.reconciliation import EVENTS_CURSOR, HANDLED_EVENT_TYPES
    from db import reconciliation
    from db.reconciliation import Cursor
    from workflows.reconciliation import EventsReconciliationInput, EventsReconciliationWorkflow

    if stack.worker is None:
        stack.start_worker()
    stripe = make_stripe_client(stack.settings())
    engine = make_engine(stack.database_url)
    sessions = make_session_factory(engine)
    [newest] = stripe.v1.events.list(params={"limit": 1}).data
    with sessions.begin() as session:
        reconciliation.save_cursor(session, EVENTS_CURSOR, Cursor(newest.created, newest.id))
    # Subscriptions made while no webhook endpoint exists: their events are only listed.
    create_subscribed_accounts(stack, "missed", profile.catch_up_subscriptions)
    missed = [
        event.id
        for event in stripe.v1.events.list(
            params={"ending_before": newest.id, "limit": 100}
        ).auto_paging_iter()
        if event.type in HANDLED_EVENT_TYPES
    ]

    async def reconcile() -> Any:
        client = await stack.client()
        return await client.execute_workflow(
            EventsReconciliationWorkflow.run,
            EventsReconciliationInput(max_pages=1 + len(missed) // 100 + 1),
            id=f"bench-events-reconciliation-{uuid4().hex[:6]}",
            task_queue=stack.settings().task_queue,
        )

    started = time.perf_counter()
    cpu_before = cpu_by_process(stack)
    result = asyncio.run(reconcile())
    replayed = time.perf_counter() - started
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while True:
        with sessions() as session:
            held = len(reconciliation.held_event_ids(session, missed))
        if held == len(missed) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    wall_seconds = time.perf_counter() - started
    cpu_after = cpu_by_process(stack)
    engine.dispose()
    return {
        "measured": True,
        "missed_events": len(missed),
        "held_after": held,
        "redelivered": result.events_redelivered,
        "replay_seconds": replayed,
        "wall_seconds": wall_seconds,
        # Which process the catch-up waits on: the cores each used over its wall time.
        "cores_by_process": {
            name: (cpu_after[name] - cpu_before[name]) / wall_seconds for name in cpu_before
        },
    }


SCENARIOS: dict[str, Callable[[Stack, Profile], dict[str, Any]]] = {
    "ingest": measure_ingest,
    "reads": measure_reads,
    "freshness": measure_freshness,
    # Right after ours, so the two meet the machine as alike as a shared run allows.
    "peer": measure_peer,
    # After both, so they keep meeting the machine as they did before capacity existed.
    "capacity": measure_capacity,
    "catch_up": measure_catch_up,
    "scale": measure_scale,
}
