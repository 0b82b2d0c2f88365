"""The compose stack as local processes (two APIs, two workers) through the faults of issue
24, at CI size; `python -m tests.production_shape --accounts N` runs it bigger.

PostgreSQL only: the stack's database is a server the run cuts off, and compose's is one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import uuid4

import pytest

from db.engine import make_engine, make_session_factory
from tests.fixtures_db import fresh_database
from tests.production_shape.scenario import FAULTS, FaultOutcome, run_scenario
from tests.production_shape.stack import (
    Answer,
    errors_but_503,
    production_stack,
    unavailable_without_retry_after,
)

# A few dozen accounts, and the whole run in about two minutes on two cores.
CI_ACCOUNTS = 24


@dataclass(frozen=True)
class Run:
    outcomes: list[FaultOutcome]
    answers: list[Answer]
    one_shot_aborts: list[str]
    may_arrive_twice: set[str]


@pytest.fixture(scope="module")
async def ci_run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    """One production-shape run at CI size, shared by the checks below."""
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip(
            "production shape needs PostgreSQL (compose's database, and a server the run can "
            "cut off): set TEST_DATABASE_URL"
        )
    run_dir = tmp_path_factory.mktemp("production-shape")
    outcomes: list[FaultOutcome] = []
    with fresh_database(run_dir) as url:
        engine = make_engine(url)
        try:
            async with production_stack(run_dir, url, make_session_factory(engine)) as stack:
                # Each convergence is waited for inside: entitlements, events, emails.
                await run_scenario(stack, CI_ACCOUNTS, uuid4().hex[:6], outcomes.append)
                yield Run(
                    outcomes, stack.answers.since(0), stack.one_shot_aborts, stack.may_arrive_twice
                )
        finally:
            engine.dispose()


def test_the_stack_converges_after_every_fault(ci_run: Run) -> None:
    print(f"emails a fault cut short, allowed twice: {sorted(ci_run.may_arrive_twice)}")
    for outcome in ci_run.outcomes:
        print(
            f"{outcome.fault}: matched Stripe in {outcome.seconds_to_match_stripe:.1f} s, "
            f"emails settled in {outcome.seconds_to_converge:.1f} s"
        )
    assert [o.fault for o in ci_run.outcomes] == [
        "accounts opening",
        *(fault.__name__.replace("_", " ") for fault in FAULTS),
    ]


def test_the_apis_answer_no_server_error_but_503(ci_run: Run) -> None:
    assert {a.api for a in ci_run.answers if a.status is not None} == {0, 1}
    assert errors_but_503(ci_run.answers) == []


def test_every_503_says_when_to_retry(ci_run: Run) -> None:
    assert unavailable_without_retry_after(ci_run.answers) == []


def test_the_one_shots_exit_cleanly(ci_run: Run) -> None:
    # They used to abort (SIGABRT) now and then while the interpreter finalized, their work
    # done, and compose would then not start the worker (`cli._exit_without_finalizing`).
    assert ci_run.one_shot_aborts == []
