"""Sending customer emails through the outbox: each email key goes out at least once, with a
stable Message-ID.

The account workflow queues an email as an outbox row, in the transaction that decided it
(`db.outbox.queue`); the `OutboxSender`, a process of its own beside the workers, claims
due rows in batches, sends them, and writes each attempt's end (sent, or its retry) with the
ends of the others in one transaction. Neither the account's workflow task nor Temporal waits
on SMTP. Runs recorded before the queue send through the `send_email` activity instead,
retried on the account's own timer; it claims its key (`pending`, one more attempt) in a
transaction of its own before the SMTP conversation and marks it `sent` after.

The outbox row is the memory across attempts: a retry, a replayed event or a restarted
worker asking for a key already `sent` gets `already_sent` and nothing goes out. A second
send happens only when SMTP accepted the message and the attempt then ended before its row
was marked `sent` (docs/reliability.md, "Email delivery").
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
from db.outbox import AttemptEnd, DeliveryRecord, DeliveryStatus, QueuedEmail
from domain.catalog import Catalog
from domain.retry import backoff
from notifications.context import email_context
from notifications.message import compose_message
from notifications.render import EMAIL_KINDS, EmailRenderError, RenderedEmail, render_email

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
# Outcomes of an attempt that failed, as counted in `billing_email_deliveries`.
FAILED = "failed"
RENDER_FAILED = "render_failed"

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
        """One attempt at the email for a run recorded before the queue: its outcome, or the
        attempt's failure raised (an `EmailRenderError` is final, its row already `failed`)."""
        key = request.key
        try:
            email = self.render(request)
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

        recipient, why_none = await self.customer_email(request.customer_id)
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

        try:
            await self.send(key, recipient, email)
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

    def render(self, request: SendEmailInput) -> RenderedEmail:
        """The email's subject and parts; `EmailRenderError` when it cannot be (final)."""
        context = email_context(
            request.context, self._catalog, billing_portal_url=self._settings.billing_portal_url
        )
        return render_email(request.kind, context)

    async def send(self, key: str, recipient: str, email: RenderedEmail) -> None:
        """The SMTP conversation, with the key's stable Message-ID."""
        message = compose_message(
            key=key, sender=self._settings.email_sender, recipient=recipient, email=email
        )
        await self._mail.send_message(message)

    async def customer_email(self, customer_id: str | None) -> tuple[str | None, str]:
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
    return RENDER_FAILED if unrenderable else FAILED


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
    LOCKED` between senders) and sends at most `concurrency` emails at a time, claiming again
    once half of them are done while more are due. Each email's end (sent, or its retry) is
    written with those of the others that ended meanwhile, in one transaction: per email, the
    database sees a share of a claim and of an end, not a transaction of its own."""

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
        self._ends = _GroupWriter(sessions)

    async def run(self) -> None:
        try:
            while True:
                free = self._concurrency - len(self._sending)
                try:
                    due, claimed = await self._claim(free)
                except Exception:  # the database is down: tried again at the next poll
                    _log.exception("cannot claim queued emails")
                    due, claimed = [], 0
                for email in due:
                    task = asyncio.create_task(self._send(email))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)
                if claimed == free:  # more may be due: claim again once half are done
                    while len(self._sending) > self._concurrency // 2:
                        await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(self._poll_interval.total_seconds())
        finally:
            # Stopped mid-send: each claimed row is claimed again when its lease runs out.
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)
            # The ends already handed over are written: a sent email is not sent again.
            await self._ends.written()

    async def send_due(self) -> int:
        """Send every email due now, then return how many were claimed (for tests and
        one-shot use; `run` is the long-lived form)."""
        total = 0
        while True:
            due, claimed = await self._claim(self._concurrency)
            if not claimed:
                return total
            total += claimed
            await asyncio.gather(*(self._send(email) for email in due))

    async def _claim(self, limit: int) -> tuple[list[QueuedEmail], int]:
        """The due emails to send, and how many were claimed: a dunning email whose account
        has left its states is claimed and ended `obsolete` in the same transaction."""
        if limit <= 0:
            return [], 0
        now = self._clock()

        def claim(session: Session) -> tuple[list[QueuedEmail], list[QueuedEmail]]:
            due: list[QueuedEmail] = []
            obsolete: list[QueuedEmail] = []
            for email in outbox.claim_due(
                session, now=now, lease_until=now + self._lease, limit=limit
            ):
                (obsolete if _end_if_obsolete(session, email) else due).append(email)
            return due, obsolete

        due, obsolete = await _in_transaction(self._sessions, claim)
        for email in obsolete:
            self._count(str(email.request.get("kind")), OBSOLETE)
        return due, len(due) + len(obsolete)

    async def _send(self, email: QueuedEmail) -> None:
        log = logging.LoggerAdapter(_log, {"account_id": email.request.get("account_id")})
        kind = str(email.request.get("kind"))
        try:
            # A request this version cannot read (written by a newer one) is refused below.
            request = SendEmailInput(**email.request)
            async with asyncio.timeout(self._lease.total_seconds()):
                outcome, end = await self._attempt(email, request, log)
        except Exception as err:
            outcome, end = FAILED, self._failed(email, err, log)
        self._count(kind, outcome)
        try:
            await self._ends.write(end)
        except Exception:  # the database: the email is claimed again when its lease ends
            log.exception("cannot record the end of email %s's attempt", email.key)

    async def _attempt(
        self, email: QueuedEmail, request: SendEmailInput, log: logging.LoggerAdapter[Any]
    ) -> tuple[str, AttemptEnd]:
        """The outcome counted and the row's end; a failure before SMTP is raised."""
        key = email.key
        try:
            rendered = self._emails.render(request)
        except EmailRenderError as err:
            log.error("email %s cannot be rendered: %s", key, err)
            end = AttemptEnd(key, DeliveryStatus.FAILED, attempted=False, error=str(err))
            return RENDER_FAILED, end
        recipient, why_none = await self._emails.customer_email(request.customer_id)
        if recipient is None:
            log.warning("email %s not sent: %s", key, why_none)
            end = AttemptEnd(
                key,
                DeliveryStatus.NO_RECIPIENT,
                attempted=False,
                recipient="",
                subject=rendered.subject,
                error=why_none,
            )
            return NO_RECIPIENT, end
        try:
            await self._emails.send(key, recipient, rendered)
        except Exception as err:
            failed = self._failed(email, err, log)
            return FAILED, replace(failed, recipient=recipient, subject=rendered.subject)
        log.info(
            "sent email %s (%s) for account %s, attempt %d",
            key,
            request.kind,
            request.account_id,
            email.attempts + 1,
        )
        end = AttemptEnd(
            key, DeliveryStatus.SENT, attempted=True, recipient=recipient, subject=rendered.subject
        )
        return SENT, end

    def _failed(
        self, email: QueuedEmail, err: Exception, log: logging.LoggerAdapter[Any]
    ) -> AttemptEnd:
        """A transient failure is tried again with backoff until `give_up_after`; a refusal
        (Stripe refusing the customer read, a request that cannot be read) is given up at
        once. The row shows why either way."""
        now = self._clock()
        retry = now + backoff(self._first_retry, email.attempts, self._max_retry)
        error = f"{type(err).__name__}: {err}"
        refused = isinstance(err, TypeError) or (
            isinstance(err, ApplicationError) and err.non_retryable
        )
        if refused or retry > email.created_at + self._give_up_after:
            log.error("email %s given up: %s", email.key, error)
            reason = error if refused else f"given up after {self._give_up_after}: {error}"
            return AttemptEnd(email.key, DeliveryStatus.FAILED, attempted=True, error=reason)
        log.warning("email %s failed, tried again at %s: %s", email.key, retry, error)
        return AttemptEnd(
            email.key, DeliveryStatus.PENDING, attempted=True, error=error, retry_at=retry
        )


class _GroupWriter:
    """Writes attempts' ends in group commits: an end waits for the transaction in progress,
    then goes in the next one with every end that arrived meanwhile."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._waiting: list[tuple[AttemptEnd, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, end: AttemptEnd) -> None:
        """Return once `end` is committed; raise what its transaction raised. Cancelling the
        wait does not take `end` back."""
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((end, committed))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_waiting())
        await committed

    async def written(self) -> None:
        """Return once every end handed over is written (or failed to be)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                ends = [end for end, _ in batch]
                try:
                    await _in_transaction(
                        self._sessions, functools.partial(outbox.end_attempts, ends=ends)
                    )
                except Exception as err:
                    _settle(batch, err)
                else:
                    _settle(batch, None)
        finally:
            self._writing = None


def _settle(batch: list[tuple[AttemptEnd, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, committed in batch:
        if committed.done():  # its writer stopped waiting
            continue
        if error is None:
            committed.set_result(None)
        else:
            committed.set_exception(error)


def _end_if_obsolete(session: Session, email: QueuedEmail) -> bool:
    """End a claimed dunning email whose account has left the states it is about; True if so."""
    states = email.request.get("only_in_states")
    account_id = email.request.get("account_id")
    if not states or not isinstance(states, list) or not isinstance(account_id, str):
        return False
    stale = _left_states(session, account_id, states)
    if stale is None:
        return False
    outbox.end_attempts(
        session, [AttemptEnd(email.key, DeliveryStatus.OBSOLETE, attempted=False, error=stale)]
    )
    return True
