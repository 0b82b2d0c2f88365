"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import SessionFactoryDep

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


# `async`: a plain `def` would run in the threadpool, so a pool busy with slow work would
# make a live process look dead.
@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(sessions: SessionFactoryDep) -> JSONResponse:
    """Ready when the database answers. Temporal is deliberately not checked: the entitlement
    API works without it, and the webhook already answers 503 on its own while it is down."""
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        logger.warning("readiness: database unreachable: %r", err)
        return JSONResponse(
            {"status": "unavailable", "checks": {"database": "unreachable"}},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return JSONResponse({"status": "ready", "checks": {"database": "ok"}})
