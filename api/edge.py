"""What the API answers when a request is wrong or something it waits on is out, in one place.

Every wait on something outside (Temporal, the database, Stripe) is bounded and ends in a 503
with `Retry-After`; bad input ends in a 4xx whose body always encodes. No route writes its own
mapping from an outside failure to an HTTP answer: routes let the failure through, and the
exception handlers here, which `create_app` registers, answer it (the workflow refusing an
update: 409 with its reason; Temporal, the database or Stripe out of reach: 503; Stripe
refusing a call: 502).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Imported by name: `stripe.X` goes through the package's lazy `__getattr__` on every access.
from stripe import (
    APIConnectionError,
    APIError,
    InvalidRequestError,
    RateLimitError,
    StripeError,
)
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import FailureError
from temporalio.service import RPCError, RPCStatusCode

logger = logging.getLogger(__name__)

# Long enough for a restarted dependency to come back, short enough for a user's retry.
RETRY_AFTER_SECONDS = 10

# A lazy client that cannot reach the server raises RuntimeError ("Failed client connect");
# an update Temporal did not confirm within its own deadline is unconfirmed like a timeout.
TEMPORAL_UNAVAILABLE = (
    RPCError,
    RuntimeError,
    ConnectionError,
    TimeoutError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
# What says the request may already be with Temporal, so the change may still happen.
MAY_STILL_APPLY = (
    "billing did not confirm the change in time; the change may still apply when the service "
    "catches up: check the entitlements before retrying"
)
NOT_APPLIED = "billing cannot reach Temporal; nothing was changed; retry later"
DATABASE_UNAVAILABLE = "the database is unavailable; retry later"
STRIPE_UNAVAILABLE = "Stripe is unavailable; retry later"
# Probes of an unreachable Temporal: how long one may take and how often one runs.
PROBE_TIMEOUT = timedelta(seconds=2)
PROBE_EVERY_SECONDS = 1.0


def unavailable(reason: str) -> HTTPException:
    """503 with `Retry-After`: an outage, not the caller's fault; `reason` says whether the
    request may still take effect."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail=reason,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class TemporalUnavailable(Exception):
    """Temporal did not take a call, or did not confirm it within its bound; `reason` says
    whether it may still take effect. Answered 503 with `Retry-After` (`temporal_unavailable`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemporalGate:
    """Whether Temporal is known to be out of reach, so requests answer 503 at once instead of
    each waiting out the client's retries (6-10 s); a background probe reopens it.

    A refused connection closes it at once. A call that timed out only starts a probe, which
    closes it if the server does not answer its health check either: an update times out too
    when Temporal is up but no worker polls, and that must not refuse other requests."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._closed = False
        self._probe: asyncio.Task[None] | None = None

    @property
    def is_closed(self) -> bool:
        return self._closed

    def check(self, reason: str = NOT_APPLIED) -> None:
        if self._closed:
            raise TemporalUnavailable(reason)

    def observe(self, err: BaseException) -> None:
        if self._probe is not None and not self._probe.done():
            return
        if _is_unreachable(err):
            self._close()
        elif not _timed_out(err):
            return
        self._probe = asyncio.create_task(self._probe_until_reachable())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)

    def _close(self) -> None:
        if not self._closed:
            logger.warning("Temporal is unreachable: answering 503 until a probe reaches it")
        self._closed = True

    async def _probe_until_reachable(self) -> None:
        while not await self._serving():
            self._close()
            await asyncio.sleep(PROBE_EVERY_SECONDS)
        if self._closed:
            logger.info("Temporal is reachable again")
        self._closed = False

    async def _serving(self) -> bool:
        try:
            return await self._client.service_client.check_health(timeout=PROBE_TIMEOUT)
        except Exception:  # unreachable (or a client that cannot probe)
            return False


def _is_unreachable(err: BaseException) -> bool:
    if isinstance(err, RPCError):
        return err.status == RPCStatusCode.UNAVAILABLE
    return isinstance(err, RuntimeError | ConnectionError)


def _timed_out(err: BaseException) -> bool:
    if isinstance(err, RPCError):
        return err.status == RPCStatusCode.DEADLINE_EXCEEDED
    return isinstance(err, TimeoutError | WorkflowUpdateRPCTimeoutOrCancelledError)


