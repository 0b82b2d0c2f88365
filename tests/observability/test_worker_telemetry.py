"""The real account workflow run through clients configured as production configures them:
with the payload codec (history holds only ciphertext), and with the worker's metrics runtime.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from google.protobuf.message import Message
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.codec import ENCRYPTED_ENCODING, codec_from_spec, new_codec_key_spec
from core.config import Settings
from core.payloads import DATA_CONVERTER
from tests.api.conftest import closed_port
from tests.conftest import wait_for
from tests.observability.conftest import with_client
from tests.workflows.harness import Harness, running_harness, subscription
from worker import metrics_runtime
from workflows.account import workflow_id_for

pytestmark = pytest.mark.db

# Never encoded by a payload codec: the server indexes search attributes, headers are opt-in.
UNENCODED_FIELDS = {"search_attributes", "header"}
# Marker details the SDK writes for itself (a patch's id; a local activity's sequence number,
# attempt, type and time): bookkeeping, never our data. The local activity's result is encoded.
SDK_MARKER_DETAILS = {"patch-data", "data"}


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every payload in a history event, with where it sits, except the unencoded fields."""
    for field, value in message.ListFields():
        if field.name in UNENCODED_FIELDS or field.message_type is None:
            continue
        where = f"{path}.{field.name}"
        if isinstance(value, Message):
            items = [value]
        elif field.message_type.GetOptions().map_entry:
            items = [
                entry
                for key, entry in value.items()
                if isinstance(entry, Message) and key not in SDK_MARKER_DETAILS
            ]
        else:
            items = list(value)
        for item in items:
            if isinstance(item, Payload):
                yield where, item
            else:
                yield from payloads_in(item, where)


async def subscribe(h: Harness) -> tuple[str, str]:
    account, customer = h.new_account()
    h.stripe.subscriptions[customer] = subscription(customer, "active", plan="team", seats=3)
    await h.send(account, customer, "checkout.session.completed")
    await h.wait_for_entitlements(account, state="active", version=1)
    return account, customer


async def test_with_the_codec_history_is_ciphertext_and_results_still_decode(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> None:
    codec = codec_from_spec(new_codec_key_spec("2026-07"))
    plain_client = workflow_env.client
    encrypting_client = Client(
        plain_client.service_client,
        namespace=plain_client.namespace,
        data_converter=dataclasses.replace(DATA_CONVERTER, payload_codec=codec),
    )

    async with running_harness(with_client(workflow_env, encrypting_client), session_factory) as h:
        account, customer = await subscribe(h)
        state = await h.state(account)
        history = await plain_client.get_workflow_handle(workflow_id_for(account)).fetch_history()

    assert state.lifecycle.subscription is not None
    assert (state.customer_id, state.lifecycle.subscription.plan) == (customer, "team")
    found = [
        (f"{event.event_type}{where}", payload)
        for event in history.events
        for where, payload in payloads_in(event)
    ]
    assert len(found) > 5, "the history should hold the signal, activity inputs and results"
    in_the_clear = [w for w, payload in found if payload.metadata["encoding"] != ENCRYPTED_ENCODING]
    assert in_the_clear == []
    assert all(account.encode() not in payload.data for _, payload in found)
    # What the workflow received, decrypted with the key, is what was sent.
    assert codec is not None
    decoded = await codec.decode([payload for _, payload in found])
    assert any(customer.encode() in payload.data for payload in decoded)


async def test_the_worker_serves_sdk_and_email_metrics(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> None:
    settings = Settings(_env_file=None, metrics_port=closed_port())
    runtime = metrics_runtime(settings)
    assert runtime is not None
    client = await Client.connect(
        workflow_env.client.service_client.config.target_host,
        namespace=workflow_env.client.namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime,
    )

    async with (
        running_harness(with_client(workflow_env, client), session_factory) as h,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.metrics_port}") as scraper,
    ):
        await subscribe(h)

        async def scraped() -> str | None:
            text = (await scraper.get("/metrics")).text
            return text if 'outcome="sent"' in text else None

        text = await wait_for(scraped, what="the email delivery on the worker's metrics")

    sent = [
        line
        for line in text.splitlines()
        if line.startswith("billing_email_deliveries")
        and 'kind="subscription_started"' in line
        and 'outcome="sent"' in line
    ]
    assert sent and float(sent[0].rsplit(" ", 1)[1]) >= 1
    # The SDK's own worker metrics come from the same endpoint.
    assert "temporal_local_activity_execution_latency" in text
    assert "temporal_workflow_task_schedule_to_start_latency" in text


def test_no_metrics_port_means_the_default_runtime() -> None:
    assert metrics_runtime(Settings(_env_file=None)) is None
