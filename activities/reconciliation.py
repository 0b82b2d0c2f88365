"""Catching up with Stripe when webhooks were lost: replay listed events, find drifted accounts.

Stripe delivers at least once, but a disabled endpoint or a long outage loses deliveries for
good. Stripe still lists every event for 30 days (`/v1/events`), and every subscription for
ever; these activities read both and hand the differences to the account workflows, which
dedupe by event id and re-fetch the subscription themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, Protocol

import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import reconciliation, repository
from db.event_routing import account_or_store_unroutable
from db.reconciliation import Cursor
from domain.catalog import Catalog, CatalogError
from domain.lifecycle import BillingState, Lifecycle, SubscriptionSnapshot, state_for_subscription
from domain.operator_actions import OperatorRequest
from domain.stripe_events import (
    HANDLED_EVENT_TYPES,
    MalformedEvent,
    StripeEventSignal,
    check_event_shape,
    metadata_account_id,
    route_event,
    signal_for,
)
from domain.subscriptions import (
    deciding_subscription,
    products_to_expand,
    snapshot_from_stripe,
    with_products,
)

logger = logging.getLogger(__name__)

EVENTS_CURSOR = "stripe-events"
# Without a cursor (the first pass ever, or the cursor's event has expired) the pass starts
# this far back: Stripe retries a delivery for 3 days, so anything older was either delivered
# or is the backfill's and the sweep's job.
FIRST_PASS_LOOKBACK = timedelta(days=3)
# Finding the oldest event of that window means walking back from the newest: at most this
# many pages of 100.
FIRST_PASS_MAX_PAGES = 100
LIST_LIMIT = 100
# Accounts signalled at once while a page is replayed.
SIGNAL_CONCURRENCY = 16
RESYNC_ACTOR = "reconciliation"
# A sweep stops when Stripe lists nothing for more than this share of the customers stored on
# a subscription, and at least `MISSING_CUSTOMERS_MIN` of them: that many cancellations between
# two sweeps is not customers leaving but Stripe not being the Stripe we know (wrong key,
# test key in live, a restored sandbox), and resyncing would move every paying account to free.
MISSING_CUSTOMERS_SHARE = 0.10
MISSING_CUSTOMERS_MIN = 3


@dataclass
class EventsPageInput:
    page_size: int = LIST_LIMIT


@dataclass
class EventsPageResult:
    # Listed by Stripe after the cursor.
    listed: int
    # Not yet held by the service (no workflow recorded it, not stored as unroutable): sent
    # to their accounts now.
    redelivered: int
    # Not held, and no account could be found: stored for operators, as the gateway does.
    unroutable: int
    account_ids: list[str]
    # More events after this page.
    has_more: bool


@dataclass
class DriftedAccount:
    account_id: str
    # Linked before the resync: an account whose webhooks were all lost never learned it.
    customer_id: str
    reason: str


@dataclass
class SweepFindings:
    subscriptions_checked: int
    drifted: list[DriftedAccount] = field(default_factory=list)
    # Customers with a subscription that no account is linked to (the backfill links them).
    customers_without_account: list[str] = field(default_factory=list)
    # Customers stored on a subscription that Stripe lists nothing for.
    customers_missing_in_stripe: int = 0
    # Why the sweep must not resync anything (then `drifted` is empty); None: it may.
    stopped_because: str | None = None


@dataclass
class ResyncInput:
    account_id: str
    customer_id: str
    reason: str
    # Dedupes a retried activity within the account workflow's run.
    update_id: str


class AccountWorkflows(Protocol):
    """Delivery to the account workflows, starting one where none runs. Passed in by the
    composition (`workflows.starter.AccountWorkflowStarter`), as activities sit below the
    workflows they feed."""

    async def signal_stripe_events(
        self, account_id: str, events: list[StripeEventSignal]
    ) -> None: ...

    async def run_operator_action(
        self, account_id: str, request: OperatorRequest, *, update_id: str | None = None
    ) -> object: ...


class ReconciliationActivities:
    def __init__(
        self,
        accounts: AccountWorkflows,
        stripe_client: stripe.StripeClient,
        sessions: sessionmaker[Session],
        catalog: Catalog,
    ) -> None:
        self._accounts = accounts
        self._stripe = stripe_client
        self._sessions = sessions
        self._catalog = catalog

    @activity.defn
    async def reconcile_events_page(self, request: EventsPageInput) -> EventsPageResult:
        """Send the next page of listed events (oldest first) that the service does not hold
        yet to their accounts, then move the cursor past the page. A retry after a failure
        sends some again: the account workflow dedupes by event id."""
        cursor = await asyncio.to_thread(self._read_events_cursor)
        events, has_more = await asyncio.to_thread(self._events_after, cursor, request.page_size)
        held = await asyncio.to_thread(self._held_event_ids, [e["id"] for e in events])
        routed = await asyncio.to_thread(
            self._route_all, [e for e in events if e["id"] not in held]
        )
        signals = [(account_id, signal) for account_id, signal in routed if account_id is not None]
        await self._signal_all(signals)
        if events:
            newest = events[-1]
            await asyncio.to_thread(
                self._save_events_cursor, Cursor(created=newest["created"], last_id=newest["id"])
            )
        return EventsPageResult(
            listed=len(events),
            redelivered=len(signals),
            unroutable=len(routed) - len(signals),
            account_ids=sorted({account_id for account_id, _ in signals}),
            has_more=has_more,
        )

    def _route_all(
        self, events: list[dict[str, Any]]
    ) -> list[tuple[str | None, StripeEventSignal]]:
        """Each well-formed event's account (None: stored as unroutable) and its signal; in
        one thread hop, as most are routed by their metadata without a query."""
        routed: list[tuple[str | None, StripeEventSignal]] = []
        for event in events:
            try:
                check_event_shape(event)
            except MalformedEvent as err:
                logger.warning("skipping listed event %s: %s", event.get("id"), err)
                continue
            route = route_event(event)
            account_id = account_or_store_unroutable(self._sessions, event, route)
            routed.append((account_id, signal_for(event, route)))
        return routed

    async def _signal_all(self, signals: list[tuple[str, StripeEventSignal]]) -> None:
        """Several accounts at a time, each account's events of the page in one
        signal-with-start: one by one, an account's events took a server round trip each,
        one after the other (two signal-with-starts racing to create the same workflow can be
        refused), and a page of new accounts' events took half a second (issue 28). Order
        does not matter: each account re-fetches Stripe's current state."""
        by_account: dict[str, list[StripeEventSignal]] = defaultdict(list)
        for account_id, signal in signals:
            by_account[account_id].append(signal)
        slots = asyncio.Semaphore(SIGNAL_CONCURRENCY)

        async def send(account_id: str, account_signals: list[StripeEventSignal]) -> None:
            async with slots:
                await self._accounts.signal_stripe_events(account_id, account_signals)

        # The first failure fails the attempt as is; its retry sends the page again.
        await asyncio.gather(*(send(account, queued) for account, queued in by_account.items()))

    @activity.defn
    def find_drifted_accounts(self) -> SweepFindings:
        """Every account whose stored subscription differs from what Stripe shows now."""
        by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        listing = self._stripe.v1.subscriptions.list(
            params={"status": "all", "limit": LIST_LIMIT, "expand": ["data.latest_invoice"]}
        )
        for count, subscription in enumerate(listing.auto_paging_iter(), start=1):
            as_dict = subscription.to_dict()
            by_customer[_customer_of(as_dict)].append(as_dict)
            if count % LIST_LIMIT == 0:
                activity.heartbeat(count)
        findings = SweepFindings(subscriptions_checked=sum(map(len, by_customer.values())))
        self._expand_plan_products(by_customer)
        with self._sessions() as session:
            for customer_id, subscriptions in sorted(by_customer.items()):
                account_id = repository.account_for_customer(session, customer_id) or next(
                    filter(None, map(metadata_account_id, subscriptions)), None
                )
                if account_id is None:
                    findings.customers_without_account.append(customer_id)
                    continue
                reason = self._drift(session, account_id, subscriptions)
                if reason is not None:
                    findings.drifted.append(DriftedAccount(account_id, customer_id, reason))
            stored = reconciliation.accounts_on_a_subscription(session)
        # Stored as subscribed, but Stripe lists nothing for the customer at all.
        missing = {
            subscribed: customer
            for subscribed, customer in stored.items()
            if customer is not None and customer not in by_customer
        }
        findings.customers_missing_in_stripe = len(missing)
        known = sum(customer is not None for customer in stored.values())
        if stripe_forgot_our_customers(len(missing), known):
            findings.stopped_because = (
                f"Stripe lists nothing for {len(missing)} of the {known} customers stored on a "
                "subscription: check STRIPE_SECRET_KEY (another Stripe account, a test key in "
                "live) and whether the Stripe account or sandbox was reset or restored; "
                "nothing was resynced (docs/runbook.md, 'Stripe says our customers do not exist')"
            )
            findings.drifted = []
            logger.error("subscription sweep stopped: %s", findings.stopped_because)
            activity.metric_meter().create_counter(
                "billing_sweeps_stopped",
                "Subscription sweeps stopped because Stripe does not know many of our customers.",
            ).add(1)
            return findings
        findings.drifted += [
            DriftedAccount(account, customer, "stored on a subscription Stripe does not list")
            for account, customer in missing.items()
        ]
        findings.drifted.sort(key=lambda drifted: drifted.account_id)
        return findings

    @activity.defn
    async def resync_account(self, request: ResyncInput) -> None:
        """Link the customer if the account never learned it, then resync. A customer already
        linked to another account fails for good (operators sort that out)."""
        await asyncio.to_thread(self._link, request.account_id, request.customer_id)
        await self._accounts.run_operator_action(
            request.account_id,
            OperatorRequest(action="resync", actor=RESYNC_ACTOR, reason=request.reason),
            update_id=request.update_id,
        )

    def _drift(
        self, session: Session, account_id: str, subscriptions: list[dict[str, Any]]
    ) -> str | None:
        current = deciding_subscription(subscriptions, self._catalog).deciding
        try:
            truth = None if current is None else snapshot_from_stripe(current, self._catalog)
        except CatalogError as err:
            # A resync cannot fix this either; the account workflow reports it as a sync error.
            logger.warning("sweep cannot read the subscription of %s: %s", account_id, err)
            return None
        return drift_reason(repository.stored_lifecycle(session, account_id), truth)

    def _expand_plan_products(self, by_customer: dict[str, list[dict[str, Any]]]) -> None:
        """Expand the products that can name a negotiated plan (`products_to_expand`), read in
        pages of 100, so the sweep reads subscriptions as the account workflows do."""
        all_subscriptions = [s for subscriptions in by_customer.values() for s in subscriptions]
        product_ids = sorted(products_to_expand(all_subscriptions, self._catalog))
        products: dict[str, dict[str, Any]] = {}
        for start in range(0, len(product_ids), LIST_LIMIT):
            page = self._stripe.v1.products.list(
                params={"ids": product_ids[start : start + LIST_LIMIT], "limit": LIST_LIMIT}
            )
            products.update((product.id, product.to_dict()) for product in page.data)
        if products:
            for customer_id, subscriptions in by_customer.items():
                by_customer[customer_id] = with_products(subscriptions, products)

    def _link(self, account_id: str, customer_id: str) -> None:
        with self._sessions.begin() as session:
            try:
                repository.link_customer(session, account_id, customer_id)
            except repository.CustomerConflict as err:
                raise ApplicationError(
                    str(err), type="CustomerConflict", non_retryable=True
                ) from err

    def _read_events_cursor(self) -> Cursor | None:
        with self._sessions() as session:
            return reconciliation.read_cursor(session, EVENTS_CURSOR)

    def _save_events_cursor(self, cursor: Cursor) -> None:
        with self._sessions.begin() as session:
            reconciliation.save_cursor(session, EVENTS_CURSOR, cursor)

    def _held_event_ids(self, event_ids: list[str]) -> set[str]:
        with self._sessions() as session:
            return reconciliation.held_event_ids(session, event_ids)

    def _events_after(
        self, cursor: Cursor | None, page_size: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `page_size` handled events listed after the cursor, oldest first, and
        whether more follow."""
        if cursor is not None:
            try:
                # Stripe lists newest first; `ending_before` is the page just newer than the
                # cursor's event, so walking forward in time needs no look at newer pages.
                page = self._list_events({"ending_before": cursor.last_id, "limit": page_size})
            except stripe.InvalidRequestError:
                logger.warning("event %s is no longer listed; resuming by time", cursor.last_id)
                return self._oldest_events_since(cursor.created, page_size)
            return list(reversed(page["data"])), bool(page["has_more"])
        since = int(time.time() - FIRST_PASS_LOOKBACK.total_seconds())
        return self._oldest_events_since(since, page_size)

    def _oldest_events_since(self, since: int, page_size: int) -> tuple[list[dict[str, Any]], bool]:
        newest_first: list[dict[str, Any]] = []
        params: dict[str, Any] = {"created": {"gte": since}, "limit": LIST_LIMIT}
        for _ in range(FIRST_PASS_MAX_PAGES):
            page = self._list_events(params)
            newest_first.extend(page["data"])
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        else:
            logger.warning(
                "more than %d events since %d: starting from the oldest found",
                FIRST_PASS_MAX_PAGES * LIST_LIMIT,
                since,
            )
        oldest_first = list(reversed(newest_first))
        return oldest_first[:page_size], len(oldest_first) > page_size

    def _list_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """One page of handled events as plain JSON: building StripeObjects only to turn
        them back into dicts was most of a page's CPU. Errors are the library's usual ones."""
        page: dict[str, Any] = self._stripe.raw_request(
            "get", "/v1/events", types=sorted(HANDLED_EVENT_TYPES), **params
        ).data
        return page


def stripe_forgot_our_customers(missing: int, known: int) -> bool:
    """Whether `missing` of the `known` customers stored on a subscription being absent from
    Stripe is too many to be customers leaving (see `MISSING_CUSTOMERS_SHARE`)."""
    return missing >= MISSING_CUSTOMERS_MIN and missing > MISSING_CUSTOMERS_SHARE * known


def drift_reason(stored: Lifecycle | None, truth: SubscriptionSnapshot | None) -> str | None:
    """Why the stored lifecycle does not match Stripe's current subscription (None: it does).

    The lifecycle only keeps a subscription that gives a paid state; an ended one reads as none.
    """
    expected = None if state_for_subscription(truth) is BillingState.FREE else truth
    held = None if stored is None else stored.subscription
    if expected == held:
        return None
    if expected is None or held is None:
        return f"Stripe: {_describe(expected)}; stored: {_describe(held)}"
    differing = [
        f.name
        for f in fields(SubscriptionSnapshot)
        if getattr(expected, f.name) != getattr(held, f.name)
    ]
    return f"{expected.subscription_id} differs from Stripe in {', '.join(differing)}"


def _describe(subscription: SubscriptionSnapshot | None) -> str:
    if subscription is None:
        return "no live subscription"
    return f"{subscription.subscription_id} {subscription.status}"


def _customer_of(subscription: Mapping[str, Any]) -> str:
    customer = subscription["customer"]
    return customer if isinstance(customer, str) else str(customer["id"])
