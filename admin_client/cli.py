"""`dataface-billing admin <verb>`: the operator console on the command line.

A thin layer over the admin API (`admin_client.client`): parse, call, print. Readable text by
default, the API's JSON with `--json`. Any refusal exits non-zero with the API's message.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO

import httpx

from admin_client.client import DEFAULT_URL, AdminApiError, AdminClient
from core.config import get_settings

# Exit codes: 1 the API refused or failed; 2 the command line itself is wrong (argparse's).
EXIT_API_ERROR = 1

# verb -> the API's action name
ACTION_VERBS = {
    "comp": "grant_comp",
    "revoke-comp": "revoke_comp",
    "lock": "lock",
    "unlock": "unlock",
    "extend-grace": "extend_grace",
    "resync": "resync",
    "retry-invoice": "retry_invoice",
    "cancel-now": "cancel_now",
}
ACTION_HELP = {
    "grant_comp": "grant a plan for free until a date (wins over Stripe)",
    "revoke_comp": "end a comp now",
    "lock": "remove all access (fraud, abuse) until unlocked",
    "unlock": "lift a lock",
    "extend_grace": "move the grace end of a past-due or restricted account",
    "resync": "re-read the subscription from Stripe and apply it now",
    "retry_invoice": "ask Stripe to charge the open invoice now, then resync",
    "cancel_now": "cancel the Stripe subscription immediately, then resync",
}
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Call = Callable[[AdminClient, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]
Render = Callable[[dict[str, Any]], str]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the admin verbs to `parser` (the `admin` subcommand of `dataface-billing`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("ADMIN_API_URL", DEFAULT_URL),
        help=f"the billing API (env ADMIN_API_URL; default {DEFAULT_URL})",
    )
    common.add_argument(
        "--token",
        help="the admin bearer token (default: ADMIN_API_TOKEN from the environment or .env, "
        "as the service reads it)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")

    acting = argparse.ArgumentParser(add_help=False)
    acting.add_argument(
        "--actor",
        default=os.environ.get("ADMIN_ACTOR") or _user_name(),
        help="who acts, for the audit trail (env ADMIN_ACTOR; default: your user name)",
    )

    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    show = verbs.add_parser("show", parents=[common], help="an account's whole story")
    show.add_argument("account")
    show.set_defaults(call=_show, render=render_account)

    listing = verbs.add_parser("list", parents=[common], help="accounts in a state")
    listing.add_argument(
        "--state", help="a billing state (past_due, restricted, ...), comped, locked"
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--after", help="the last account id of the previous page")
    listing.set_defaults(call=_list, render=render_account_page)

    until_help = (
        "a date (the comp/grace lasts through that day, UTC) or an ISO 8601 time with a zone"
    )
    for verb, action in ACTION_VERBS.items():
        sub = verbs.add_parser(verb, parents=[common, acting], help=ACTION_HELP[action])
        sub.add_argument("account")
        if action == "resync":
            sub.add_argument("--reason", default="resync from the admin CLI")
        else:
            sub.add_argument("--reason", required=True, help="why, for the audit trail")
        if action == "grant_comp":
            sub.add_argument("--plan", required=True)
        if action in ("grant_comp", "extend_grace"):
            sub.add_argument("--until", required=True, type=until_argument, help=until_help)
        sub.set_defaults(call=_act, action=action, render=render_action)

    unroutable = verbs.add_parser(
        "unroutable", parents=[common], help="Stripe events no account was found for"
    )
    unroutable.add_argument("--all", action="store_true", help="resolved ones too")
    unroutable.add_argument("--customer", help="only this Stripe customer's events")
    unroutable.set_defaults(call=_unroutable, render=render_unroutable)

    link = verbs.add_parser(
        "link",
        parents=[common, acting],
        help="link a Stripe customer to an account and replay its unroutable events",
    )
    link.add_argument("--customer", required=True)
    link.add_argument("--account", required=True)
    link.add_argument("--reason", required=True)
    link.set_defaults(call=_link, render=render_link)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataface-billing admin", description=__doc__)
    configure(parser)
    return parser


async def run(
    args: argparse.Namespace,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one parsed admin command; returns the exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    # The service's own setting, so the local default needs no flag and no export.
    token = args.token or get_settings().admin_api_token
    call: Call = args.call
    render: Render = args.render
    try:
        async with AdminClient(args.url, token, transport=transport) as client:
            answer = await call(client, args)
    except AdminApiError as refused:
        print(f"error: {refused}", file=err)
        return EXIT_API_ERROR
    print(json.dumps(answer, indent=2) if args.json else render(answer), file=out)
    return 0


async def main_async(
    argv: list[str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """`dataface-billing admin ARGV...` as a coroutine (tests pass the app as `transport`)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as usage:  # argparse already printed the problem
        return int(usage.code or 0)
    return await run(args, transport=transport, stdout=stdout, stderr=stderr)


def run_command(args: argparse.Namespace) -> int:
    """Entry from `cli.py`, with the arguments already parsed."""
    # httpx logs every request at INFO: on a console that is noise around the answer.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(run(args))


def until_argument(value: str) -> str:
    """A bare date means through the end of that day in UTC; anything else goes as written
    (the API refuses a time without a zone)."""
    if DATE_ONLY.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err
        return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC).isoformat()
    return value


# --- commands ----------------------------------------------------------------------------


