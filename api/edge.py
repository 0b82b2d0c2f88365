"""What the API answers when a request is wrong, in one place: a 4xx whose body always encodes,
and a bound on every request body."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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


def answer_failures(app: FastAPI) -> None:
    """Installs the app-wide answers: a 422 that always encodes."""
    app.add_exception_handler(RequestValidationError, validation_failed)


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
