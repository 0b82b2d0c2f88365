"""The send_email activity against a real SMTP server and the test database."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from uuid import uuid4

import aiosmtplib
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notifications import (
    EMAIL_KINDS,
    EmailOutcome,
    NotificationActivities,
    SendEmailInput,
)
from core.smtp import SmtpSender
from db import outbox
from db.outbox import DeliveryRecord, DeliveryStatus
from notifications.message import KEY_HEADER
from ops.mail_sink import MailSink
from tests.conftest import wait_for
from tests.notifications.conftest import PORTAL_URL, FakeStripe, make_activities, smtp_settings
from tests.smtp_server import SmtpRecorder, free_port

pytestmark = pytest.mark.db

CONTEXT = {
    "plan": "pro",
    "interval": "month",
    "seats": "1",
    "grace_ends_at": "2026-12-01T09:30:00+00:00",
    "open_invoice_url": "https://invoice.example.test/i/in_1",
}


def request_for(customer_id: str | None, kind: str = "payment_failed") -> SendEmailInput:
    account = f"acct_{uuid4().hex[:12]}"
    return SendEmailInput(
        key=f"{account}:2026-11:{kind}",
        account_id=account,
        customer_id=customer_id,
        kind=kind,
        context=dict(CONTEXT),
    )


async def send(activities: NotificationActivities, request: SendEmailInput) -> EmailOutcome:
    return await ActivityEnvironment().run(activities.send_email, request)


def delivery(sessions: sessionmaker[Session], key: str) -> DeliveryRecord:
    with sessions() as session:
        row = outbox.get_delivery(session, key)
    assert row is not None, f"no outbox row for {key}"
    return row


async def test_one_key_sends_one_email_however_often_it_is_asked(
    session_factory: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    request = request_for(fake_stripe.add_customer("ada@example.com"))

    outcomes = [await send(activities, request) for _ in range(3)]

    assert [o.status for o in outcomes] == ["sent", "already_sent", "already_sent"]
    await wait_for(lambda: smtp_server.messages, what="the email")
    assert len(smtp_server.messages) == 1
    received = smtp_server.messages[0]
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.message["Subject"] == "Payment failed for your Dataface Pro plan"
    assert received.message["From"] == "Dataface Billing <billing@dataface.local>"
    assert received.message[KEY_HEADER] == request.key
    assert "$29.00" in received.text and "1 December 2026" in received.text
    assert "https://invoice.example.test/i/in_1" in received.html
    row = delivery(session_factory, request.key)
    assert (row.status, row.attempts, row.recipient) == (
        DeliveryStatus.SENT,
        1,
        "ada@example.com",
    )
    assert row.subject == received.message["Subject"] and row.sent_at is not None


async def test_smtp_down_fails_the_attempt_and_the_retry_sends_once(
    session_factory: sessionmaker[Session], fake_stripe: FakeStripe
) -> None:
    server = SmtpRecorder()  # not started: nothing listens on its port
    activities = make_activities(session_factory, fake_stripe, server.port)
    request = request_for(fake_stripe.add_customer("grace@example.com"))

    for attempt in (1, 2):
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await send(activities, request)
        row = delivery(session_factory, request.key)
        assert (row.status, row.attempts) == (DeliveryStatus.PENDING, attempt)
        assert row.last_error is not None and row.last_error.startswith("SMTPConnectError")

    with server:
        assert (await send(activities, request)).status == "sent"
        assert (await send(activities, request)).status == "already_sent"
        await wait_for(lambda: server.messages, what="the retried email")
        assert len(server.messages) == 1
    row = delivery(session_factory, request.key)
    assert (row.status, row.attempts) == (DeliveryStatus.SENT, 3)


async def test_a_mail_server_that_stops_and_comes_back(
    session_factory: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    customer = fake_stripe.add_customer("lin@example.com")
    before, during = request_for(customer), request_for(customer, "final_reminder")
    assert (await send(activities, before)).status == "sent"

    smtp_server.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await send(activities, during)
    smtp_server.start()

    assert (await send(activities, during)).status == "sent"
    await wait_for(lambda: len(smtp_server.messages) == 2, what="both emails")
    assert [m.message[KEY_HEADER] for m in smtp_server.messages] == [before.key, during.key]
    assert delivery(session_factory, during.key).attempts == 2


@pytest.mark.parametrize("email", [None, ""])
async def test_a_customer_without_email_is_no_recipient_and_nothing_is_sent(
    session_factory: sessionmaker[Session],
    smtp_server: SmtpRecorder,
    fake_stripe: FakeStripe,
    email: str | None,
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    request = request_for(fake_stripe.add_customer(email))

    assert (await send(activities, request)).status == "no_recipient"

    assert smtp_server.messages == []
    row = delivery(session_factory, request.key)
    assert (row.status, row.attempts, row.recipient) == (DeliveryStatus.NO_RECIPIENT, 0, "")
    assert row.subject == "Payment failed for your Dataface Pro plan"
    assert row.last_error is not None and "has no email address" in row.last_error


@pytest.mark.parametrize(
    ("customer_id", "why"),
    [(None, "has no Stripe customer"), ("cus_gone", "does not exist")],
)
async def test_no_customer_is_no_recipient(
    session_factory: sessionmaker[Session],
    smtp_server: SmtpRecorder,
    fake_stripe: FakeStripe,
    customer_id: str | None,
    why: str,
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    request = request_for(customer_id)

    assert (await send(activities, request)).status == "no_recipient"

    assert smtp_server.messages == []
    row = delivery(session_factory, request.key)
    assert row.status == DeliveryStatus.NO_RECIPIENT
    assert row.last_error is not None and why in row.last_error


async def test_a_customer_who_adds_an_email_later_gets_the_email(
    session_factory: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    customer = fake_stripe.add_customer(None)
    request = request_for(customer)
    assert (await send(activities, request)).status == "no_recipient"

    fake_stripe.emails[customer] = "late@example.com"
    assert (await send(activities, request)).status == "sent"
    await wait_for(lambda: smtp_server.messages, what="the email")
    assert smtp_server.messages[0].rcpt_tos == ["late@example.com"]


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        ("payment_exploded", CONTEXT),
        ("payment_failed", {"plan": "pro"}),  # no grace_ends_at
        ("payment_action_required", {"plan": "pro"}),  # no invoice link
        ("payment_failed", {**CONTEXT, "plan": "platinum"}),
    ],
)
async def test_render_errors_are_not_retried_and_nothing_is_sent(
    session_factory: sessionmaker[Session],
    smtp_server: SmtpRecorder,
    fake_stripe: FakeStripe,
    kind: str,
    context: dict[str, str],
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    request = request_for(fake_stripe.add_customer("ada@example.com"), kind)
    request.context = dict(context)

    with pytest.raises(ApplicationError) as raised:
        await send(activities, request)

    assert raised.value.non_retryable
    assert raised.value.type == "EmailRenderError"
    assert smtp_server.messages == []
    # Stripe is not asked for an address for an email that cannot be written.
    assert fake_stripe.retrieved == []
    row = delivery(session_factory, request.key)
    assert row.status == DeliveryStatus.FAILED and row.last_error


async def test_a_crash_after_the_server_accepted_resends_with_the_same_message_id(
    session_factory: sessionmaker[Session],
    smtp_server: SmtpRecorder,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    request = request_for(fake_stripe.add_customer("ada@example.com"))

    def database_gone(session: Session, key: str) -> None:
        raise ConnectionError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "mark_sent", database_gone)
        with pytest.raises(ConnectionError):
            await send(activities, request)
    assert delivery(session_factory, request.key).status == DeliveryStatus.PENDING

    assert (await send(activities, request)).status == "sent"
    await wait_for(lambda: len(smtp_server.messages) == 2, what="the repeat")
    first, second = (m.message["Message-ID"] for m in smtp_server.messages)
    assert first == second
    assert delivery(session_factory, request.key).status == DeliveryStatus.SENT


async def test_every_kind_goes_out_through_smtp(
    session_factory: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    customer = fake_stripe.add_customer("all@example.com")
    full = {
        **CONTEXT,
        "period_ends_at": "2026-12-24T00:00:00+00:00",
        "trial_ends_at": "2026-12-10T00:00:00+00:00",
        "cancel_at": "2026-12-24T00:00:00+00:00",
    }
    for kind in EMAIL_KINDS:
        request = request_for(customer, kind)
        request.context = full
        assert (await send(activities, request)).status == "sent"
    await wait_for(lambda: len(smtp_server.messages) == len(EMAIL_KINDS), what="every email")
    assert all(PORTAL_URL in m.text for m in smtp_server.messages)


async def test_the_mail_sink_keeps_each_message_as_an_eml_file(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    with MailSink(folder, port=free_port()) as sink:
        message = EmailMessage()
        message["From"] = "billing@dataface.local"
        message["To"] = "ada@example.com"
        message["Subject"] = "Hello from the sink"
        message.set_content("Body text")
        sender = SmtpSender(smtp_settings(sink.port))
        await sender.send_message(message)
        await sender.close()
        files = await wait_for(lambda: list(folder.glob("*.eml")), what="the .eml file")
    assert len(files) == 1
    saved = files[0].read_text()
    assert "Subject: Hello from the sink" in saved and "Body text" in saved


async def test_a_sent_email_stays_sent_whatever_a_late_retry_finds(
    session_factory: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    activities = make_activities(session_factory, fake_stripe, smtp_server.port)
    customer = fake_stripe.add_customer("ada@example.com")
    request = request_for(customer)
    assert (await send(activities, request)).status == "sent"

    # The customer's address is gone by the time a retry of the same key runs.
    fake_stripe.emails[customer] = None
    assert (await send(activities, request)).status == "already_sent"

    assert len(smtp_server.messages) == 1
    row = delivery(session_factory, request.key)
    assert (row.status, row.recipient, row.attempts) == (DeliveryStatus.SENT, "ada@example.com", 1)