async def _show(client: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    return await client.show(args.account)


async def _list(client: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    return await client.list_accounts(state=args.state, limit=args.limit, after=args.after)


async def _act(client: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    return await client.act(
        args.account,
        args.action,
        actor=args.actor,
        reason=args.reason,
        plan=getattr(args, "plan", None),
        until=getattr(args, "until", None),
    )


async def _unroutable(client: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    return await client.unroutable_events(
        resolved=None if args.all else False, customer_id=args.customer
    )


async def _link(client: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    return await client.link(
        customer_id=args.customer, account_id=args.account, actor=args.actor, reason=args.reason
    )


# --- rendering ---------------------------------------------------------------------------


def render_account(answer: dict[str, Any]) -> str:
    ent = answer["entitlements"]
    overrides = answer["overrides"]
    lines = [
        f"account   {answer['account_id']}   customer {_text(answer['stripe_customer_id'])}",
        f"state     {ent['billing_state']} (effective {ent['effective_state']})   "
        f"plan {ent['plan']}   access {ent['access']}   version {ent['version']}",
        f"message   {_text(ent['message'])}",
        f"dates     grace ends {_text(ent['grace_ends_at'])}   trial ends "
        f"{_text(ent['trial_ends_at'])}   period ends {_text(ent['period_ends_at'])}   "
        f"cancel at {_text(ent['cancel_at'])}",
    ]
    if ent["open_invoice_url"]:
        lines.append(f"invoice   {ent['open_invoice_url']}")
    comp, lock = overrides["comp"], overrides["lock"]
    if comp:
        lines.append(
            f"comp      {comp['plan']} until {comp['until']}, by {comp['actor']}: {comp['reason']}"
        )
    if lock:
        lines.append(f"lock      by {lock['actor']}: {lock['reason']}")
    lines.append(f"workflow  {_workflow(answer['workflow'])}")
    lines += [f"WARNING   {warning}" for warning in answer.get("warnings", [])]

    lines.append(_section("entitlement changes", answer["entitlement_changes"]))
    lines += [
        f"  v{c['version']:<4} {c['created_at']}  {c['billing_state']}/{c['effective_state']}  "
        f"{c['plan']}  {c['access']}  {c['cause']}"
        + (f"  notices: {', '.join(c['notices'])}" if c["notices"] else "")
        for c in answer["entitlement_changes"]
    ]
    lines.append(_section("stripe events", answer["stripe_events"]))
    lines += [
        f"  {e['received_at']}  {e['event_type']}  {e['event_id']}" for e in answer["stripe_events"]
    ]
    lines.append(_section("emails", answer["emails"]))
    lines += [
        f"  {m['created_at']}  {m['kind']}  {m['status']}  attempts {m['attempts']}"
        f"  sent {_text(m['sent_at'])}" + (f"  error: {m['last_error']}" if m["last_error"] else "")
        for m in answer["emails"]
    ]
    lines.append(_section("operator actions", answer["operator_actions"]))
    lines += [
        f"  {a['created_at']}  {a['action']}  by {a['actor']}: {a['reason']}\n"
        f"      {_compact(a['before'])} -> {_compact(a['after'])}"
        for a in answer["operator_actions"]
    ]
    return "\n".join(lines)


def render_account_page(answer: dict[str, Any]) -> str:
    rows = [
        (
            a["account_id"],
            _text(a["stripe_customer_id"]),
            a["billing_state"],
            a["effective_state"],
            a["plan"],
            _text(a["grace_ends_at"]),
            a["updated_at"],
        )
        for a in answer["accounts"]
    ]
    header = ("ACCOUNT", "CUSTOMER", "STATE", "EFFECTIVE", "PLAN", "GRACE ENDS", "UPDATED")
    text = _table(header, rows) if rows else "no accounts"
    if answer["next_after"]:
        text += f"\nmore: --after {answer['next_after']}"
    return text


def render_action(answer: dict[str, Any]) -> str:
    ent = answer["entitlements"]
    return (
        f"{answer['action']} applied to {answer['account_id']}: {ent['billing_state']} "
        f"(effective {ent['effective_state']}), plan {ent['plan']}, access {ent['access']}, "
        f"version {ent['version']}"
    )


def render_unroutable(answer: dict[str, Any]) -> str:
    rows = [
        (
            e["event_id"],
            e["event_type"],
            _text(e["customer_id"]),
            e["received_at"],
            f"-> {e['resolved_account_id']}" if e["resolved"] else "unresolved",
        )
        for e in answer["events"]
    ]
    if not rows:
        return "no unroutable events"
    return _table(("EVENT", "TYPE", "CUSTOMER", "RECEIVED", "RESOLVED"), rows)


def render_link(answer: dict[str, Any]) -> str:
    linked = "linked" if answer["newly_linked"] else "already linked"
    text = f"{answer['customer_id']} {linked} to {answer['account_id']}; "
    text += f"replayed {answer['replayed']} event(s)"
    if answer["replayed_event_ids"]:
        text += ": " + ", ".join(answer["replayed_event_ids"])
    return text


def _workflow(view: dict[str, Any]) -> str:
    if view["status"] != "running":
        return view["status"] + (f" ({view['error']})" if view.get("error") else "")
    text = (
        f"running: {view['billing_state']}, plan {view['plan']}, "
        f"version {view['entitlement_version']}"
    )
    if view.get("sync_error"):
        text += f", SYNC ERROR: {view['sync_error']}"
    return text


def _section(title: str, items: list[Any]) -> str:
    return f"\n{title}" + ("" if items else ": none")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _compact(summary: dict[str, Any]) -> str:
    return json.dumps(summary, separators=(",", ":"), sort_keys=True) if summary else "{}"


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user database entry (some containers)
        return None


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
