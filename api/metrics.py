"""Prometheus metrics of the API: requests, webhook outcomes, accounts by billing state.

Scraping needs the admin bearer token: the series name routes, volumes and how many accounts
are in each state, and each scrape costs a database query.

Counters and histograms live in the process-wide registry (they count this process's work);
the accounts gauge is counted by the database (one grouped query) on every scrape, so it is
right whichever API replica is scraped and needs no bookkeeping on writes. The worker's
metrics (the Temporal SDK's and the email deliveries) are served by the worker itself, see
`worker.run_worker`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AdminTokenDep
from db import repository

HTTP_REQUESTS = Counter(
    "billing_http_requests",
    "HTTP requests answered, by route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "billing_http_request_duration_seconds",
    "Time from request to the end of the response, by route template.",
    ["method", "route"],
)
WEBHOOK_EVENTS = Counter(
    "billing_webhook_events",
    "Stripe webhook deliveries by event type and outcome "
    "(accepted, ignored, unroutable, rejected, unavailable).",
    ["event_type", "outcome"],
)
# A rejected delivery was never verified: its claimed type is not worth a label.
UNVERIFIED_EVENT_TYPE = "unverified"
# Paths that match no route are grouped, so scanners cannot blow up the label set.
UNMATCHED_ROUTE = "unmatched"

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(_: AdminTokenDep, request: Request) -> Response:
    """Prometheus text format: this process's counters, then the database gauges."""
    accounts: CollectorRegistry = request.app.state.database_metrics
    body = generate_latest(REGISTRY) + generate_latest(accounts)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class AccountsByStateCollector(Collector):
    """`billing_accounts{billing_state=...}`: accounts with stored entitlements, per state."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "billing_accounts",
            "Accounts with stored entitlements, by billing state (read at scrape time).",
            labels=["billing_state"],
        )
        with self._sessions() as session:
            counts = repository.accounts_per_billing_state(session)
        for state, count in counts.items():
            gauge.add_metric([state], count)
        yield gauge

    def describe(self) -> Iterator[Metric]:
        # Registering must not query the database: describe without collecting.
        yield GaugeMetricFamily("billing_accounts", "", labels=["billing_state"])


def database_metrics(sessions: sessionmaker[Session]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AccountsByStateCollector(sessions))
    return registry


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (`/v1/accounts/{id}/…`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            method = scope["method"]
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return f"{scope.get('root_path', '')}{route.path}"
    # Mounted sub-apps (the codec server), 404s and requests answered before routing (a body
    # too large): find the route the way the router would.
    app = scope.get("app")
    return _matching_path(getattr(getattr(app, "router", None), "routes", []), scope)


def _matching_path(routes: list[Any], scope: Scope) -> str:
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            # An included router matches when one of its routes does.
            included = getattr(candidate, "original_router", None)
            if included is not None:
                return _matching_path(included.routes, scope)
            return str(candidate.path)
    return UNMATCHED_ROUTE