@asynccontextmanager
async def temporal_call(
    gate: TemporalGate, seconds: float, *, if_unconfirmed: str, if_not_sent: str = NOT_APPLIED
) -> AsyncIterator[None]:
    """Bounds one call to Temporal: not confirmed within `seconds` raises `TemporalUnavailable`
    saying `if_unconfirmed` (the call may still take effect). While the gate knows Temporal is
    down, it is raised at once, before anything is sent, saying `if_not_sent`. The workflow
    refusing an update (`WorkflowUpdateFailedError`) passes through: that is a 409."""
    gate.check(if_not_sent)
    try:
        async with asyncio.timeout(seconds):
            yield
    except TEMPORAL_UNAVAILABLE as err:
        gate.observe(err)
        logger.warning("Temporal did not confirm a call: %r", err)
        # Even a refused connection may follow a request that reached the server: only the
        # gate's own answer is sure nothing was sent.
        raise TemporalUnavailable(if_unconfirmed) from err


def refusal(err: WorkflowUpdateFailedError) -> str:
    """The workflow's reason ("the account is not locked"), without the error type prefix."""
    cause = err.cause
    if isinstance(cause, FailureError) and cause.message:
        return cause.message
    return str(cause or err)


async def update_refused(_: Request, exc: Exception) -> JSONResponse:
    """The workflow refused the update (its validator, or the handler as the state moved):
    a 409 with the workflow's reason."""
    assert isinstance(exc, WorkflowUpdateFailedError)
    return JSONResponse(status_code=status.HTTP_409_CONFLICT, content={"detail": refusal(exc)})


async def temporal_unavailable(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TemporalUnavailable)
    return _answer(unavailable(exc.reason))


# --- Stripe --------------------------------------------------------------------------------


async def stripe_failed(_: Request, exc: Exception) -> JSONResponse:
    """Stripe's errors as answers the app can act on: retry later (503), a conflict (Stripe
    no longer knows the account's records), or Stripe refusing the call (502)."""
    assert isinstance(exc, StripeError)
    if isinstance(exc, APIConnectionError | RateLimitError | APIError):
        logger.warning("Stripe unavailable: %r", exc)
        return _answer(unavailable(STRIPE_UNAVAILABLE))
    if isinstance(exc, InvalidRequestError):
        if exc.code == "resource_missing":
            return _answer(
                HTTPException(
                    status.HTTP_409_CONFLICT,
                    detail="Stripe no longer knows this account's billing records: "
                    f"{exc.user_message}",
                )
            )
        logger.error("Stripe refused a request: %r", exc)
        return _answer(HTTPException(status.HTTP_502_BAD_GATEWAY, "Stripe refused the request"))
    logger.error("Stripe call failed: %r", exc)
    return _answer(HTTPException(status.HTTP_502_BAD_GATEWAY, "Stripe call failed"))


# --- bodies --------------------------------------------------------------------------------


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity written as a string: JSON has no such numbers, and a
    422 that echoes the caller's `1e309` must still encode."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


async def validation_failed(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": finite(jsonable_encoder(exc.errors()))},
    )


async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable: %r", exc)
    return _answer(unavailable(DATABASE_UNAVAILABLE))


# Refused or dropped connections and an exhausted pool; a bad statement stays a 500 (a bug).
DATABASE_UNREACHABLE = (OperationalError, InterfaceError, PoolTimeoutError)


def _answer(error: HTTPException) -> JSONResponse:
    """The response FastAPI gives for `error` when a route raises it."""
    return JSONResponse(
        status_code=error.status_code, content={"detail": error.detail}, headers=error.headers
    )


class BodyLimit:
    """Refuses a request body larger than its path's limit (declared or sent) with 413, before
    any route reads it: `limits` maps path prefixes to their own limit (None: the route caps
    its body itself), `default` covers the rest."""

    def __init__(self, app: ASGIApp, default: int, limits: Mapping[str, int | None]) -> None:
        self.app = app
        self.default = default
        self.limits = limits

    def limit_for(self, path: str) -> int | None:
        return next(
            (limit for prefix, limit in self.limits.items() if path.startswith(prefix)),
            self.default,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit, scope, receive, send)
            return
        # Read whole here (it is bounded), then handed to the app as one message; later
        # receives (a disconnect during a long poll) go to the server as before.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(limit, scope, receive, send)
                return
            more = message.get("more_body", False)
        whole: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay(whole, receive), send)


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        content={"detail": f"body larger than {limit} bytes"},
    )
    await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
