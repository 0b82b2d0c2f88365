"""Assembles the FastAPI app. Nothing runs at import: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from stripe import StripeError
from temporalio.client import Client, WorkflowUpdateFailedError

from api import edge, metrics
from api.account_workflows import AccountWorkflows
from api.answer_cache import AnswerCache, keep_current
from api.edge import BodyLimit, TemporalGate, TemporalUnavailable
from api.routes import (
    admin,
    billing,
    codec,
    console,
    customer_pages,
    entitlements,
    feed,
    health,
    webhooks,
)
from core import temporal
from core.config import Settings, get_settings
from core.logging import LogContextMiddleware
from db.engine import MAX_POOLED_CONNECTIONS, make_engine, make_session_factory
from domain.catalog import default_catalog


def create_app(settings: Settings | None = None, temporal_client: Client | None = None) -> FastAPI:
    """The app. Migrations are not run here: the CLI runs them before the service starts."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            # No pre-ping: it costs a round trip on every checkout, entitlement reads included.
            # A connection the server dropped fails once and invalidates the pool; the
            # entitlement read retries, other routes answer an error once (Stripe retries).
            pre_ping=False,
            # Reads come from many threads at once: every connection the pool may open stays
            # open, rather than one opened (a PostgreSQL backend forked) per read above five.
            kept_connections=MAX_POOLED_CONNECTIONS,
        )
        app.state.settings = settings
        app.state.catalog = default_catalog()
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        app.state.database_metrics = metrics.database_metrics(app.state.session_factory)
        app.state.answer_cache = AnswerCache(settings.entitlement_cache_size)
        # Without a follower the cache stays empty: every read asks the database.
        follower = (
            asyncio.create_task(
                keep_current(
                    app.state.answer_cache,
                    app.state.session_factory,
                    settings.entitlement_cache_poll_seconds,
                )
            )
            if settings.entitlement_cache_size > 0
            else None
        )
        # Lazy: the API starts (and serves entitlements) while Temporal is still down; the
        # webhook answers 503 until it is reachable.
        app.state.temporal_client = temporal_client or await temporal.connect(
            settings, lazy=True, retry=temporal.ANSWERING_RETRY
        )
        gate = TemporalGate(app.state.temporal_client)
        app.state.account_workflows = AccountWorkflows(
            app.state.temporal_client, settings.task_queue, gate
        )
        try:
            yield
        finally:
            await gate.close()
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            engine.dispose()

    app = FastAPI(title="Dataface Billing", lifespan=lifespan)
    # What routes let through, answered here (`api.edge`): a route maps no outside failure.
    app.add_exception_handler(WorkflowUpdateFailedError, edge.update_refused)  # 409
    app.add_exception_handler(TemporalUnavailable, edge.temporal_unavailable)  # 503
    app.add_exception_handler(StripeError, edge.stripe_failed)  # 503, 409 or 502
    for unreachable in edge.DATABASE_UNREACHABLE:
        app.add_exception_handler(unreachable, edge.database_unavailable)  # 503
    app.add_exception_handler(RequestValidationError, edge.validation_failed)  # 422 that encodes
    app.add_exception_handler(console.SignInRequired, console.sign_in_required)  # 303 or 401
    app.add_exception_handler(console.CsrfRefused, console.csrf_refused)  # 403
    # Innermost, so the metrics and the log see the 413s too.
    app.add_middleware(
        BodyLimit,
        default=settings.api_max_body_bytes,
        # The webhook caps its own body: it counts what it refuses.
        limits={webhooks.PATH: None, codec.MOUNT_PATH: codec.MAX_BODY_BYTES},
    )
    app.add_middleware(LogContextMiddleware)
    app.add_middleware(metrics.MetricsMiddleware)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(webhooks.router)
    app.include_router(entitlements.router)
    app.include_router(feed.router)
    app.include_router(billing.router)
    app.include_router(customer_pages.router)
    app.include_router(admin.router)
    app.include_router(console.router)
    payload_codec = temporal.payload_codec(settings)
    if payload_codec is not None:
        app.mount(codec.MOUNT_PATH, codec.codec_app(settings, payload_codec))
    return app
