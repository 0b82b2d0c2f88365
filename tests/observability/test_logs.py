"""JSON logs: every line about an account carries its ids; no line carries a secret or a body."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.account_store import AccountStoreActivities, WriteEntitlementsInput
from activities.notifications import SendEmailInput
from core.logging import make_handler
from domain.catalog import default_catalog
from domain.lifecycle import BillingState, Lifecycle
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, WEBHOOK_SECRET, post_event
from tests.api.routes.test_webhooks import subscription_event
from tests.notifications.conftest import FakeStripe, make_activities
from tests.smtp_server import SmtpRecorder
from tests.workflows.harness import subscription
from workflows.account import workflow_id_for

pytestmark = pytest.mark.db

# Would only reach a log through a logged body.
BODY_MARKER = "do-not-log-this-body-3c1f"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above during the test, through the production handler."""
    stream = io.StringIO()
    handler = make_handler("json")
    handler.setStream(stream)  # type: ignore[attr-defined]
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def lines_mentioning(stream: io.StringIO, text: str) -> list[dict[str, Any]]:
    return [line for line in lines(stream) if text in line["message"]]


def with_marker(event: dict[str, Any]) -> dict[str, Any]:
    event["data"]["object"]["metadata"]["note"] = BODY_MARKER
    return event


async def test_webhook_lines_carry_the_event_account_and_workflow_ids(
    client: httpx.AsyncClient, temporal, json_logs: io.StringIO
) -> None:
    account = f"acct_{uuid4().hex[:10]}"
    accepted = with_marker(subscription_event(account_id=account))
    await post_event(client, accepted)
    temporal.failure = RuntimeError("Failed client connect")
    refused = with_marker(subscription_event(account_id=account))
    await post_event(client, refused)

    [accepted_line] = lines_mentioning(json_logs, f"signalled {accepted['id']}")
    [refused_line] = lines_mentioning(json_logs, f"did not accept {refused['id']}")
    for line, event in ((accepted_line, accepted), (refused_line, refused)):
        assert line["stripe_event_id"] == event["id"]
        assert line["account_id"] == account
        assert line["workflow_id"] == workflow_id_for(account)
    assert refused_line["level"] == "WARNING"


async def test_an_unroutable_event_is_logged_with_its_id(
    client: httpx.AsyncClient, json_logs: io.StringIO
) -> None:
    event = with_marker(subscription_event(customer_id=f"cus_{uuid4().hex[:10]}"))

    await post_event(client, event)

    [line] = lines_mentioning(json_logs, "unroutable")
    assert line["stripe_event_id"] == event["id"]
    assert "account_id" not in line


async def test_activity_lines_carry_the_workflow_and_account_ids(
    session_factory: sessionmaker[Session], json_logs: io.StringIO
) -> None:
    stripe = FakeStripe()
    account = f"acct_{uuid4().hex[:10]}"
    request = SendEmailInput(
        key=f"{account}:2026-11:subscription_started",
        account_id=account,
        customer_id=stripe.add_customer("ada@example.com"),
        kind="subscription_started",
        context={"plan": "pro", "interval": "month", "seats": "1"},
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id_for(account))

    with SmtpRecorder() as smtp:
        activities = make_activities(session_factory, stripe, smtp.port)
        outcome = await env.run(activities.send_email, request)

    assert outcome.status == "sent"
    [line] = lines_mentioning(json_logs, f"sent email {request.key}")
    assert line["workflow_id"] == workflow_id_for(account)
    assert line["account_id"] == account
    # The SDK's own details are kept as it gives them.
    assert line["temporal_activity"]["activity_type"] == env.info.activity_type


async def test_each_entitlement_change_is_one_info_line_about_the_account(
    session_factory: sessionmaker[Session], json_logs: io.StringIO
) -> None:
    account = f"acct_{uuid4().hex[:10]}"
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id_for(account))
    activities = AccountStoreActivities(session_factory, default_catalog())
    trialing = Lifecycle(state=BillingState.TRIALING, subscription=subscription("cus_logged"))
    write = WriteEntitlementsInput(account, 1, trialing, "stripe:evt_created")

    assert env.run(activities.write_entitlements, write) is True
    assert env.run(activities.write_entitlements, write) is False  # a repeat: no line

    [line] = lines_mentioning(json_logs, "entitlements v1")
    assert line["message"].startswith(
        "entitlements v1: trialing, plan pro, access full (stripe:evt_created)"
    )
    assert (line["level"], line["account_id"]) == ("INFO", account)


async def test_no_line_carries_a_secret_a_token_or_a_body(
    client: httpx.AsyncClient, temporal, json_logs: io.StringIO
) -> None:
    account = f"acct_{uuid4().hex[:10]}"
    await post_event(client, with_marker(subscription_event(account_id=account)))
    await post_event(client, with_marker(subscription_event(customer_id="cus_nobody")))
    temporal.failure = RuntimeError("Failed client connect")
    await post_event(client, with_marker(subscription_event(account_id=account)))
    await client.get(
        f"/v1/accounts/{account}/entitlements", headers={"Authorization": f"Bearer {APP_TOKEN}"}
    )
    await client.get("/admin/accounts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    logged = json_logs.getvalue()
    assert logged, "nothing was logged: the test would prove nothing"
    for secret in (WEBHOOK_SECRET, APP_TOKEN, ADMIN_TOKEN, BODY_MARKER, '"object": "subscription"'):
        assert secret not in logged


def test_warnings_and_uncaught_exceptions_are_json_lines_too() -> None:
    """The interpreter writes both as plain text unless logging takes them."""
    program = (
        "import threading, warnings\n"
        "from core.config import Settings\n"
        "from core.logging import configure_logging\n"
        "configure_logging(Settings(_env_file=None, log_format='json'))\n"
        "warnings.warn('a deprecated call')\n"
        "thread = threading.Thread(target=lambda: 1 / 0)\n"
        "thread.start(); thread.join()\n"
        "raise RuntimeError('the process fails')\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )

    assert finished.returncode == 1
    lines = [json.loads(line) for line in finished.stderr.splitlines()]
    assert [line["logger"] for line in lines] == ["py.warnings", "uncaught", "uncaught"]
    assert "ZeroDivisionError" in lines[1]["exception"]
    assert "RuntimeError: the process fails" in lines[2]["exception"]


def test_at_info_a_stripe_request_logs_nothing_and_an_account_change_one_plain_line() -> None:
    program = (
        "import logging\n"
        "from temporalio import activity\n"
        "from temporalio.testing import ActivityEnvironment\n"
        "from core.config import Settings\n"
        "from core.logging import configure_logging\n"
        "configure_logging(Settings(_env_file=None, log_level='INFO'))\n"
        "logging.getLogger('stripe').info('message=\"Request to Stripe api\"')\n"
        "logging.getLogger('httpx').info('HTTP Request: POST http://127.0.0.1:12111/v1/x')\n"
        "ActivityEnvironment().run(lambda: activity.logger.info('entitlements v1: active'))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )

    [line] = finished.stderr.splitlines()
    # The activity's ids once, as fields, not again as a dict in the message.
    assert line.endswith(" INFO temporalio.activity entitlements v1: active [workflow_id=test]")
