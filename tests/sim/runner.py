"""Runs one schedule: the real account workflow and the worker's real activities (wrapped by
name for faults) against the Stripe simulator, in Temporal's time-skipping server; then the
oracle.

Depends on the workflow only through its type, its message names (signal `stripe_event`,
the updates, the continue-as-new knob of its input) and the database tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import stripe
from sqlalchemy import select
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notifications import NotificationActivities
from core.smtp import SmtpSender
from db import repository
from db.models import StripeEvent, UnroutableEvent
from domain.lifecycle import Purchase
from domain.operator_actions import OperatorRequest
from domain.plan_changes import (
    ChangeKind,
    PlanChange,
    PlanChangeError,
    classify_change,
    purchase_for,
)
from domain.stripe_events import is_handled, route_event, signal_for
from notifications.message import message_id_for
from tests.sim.faults import Faults, FaultyMail, wrap_activities
from tests.sim.oracle import (
    CONVERGE_BOUND_HOURS,
    UPDATE_BOUND_HOURS,
    Violation,
    convergence_violation,
    email_violations,
    plan_snapshots,
)
from tests.sim.schedule import RETIRED_LOOKUP_KEY, Schedule, Step
from tests.sim.world import ADDON_LOOKUP_KEYS, World, time_skipping_server
from tests.workflows.harness import quick_email_sender
from worker import WORKFLOW_RUNNER, build_activities, sending_emails
from workflows.account import (
    AccountBillingWorkflow,
    AccountWorkflowInput,
    CancelRequest,
    KeepPlanRequest,
    ResumeRequest,
    StripeEventSignal,
    workflow_id_for,
)

_serial = itertools.count(1)
# A workflow task lost with a restarted worker is retried after this (real) time, during which
# the time-skipping server holds time still; the default, 10 s, would dominate a run.
TASK_TIMEOUT = timedelta(seconds=1)
# SIM_TRACE=1 prints each step as it starts, with the wall time so far.
TRACE = bool(os.environ.get("SIM_TRACE"))


@dataclass
class UpdateCall:
    step: int
    name: str
    task: asyncio.Task[str]


@dataclass
class RunResult:
    schedule: Schedule
    violations: list[Violation]
    seconds: float
    crash_duplicates: int = 0
    updates: int = 0
    events: int = 0
    notes: list[str] = field(default_factory=list)
    # Stopped at the wall-clock limit (see WALL_LIMIT_SECONDS): neither passed nor failed.
    inconclusive: bool = False
    # For a failing run, what the account was stuck on (pending activities and their last
    # failure), to tell the findings apart; not part of the oracle.
    diagnosis: list[str] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return self.schedule.seed

    @property
    def kinds(self) -> set[str]:
        return {v.kind for v in self.violations}


class SeedRun:
    def __init__(self, world: World, env: WorkflowEnvironment, schedule: Schedule) -> None:
        self.world = world
        self.env = env
        self.schedule = schedule
        suffix = f"{schedule.seed}x{next(_serial)}{uuid4().hex[:4]}"
        self.account_id = f"acct_sim{suffix}"
        self.workflow_id = workflow_id_for(self.account_id)
        self.task_queue = f"sim-{suffix}"
        self.faults = Faults()
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self.diagnosis: list[str] = []
        self.updates: list[UpdateCall] = []
        self.signalled: set[str] = set()
        self.held: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.created_subscriptions: set[str] = set()
        self.last_version = 0
        self.other_customer: str | None = None
        self.worker: Worker | None = None
        self.worker_task: asyncio.Task[None] | None = None
        self.email_sending = contextlib.AsyncExitStack()
        self.customer_id = ""
        self.clock_id = ""

    # --- plumbing --------------------------------------------------------------------------

    @property
    def stripe(self) -> stripe.StripeClient:
        return self.world.stripe

    def _input(self) -> AccountWorkflowInput:
        return AccountWorkflowInput(
            account_id=self.account_id,
            continue_as_new_after_events=self.schedule.setup.continue_as_new_after,
        )

    async def _start_worker(self) -> None:
        settings = self.world.settings.model_copy(update={"task_queue": self.task_queue})
        mail = cast(SmtpSender, FaultyMail(self.world.mail, self.faults))
        email_sender = quick_email_sender(
            NotificationActivities(
                self.world.sessions, self.stripe, self.world.catalog, settings, mail
            ),
            self.world.sessions,
            self.env.client,
        )
        await self.email_sending.enter_async_context(sending_emails(email_sender))
        activities = build_activities(
            self.env.client,
            settings,
            stripe_client=self.stripe,
            sessions=self.world.sessions,
            catalog=self.world.catalog,
            mail=mail,
        )
        # One worker for the whole life, with a workflow cache: without one, every workflow
        # task replays the whole history, quadratic in a run that retries for days (most of
        # a seed's CPU). A worker restart is emulated (`Faults.restart_worker`): the test
        # server never hands back a task sent to a stopped worker's sticky queue.
        self.worker = Worker(
            self.env.client,
            task_queue=self.task_queue,
            workflows=[AccountBillingWorkflow],
            activities=wrap_activities(activities, self.faults),
            workflow_runner=WORKFLOW_RUNNER,
            activity_executor=self.world.executor,
            graceful_shutdown_timeout=timedelta(seconds=5),
            max_cached_workflows=100,
        )
        self.worker_task = asyncio.create_task(self.worker.run())

    async def _stop_worker(self) -> None:
        if self.worker is not None and self.worker_task is not None:
            await self.worker.shutdown()
            with contextlib.suppress(Exception):
                await self.worker_task
        self.worker, self.worker_task = None, None
        await self.email_sending.aclose()

    async def _now(self) -> datetime:
        return await self.env.get_current_time()

    async def _signal(self, signal: StripeEventSignal) -> None:
        self.signalled.add(signal.event_id)
        await self.env.client.start_workflow(
            AccountBillingWorkflow.run,
            self._input(),
            id=self.workflow_id,
            task_queue=self.task_queue,
            task_timeout=TASK_TIMEOUT,
            start_signal="stripe_event",
            start_signal_args=[signal],
        )

    async def _send_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self._signal(signal_for(event, route_event(event)))

    def _new_events(self) -> list[dict[str, Any]]:
        return [e for e in self.world.events.take(self.customer_id) if is_handled(e["type"])]

    async def _deliver_now(self) -> None:
        """Webhooks arrive before Stripe's answer to our call does."""
        await self._send_events(self._new_events())

    def _update(self, step_index: int, name: str, *args: Any) -> None:
        start = WithStartWorkflowOperation(
            AccountBillingWorkflow.run,
            self._input(),
            id=self.workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_timeout=TASK_TIMEOUT,
        )

        async def call() -> str:
            try:
                await self.env.client.execute_update_with_start_workflow(
                    name, args=list(args), start_workflow_operation=start
                )
            except WorkflowUpdateFailedError:
                return "refused"
            except Exception as err:
                return f"lost: {type(err).__name__}: {err}"
            return "answered"

        self.updates.append(UpdateCall(step_index, name, asyncio.create_task(call())))

    def _live_subscriptions(self) -> list[dict[str, Any]]:
        listed = self.stripe.v1.subscriptions.list(
            params={"customer": self.customer_id, "status": "all", "limit": 100}
        )
        return [s.to_dict() for s in listed.data]

    def _newest_live(self) -> dict[str, Any] | None:
        live = [
            s
            for s in self._live_subscriptions()
            if s["status"] not in ("canceled", "incomplete_expired")
        ]
        return max(live, key=lambda s: (s["created"], s["id"]), default=None)

    def _check_version(self, where: str) -> None:
        with self.world.sessions() as session:
            record = repository.read_entitlements(session, self.account_id)
        version = record.version if record is not None else 0
        if version < self.last_version:
            self.violations.append(
                Violation("version_regressed", f"{self.last_version} → {version} at {where}")
            )
        self.last_version = max(self.last_version, version)

    # --- the life --------------------------------------------------------------------------

    async def run(self) -> RunResult:
        started = time.monotonic()
        self.faults.loop = asyncio.get_running_loop()
        self.faults.deliver_first = self._deliver_now
        now = await self._now()
        self.clock_id = str(
            self.stripe.v1.test_helpers.test_clocks.create(
                params={"frozen_time": int(now.timestamp()), "name": self.account_id}
            ).id
        )
        self.customer_id = str(
            self.stripe.v1.customers.create(
                params={
                    "email": f"{self.account_id}@example.com",
                    "metadata": {"account_id": self.account_id},
                    "test_clock": self.clock_id,
                    "payment_method": "pm_card_visa",
                    "invoice_settings": {"default_payment_method": "pm_card_visa"},
                }
            ).id
        )
        if self.schedule.setup.misrouted_customer:
            with self.world.sessions.begin() as session:
                repository.link_customer(session, f"{self.account_id}_old", self.customer_id)
        await self._start_worker()
        try:
            for index, step in enumerate(self.schedule.steps):
                if TRACE:
                    print(f"  {time.monotonic() - started:7.2f}s step {index}: {step}", flush=True)
                await self._step(index, step)
                self._check_version(f"step {index}")
            await self._end_phase()
        finally:
            await self._clean_up()
        return RunResult(
            schedule=self.schedule,
            violations=self.violations,
            seconds=time.monotonic() - started,
            crash_duplicates=self._crash_duplicates,
            updates=len(self.updates),
            events=len(self.signalled),
            notes=self.notes,
            diagnosis=self.diagnosis if self.violations else [],
        )

    async def _step(self, index: int, step: Step) -> None:
        kind = step.kind
        try:
            if kind == "deliver":
                await self._deliver(step)
            elif kind == "sleep":
                await self._sleep(timedelta(minutes=step.get("minutes")))
            elif kind == "fault_on":
                self.faults.on.add(step.get("fault"))
            elif kind == "fault_off":
                self.faults.on.discard(step.get("fault"))
            elif kind == "restart_worker":
                self.faults.restart_worker()
            elif kind == "email_crash_after_accept":
                self.faults.crash_next_email = True
            elif kind == "event_for_other_customer":
                await self._event_for_other_customer()
            elif kind in UPDATES:
                await UPDATES[kind](self, index, step)
            else:
                await asyncio.to_thread(STRIPE_ACTIONS[kind], self, step)
        except stripe.StripeError as err:
            # Stripe refusing what the schedule asked (nothing to cancel, a declined card):
            # part of the life, not a finding.
            self.notes.append(f"step {index} {step}: Stripe said {type(err).__name__}")

    async def _deliver(self, step: Step) -> None:
        rng = random.Random(step.get("seed"))
        arrived, self.held = self.held + self._new_events(), []
        out: list[dict[str, Any]] = []
        for event in arrived:
            if rng.random() < step.get("drop"):
                self.dropped.append(event)
                continue
            if rng.random() < step.get("delay"):
                self.held.append(event)
                continue
            out.append(event)
            if rng.random() < step.get("duplicate"):
                out.append(event)
        if step.get("shuffle"):
            rng.shuffle(out)
        await self._send_events(out)

    async def _skip(self, duration: timedelta) -> None:
        """Skip time; a sleep held back for longer than its RPC deadline (time skipping is
        held while a task is in flight) is asked again for what is left."""
        until = await self._now() + duration
        while (left := until - await self._now()) > timedelta(0):
            try:
                await self.env.sleep(left)
            except RPCError as err:
                self.notes.append(f"time skipping held back: {err}")
                if TRACE:
                    print(f"  time skipping held back: {err}", flush=True)

    async def _sleep(self, duration: timedelta) -> None:
        await self._skip(duration)
        target = int((await self._now()).timestamp())
        clocks = self.stripe.v1.test_helpers.test_clocks

        def advance() -> None:
            clock = clocks.retrieve(self.clock_id)
            if clock.frozen_time >= target:
                return
            clocks.advance(self.clock_id, params={"frozen_time": target})
            while clocks.retrieve(self.clock_id).status != "ready":
                time.sleep(0.005)

        await asyncio.to_thread(advance)

    async def _event_for_other_customer(self) -> None:
        """An event naming a customer that is linked to another account (metadata pointing
        here, as after the runbook's "routed to the wrong account" procedure)."""
        if self.other_customer is None:
            self.other_customer = str(
                self.stripe.v1.customers.create(params={"email": "other@example.com"}).id
            )
            with self.world.sessions.begin() as session:
                repository.link_customer(session, f"{self.account_id}_other", self.other_customer)
        now = await self._now()
        await self._signal(
            StripeEventSignal(
                event_id=f"evt_simother{uuid4().hex[:12]}",
                event_type="customer.subscription.updated",
                created=int(now.timestamp()),
                customer_id=self.other_customer,
            )
        )

    # --- the end: faults stop, then the oracle ---------------------------------------------

    async def _end_phase(self) -> None:
        self.faults.on &= {"smtp"}  # SMTP may stay down: nothing may wait on it
        self.faults.crash_next_email = False
        if self.schedule.setup.redeliver_dropped:
            await self._send_events(self.dropped)
        await self._send_events(self.held + self._new_events())
        now = await self._now()
        # What the events reconciliation or an operator's resync would send.
        await self._signal(
            StripeEventSignal(
                event_id=f"evt_simresync{uuid4().hex[:12]}",
                event_type="customer.subscription.updated",
                created=int(now.timestamp()),
                customer_id=self.customer_id,
            )
        )
        await self._skip(timedelta(hours=UPDATE_BOUND_HOURS))
        pending = [u.task for u in self.updates if not u.task.done()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)  # answers already given are in flight
        for call in self.updates:
            if not call.task.done():
                self.violations.append(
                    Violation(
                        "update_unanswered",
                        f"{call.name} (step {call.step}) not answered {UPDATE_BOUND_HOURS}h "
                        "after the faults stopped",
                    )
                )
            elif call.task.result().startswith("lost"):
                self.violations.append(
                    Violation(
                        "update_lost", f"{call.name} (step {call.step}): {call.task.result()}"
                    )
                )
        await self._skip(timedelta(hours=CONVERGE_BOUND_HOURS - UPDATE_BOUND_HOURS))
        self._check_version("the end")
        await self._check_run()
        self._check_events()
        self._check_entitlements()
        self._check_subscriptions()
        self._check_emails()

    async def _check_run(self) -> None:
        handle = self.env.client.get_workflow_handle(self.workflow_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            self.violations.append(Violation("run_missing", str(err)))
            return
        for pending in description.raw_description.pending_activities:
            failure = pending.last_failure.message if pending.HasField("last_failure") else ""
            self.diagnosis.append(
                f"pending {pending.activity_type.name} (attempt {pending.attempt}): {failure[:120]}"
            )
        if self.faults.on & {"smtp"}:
            self.diagnosis.append("SMTP still down")
        if description.status != WorkflowExecutionStatus.RUNNING:
            self.violations.append(
                Violation("run_failed", f"the account's workflow is {description.status.name}")
            )

    def _check_events(self) -> None:
        with self.world.sessions() as session:
            recorded = set(
                session.scalars(
                    select(StripeEvent.event_id).where(StripeEvent.event_id.in_(self.signalled))
                )
            )
            recorded |= set(
                session.scalars(
                    select(UnroutableEvent.event_id).where(
                        UnroutableEvent.event_id.in_(self.signalled)
                    )
                )
            )
        lost = self.signalled - recorded
        if lost:
            self.violations.append(
                Violation(
                    "event_lost",
                    f"{len(lost)} of {len(self.signalled)} signalled events never recorded "
                    f"{CONVERGE_BOUND_HOURS}h after the faults stopped",
                )
            )

    def _check_entitlements(self) -> None:
        if self.schedule.setup.misrouted_customer:
            return  # which account should follow the customer is for an operator to say
        with self.world.sessions() as session:
            stored = repository.stored_lifecycle(session, self.account_id)
        snapshots = plan_snapshots(self._live_subscriptions(), self.world.catalog)
        violation = convergence_violation(stored, snapshots)
        if violation is not None:
            self.violations.append(violation)

    def _check_subscriptions(self) -> None:
        ours = [
            s["id"]
            for s in self._live_subscriptions()
            if s["status"] not in ("canceled", "incomplete_expired")
            and s["id"] not in self.created_subscriptions
        ]
        if ours:
            self.violations.append(
                Violation(
                    "subscription_made_by_us", f"live subscriptions {ours} not made by the schedule"
                )
            )

    def _check_emails(self) -> None:
        address = f"{self.account_id}@example.com"
        sender = self.world.settings.email_sender
        ids = [
            str(m.message["Message-ID"]) for m in self.world.smtp.messages if address in m.rcpt_tos
        ]
        key_of = {message_id_for(k, sender): k for k in self.faults.crashed_after_accept}
        violations, self._crash_duplicates = email_violations(
            ids, key_of, self.faults.crashed_after_accept
        )
        self.violations += violations

    _crash_duplicates = 0

    async def _clean_up(self) -> None:
        self.faults.on.clear()
        handle = self.env.client.get_workflow_handle(self.workflow_id)
        with contextlib.suppress(RPCError):
            await handle.terminate(reason="simulation finished")
        for call in self.updates:
            call.task.cancel()
        await asyncio.gather(*(c.task for c in self.updates), return_exceptions=True)
        await self._stop_worker()
        with contextlib.suppress(stripe.StripeError):
            self.stripe.v1.test_helpers.test_clocks.delete(self.clock_id)


# --- Stripe-side actions (blocking; run in a thread) ----------------------------------------


def _subscribe(run: SeedRun, step: Step) -> None:
    interval = step.get("interval")
    if step.get("addon"):
        price = run.world.prices[ADDON_LOOKUP_KEYS[interval]]
    else:
        price = run.world.prices[run.world.catalog.price(step.get("plan"), interval).lookup_key]
    params: dict[str, Any] = {
        "customer": run.customer_id,
        "items": [{"price": price, "quantity": step.get("seats")}],
        "metadata": {"account_id": run.account_id},
    }
    if step.get("trial"):
        params["trial_period_days"] = 14
    try:
        created = run.stripe.v1.subscriptions.create(params=params)  # type: ignore[arg-type]
    except stripe.CardError:
        # Declined first payment: Stripe still made an incomplete subscription.
        for sub in run._live_subscriptions():
            run.created_subscriptions.add(sub["id"])
        raise
    run.created_subscriptions.add(str(created.id))


def _set_card(run: SeedRun, card: str) -> None:
    method = run.stripe.v1.payment_methods.attach(card, params={"customer": run.customer_id})
    run.stripe.v1.customers.update(
        run.customer_id, params={"invoice_settings": {"default_payment_method": method.id}}
    )


def _fail_payment(run: SeedRun, step: Step) -> None:
    _set_card(run, "pm_card_chargeCustomerFail")


def _recover(run: SeedRun, step: Step) -> None:
    _set_card(run, "pm_card_visa")
    invoices = run.stripe.v1.invoices.list(
        params={"customer": run.customer_id, "status": "open", "limit": 10}
    )
    for invoice in invoices.data:
        with contextlib.suppress(stripe.StripeError):
            run.stripe.v1.invoices.pay(str(invoice.id))


def _on_newest(action: str) -> Any:
    def act(run: SeedRun, step: Step) -> None:
        sub = run._newest_live()
        if sub is None:
            return
        subscriptions = run.stripe.v1.subscriptions
        if action == "cancel_at_period_end":
            subscriptions.update(sub["id"], params={"cancel_at_period_end": True})
        elif action == "resume":
            subscriptions.update(sub["id"], params={"cancel_at_period_end": False})
        elif action == "cancel_now":
            subscriptions.cancel(sub["id"])
        elif action == "add_addon_item":
            interval = sub["items"]["data"][0]["price"]["recurring"]["interval"]
            addon = run.world.prices[ADDON_LOOKUP_KEYS[interval]]
            subscriptions.update(sub["id"], params={"items": [{"price": addon, "quantity": 1}]})

    return act


STRIPE_ACTIONS = {
    "subscribe": _subscribe,
    "second_subscription": _subscribe,
    "fail_payment": _fail_payment,
    "recover": _recover,
    "stripe_cancel_at_period_end": _on_newest("cancel_at_period_end"),
    "stripe_resume": _on_newest("resume"),
    "stripe_cancel_now": _on_newest("cancel_now"),
    "add_addon_item": _on_newest("add_addon_item"),
}


# --- app and operator updates ----------------------------------------------------------------


async def _change_plan(run: SeedRun, index: int, step: Step) -> None:
    catalog = run.world.catalog
    plan, interval, seats = step.get("plan"), step.get("interval"), step.get("seats")
    purchase = purchase_for(catalog, plan, interval, seats)
    if step.get("retired_price"):
        purchase = Purchase(plan, interval, seats, RETIRED_LOOKUP_KEY)
    with run.world.sessions() as session:
        stored = repository.stored_lifecycle(session, run.account_id)
    kind = ChangeKind.UPGRADE
    if stored is not None and stored.subscription is not None:
        try:
            kind = classify_change(catalog, stored.subscription, purchase).kind
        except PlanChangeError:
            return  # the app would answer "already on that plan"
    run._update(index, "change_plan", PlanChange(kind=kind, purchase=purchase))


async def _cancel_subscription(run: SeedRun, index: int, step: Step) -> None:
    run._update(
        index, "cancel_subscription", CancelRequest(at_period_end=step.get("at_period_end"))
    )


async def _resume(run: SeedRun, index: int, step: Step) -> None:
    run._update(index, "resume_subscription", ResumeRequest())


async def _keep_plan(run: SeedRun, index: int, step: Step) -> None:
    run._update(index, "cancel_plan_change", KeepPlanRequest())


async def _operator_action(run: SeedRun, index: int, step: Step) -> None:
    action = step.get("action")
    until = None
    if action in ("grant_comp", "extend_grace"):
        until = await run._now() + timedelta(days=step.get("days"))
    request = OperatorRequest(
        action=action,
        actor="simulation",
        reason=f"seed {run.schedule.seed}",
        plan=step.get("plan") if action == "grant_comp" else None,
        until=until,
    )
    run._update(index, "operator_action", request)


UPDATES = {
    "change_plan": _change_plan,
    "cancel_subscription": _cancel_subscription,
    "resume_subscription": _resume,
    "cancel_plan_change": _keep_plan,
    "operator_action": _operator_action,
}


# A run normally takes under a second of wall time; one with weeks of database outage takes
# up to ~15 s (an hour's backoff of 10-attempt steps is ~3,000 activity attempts a week). The
# time-skipping server holds time still while a task is in flight; a run held past this limit
# says nothing either way and is reported as inconclusive.
WALL_LIMIT_SECONDS = float(os.environ.get("SIM_WALL_LIMIT", "40"))


async def run_schedule(world: World, schedule: Schedule) -> RunResult:
    started = time.monotonic()
    async with time_skipping_server() as env:
        try:
            return await asyncio.wait_for(
                SeedRun(world, env, schedule).run(), timeout=WALL_LIMIT_SECONDS
            )
        except TimeoutError:
            return RunResult(
                schedule=schedule,
                violations=[],
                seconds=time.monotonic() - started,
                inconclusive=True,
            )


def count_kinds(results: list[RunResult]) -> Counter[str]:
    return Counter(kind for r in results for kind in r.kinds)
