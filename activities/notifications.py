"""Sending customer emails through the outbox: each email key goes out at least once, with a
stable Message-ID.

The outbox row is the memory across attempts: a retried activity, a replayed event or a
restarted worker asking for a key already `sent` gets `already_sent` and nothing goes out. A
second send happens only when SMTP accepted the message and the attempt then ended before
its row was marked `sent` (docs/reliability.md, "Email delivery").
The row is claimed (`pending`, one more attempt) and committed before the SMTP conversation,
so a failed attempt leaves its error for operators; SMTP errors are raised again (transient:
the account workflow tries again on its timer), and only a successful send marks the row
`sent`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import classify_failures
from core import smtp
from core.config import Settings
from core.stripe_client import retrieve_customer
from db import outbox, repository
from db.outbox import DeliveryRecord, DeliveryStatus
from domain.catalog import Catalog
from notifications.context import email_context
from notifications.message import compose_message
from notifications.render import EMAIL_KINDS, EmailRenderError, render_email

__all__ = [
    "EMAIL_KINDS",
    "EmailOutcome",
    "NotificationActivities",
    "SendEmailInput",
]

T = TypeVar("T")

SENT = "sent"
ALREADY_SENT = "already_sent"
NO_RECIPIENT = "no_recipient"
OBSOLETE = "obsolete"


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
        try:
            outcome = await self._send_email(request)
        except Exception as err:
            unrenderable = isinstance(err, ApplicationError) and err.type == "EmailRenderError"
            _count_delivery(request.kind, "render_failed" if unrenderable else "failed")
            raise
        _count_delivery(request.kind, outcome.status)
        return outcome

    async def _send_email(self, request: SendEmailInput) -> EmailOutcome:
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
                activity.logger.warning("email %s not sent: %s", key, why_none)
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
            # Raised again: the account workflow tries again later, with the same key.
            raise
        await self._db(lambda session: outbox.mark_sent(session, key))
        activity.logger.info(
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
        """Run `work` in one committed transaction, on a thread (SQLAlchemy blocks)."""

        def in_transaction() -> T:
            with self._sessions.begin() as session:
                return work(session)

        return await asyncio.to_thread(in_transaction)


def _count_delivery(kind: str, outcome: str) -> None:
    """`billing_email_deliveries{kind, outcome}` on the worker's metrics endpoint.

    Through the Temporal SDK's meter, so it is served beside the SDK's own worker metrics.
    """
    activity.metric_meter().create_counter(
        "billing_email_deliveries", "Customer email attempts by kind and outcome."
    ).add(1, {"kind": kind, "outcome": outcome})


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
