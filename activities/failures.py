"""Every activity failure has a class: transient (Temporal retries it) or final.

Stripe or the database being unreachable, slow or busy is transient: the same call succeeds
later. Anything else — Stripe refusing the request, data this service cannot read, a bug — fails
the same way on every attempt, so it is raised as a non-retryable `ApplicationError` whose
`type` names the class; the account workflow records it as the account's sync error and keeps
following later events, instead of retrying one call forever.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiosmtplib
import sqlalchemy.exc
import stripe
from temporalio.exceptions import ApplicationError

F = TypeVar("F", bound=Callable[..., Any])

# Stripe answers these statuses when it is busy (409 lock_timeout, 429) or in trouble (5xx).
TRANSIENT_STRIPE_STATUSES = frozenset({409, 429})
TRANSIENT_DATABASE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    # A concurrent insert of the same row: the retry finds it there.
    sqlalchemy.exc.IntegrityError,
)
TRANSIENT_NETWORK_ERRORS = (ConnectionError, TimeoutError, aiosmtplib.SMTPException)


def is_transient(err: BaseException) -> bool:
    if isinstance(err, stripe.StripeError):
        if isinstance(err, stripe.APIConnectionError | stripe.RateLimitError):
            return True
        status = err.http_status
        if status is None:
            return isinstance(err, stripe.APIError)
        return status >= 500 or status in TRANSIENT_STRIPE_STATUSES
    return isinstance(err, TRANSIENT_DATABASE_ERRORS + TRANSIENT_NETWORK_ERRORS)


def final_failure(err: BaseException) -> ApplicationError:
    """`err` as the non-retryable failure the workflow records: Stripe's own message when
    Stripe refused, the exception's class as the type."""
    message = (err.user_message or str(err)) if isinstance(err, stripe.StripeError) else str(err)
    return ApplicationError(message or repr(err), type=type(err).__name__, non_retryable=True)


def classify_failures(method: F) -> F:
    """Raise what `method` raises with its class: transient errors as they are (retried),
    every other error as a non-retryable `ApplicationError`."""

    def reclassified(err: Exception) -> Exception:
        if isinstance(err, ApplicationError) or is_transient(err):
            return err
        return final_failure(err)

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except Exception as err:
                classified = reclassified(err)
                if classified is err:
                    raise
                raise classified from err

        return cast(F, run_async)

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as err:
            classified = reclassified(err)
            if classified is err:
                raise
            raise classified from err

    return cast(F, run)
