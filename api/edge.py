"""What the API answers when a request is wrong or something it waits on is out, in one place.

An outage ends in a 503 with `Retry-After`; bad input ends in a 4xx whose body always encodes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

# Long enough for a restarted dependency to come back, short enough for a user's retry.
RETRY_AFTER_SECONDS = 10

DATABASE_UNAVAILABLE = "the database is unavailable; retry later"


def unavailable(reason: str) -> HTTPException:
    """503 with `Retry-After`: an outage, not the caller's fault; `reason` says whether the
    request may still take effect."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail=reason,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


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
    error = unavailable(DATABASE_UNAVAILABLE)
    return JSONResponse(
        status_code=error.status_code, content={"detail": error.detail}, headers=error.headers
    )


def answer_failures(app: FastAPI) -> None:
    """Installs the app-wide answers: an unencodable 422 and a database out of reach."""
    app.add_exception_handler(RequestValidationError, validation_failed)
    # Refused or dropped connections and an exhausted pool; a bad statement stays a 500 (a bug).
    for unreachable in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(unreachable, database_unavailable)


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
