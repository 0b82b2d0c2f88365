"""`dataface-billing admin ...` against the app in-process (the app is the httpx transport)."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

import cli
from admin_client.cli import ACTION_VERBS, main_async
from core.config import get_settings
from domain.operator_actions import ACTIONS
from tests.workflows.harness import Harness

from .conftest import ADMIN_TOKEN, APP_TOKEN, active_account, audit_rows


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        answer: dict = json.loads(self.out)
        return answer


AdminRunner = Callable[..., Awaitable[Run]]


@pytest.fixture
def admin(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[AdminRunner]:
    """Runs the admin CLI with ADMIN_API_TOKEN set, answered by the running app."""
    monkeypatch.setenv("ADMIN_API_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("ADMIN_ACTOR", "cli-operator")
    # The CLI reads its token from the service's settings, which are read once per process.
    get_settings.cache_clear()

    async def run(*argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = await main_async(
            [*argv, "--url", "http://billing"],
            transport=httpx.ASGITransport(app=app),
            stdout=out,
            stderr=err,
        )
        return Run(code, out.getvalue(), err.getvalue())

    yield run
    get_settings.cache_clear()


async def test_show_prints_the_account_and_json_gives_the_api_answer(
    harness: Harness, admin: AdminRunner
) -> None:
    account, customer = await active_account(harness)

    text = await admin("show", account)
    assert text.code == 0, text.err
    assert f"account   {account}   customer {customer}" in text.out
    assert "state     active (effective active)   plan pro   access full   version 1" in text.out
    assert "workflow  running: active, plan pro, version 1" in text.out
    assert "operator actions: none" in text.out

    as_json = await admin("show", account, "--json")
    assert as_json.code == 0
    assert as_json.json()["entitlements"]["plan"] == "pro"


async def test_comp_through_the_cli_is_applied_and_audited(
    harness: Harness, admin: AdminRunner, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)
    day = (datetime.now(UTC) + timedelta(days=60)).date()
    until, ends = day.isoformat(), f"{day + timedelta(days=1)}T00:00:00Z"

    result = await admin(
        "comp", account, "--plan", "enterprise", "--until", until, "--reason", "design partner"
    )

    assert result.code == 0, result.err
    assert result.out.strip() == (
        f"grant_comp applied to {account}: active (effective comped), plan enterprise, "
        "access full, version 2"
    )
    [audit] = audit_rows(session_factory, account)
    assert (audit.action, audit.actor, audit.reason) == (
        "grant_comp",
        "cli-operator",
        "design partner",
    )
    # A bare date is the end of that day, UTC.
    assert audit.request["until"] == ends
    shown = await admin("show", account)
    assert f"comp      enterprise until {ends}, by cli-operator: design partner" in shown.out


async def test_list_shows_accounts_in_a_state(harness: Harness, admin: AdminRunner) -> None:
    account, _ = await active_account(harness)
    locked = await admin("lock", account, "--reason", "abuse", "--json")
    assert locked.code == 0, locked.err

    text = await admin("list", "--state", "locked", "--limit", "500")
    assert text.code == 0, text.err
    header, *rows = text.out.splitlines()
    assert header.split() == [
        "ACCOUNT", "CUSTOMER", "STATE", "EFFECTIVE", "PLAN", "GRACE", "ENDS", "UPDATED"
    ]  # fmt: skip
    [ours] = [row for row in rows if row.startswith(account)]
    assert ours.split()[2:5] == ["active", "locked", "pro"]

    as_json = await admin("list", "--state", "locked", "--limit", "500", "--json")
    assert account in [a["account_id"] for a in as_json.json()["accounts"]]


async def test_refusals_exit_non_zero_with_the_api_message(
    harness: Harness, admin: AdminRunner, session_factory: sessionmaker[Session]
) -> None:
    account, _ = await active_account(harness)

    not_locked = await admin("unlock", account, "--reason", "ticket 9")
    assert (not_locked.code, not_locked.out) == (1, "")
    assert not_locked.err.strip() == "error: 409: the account is not locked"

    bad_plan = await admin(
        "comp", account, "--plan", "platinum", "--until", "2099-01-01", "--reason", "x"
    )
    assert bad_plan.code == 1
    assert "error: 422: unknown plan 'platinum'" in bad_plan.err

    naive = await admin("extend-grace", account, "--until", "2099-01-01T10:00", "--reason", "x")
    assert naive.code == 1
    assert "error: 422: until: Input should have timezone info" in naive.err

    unknown = await admin("show", "acct_nobody")
    assert (unknown.code, unknown.err.strip()) == (1, "error: 404: unknown account acct_nobody")

    wrong_token = await admin("show", account, "--token", APP_TOKEN)
    assert wrong_token.code == 1
    assert "401: missing or invalid bearer token" in wrong_token.err

    assert audit_rows(session_factory, account) == []


async def test_the_token_is_the_services_setting_unless_given(
    admin: AdminRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADMIN_API_TOKEN")
    (tmp_path / ".env").write_text(f"ADMIN_API_TOKEN={ADMIN_TOKEN}\n")
    get_settings.cache_clear()
    from_dotenv = await admin("unroutable")
    # Accepted (what it lists depends on the other tests sharing the database).
    assert (from_dotenv.code, from_dotenv.err) == (0, "")

    explicit = await admin("unroutable", "--token", APP_TOKEN)
    assert explicit.code == 1
    assert "401: missing or invalid bearer token" in explicit.err


async def test_without_any_token_setting_the_local_default_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADMIN_API_TOKEN", raising=False)
    get_settings.cache_clear()
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Authorization"])
        return httpx.Response(200, json={"events": []})

    try:
        code = await main_async(
            ["unroutable", "--url", "http://billing"],
            transport=httpx.MockTransport(answer),
            stdout=io.StringIO(),
        )
    finally:
        get_settings.cache_clear()

    assert (code, sent) == (0, ["Bearer dev-admin-token"])


async def test_bad_usage_exits_2(admin: AdminRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert (await admin("comp", "acct_x", "--reason", "missing plan and date")).code == 2
    assert "--plan" in capsys.readouterr().err


async def test_unroutable_and_link_verbs(harness: Harness, admin: AdminRunner) -> None:
    account, customer = harness.new_account()
    harness.accounts.add(account)

    empty = await admin("unroutable", "--customer", customer)
    assert (empty.code, empty.out.strip()) == (0, "no unroutable events")

    linked = await admin("link", "--customer", customer, "--account", account, "--reason", "t1")
    assert linked.code == 0, linked.err
    assert linked.out.strip() == f"{customer} linked to {account}; replayed 0 event(s)"


def test_the_admin_group_is_wired_into_dataface_billing() -> None:
    args = cli.build_parser().parse_args(
        ["admin", "extend-grace", "acct_1", "--until", "2027-01-31", "--reason", "r", "--json"]
    )
    assert (args.command, args.action, args.account, args.json) == (
        "admin",
        "extend_grace",
        "acct_1",
        True,
    )
    assert args.until == "2027-02-01T00:00:00+00:00"
    assert args.handler is cli._admin


def test_every_operator_action_has_a_verb() -> None:
    assert set(ACTION_VERBS.values()) == ACTIONS
