"""send_email on a real worker: the dataclasses cross Temporal, and SMTP failures are retried
by Temporal's retry policy until the mail server is back, with exactly one email in the end."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.notifications import EmailOutcome, SendEmailInput
from db import outbox
from tests.conftest import wait_for
from tests.notifications.conftest import FakeStripe, make_activities
from tests.smtp_server import SmtpRecorder

pytestmark = pytest.mark.db


@workflow.defn(sandboxed=False)
class SendOneEmail:
    @workflow.run
    async def run(self, request: SendEmailInput) -> EmailOutcome:
        return await workflow.execute_activity(
            "send_email",
            request,
            result_type=EmailOutcome,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=50),
                backoff_coefficient=1.0,
                maximum_interval=timedelta(milliseconds=50),
            ),
        )


async def test_temporal_retries_until_the_mail_server_is_up(
    workflow_env: WorkflowEnvironment,
    session_factory: sessionmaker[Session],
    fake_stripe: FakeStripe,
) -> None:
    server = SmtpRecorder()  # down at first
    activities = make_activities(session_factory, fake_stripe, server.port)
    account = f"acct_{uuid4().hex[:12]}"
    request = SendEmailInput(
        key=f"{account}:2026-11:trial_ending",
        account_id=account,
        customer_id=fake_stripe.add_customer("ada@example.com"),
        kind="trial_ending",
        context={"plan": "pro", "interval": "year", "trial_ends_at": "2026-12-10"},
    )

    def attempts() -> int:
        with session_factory() as session:
            row = outbox.get_delivery(session, request.key)
        return 0 if row is None else row.attempts

    task_queue = f"email-{uuid4()}"
    async with Worker(
        workflow_env.client,
        task_queue=task_queue,
        workflows=[SendOneEmail],
        activities=[activities.send_email],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await workflow_env.client.start_workflow(
            SendOneEmail.run, request, id=f"send-{uuid4()}", task_queue=task_queue
        )
        await wait_for(lambda: attempts() >= 3, what="three failed attempts")
        with server:
            outcome = await handle.result()
            assert outcome == EmailOutcome(key=request.key, status="sent")
            await wait_for(lambda: server.messages, what="the email")
            assert len(server.messages) == 1
    assert "$290.00 per year" in server.messages[0].text
