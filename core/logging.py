"""One line per log record, as JSON for log pipelines or as text for a terminal.

Every line about an account carries its ids as fields: `account_id`, `stripe_event_id` and
`workflow_id`. The webhook route binds them to the request's context (`bind_log_context`);
the Temporal SDK's activity and workflow loggers put the workflow's ids in `temporal_activity` /
`temporal_workflow`, which are kept and lifted to top-level fields here. Nothing here logs
payloads: callers log ids and outcomes, never bodies, tokens or card data.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio import activity as temporal_activity
from temporalio import workflow as temporal_workflow

from core.config import Settings
from core.workflow_ids import WORKFLOW_ID_PREFIX

CONTEXT_FIELDS = ("account_id", "stripe_event_id", "workflow_id")
# Libraries that log at INFO per request (stripe-python twice, httpx), per SMTP connection
# (aiosmtpd's `mail.log`, the local mail sink) or per migration plugin: shown only at DEBUG.
QUIET_BELOW_DEBUG = ("stripe", "httpx", "mail.log", "alembic.runtime.plugins")
TEMPORAL_EXTRAS = ("temporal_activity", "temporal_workflow")

_context: ContextVar[Mapping[str, str]] = ContextVar(
    "billing_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else on a record came from `extra=`. Uvicorn adds
# `color_message`, the message again with terminal colours; the Temporal SDK's core log lines
# carry `temporal_log`, the core's entry as an object, whose target and fields the message
# already holds.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message", "temporal_log"}
)


def bind_log_context(**ids: str) -> None:
    """Add ids to every line logged from here on in this context (request, task)."""
    _context.set({**_context.get(), **ids})


@contextmanager
def log_context_scope() -> Iterator[None]:
    """Ids bound inside the block are forgotten after it (one request, one activity)."""
    token = _context.set(_context.get())
    try:
        yield
    finally:
        _context.reset(token)


class LogContextMiddleware:
    """ASGI: ids bound while handling one request stay with that request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with log_context_scope():
            await self.app(scope, receive, send)


class ContextFilter(logging.Filter):
    """Puts the bound ids, and those of the Temporal workflow the line is about, on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        for extra in TEMPORAL_EXTRAS:
            details = getattr(record, extra, None)
            if isinstance(details, Mapping) and "workflow_id" in details:
                if not hasattr(record, "workflow_id"):
                    record.workflow_id = details["workflow_id"]
                break
        workflow_id = getattr(record, "workflow_id", None)
        if (
            not hasattr(record, "account_id")
            and isinstance(workflow_id, str)
            and workflow_id.startswith(WORKFLOW_ID_PREFIX)
        ):
            record.account_id = workflow_id.removeprefix(WORKFLOW_ID_PREFIX)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            (name, value)
            for name, value in record.__dict__.items()
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_")
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{text} [{ids}]" if ids else text


def make_handler(log_format: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(settings: Settings) -> None:
    """The root logger writes through one handler; uvicorn's and Temporal's loggers propagate."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(make_handler(settings.log_format))
    root.setLevel(settings.log_level)
    # At INFO their lines would bury what happens to the accounts.
    for chatty in QUIET_BELOW_DEBUG:
        logging.getLogger(chatty).setLevel(
            logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
        )
    # The workflow's and activity's ids are fields of the line already (`ContextFilter`); the
    # SDK would also append them to the message as a dict.
    temporal_activity.logger.activity_info_on_message = False
    temporal_workflow.logger.workflow_info_on_message = False
    # Warnings and uncaught exceptions would otherwise be written by the interpreter as plain
    # text: with LOG_FORMAT=json every line on stderr must be one JSON object.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(
        args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback
    )


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, traceback)
        return
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, error, traceback))
