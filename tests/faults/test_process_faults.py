"""Faults that need real processes: the worker SIGKILLed in the middle of an activity, and the
Temporal server stopped and started again on its database file while webhooks keep coming.

Real time runs here (the dev server, not the time-skipping one): a killed worker's work is only
taken up again once its timeout has passed (10 s for the workflow task that runs the Stripe
fetch as a local activity), which is most of this module's run time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import PendingActivityState, PendingWorkflowTaskState
from temporalio.service import RPCError

from stripe_sim.settings import SimulatorSettings
from tests.conftest import wait_for
from tests.faults.conftest import new_account
from tests.faults.processes import ProcessStack, running_processes
from workflows.account import workflow_id_for


def subscribe(stack: ProcessStack, account_id: str, lookup_key: str, seats: int = 1) -> str:
    customer = stack.stripe.v1.customers.create(
        params={"email": f"{account_id}@example.com", "metadata": {"account_id": account_id}}
    )
    method = stack.stripe.v1.payment_methods.attach(
        "pm_card_visa", params={"customer": customer.id}
    )
    stack.stripe.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": method.id}}
    )
    [price] = stack.stripe.v1.prices.list(params={"lookup_keys": [lookup_key]}).data
    stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": seats}],
            "metadata": {"account_id": account_id},
        }
    )
    return str(customer.id)


@pytest.fixture
async def processes(
    tmp_path: Path, own_database: tuple[str, sessionmaker[Session]]
) -> AsyncIterator[ProcessStack]:
    url, sessions = own_database
    # Stripe keeps retrying while the gateway answers 503 (here for about a minute).
    simulator = SimulatorSettings(webhook_backoff_seconds=(0.2, 0.5, 1, 2), webhook_max_attempts=40)
    async with running_processes(tmp_path, url, sessions, simulator) as stack:
        yield stack


async def stripe_fetch_in_flight(stack: ProcessStack, account_id: str) -> bool:
    """The account's fetch is waiting on Stripe: a request is held at the proxy while the
    account's workflow task runs (the fetch is a local activity inside it) or while the fetch
    is a started activity."""
    handle = stack.temporal.client.get_workflow_handle(workflow_id_for(account_id))
    try:
        description = (await handle.describe()).raw_description
    except RPCError:
        return False  # the workflow has not been started yet
    task_running = (
        description.pending_workflow_task.state
        == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
    )
    activity_running = any(
        activity.activity_type.name == "fetch_current_subscription"
        and activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for activity in description.pending_activities
    )
    return stack.stripe_proxy.chunks_held > 0 and (task_running or activity_running)


async def test_worker_killed_mid_activity_and_restarted(processes: ProcessStack) -> None:
    stack = processes
    accounts: dict[str, str] = {}
    before = new_account()
    accounts[before] = subscribe(stack, before, "pro_monthly")
    await stack.assert_converged(accounts)

    # The worker's Stripe calls hang: the new account's fetch is in flight when it dies.
    stack.stripe_proxy.hold()
    victim = new_account()
    accounts[victim] = subscribe(stack, victim, "team_monthly_per_seat", seats=4)

    await wait_for(
        lambda: stripe_fetch_in_flight(stack, victim),
        within=30,
        what="the victim's Stripe fetch to be in flight",
    )
    stack.worker.kill()
    stack.stripe_proxy.release()
    assert (await stack.entitlements(victim)).json()["billing_state"] == "free"

    await stack.worker.start()
    after = new_account()
    accounts[after] = subscribe(stack, after, "pro_monthly")
    # The killed workflow task times out (10 s) and the new worker runs it, fetch included.
    await stack.assert_converged(accounts, within=120)
    await wait_for(
        lambda: any(f"{victim}@example.com" in m.rcpt_tos for m in stack.smtp.messages),
        what="the victim's welcome email",
    )


async def test_temporal_restarted_while_webhooks_keep_coming(processes: ProcessStack) -> None:
    stack = processes
    accounts: dict[str, str] = {}
    steady = new_account()
    accounts[steady] = subscribe(stack, steady, "pro_monthly")
    await stack.assert_converged(accounts)

    await stack.temporal.stop()
    attempts_before = len(stack.sim.deliveries)
    for plan, seats in (("pro_monthly", 1), ("team_monthly_per_seat", 3)):
        account = new_account()
        accounts[account] = subscribe(stack, account, plan, seats)

    def refused() -> bool:
        return any(r.status == 503 for r in stack.sim.deliveries[attempts_before:])

    await wait_for(refused, within=20, what="the gateway to answer 503")
    # Reads never depend on Temporal.
    assert (await stack.entitlements(steady)).json()["billing_state"] == "active"

    await stack.temporal.start()
    assert stack.worker.running, "the worker survived the outage"
    await stack.assert_converged(accounts, within=90)
