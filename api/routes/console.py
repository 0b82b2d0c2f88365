"""The support console: server-rendered pages for the people who answer "why was I locked
out?". One page per account (what the app sees, the lifecycle, one timeline of everything that
happened), the operator actions with their reason, and what needs attention.

It reads and acts through `api.operations`, as the admin API does: an action here is the same
validated workflow Update, audited with the signed-in operator as its actor. Every page and
form needs a console session (`api.console_session`); every form its CSRF token.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowUpdateFailedError

from api import console_session, operations
from api.account_workflows import AccountWorkflows, SyncErrorAccount
from api.console_session import ConsoleSession
from api.deps import (
    AccountIdPath,
    AccountWorkflowsDep,
    CatalogDep,
    SessionFactoryDep,
    SettingsDep,
)
from api.edge import TemporalUnavailable, refusal
from api.schemas import (
    LISTABLE_STATES,
    TAKES_PLAN,
    TAKES_UNTIL,
    AccountDetailAnswer,
    AccountSummaryAnswer,
    LinkRequest,
    OperatorActionRequest,
)
from core.config import Settings
from core.stripe_client import make_stripe_client
from core.workflow_ids import workflow_id_for
from db import admin_queries, repository
from domain.catalog import FREE_PLAN, Catalog
from domain.operator_actions import ACTIONS, InvalidOperatorRequest
from domain.stripe_events import ACCOUNT_ID_PATTERN

PREFIX = "/console"
router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates" / "console")

LIST_LIMIT = 100
# A first payment Stripe has not seen for this long is a checkout the customer abandoned or
# could not finish (Stripe expires it at 23 hours): support reaches out.
STUCK_CHECKOUT_AFTER = timedelta(days=1)
ACTION_LABELS = {
    "grant_comp": "Comp a plan",
    "revoke_comp": "Revoke the comp",
    "extend_grace": "Extend the grace period",
    "lock": "Lock",
    "unlock": "Unlock",
    "resync": "Resync from Stripe",
    "retry_invoice": "Retry the open invoice",
    "cancel_now": "Cancel the subscription now",
}
assert set(ACTION_LABELS) == ACTIONS


class SignInRequired(Exception):
    """A console page or form without a valid session (`sign_in_required` answers it)."""


async def current_session(request: Request, settings: SettingsDep) -> ConsoleSession:
    session = console_session.read_session(
        request.cookies.get(console_session.SESSION_COOKIE), settings, datetime.now(UTC)
    )
    if session is None:
        raise SignInRequired
    return session


SessionCookieDep = Annotated[ConsoleSession, Depends(current_session)]
CsrfField = Annotated[str | None, Form()]


async def sign_in_required(request: Request, _: Exception) -> Response:
    """A page asked for without a session goes to the sign-in page (and back after it); a form
    posted without one is refused: what it asked for is not done."""
    if request.method == "GET":
        target = quote(
            request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe=""
        )
        return RedirectResponse(f"{PREFIX}/sign-in?next={target}", status.HTTP_303_SEE_OTHER)
    return HTMLResponse(
        "<!doctype html><title>Signed out</title><p>Your console session ended, so nothing was "
        f'done. <a href="{PREFIX}/sign-in">Sign in</a> and try again.</p>',
        status.HTTP_401_UNAUTHORIZED,
    )


class CsrfRefused(Exception):
    """A form posted without its session's CSRF token."""


async def csrf_refused(_: Request, __: Exception) -> Response:
    return HTMLResponse(
        "<!doctype html><title>Refused</title><p>This form was refused: it did not carry the "
        "console's security token (it came from another page or an old tab), so nothing was "
        f'done. <a href="{PREFIX}">Back to the console</a>.</p>',
        status.HTTP_403_FORBIDDEN,
    )


def _check_csrf(session: ConsoleSession, csrf_token: str | None) -> None:
    if not session.accepts(csrf_token):
        raise CsrfRefused


