"""Stripe's webhook: verify the signature on the raw bytes, route to an account, signal it.

Nothing is decided here. The answer is 2xx only once Temporal has durably accepted the signal
(or the event was stored as unroutable); anything else is a 4xx/5xx so Stripe retries.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

# Imported by name: `stripe.X` goes through the package's lazy `__getattr__` (an import_module
# call) on every access, i.e. on every webhook.
from stripe import SignatureVerificationError, WebhookSignature

from api.deps import AccountWorkflowsDep, SessionFactoryDep, SettingsDep
from api.edge import TemporalUnavailable
from api.metrics import UNVERIFIED_EVENT_TYPE, WEBHOOK_EVENTS
from core.config import Settings
from core.logging import bind_log_context
from db.event_routing import account_or_store_unroutable
from domain.stripe_events import check_event_shape, is_handled, route_event, signal_for
from workflows.account import workflow_id_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
PATH = "/webhooks/stripe"

NOT_ACCEPTED = "Temporal did not confirm the event; it may still be delivered, and Stripe retries"


@router.post(PATH.removeprefix(router.prefix))
async def receive_stripe_event(
    request: Request,
    settings: SettingsDep,
    # The session factory, not a session: rejected requests never touch the database.
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
) -> dict[str, str]:
    try:
        raw = await read_capped_body(request, settings.webhook_max_body_bytes)
        event = verified_event(raw, request.headers.get("stripe-signature"), settings)
    except HTTPException:
        WEBHOOK_EVENTS.labels(UNVERIFIED_EVENT_TYPE, "rejected").inc()
        raise
    bind_log_context(stripe_event_id=event["id"])
    if not is_handled(event["type"]):
        WEBHOOK_EVENTS.labels(event["type"], "ignored").inc()
        return {"status": "ignored"}

    route = route_event(event)
    account_id = route.account_id
    if account_id is None:
        # Only an event that names no account needs the database (the customer's link); the
        # usual one skips the trip to the threadpool.
        account_id = await run_in_threadpool(account_or_store_unroutable, sessions, event, route)
    if account_id is None:
        WEBHOOK_EVENTS.labels(event["type"], "unroutable").inc()
        return {"status": "unroutable"}
    bind_log_context(account_id=account_id, workflow_id=workflow_id_for(account_id))

    signal = signal_for(event, route)
    try:
        await workflows.send_stripe_event(account_id, signal, if_unconfirmed=NOT_ACCEPTED)
    except TemporalUnavailable:
        WEBHOOK_EVENTS.labels(event["type"], "unavailable").inc()
        logger.warning("Temporal did not accept %s for %s", event["id"], account_id)
        raise
    WEBHOOK_EVENTS.labels(event["type"], "accepted").inc()
    logger.info("signalled %s (%s) to account %s", event["id"], event["type"], account_id)
    return {"status": "accepted", "account_id": account_id}


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 beyond `limit` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, detail=f"body larger than {limit} bytes"
    )


def verified_event(raw: bytes, signature: str | None, settings: Settings) -> dict[str, Any]:
    """The event, after checking Stripe's signature over the exact bytes received."""
    if not signature:
        raise _bad_request("missing Stripe-Signature header")
    # Stripe's header is ASCII; the library's comparison fails on anything else.
    if not signature.isascii():
        raise _bad_request("invalid Stripe signature: the header is not ASCII")
    try:
        WebhookSignature.verify_header(
            raw,
            signature,
            settings.stripe_webhook_secret,
            tolerance=settings.webhook_tolerance_seconds,
        )
    except SignatureVerificationError as err:
        raise _bad_request(f"invalid Stripe signature: {err.user_message}") from err
    except UnicodeDecodeError as err:
        raise _bad_request("the body is not UTF-8") from err
    try:
        return check_event_shape(
            json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        )
    except json.JSONDecodeError as err:
        raise _bad_request("the body is not JSON") from err
    except RecursionError as err:
        raise _bad_request("not a Stripe event: nested too deep") from err
    except ValueError as err:  # `MalformedEvent`, a non-finite number, an integer too long
        raise _bad_request(f"not a Stripe event: {err}") from err


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is beyond a JSON number's range")
    return number


def _bad_request(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=reason)
