"""The console's list of accounts with a sync error is Temporal's visibility query, as in the
Web UI: checked against the dev server (the time-skipping test server has no such queries)."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.account_workflows import AccountWorkflows, SyncErrorAccount
from api.edge import TemporalGate
from core.temporal import register_search_attributes
from core.workflow_ids import workflow_id_for
from tests.conftest import wait_for
from tests.production_shape.stack import TemporalDevServer
from workflows.account.visibility import ACCOUNT_ID, BILLING_SYNC_ERROR, SEARCH_ATTRIBUTES

# Nobody polls it: the runs stay running with the search attributes they started with.
IDLE_QUEUE = "nobody-polls-this"


async def test_running_accounts_with_a_sync_error_are_listed_and_none_when_temporal_is_down(
    tmp_path: Path,
) -> None:
    server = TemporalDevServer(tmp_path)
    await server.start()
    try:
        client = await Client.connect(server.address)
        await register_search_attributes(client, SEARCH_ATTRIBUTES, client.namespace)
        for account_id, sync_error in (("acct_broken", "CatalogError"), ("acct_fine", None)):
            attributes = [SearchAttributePair(ACCOUNT_ID, account_id)]
            if sync_error is not None:
                attributes.append(SearchAttributePair(BILLING_SYNC_ERROR, sync_error))
            await client.start_workflow(
                "AccountBillingWorkflow",
                id=workflow_id_for(account_id),
                task_queue=IDLE_QUEUE,
                search_attributes=TypedSearchAttributes(attributes),
            )
        gate = TemporalGate(client)
        workflows = AccountWorkflows(client, IDLE_QUEUE, gate)

        found = await wait_for(
            lambda: workflows.with_sync_error(10), what="the account with a sync error listed"
        )

        assert found == [SyncErrorAccount("acct_broken", "CatalogError")]
        server.kill()
        assert await workflows.with_sync_error(10) is None
        await gate.close()
    finally:
        server.stop()
