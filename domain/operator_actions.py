"""Operator actions on an account, as plain data, and what each means for the lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.lifecycle import (
    Comp,
    ExtendGrace,
    GrantComp,
    LifecycleInput,
    Lock,
    LockAccount,
    RevokeComp,
    UnlockAccount,
)

# Actions that change the lifecycle directly; the others ask Stripe for something.
LIFECYCLE_ACTIONS = frozenset({"grant_comp", "revoke_comp", "lock", "unlock", "extend_grace"})
STRIPE_ACTIONS = frozenset({"resync", "retry_invoice", "cancel_now"})
ACTIONS = LIFECYCLE_ACTIONS | STRIPE_ACTIONS


class InvalidOperatorRequest(ValueError):
    """The request is incomplete or names an unknown action; nothing changes."""


@dataclass(frozen=True)
class OperatorRequest:
    action: str
    actor: str
    reason: str
    plan: str | None = None
    until: datetime | None = None


def check_operator_request(request: OperatorRequest) -> None:
    if request.action not in ACTIONS:
        raise InvalidOperatorRequest(f"unknown action {request.action!r}")
    if not request.actor.strip() or not request.reason.strip():
        raise InvalidOperatorRequest("an operator action needs an actor and a reason")
    if request.action == "grant_comp" and (request.plan is None or request.until is None):
        raise InvalidOperatorRequest("a comp needs a plan and an end date")
    if request.action == "extend_grace" and request.until is None:
        raise InvalidOperatorRequest("extending grace needs the new end date")
    if request.until is not None and request.until.tzinfo is None:
        raise InvalidOperatorRequest("dates must carry a time zone")


def lifecycle_input_for(request: OperatorRequest) -> LifecycleInput | None:
    """The lifecycle input an action stands for; None for actions that go through Stripe."""
    match request.action:
        case "grant_comp":
            assert request.plan is not None and request.until is not None
            return GrantComp(Comp(request.plan, request.until, request.reason, request.actor))
        case "revoke_comp":
            return RevokeComp()
        case "lock":
            return LockAccount(Lock(request.reason, request.actor))
        case "unlock":
            return UnlockAccount()
        case "extend_grace":
            assert request.until is not None
            return ExtendGrace(request.until)
    return None