# --- sign-in ---------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str = PREFIX) -> Response:
    form_token = request.cookies.get(console_session.SIGN_IN_COOKIE) or _new_form_token()
    response = templates.TemplateResponse(
        request, "sign_in.html", {"next": _local(next), "csrf_token": form_token, "error": None}
    )
    _set_cookie(request, response, console_session.SIGN_IN_COOKIE, form_token, max_age=3600)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form()],
    csrf_token: CsrfField = None,
    name: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = PREFIX,
) -> Response:
    form_token = request.cookies.get(console_session.SIGN_IN_COOKIE)
    if not form_token or csrf_token != form_token:
        raise CsrfRefused
    operator = console_session.operator_for(token, name, settings)
    if operator is None:
        return templates.TemplateResponse(
            request,
            "sign_in.html",
            {
                "next": _local(next),
                "csrf_token": form_token,
                "error": "That token signs nobody in (the admin token needs your name too).",
            },
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    _, cookie = console_session.new_session(operator, settings, datetime.now(UTC))
    response = RedirectResponse(_local(next), status.HTTP_303_SEE_OTHER)
    _set_cookie(
        request,
        response,
        console_session.SESSION_COOKIE,
        cookie,
        max_age=settings.console_session_minutes * 60,
    )
    response.delete_cookie(console_session.SIGN_IN_COOKIE, path=console_session.COOKIE_PATH)
    return response


@router.post("/sign-out")
async def sign_out(session: SessionCookieDep, csrf_token: CsrfField = None) -> Response:
    _check_csrf(session, csrf_token)
    response = RedirectResponse(f"{PREFIX}/sign-in", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(console_session.SESSION_COOKIE, path=console_session.COOKIE_PATH)
    return response


# --- finding accounts ------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def front_page(
    request: Request, session: SessionCookieDep, sessions: SessionFactoryDep
) -> Response:
    """Accounts per state, the search box and how much needs attention."""

    def read() -> dict[str, Any]:
        with sessions() as db:
            return {"counts": admin_queries.state_counts(db)}

    return _page(request, session, "front.html", await run_in_threadpool(read))


@router.get("/search", response_class=HTMLResponse)
async def search(
    request: Request,
    session: SessionCookieDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    q: Annotated[str, Query(max_length=320)] = "",
    state: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """By account id or Stripe customer id (straight to the account), by email (looked up in
    Stripe) or by state."""
    q = q.strip()
    found: list[Any] = []
    note = None
    if state:
        if state not in LISTABLE_STATES:
            note = f"There is no state {state}; one of: {', '.join(LISTABLE_STATES)}."
        else:
            found = await run_in_threadpool(_accounts_in_state, sessions, catalog, state)
    elif q.startswith("cus_"):
        account_id = await run_in_threadpool(_account_of_customer, sessions, q)
        if account_id is not None:
            return _to_account(account_id)
        note = f"No account is linked to the Stripe customer {q}."
    elif "@" in q:
        found = await run_in_threadpool(_accounts_by_email, sessions, catalog, settings, q)
        note = None if found else f"Stripe has no customer with the email {q} linked to an account."
    elif q:
        if await run_in_threadpool(_account_exists, sessions, q):
            return _to_account(q)
        note = f"No account {q}."
    return _page(
        request,
        session,
        "search.html",
        {"q": q, "state": state, "accounts": found, "note": note, "states": LISTABLE_STATES},
    )


def _accounts_in_state(
    sessions: sessionmaker[Session], catalog: Catalog, state: str
) -> list[AccountSummaryAnswer]:
    with sessions() as db:
        rows = admin_queries.accounts(db, state=state, limit=LIST_LIMIT, after=None)
        return [operations.account_summary(row, catalog) for row in rows]


def _account_of_customer(sessions: sessionmaker[Session], customer_id: str) -> str | None:
    with sessions() as db:
        return repository.account_for_customer(db, customer_id)


def _account_exists(sessions: sessionmaker[Session], account_id: str) -> bool:
    if not re.fullmatch(ACCOUNT_ID_PATTERN, account_id):
        return False
    with sessions() as db:
        return admin_queries.account(db, account_id) is not None


def _accounts_by_email(
    sessions: sessionmaker[Session], catalog: Catalog, settings: Settings, email: str
) -> list[AccountSummaryAnswer]:
    """The accounts of the Stripe customers with this email (Stripe holds the emails)."""
    customers = make_stripe_client(settings).v1.customers.list(params={"email": email, "limit": 10})
    found = []
    with sessions() as db:
        for customer in customers.data:
            account_id = repository.account_for_customer(db, customer.id)
            listing = admin_queries.account_listing(db, account_id) if account_id else None
            if listing is not None:
                found.append(operations.account_summary(listing, catalog))
    return found


# --- one account -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # entitlements | stripe | email | operator
    title: str
    detail: str


def timeline(detail: AccountDetailAnswer) -> list[TimelineEntry]:
    """Entitlement changes, Stripe events received, emails and operator actions, newest
    first: the account's story on one line each."""
    entries = [
        TimelineEntry(
            change.created_at,
            "entitlements",
            f"v{change.version}: {change.effective_state} on {change.plan} ({change.access})",
            f"cause: {change.cause}"
            + (f"; notices: {', '.join(change.notices)}" if change.notices else ""),
        )
        for change in detail.entitlement_changes
    ]
    entries += [
        TimelineEntry(event.received_at, "stripe", event.event_type, event.event_id)
        for event in detail.stripe_events
    ]
    entries += [
        TimelineEntry(
            email.created_at,
            "email",
            f"{email.kind}: {email.status}",
            f"{email.attempts} attempt(s)"
            + (f"; last error: {email.last_error}" if email.last_error else ""),
        )
        for email in detail.emails
    ]
    entries += [
        TimelineEntry(
            audit.created_at,
            "operator",
            f"{audit.action} by {audit.actor}",
            f"reason: {audit.reason}",
        )
        for audit in detail.operator_actions
    ]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
async def account_page(
    request: Request,
    session: SessionCookieDep,
    account_id: AccountIdPath,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    workflows: AccountWorkflowsDep,
    settings: SettingsDep,
) -> Response:
    detail = await operations.read_account(sessions, catalog, workflows, account_id)
    if detail is None:
        return _page(
            request,
            session,
            "search.html",
            {
                "q": account_id,
                "state": "",
                "accounts": [],
                "note": f"No account {account_id}.",
                "states": LISTABLE_STATES,
            },
            status_code=status.HTTP_404_NOT_FOUND,
        )
    return _page(
        request,
        session,
        "account.html",
        {
            "detail": detail,
            "warnings": operations.link_warnings(detail),
            "entitlements": detail.entitlements,
            "timeline": timeline(detail),
            "actions": ACTION_LABELS,
            "takes_plan": TAKES_PLAN,
            "takes_until": TAKES_UNTIL,
            "paid_plans": sorted(p for p in catalog.plans if p != FREE_PLAN),
            "workflow_url": _workflow_url(settings, account_id),
            "customer_url": _customer_url(settings, detail.stripe_customer_id),
        },
    )


@router.post("/accounts/{account_id}/actions/{action}")
async def run_action(
    request: Request,
    session: SessionCookieDep,
    account_id: AccountIdPath,
    action: str,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    workflows: AccountWorkflowsDep,
    settings: SettingsDep,
    reason: Annotated[str, Form()] = "",
    plan: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
    csrf_token: CsrfField = None,
) -> Response:
    """The admin API's action, as the signed-in operator; the answer or the refusal is shown
    on the account page."""
    _check_csrf(session, csrf_token)
    try:
        body = OperatorActionRequest(
            actor=session.operator,
            reason=reason,
            plan=plan or None,
            until=_end_of_day(until) if until else None,
        )
        applied = await operations.run_action(
            sessions, catalog, workflows, account_id, action, body, idempotency_key=None
        )
    except REFUSALS as err:
        notice = _refused(err)
    else:
        answer = applied.entitlements
        notice = {
            "kind": "done",
            "text": f"{ACTION_LABELS.get(action, action)}: done. The app now sees "
            f"{answer.effective_state} on {answer.plan} ({answer.access} access).",
        }
    return _back_to_account(request, settings, account_id, notice)


# --- needs attention ---------------------------------------------------------------------------


@router.get("/attention", response_class=HTMLResponse)
async def attention_page(
    request: Request,
    session: SessionCookieDep,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
    settings: SettingsDep,
) -> Response:
    """Unroutable events (link and replay here), accounts with a sync error, restricted
    accounts, checkouts stuck for over a day and emails given up."""

    def read() -> dict[str, Any]:
        now = datetime.now(UTC)
        with sessions() as db:
            return {
                "unroutable": list(
                    admin_queries.unroutable_events(db, resolved=False, limit=LIST_LIMIT)
                ),
                "restricted": list(
                    admin_queries.stuck_in_state(
                        db, "restricted", since_before=now, limit=LIST_LIMIT
                    )
                ),
                "stuck_checkouts": list(
                    admin_queries.stuck_in_state(
                        db, "incomplete", since_before=now - STUCK_CHECKOUT_AFTER, limit=LIST_LIMIT
                    )
                ),
                "emails": list(admin_queries.emails_given_up(db, LIST_LIMIT)),
            }

    context = await run_in_threadpool(read)
    sync_errors: list[SyncErrorAccount] | None = await workflows.with_sync_error(LIST_LIMIT)
    return _page(request, session, "attention.html", {**context, "sync_errors": sync_errors})


@router.post("/unroutable/link")
async def link_unroutable(
    request: Request,
    session: SessionCookieDep,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
    settings: SettingsDep,
    customer_id: Annotated[str, Form()] = "",
    account_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    csrf_token: CsrfField = None,
) -> Response:
    """Link the customer of unroutable events to an account and replay them."""
    _check_csrf(session, csrf_token)
    notice = await _link(sessions, workflows, session, customer_id, account_id, reason)
    response = RedirectResponse(f"{PREFIX}/attention", status.HTTP_303_SEE_OTHER)
    _set_notice(request, response, settings, notice)
    return response


@router.post("/accounts/{account_id}/link")
async def link_customer(
    request: Request,
    session: SessionCookieDep,
    account_id: AccountIdPath,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
    settings: SettingsDep,
    customer_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    csrf_token: CsrfField = None,
) -> Response:
    """Link a Stripe customer to this account (and replay its unroutable events)."""
    _check_csrf(session, csrf_token)
    notice = await _link(sessions, workflows, session, customer_id, account_id, reason)
    return _back_to_account(request, settings, account_id, notice)


async def _link(
    sessions: sessionmaker[Session],
    workflows: AccountWorkflows,
    session: ConsoleSession,
    customer_id: str,
    account_id: str,
    reason: str,
) -> dict[str, str]:
    """The admin API's link and replay, as the signed-in operator; what it answered."""
    try:
        body = LinkRequest(
            customer_id=customer_id.strip(),
            account_id=account_id.strip(),
            actor=session.operator,
            reason=reason,
        )
        linked = await operations.link_and_replay(sessions, workflows, body)
    except REFUSALS as err:
        return _refused(err)
    return {
        "kind": "done",
        "text": f"{linked.customer_id} is linked to {linked.account_id}; "
        f"{linked.replayed} event(s) replayed.",
    }


# --- helpers ---------------------------------------------------------------------------------


def _page(
    request: Request,
    session: ConsoleSession,
    template: str,
    context: Mapping[str, Any],
    status_code: int = status.HTTP_200_OK,
) -> Response:
    """A signed-in page, with the answer of the action that led to it (shown once)."""
    settings: Settings = request.app.state.settings
    notice = console_session.unsign(
        request.cookies.get(console_session.NOTICE_COOKIE),
        settings.console_session_secret.get_secret_value(),
    )
    response = templates.TemplateResponse(
        request,
        template,
        {
            "operator": session.operator,
            "csrf_token": session.csrf_token,
            "notice": notice,
            **context,
        },
        status_code=status_code,
    )
    if notice is not None:
        response.delete_cookie(console_session.NOTICE_COOKIE, path=console_session.COOKIE_PATH)
    return response


def _to_account(account_id: str) -> Response:
    return RedirectResponse(f"{PREFIX}/accounts/{account_id}", status.HTTP_303_SEE_OTHER)


def _back_to_account(
    request: Request, settings: Settings, account_id: str, notice: dict[str, str]
) -> Response:
    response = _to_account(account_id)
    _set_notice(request, response, settings, notice)
    return response


def _set_notice(
    request: Request, response: Response, settings: Settings, notice: dict[str, str]
) -> None:
    """What the action answered, for the page the browser is sent to next (signed, so no link
    can put words in the console's mouth)."""
    signed = console_session.sign(dict(notice), settings.console_session_secret.get_secret_value())
    _set_cookie(request, response, console_session.NOTICE_COOKIE, signed, max_age=60)


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=console_session.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _new_form_token() -> str:
    return secrets.token_urlsafe(32)


def _local(target: str) -> str:
    """Only a console path: a sign-in link must not send the operator to another site."""
    return target if target.startswith(PREFIX) and "//" not in target else PREFIX


def _end_of_day(day: str) -> datetime:
    """A date from the form's date field: the end of that day, UTC."""
    try:
        date = datetime.strptime(day, "%Y-%m-%d").date()
    except ValueError:
        raise InvalidOperatorRequest(f"{day!r} is not a date (YYYY-MM-DD)") from None
    return datetime.combine(date, datetime.max.time(), tzinfo=UTC).replace(microsecond=0)


# What an action or a link can be refused with, each shown to the operator as its reason.
REFUSALS = (
    ValidationError,
    InvalidOperatorRequest,
    operations.LinkRefused,
    WorkflowUpdateFailedError,
    TemporalUnavailable,
)


def _refused(err: Exception) -> dict[str, str]:
    """The notice for one of `REFUSALS`."""
    if isinstance(err, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
    elif isinstance(err, WorkflowUpdateFailedError):
        text = refusal(err)
    elif isinstance(err, TemporalUnavailable):
        text = f"Temporal did not answer: {err.reason}"
    else:
        text = str(err)
    return {"kind": "refused", "text": text}


def _workflow_url(settings: Settings, account_id: str) -> str:
    return (
        f"{settings.temporal_web_url.rstrip('/')}/namespaces/{settings.temporal_namespace}"
        f"/workflows/{workflow_id_for(account_id)}"
    )


def _customer_url(settings: Settings, customer_id: str | None) -> str | None:
    """The customer in Stripe's Dashboard, test or live from the key; None on the local
    simulator, which has no dashboard."""
    key = settings.stripe_secret_key
    if customer_id is None or not key:
        return None
    mode = "" if key.startswith(("sk_live_", "rk_live_")) else "test/"
    return f"https://dashboard.stripe.com/{mode}customers/{customer_id}"
