"""The account's records in the database: customer link, entitlements, received events.

Every activity here is safe to retry: the entitlement write carries a version and a stale one
is ignored, links and event records are insert-if-absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import TypeAdapter
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import classify_failures
from activities.notifications import SendEmailInput
from db import outbox, repository
from db.repository import LIFECYCLE_JSON
from domain.catalog import Catalog
from domain.entitlements import entitlements_for
from domain.lifecycle import Lifecycle
from domain.operator_actions import OperatorRequest

REQUEST_JSON = TypeAdapter(OperatorRequest)
# The failure type of a write whose version already holds another lifecycle; its one detail
# is the stored version.
VERSION_TAKEN = "EntitlementVersionTaken"


@dataclass
class StoredAccountState:
    customer_id: str | None
    entitlement_version: int
    lifecycle: Lifecycle | None


@dataclass
class ReceivedEvent:
    event_id: str
    event_type: str
    created: int


@dataclass
class LinkCustomerInput:
    account_id: str
    customer_id: str


@dataclass
class WriteEntitlementsInput:
    account_id: str
    version: int
    lifecycle: Lifecycle
    cause: str
    notices: list[str] = field(default_factory=list)
    # Stripe events this write answers, recorded as handled in the same transaction.
    events: list[ReceivedEvent] = field(default_factory=list)
    # The emails the change calls for, queued in the same transaction (db.outbox.queue).
    emails: list[SendEmailInput] = field(default_factory=list)


@dataclass
class QueueEmailsInput:
    account_id: str
    emails: list[SendEmailInput]


@dataclass
class OperatorActionRecord:
    update_id: str
    account_id: str
    request: OperatorRequest
    before: Lifecycle
    after: Lifecycle


@dataclass
class RecordEventsInput:
    account_id: str
    events: list[ReceivedEvent]


class AccountStoreActivities:
    def __init__(self, sessions: sessionmaker[Session], catalog: Catalog) -> None:
        self._sessions = sessions
        self._catalog = catalog

    @activity.defn
    @classify_failures
    def load_account_state(self, account_id: str) -> StoredAccountState:
        with self._sessions() as session:
            stored = repository.stored_account(session, account_id)
        if stored is None:
            return StoredAccountState(customer_id=None, entitlement_version=0, lifecycle=None)
        return StoredAccountState(
            customer_id=stored.customer_id,
            entitlement_version=stored.version,
            lifecycle=(
                None
                if stored.lifecycle is None
                else LIFECYCLE_JSON.validate_python(stored.lifecycle)
            ),
        )

    @activity.defn
    @classify_failures
    def link_customer(self, request: LinkCustomerInput) -> None:
        with self._sessions.begin() as session:
            try:
                repository.link_customer(session, request.account_id, request.customer_id)
            except repository.CustomerConflict as err:
                raise ApplicationError(
                    str(err), type="CustomerConflict", non_retryable=True
                ) from err

    @activity.defn
    @classify_failures
    def write_entitlements(self, request: WriteEntitlementsInput) -> bool:
        """Store the entitlements at `request.version`; False when that version already holds
        this very lifecycle (a repeat). The version holding another lifecycle raises
        `EntitlementVersionTaken` with the stored version: a write whose workflow task was lost
        after it landed, redone from newer Stripe data, must go after it, never be dropped."""
        entitlements = entitlements_for(request.lifecycle, self._catalog)
        lifecycle = LIFECYCLE_JSON.dump_python(request.lifecycle, mode="json")
        with self._sessions.begin() as session:
            applied = repository.write_entitlements(
                session,
                request.account_id,
                request.version,
                entitlements,
                lifecycle,
                request.cause,
                request.notices,
            )
            if not applied:
                stored = repository.stored_account(session, request.account_id)
                if stored is not None and stored.lifecycle != lifecycle:
                    raise ApplicationError(
                        f"entitlement version {request.version} is taken: the stored version "
                        f"{stored.version} holds another lifecycle",
                        stored.version,
                        type=VERSION_TAKEN,
                        non_retryable=True,
                    )
            if request.events:
                repository.record_stripe_events(
                    session, request.account_id, _event_rows(request.events)
                )
            outbox.queue(session, request.account_id, [e.as_row() for e in request.emails])
        if applied:
            # What happened to the account, one line per change (the ids are the logger's).
            activity.logger.info(
                "entitlements v%d: %s, plan %s, access %s (%s)",
                request.version,
                entitlements.billing_state,
                entitlements.plan,
                entitlements.access,
                request.cause,
            )
        return applied

    @activity.defn
    @classify_failures
    def queue_emails(self, request: QueueEmailsInput) -> None:
        """Queue emails no entitlement write carried (reminders, Stripe's own notices)."""
        with self._sessions.begin() as session:
            outbox.queue(session, request.account_id, [e.as_row() for e in request.emails])

    @activity.defn
    @classify_failures
    def record_stripe_events(self, request: RecordEventsInput) -> int:
        with self._sessions.begin() as session:
            return repository.record_stripe_events(
                session, request.account_id, _event_rows(request.events)
            )

    @activity.defn
    @classify_failures
    def record_operator_action(self, record: OperatorActionRecord) -> None:
        request = record.request
        with self._sessions.begin() as session:
            repository.record_operator_action(
                session,
                update_id=record.update_id,
                account_id=record.account_id,
                action=request.action,
                actor=request.actor,
                reason=request.reason,
                request=REQUEST_JSON.dump_python(request, mode="json"),
                before=LIFECYCLE_JSON.dump_python(record.before, mode="json"),
                after=LIFECYCLE_JSON.dump_python(record.after, mode="json"),
            )


def _event_rows(events: list[ReceivedEvent]) -> list[tuple[str, str, int]]:
    return [(e.event_id, e.event_type, e.created) for e in events]
