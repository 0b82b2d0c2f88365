"""The OutboxSender against a real SMTP server: queued emails go out once, failed ones are
tried again on their backoff until given up, and two senders never send one email twice.

Each test has a database of its own (a sender claims every due row, whoever queued it) and,
but for `run`, drives the sender with `send_due` on a clock it moves by hand.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
import stripe
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.common import MetricMeter

from activities.notifications import NotificationActivities, OutboxSender, SendEmailInput
from core.smtp import SmtpSender
from db import outbox, repository
from db.models import EmailDelivery, utcnow
from db.outbox import DeliveryStatus
from domain.catalog import default_catalog
from notifications.message import KEY_HEADER
from tests.conftest import wait_for
from tests.feed_changes import paid
from tests.notifications.conftest import FakeStripe, smtp_settings
from tests.notifications.test_send_email import delivery, request_for
from tests.smtp_server import SmtpRecorder

pytestmark = pytest.mark.db

FIRST_RETRY = timedelta(seconds=10)
MAX_RETRY = timedelta(seconds=60)


@pytest.fixture
def sessions(own_database: tuple[str, sessionmaker[Session]]) -> sessionmaker[Session]:
    return own_database[1]


@dataclass
class ManualClock:
    """The sender's clock: it moves only when the test moves it, and counts its readings."""

    now: datetime = field(default_factory=utcnow)
    readings: int = 0

    def __call__(self) -> datetime:
        self.readings += 1
        return self.now


@dataclass
class RecordingMeter:
    """The part of a MetricMeter the sender uses: counters, each addition recorded."""

    added: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)

    def create_counter(self, name: str, description: str | None = None) -> RecordingCounter:
        return RecordingCounter(self, name)

    def deliveries(self) -> Counter[tuple[str, str]]:
        """`billing_email_deliveries` by (kind, outcome)."""
        counts: Counter[tuple[str, str]] = Counter()
        for name, value, attributes in self.added:
            if name == "billing_email_deliveries":
                counts[attributes["kind"], attributes["outcome"]] += value
        return counts


@dataclass
class RecordingCounter:
    meter: RecordingMeter
    name: str

    def add(self, value: int, additional_attributes: dict[str, str] | None = None) -> None:
        self.meter.added.append((self.name, value, dict(additional_attributes or {})))


class MailInFlight:
    """An SmtpSender that counts the messages it is sending at once."""

    def __init__(self, mail: SmtpSender) -> None:
        self._mail = mail
        self.sending = 0
        self.most_at_once = 0

    async def send_message(self, message: Any) -> None:
        self.sending += 1
        self.most_at_once = max(self.most_at_once, self.sending)
        try:
            await self._mail.send_message(message)
        finally:
            self.sending -= 1


def make_sender(
    sessions: sessionmaker[Session],
    fake_stripe: FakeStripe,
    smtp_server: SmtpRecorder,
    *,
    mail: Any = None,
    meter: Any = MetricMeter.noop,
    **options: Any,
) -> OutboxSender:
    settings = smtp_settings(smtp_server.port)
    emails = NotificationActivities(
        sessions,
        cast(stripe.StripeClient, fake_stripe),
        default_catalog(),
        settings,
        mail or SmtpSender(settings),
    )
    options = {"first_retry": FIRST_RETRY, "max_retry": MAX_RETRY, **options}
    return OutboxSender(emails, sessions, meter, **options)


def queue_emails(sessions: sessionmaker[Session], *requests: SendEmailInput) -> None:
    with sessions.begin() as session:
        for request in requests:
            outbox.queue(session, request.account_id, [request.as_row()])


def queue_emails_to_one_customer(
    sessions: sessionmaker[Session], fake_stripe: FakeStripe, count: int
) -> list[SendEmailInput]:
    """`count` emails queued for one customer with an address."""
    customer = fake_stripe.add_customer("ada@example.com")
    requests = [request_for(customer) for _ in range(count)]
    queue_emails(sessions, *requests)
    return requests


