"""Stripe-shaped API errors: ``{"error": {"type", "code", "param", "message", ...}}``."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """Raised anywhere in request handling; the app turns it into Stripe's error body."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            if not self.code.endswith("_by_simulator"):  # the simulator's own codes have none
                doc = self.code.replace("_", "-")
                err["doc_url"] = f"https://stripe.com/docs/error-codes/{doc}"
        if self.param:
            err["param"] = self.param
        if request_id:
            err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        err.update({k: v for k, v in self.extra.items() if v is not None})
        return {"error": err}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, param=param, code=code)


def missing_param(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def no_such(kind: str, object_id: str) -> StripeError:
    """The object the URL names does not exist: Stripe's 404 (``param`` is ``id``)."""
    return StripeError(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param="id",
    )


def no_such_referenced(kind: str, object_id: str, param: str) -> StripeError:
    """The object a request parameter names does not exist: the request is bad, not the URL,
    so Stripe answers 400 (same code and message), naming the parameter."""
    return invalid(f"No such {kind}: '{object_id}'", param=param, code="resource_missing")


def card_error(
    message: str,
    *,
    code: str,
    decline_code: str | None = None,
    param: str | None = None,
    **extra: Any,
) -> StripeError:
    return StripeError(
        402, "card_error", message, code=code, param=param, decline_code=decline_code, **extra
    )
