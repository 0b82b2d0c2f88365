"""Sending customer emails through the outbox: each email key goes out at least once, with a
stable Message-ID.

The account workflow queues an email as an outbox row, in the transaction that decided it
(`db.outbox.queue`); the `OutboxSender`, a process of its own beside the workers, claims
due rows in batches, sends them and schedules a failed one's retry in its row. Neither the account's
workflow task nor Temporal waits on SMTP. Runs recorded before the queue send through the
`send_email` activity instead, retried on the account's own timer.

The outbox row is the memory across attempts: a retry, a replayed event or a restarted
worker asking for a key already `sent` gets `already_sent` and nothing goes out. A second
send happens only when SMTP accepted the message and the attempt then ended before its row
was marked `sent` (docs/reliability.md, "Email delivery").
The row is claimed (`pending`, one more attempt) and committed before the SMTP conversation,
so a failed attempt leaves its error for operators; only a successful send marks it `sent`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError

from activities.failures import classify_failures
from core import smtp
from core.config import Settings
from core.stripe_client import retrieve_customer
from db import outbox, repository
from db.models import utcnow
from db.outbox import DeliveryRecord, DeliveryStatus, QueuedEmail
from domain.catalog import Catalog
from domain.retry import backoff
from notifications.context import email_context
from notifications.message import compose_message
from notifications.render import EMAIL_KINDS, EmailRenderError, render_email

__all__ = [
    "EMAIL_KINDS",
    "EmailOutcome",
    "NotificationActivities",
    "OutboxSender",
    "SendEmailInput",
]

T = TypeVar("T")

SENT = "sent"
ALREADY_SENT = "already_sent"
NO_RECIPIENT = "no_recipient"
OBSOLETE = "obsolete"

# One attempt may take this long (the SMTP conversation included): a claimed row's lease.
EMAIL_TIMEOUT = timedelta(minutes=2)
# A failed email is tried again 10 s later, doubling up to 10 minutes, for three days; then
# it is given up and its row shows the last error.
EMAIL_FIRST_RETRY = timedelta(seconds=10)
EMAIL_MAX_RETRY = timedelta(minutes=10)
EMAIL_GIVE_UP_AFTER = timedelta(days=3)
# How often a sender looks for due emails: how late, at most, an email leaves once queued.
EMAIL_POLL_INTERVAL = timedelta(seconds=1)

_log = logging.getLogger(__name__)


@dataclass
class SendEmailInput:
    # Unique per (account, billing cycle, step): the outbox's primary key.
    key: str
    account_id: str
    customer_id: str | None
    # One of EMAIL_KINDS.
    kind: str
    # What the workflow knows, as strings (ISO dates); absent keys are allowed. Keys read:
    # plan, previous_plan, interval, seats, grace_ends_at, period_ends_at, trial_ends_at,
    # cancel_at, open_invoice_url.
    context: dict[str, str] = field(default_factory=dict)
    # Billing states the email is only true in (dunning emails: past_due, restricted). Checked
    # against the stored entitlements, which the workflow writes before asking for the email,
    # on every attempt: an email held up by an SMTP outage is dropped once the customer paid.
    only_in_states: list[str] = field(default_factory=list)

    def as_row(self) -> tuple[str, str, dict[str, Any]]:
        """(key, kind, request) as `db.outbox.queue` keeps it."""
        return self.key, self.kind, asdict(self)


@dataclass
class EmailOutcome:
    key: str
    # "sent" | "already_sent" | "no_recipient"
    status: str


class NotificationActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        stripe_client: stripe.StripeClient,
        catalog: Catalog,
        settings: Settings,
        mail: smtp.SmtpSender,
    ) -> None:
        self._sessions = sessions
        self._stripe = stripe_client
        self._catalog = catalog
        self._settings = settings
        self._mail = mail

    @activity.defn
    @classify_failures
    async def send_email(self, request: SendEmailInput) -> EmailOutcome:
        """One attempt, for runs recorded before the queue (their account retries it)."""
        count = _delivery_counter(activity.metric_meter())
        try:
            outcome = await self.deliver(request, activity.logger)
        except Exception as err:
            count(request.kind, _failure_outcome(err))
            raise
        count(request.kind, outcome.status)
        return outcome

    async def deliver(
        self, request: SendEmailInput, log: logging.Logger | logging.LoggerAdapter[Any]
    ) -> EmailOutcome:
        """One attempt at the email: its outcome, or the attempt's failure raised (an
        `EmailRenderError` is final, its row already `failed`)."""
        key = request.key
        try:
            context = email_context(
                request.context,
                self._catalog,
                billing_portal_url=self._settings.billing_portal_url,
            )
            email = render_email(request.kind, context)
        except EmailRenderError as err:
            reason = str(err)
            recorded = await self._db(
                lambda session: outbox.mark_unsent(
                    session,
                    key=key,
                    account_id=request.account_id,
                    kind=request.kind,
                    status=DeliveryStatus.FAILED,
                    reason=reason,
                )
            )
            if recorded is None:
                return EmailOutcome(key=key, status=ALREADY_SENT)
            raise ApplicationError(reason, type="EmailRenderError", non_retryable=True) from err

        recipient, why_none = await self._customer_email(request.customer_id)
        # One transaction decides: already sent, no longer true, nobody to send to, or
        # claimed for this attempt (committed before sending: if the attempt dies mid-send,
        # the row says so).
        decision = await self._db(
            lambda session: _claim(session, request, email.subject, recipient, why_none)
        )
        if isinstance(decision, str):
            if decision == NO_RECIPIENT:
                log.warning("email %s not sent: %s", key, why_none)
            return EmailOutcome(key=key, status=decision)
        claimed = decision
        assert recipient is not None  # claimed only with a recipient

        message = compose_message(
            key=key, sender=self._settings.email_sender, recipient=recipient, email=email
        )
        try:
            await self._mail.send_message(message)
        except Exception as err:
            # Any failure, not only SMTP's: the row shows operators why the email is late.
            error = f"{type(err).__name__}: {err}"
            await self._db(lambda session: outbox.mark_failed(session, key, error))
            # Raised again: tried again later, with the same key.
            raise
        await self._db(lambda session: outbox.mark_sent(session, key))
        log.info(
            "sent email %s (%s) for account %s, attempt %d",
            key,
            request.kind,
            request.account_id,
            claimed.attempts,
        )
        return EmailOutcome(key=key, status=SENT)

    async def _customer_email(self, customer_id: str | None) -> tuple[str | None, str]:
        """The Stripe customer's address, or None and why there is none. Read raw and
        asynchronously, like the subscription fetch (`activities/stripe_sync.py`)."""
        if not customer_id:
            return None, "the account has no Stripe customer"
        try:
            customer = await retrieve_customer(self._stripe, customer_id)
        except stripe.InvalidRequestError as err:
            if err.code == "resource_missing":
                return None, f"Stripe customer {customer_id} does not exist"
            raise ApplicationError(
                str(err), type="StripeInvalidRequest", non_retryable=True
            ) from err
        # A deleted customer comes back with `deleted` and no email field.
        address = customer.get("email")
        if not address:
            return None, f"Stripe customer {customer_id} has no email address"
        return str(address), ""

    async def _db(self, work: Callable[[Session], T]) -> T:
        return await _in_transaction(self._sessions, work)


async def _in_transaction(sessions: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """Run `work` in one committed transaction, on a thread (SQLAlchemy blocks)."""

    def in_transaction() -> T:
        with sessions.begin() as session:
            return work(session)

    return await asyncio.to_thread(in_transaction)


def _delivery_counter(meter: MetricMeter) -> Callable[[str, str], None]:
    """`billing_email_deliveries{kind, outcome}` on the worker's metrics endpoint.

    Through the Temporal SDK's meter, so it is served beside the SDK's own worker metrics.
    """
    counter = meter.create_counter(
        "billing_email_deliveries", "Customer email attempts by kind and outcome."
    )
    return lambda kind, outcome: counter.add(1, {"kind": kind, "outcome": outcome})


def _failure_outcome(err: BaseException) -> str:
    unrenderable = isinstance(err, ApplicationError) and err.type == "EmailRenderError"
    return "render_failed" if unrenderable else "failed"


def _claim(
    session: Session,
    request: SendEmailInput,
    subject: str,
    recipient: str | None,
    why_none: str,
) -> DeliveryRecord | str:
    """The outbox row claimed for this attempt, or the outcome that ends it without sending.

    Every write here leaves a `sent` row alone and says so (None): another attempt won.
    """
    account_id, key, kind = request.account_id, request.key, request.kind
    if request.only_in_states:
        stale = _left_states(session, account_id, request.only_in_states)
        if stale is not None:
            obsolete = outbox.mark_unsent(
                session,
                key=key,
                account_id=account_id,
                kind=kind,
                status=DeliveryStatus.OBSOLETE,
                reason=stale,
            )
            return ALREADY_SENT if obsolete is None else OBSOLETE
    if recipient is None:
        nobody = outbox.mark_unsent(
            session,
            key=key,
            account_id=account_id,
            kind=kind,
            status=DeliveryStatus.NO_RECIPIENT,
            reason=why_none,
            subject=subject,
        )
        return ALREADY_SENT if nobody is None else NO_RECIPIENT
    claimed = outbox.begin_attempt(
        session, key=key, account_id=account_id, kind=kind, recipient=recipient, subject=subject
    )
    return ALREADY_SENT if claimed is None else claimed


def _left_states(session: Session, account_id: str, states: list[str]) -> str | None:
    """Why the email no longer applies, or None while the account is still in `states`."""
    record = repository.read_entitlements(session, account_id)
    current = record.billing_state if record is not None else "free"
    return None if current in states else f"the account is {current} now"


class OutboxSender:
    """Sends the queued emails until cancelled, in a process of its own (`cli.py
    email-sender`) or beside a worker.

    Every `poll_interval` it claims the due rows in a batch (`db.outbox.claim_due`: `SKIP
    LOCKED` between senders), sends at most `concurrency` emails at a time (claiming again as
    they finish while more are due), and keeps each failed email's retry in its row."""

    def __init__(
        self,
        emails: NotificationActivities,
        sessions: sessionmaker[Session],
        meter: MetricMeter,
        *,
        concurrency: int = 16,
        poll_interval: timedelta = EMAIL_POLL_INTERVAL,
        first_retry: timedelta = EMAIL_FIRST_RETRY,
        max_retry: timedelta = EMAIL_MAX_RETRY,
        give_up_after: timedelta = EMAIL_GIVE_UP_AFTER,
        lease: timedelta = EMAIL_TIMEOUT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._emails = emails
        self._sessions = sessions
        self._count = _delivery_counter(meter)
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._give_up_after = give_up_after
        self._lease = lease
        self._clock = clock
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                free = self._concurrency - len(self._sending)
                try:
                    claimed = await self._claim(free) if free else []
                except Exception:  # the database is down: tried again at the next poll
                    _log.exception("cannot claim queued emails")
                    claimed = []
                for email in claimed:
                    task = asyncio.create_task(self._send(email))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)
                if len(claimed) == free:  # more may be due: claim again as a slot frees up
                    await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(self._poll_interval.total_seconds())
        finally:
            # Stopped mid-send: each claimed row is claimed again when its lease runs out.
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def send_due(self) -> int:
        """Send every email due now, then return how many were claimed (for tests and
        one-shot use; `run` is the long-lived form)."""
        total = 0
        while claimed := await self._claim(self._concurrency):
            total += len(claimed)
            await asyncio.gather(*(self._send(email) for email in claimed))
        return total

    async def _claim(self, limit: int) -> list[QueuedEmail]:
        now = self._clock()
        return await _in_transaction(
            self._sessions,
            lambda session: outbox.claim_due(
                session, now=now, lease_until=now + self._lease, limit=limit
            ),
        )

    async def _send(self, email: QueuedEmail) -> None:
        log = logging.LoggerAdapter(_log, {"account_id": email.request.get("account_id")})
        kind = str(email.request.get("kind"))
        try:
            # A request this version cannot read (written by a newer one) is refused below.
            request = SendEmailInput(**email.request)
            async with asyncio.timeout(self._lease.total_seconds()):
                outcome = await self._emails.deliver(request, log)
        except Exception as err:
            self._count(kind, _failure_outcome(err))
            await self._after_failure(email, err, log)
        else:
            self._count(kind, outcome.status)

    async def _after_failure(
        self, email: QueuedEmail, err: Exception, log: logging.LoggerAdapter[Any]
    ) -> None:
        """Retry a transient failure with backoff until `give_up_after`; give up at once on a
        refusal (Stripe refusing the customer read, a request that cannot be read; a render
        failure has already ended its row)."""
        now = self._clock()
        retry = now + backoff(self._first_retry, email.attempts, self._max_retry)
        error = f"{type(err).__name__}: {err}"
        refused = isinstance(err, TypeError) or (
            isinstance(err, ApplicationError) and err.non_retryable
        )
        try:
            if refused or retry > email.created_at + self._give_up_after:
                log.error("email %s given up: %s", email.key, error)
                reason = error if refused else f"given up after {self._give_up_after}: {error}"
                await _in_transaction(
                    self._sessions, lambda session: outbox.give_up(session, email.key, reason)
                )
            else:
                log.warning("email %s failed, tried again at %s: %s", email.key, retry, error)
                await _in_transaction(
                    self._sessions, lambda session: outbox.retry_at(session, email.key, retry)
                )
        except Exception:  # the database too: the email is claimed again when its lease ends
            log.exception("cannot schedule the retry of email %s", email.key)
