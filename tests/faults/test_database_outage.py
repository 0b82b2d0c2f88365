"""The database unreachable for a while (PostgreSQL: every connection of the service goes
through a loopback proxy that is cut, then restored). Activities retry, `/readyz` says 503
meanwhile, and once the database is back every account converges on Stripe.

SQLite is a file, not a server: "unreachable" has no faithful equivalent there, so the test
runs only against PostgreSQL (`TEST_DATABASE_URL`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from db.engine import make_engine, make_session_factory, migrate
from tests.conftest import wait_for
from tests.e2e.stack import Stack, running_stack
from tests.faults.conftest import assert_stack_converged, new_account, subscribe
from tests.faults.tcp_proxy import TcpProxy
from tests.fixtures_db import fresh_database
from workflows.account import workflow_id_for


@pytest.fixture
def proxied_database(tmp_path: Path) -> Iterator[tuple[str, TcpProxy]]:
    with fresh_database(tmp_path) as url:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            pytest.skip("needs a database server to cut off: set TEST_DATABASE_URL (PostgreSQL)")
        migrate(url)
        with TcpProxy(
            target_port=parsed.port or 5432, target_host=parsed.host or "127.0.0.1"
        ) as proxy:
            proxied = parsed.set(host="127.0.0.1", port=proxy.port)
            yield proxied.render_as_string(hide_password=False), proxy


@pytest.fixture
async def stack_and_proxy(
    workflow_env: WorkflowEnvironment, proxied_database: tuple[str, TcpProxy]
) -> AsyncIterator[tuple[Stack, TcpProxy]]:
    url, proxy = proxied_database
    engine = make_engine(url)
    try:
        async with running_stack(workflow_env, url, make_session_factory(engine)) as stack:
            yield stack, proxy
    finally:
        engine.dispose()


async def readiness(stack: Stack) -> int:
    return (await stack.api.get("/readyz")).status_code


async def failed_attempts(stack: Stack, account_id: str) -> int:
    """The attempt number of the account workflow's retrying activity (0: none retrying)."""
    handle = stack.env.client.get_workflow_handle(workflow_id_for(account_id))
    try:
        description = await handle.describe()
    except RPCError:
        return 0  # not started yet
    return max(
        (a.attempt for a in description.raw_description.pending_activities if a.last_failure),
        default=0,
    )


async def test_database_unreachable_for_a_while(stack_and_proxy: tuple[Stack, TcpProxy]) -> None:
    stack, database = stack_and_proxy
    accounts: dict[str, str] = {}
    steady = new_account()
    accounts[steady], steady_sub = subscribe(stack, steady, "pro_monthly")
    await assert_stack_converged(stack, accounts)

    database.cut()
    assert await readiness(stack) == 503
    # Stripe keeps changing while the database is away; the events name their account, so
    # the gateway still hands them to Temporal.
    stack.stripe.v1.subscriptions.update(steady_sub["id"], params={"cancel_at_period_end": True})
    for plan, seats in (("pro_monthly", 1), ("team_monthly_per_seat", 4)):
        account = new_account()
        accounts[account], _ = subscribe(stack, account, plan, seats=seats)
    await stack.deliveries_done()

    async def retrying() -> bool:
        return await failed_attempts(stack, account) >= 3

    await wait_for(retrying, within=30, what="the new account's activity to fail and retry")
    assert await readiness(stack) == 503

    database.restore()

    async def ready() -> bool:
        return await readiness(stack) == 200

    await wait_for(ready, what="/readyz to answer 200")
    await assert_stack_converged(stack, accounts)