def next_attempt(sessions: sessionmaker[Session], key: str) -> datetime | None:
    with sessions() as session:
        return session.scalar(select(EmailDelivery.next_attempt_at).where(EmailDelivery.key == key))


def keys_received(smtp_server: SmtpRecorder) -> list[str]:
    return [received.message[KEY_HEADER] for received in smtp_server.messages]


async def test_a_queued_email_is_sent_once(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    sender = make_sender(sessions, fake_stripe, smtp_server)
    request = request_for(fake_stripe.add_customer("ada@example.com"))
    queue_emails(sessions, request)

    assert await sender.send_due() == 1
    assert await sender.send_due() == 0

    assert keys_received(smtp_server) == [request.key]
    assert smtp_server.messages[0].rcpt_tos == ["ada@example.com"]
    row = delivery(sessions, request.key)
    assert (row.status, row.attempts, row.recipient) == (
        DeliveryStatus.SENT,
        1,
        "ada@example.com",
    )
    assert row.subject == smtp_server.messages[0].message["Subject"]
    assert next_attempt(sessions, request.key) is None


async def test_smtp_down_keeps_the_email_pending_until_its_retry_sends_it(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    request = request_for(fake_stripe.add_customer("grace@example.com"))
    queue_emails(sessions, request)
    clock = ManualClock()
    sender = make_sender(sessions, fake_stripe, smtp_server, clock=clock)
    smtp_server.stop()

    assert await sender.send_due() == 1

    row = delivery(sessions, request.key)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert row.last_error is not None and row.last_error.startswith("SMTPConnectError")
    retry = next_attempt(sessions, request.key)
    assert retry == clock.now + FIRST_RETRY

    smtp_server.start()
    clock.now = retry - timedelta(microseconds=1)
    assert await sender.send_due() == 0
    clock.now = retry
    assert await sender.send_due() == 1
    assert await sender.send_due() == 0

    assert keys_received(smtp_server) == [request.key]
    row = delivery(sessions, request.key)
    assert (row.status, row.attempts) == (DeliveryStatus.SENT, 2)
    assert next_attempt(sessions, request.key) is None


async def test_the_wait_between_attempts_doubles_up_to_the_maximum(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    request = request_for(fake_stripe.add_customer("ada@example.com"))
    queue_emails(sessions, request)
    clock = ManualClock()
    sender = make_sender(sessions, fake_stripe, smtp_server, clock=clock)
    smtp_server.stop()

    waits = []
    for _ in range(5):
        assert await sender.send_due() == 1
        retry = next_attempt(sessions, request.key)
        assert retry is not None
        waits.append(retry - clock.now)
        clock.now = retry

    assert waits == [FIRST_RETRY * factor for factor in (1, 2, 4)] + [MAX_RETRY] * 2
    row = delivery(sessions, request.key)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 5)


async def test_an_email_failing_past_the_give_up_time_fails_for_good(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    give_up_after = timedelta(minutes=5)
    request = request_for(fake_stripe.add_customer("ada@example.com"))
    queue_emails(sessions, request)
    clock = ManualClock()
    sender = make_sender(
        sessions, fake_stripe, smtp_server, clock=clock, give_up_after=give_up_after
    )
    created_at = delivery(sessions, request.key).created_at
    smtp_server.stop()

    assert await sender.send_due() == 1
    assert delivery(sessions, request.key).status == DeliveryStatus.PENDING
    # The next retry (20 s after this attempt) would come after the five minutes.
    clock.now = created_at + give_up_after - timedelta(seconds=5)
    assert await sender.send_due() == 1

    row = delivery(sessions, request.key)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 2)
    assert row.last_error is not None
    assert row.last_error.startswith("given up after 0:05:00: SMTPConnectError")
    assert next_attempt(sessions, request.key) is None

    smtp_server.start()
    clock.now += timedelta(days=1)
    assert await sender.send_due() == 0
    assert smtp_server.messages == []


async def test_a_dunning_email_the_account_has_left_ends_obsolete(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    sender = make_sender(sessions, fake_stripe, smtp_server)
    customer = fake_stripe.add_customer("ada@example.com")
    paid_already = replace(request_for(customer), only_in_states=["past_due", "restricted"])
    still_due = replace(request_for(customer), only_in_states=["past_due", "restricted"])
    past_due = replace(paid(), billing_state="past_due", effective_state="past_due")
    with sessions.begin() as session:
        repository.write_entitlements(session, still_due.account_id, 1, past_due, {}, "test", [])
    queue_emails(sessions, paid_already, still_due)

    assert await sender.send_due() == 2

    assert keys_received(smtp_server) == [still_due.key]
    row = delivery(sessions, paid_already.key)
    assert (row.status, row.attempts, row.last_error) == (
        DeliveryStatus.OBSOLETE,
        0,
        "the account is free now",
    )
    assert next_attempt(sessions, paid_already.key) is None


async def test_a_customer_without_email_ends_no_recipient(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    sender = make_sender(sessions, fake_stripe, smtp_server)
    request = request_for(fake_stripe.add_customer(None))
    queue_emails(sessions, request)

    assert await sender.send_due() == 1

    assert smtp_server.messages == []
    row = delivery(sessions, request.key)
    assert (row.status, row.attempts) == (DeliveryStatus.NO_RECIPIENT, 0)
    assert row.last_error is not None and "has no email address" in row.last_error
    assert next_attempt(sessions, request.key) is None


async def test_an_email_that_cannot_be_rendered_fails_and_is_not_tried_again(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    request = request_for(fake_stripe.add_customer("ada@example.com"))
    request.context = {"plan": "pro"}  # payment_failed needs grace_ends_at
    queue_emails(sessions, request)
    clock = ManualClock()
    sender = make_sender(sessions, fake_stripe, smtp_server, clock=clock)

    assert await sender.send_due() == 1
    clock.now += timedelta(days=1)
    assert await sender.send_due() == 0

    assert smtp_server.messages == []
    row = delivery(sessions, request.key)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 0)
    assert row.last_error is not None and "grace_ends_at" in row.last_error
    assert next_attempt(sessions, request.key) is None


class RefusingStripe(FakeStripe):
    """Stripe refusing the customer read for a reason retrying cannot fix."""

    async def raw_request_async(self, method: str, path: str, **params: Any) -> Any:
        raise stripe.InvalidRequestError("Invalid customer id", "id", code="parameter_invalid")


async def test_an_email_stripe_refuses_fails_at_once_with_the_refusal(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder
) -> None:
    refusing = RefusingStripe()
    request = request_for("cus_malformed")
    queue_emails(sessions, request)
    clock = ManualClock()
    sender = make_sender(sessions, refusing, smtp_server, clock=clock)

    assert await sender.send_due() == 1
    clock.now += timedelta(days=1)
    assert await sender.send_due() == 0

    row = delivery(sessions, request.key)
    assert row.status == DeliveryStatus.FAILED
    assert row.last_error is not None and "Invalid customer id" in row.last_error
    assert next_attempt(sessions, request.key) is None


async def test_a_request_this_version_cannot_read_fails_at_once_and_spares_the_rest(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    readable = request_for(fake_stripe.add_customer("ada@example.com"))
    unreadable = request_for(fake_stripe.add_customer("bob@example.com"))
    key, kind, fields = unreadable.as_row()
    with sessions.begin() as session:
        outbox.queue(session, unreadable.account_id, [(key, kind, {**fields, "locale": "fr"})])
    queue_emails(sessions, readable)
    sender = make_sender(sessions, fake_stripe, smtp_server)

    assert await sender.send_due() == 2
    assert await sender.send_due() == 0

    assert keys_received(smtp_server) == [readable.key]
    row = delivery(sessions, unreadable.key)
    assert row.status == DeliveryStatus.FAILED
    assert row.last_error is not None and "locale" in row.last_error


async def test_send_due_sends_everything_due_a_few_at_a_time(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    mail = MailInFlight(SmtpSender(smtp_settings(smtp_server.port)))
    sender = make_sender(sessions, fake_stripe, smtp_server, mail=mail, concurrency=2)
    requests = queue_emails_to_one_customer(sessions, fake_stripe, 5)

    assert await sender.send_due() == 5

    assert sorted(keys_received(smtp_server)) == sorted(r.key for r in requests)
    assert 1 <= mail.most_at_once <= 2
    assert {delivery(sessions, r.key).status for r in requests} == {DeliveryStatus.SENT}


async def test_run_sends_what_is_queued_while_it_runs_and_stops_cleanly(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    clock = ManualClock()
    sender = make_sender(
        sessions,
        fake_stripe,
        smtp_server,
        clock=clock,
        concurrency=2,
        poll_interval=timedelta(milliseconds=10),
    )
    running = asyncio.create_task(sender.run())
    try:
        await wait_for(lambda: clock.readings >= 1, what="the sender's first look")
        requests = queue_emails_to_one_customer(sessions, fake_stripe, 5)
        clock.now = utcnow()

        # More than its concurrency: it claims again as sends finish.
        await wait_for(
            lambda: len(smtp_server.messages) == len(requests), what="the queued emails sent"
        )
        assert sorted(keys_received(smtp_server)) == sorted(r.key for r in requests)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_deliveries_are_counted_by_kind_and_outcome(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    customer = fake_stripe.add_customer("ada@example.com")
    sent = request_for(customer)
    unrenderable = replace(request_for(customer), context={})
    nobody = request_for(fake_stripe.add_customer(None), "final_reminder")
    queue_emails(sessions, sent, unrenderable, nobody)
    meter, clock = RecordingMeter(), ManualClock()
    sender = make_sender(sessions, fake_stripe, smtp_server, meter=meter, clock=clock)
    assert await sender.send_due() == 3

    smtp_server.stop()
    refused = request_for(customer, "final_reminder")
    queue_emails(sessions, refused)
    clock.now = utcnow()
    assert await sender.send_due() == 1

    assert meter.deliveries() == {
        ("payment_failed", "sent"): 1,
        ("payment_failed", "render_failed"): 1,
        ("final_reminder", "no_recipient"): 1,
        ("final_reminder", "failed"): 1,
    }


async def test_two_senders_send_each_email_exactly_once(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    first = make_sender(sessions, fake_stripe, smtp_server, concurrency=4)
    second = make_sender(sessions, fake_stripe, smtp_server, concurrency=4)
    requests = queue_emails_to_one_customer(sessions, fake_stripe, 20)

    claimed = await asyncio.gather(first.send_due(), second.send_due())

    assert sum(claimed) == 20
    assert sorted(keys_received(smtp_server)) == sorted(r.key for r in requests)
    rows = [delivery(sessions, r.key) for r in requests]
    assert {(row.status, row.attempts) for row in rows} == {(DeliveryStatus.SENT, 1)}


class HeldMail:
    """An SmtpSender whose sends, once done, all return when released together."""

    def __init__(self, mail: SmtpSender) -> None:
        self._mail = mail
        self.release = asyncio.Event()
        self.sent = 0

    async def send_message(self, message: Any) -> None:
        await self._mail.send_message(message)
        self.sent += 1
        await self.release.wait()


async def test_attempts_ending_together_are_written_in_one_transaction(
    sessions: sessionmaker[Session], smtp_server: SmtpRecorder, fake_stripe: FakeStripe
) -> None:
    mail = HeldMail(SmtpSender(smtp_settings(smtp_server.port)))
    sender = make_sender(sessions, fake_stripe, smtp_server, mail=mail, concurrency=8)
    requests = queue_emails_to_one_customer(sessions, fake_stripe, 8)
    commits = []
    event.listen(sessions.kw["bind"], "commit", lambda connection: commits.append(connection))

    sending = asyncio.create_task(sender.send_due())
    await wait_for(lambda: mail.sent == 8, what="all eight emails sent")
    claims = len(commits)
    mail.release.set()
    assert await sending == 8

    # The claim; the eight ends in one transaction, not one each; the claim finding no more.
    assert (claims, len(commits)) == (1, 3)
    assert {delivery(sessions, r.key).status for r in requests} == {DeliveryStatus.SENT}
