"""One account's whole life, generated from one integer seed.

A schedule is plain data (a `Setup` and a list of `Step`s), so a failing one can be printed,
minimised by dropping steps, and replayed. Nothing here talks to Temporal or Stripe: the
runner (`tests/sim/runner.py`) gives each step its meaning.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

# Fault switches the runner understands; "smtp" may stay on after the schedule ends (SMTP
# being down must never hold up an account), the others are switched off by the end phase.
FAULTS = ("stripe", "stripe_writes", "db", "smtp", "webhook_first", "answer_lost")

PLANS = (
    ("pro", "month", 1),
    ("pro", "year", 1),
    ("team", "month", 2),
    ("team", "month", 4),
    ("team", "year", 3),
)
# A lookup key no active Stripe price has (a price archived in the Dashboard).
RETIRED_LOOKUP_KEY = "pro_monthly_2019"


@dataclass(frozen=True)
class Step:
    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"{self.kind}({args})"


def step(kind: str, **params: Any) -> Step:
    return Step(kind, tuple(params.items()))


@dataclass(frozen=True)
class Setup:
    continue_as_new_after: int
    # The customer is already linked to another account while its metadata names this one.
    misrouted_customer: bool
    # Dropped deliveries are redelivered at the end, as the events reconciliation would.
    redeliver_dropped: bool


@dataclass(frozen=True)
class Schedule:
    seed: int
    setup: Setup
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def without(self, dropped: set[int]) -> Schedule:
        kept = tuple(s for i, s in enumerate(self.steps) if i not in dropped)
        return Schedule(self.seed, self.setup, kept)

    def describe(self) -> str:
        lines = [f"setup: {self.setup}"]
        lines += [f"  {i:3d}. {s}" for i, s in enumerate(self.steps)]
        return "\n".join(lines)


def reproduction(seed: int) -> str:
    """One line that runs the seed again (pytest's -k cannot take `=`: the node id can)."""
    return f"pytest 'tests/sim/test_simulation.py::test_account_life[seed={seed}]'"


def _deliver(rng: random.Random) -> Step:
    """Deliver what Stripe emitted since the last delivery, with delivery faults."""
    faulty = rng.random() < 0.5
    return step(
        "deliver",
        seed=rng.randrange(1 << 30),
        duplicate=0.3 if faulty and rng.random() < 0.5 else 0.0,
        drop=0.25 if faulty and rng.random() < 0.4 else 0.0,
        delay=0.3 if faulty and rng.random() < 0.4 else 0.0,
        shuffle=faulty and rng.random() < 0.6,
    )


def _sleep(rng: random.Random) -> Step:
    roll = rng.random()
    if roll < 0.3:
        minutes = rng.randint(1, 30)
    elif roll < 0.65:
        minutes = rng.randint(1, 12) * 60
    else:
        minutes = rng.randint(1, 9) * 24 * 60
    return step("sleep", minutes=minutes)


def _stripe_action(rng: random.Random) -> Step:
    kind = rng.choices(
        [
            "subscribe",
            "fail_payment",
            "recover",
            "stripe_cancel_at_period_end",
            "stripe_resume",
            "stripe_cancel_now",
            "add_addon_item",
            "second_subscription",
        ],
        weights=[3, 4, 3, 2, 2, 1, 2, 1],
    )[0]
    if kind in ("subscribe", "second_subscription"):
        plan, interval, seats = rng.choice(PLANS)
        addon = kind == "second_subscription" and rng.random() < 0.5
        return step(
            kind, plan=plan, interval=interval, seats=seats, trial=rng.random() < 0.2, addon=addon
        )
    return step(kind)


def _update(rng: random.Random) -> Step:
    kind = rng.choices(
        [
            "change_plan",
            "cancel_subscription",
            "resume_subscription",
            "cancel_plan_change",
            "operator_action",
        ],
        weights=[4, 3, 2, 1, 4],
    )[0]
    if kind == "change_plan":
        plan, interval, seats = rng.choice(PLANS)
        bad = rng.random() < 0.15
        return step(kind, plan=plan, interval=interval, seats=seats, retired_price=bad)
    if kind == "cancel_subscription":
        return step(kind, at_period_end=rng.random() < 0.75)
    if kind == "operator_action":
        action = rng.choice(
            [
                "resync",
                "resync",
                "retry_invoice",
                "cancel_now",
                "grant_comp",
                "revoke_comp",
                "extend_grace",
                "lock",
                "unlock",
            ]
        )
        return step(
            kind, action=action, plan=rng.choice(["team", "enterprise"]), days=rng.randint(1, 20)
        )
    return step(kind)


def generate(seed: int) -> Schedule:
    rng = random.Random(seed)
    setup = Setup(
        continue_as_new_after=rng.choice([1, 2, 3, 4, 6, 10]),
        misrouted_customer=rng.random() < 0.1,
        redeliver_dropped=rng.random() < 0.6,
    )
    steps: list[Step] = []
    open_faults: dict[str, int] = {}  # fault → steps until it is switched off (-1: never)
    if rng.random() < 0.9:
        plan, interval, seats = rng.choice(PLANS)
        steps += [
            step(
                "subscribe",
                plan=plan,
                interval=interval,
                seats=seats,
                trial=rng.random() < 0.2,
                addon=False,
            ),
            _deliver(rng),
        ]
    for _ in range(rng.randint(10, 28)):
        roll = rng.random()
        if roll < 0.28:
            steps += [_stripe_action(rng), _deliver(rng)]
        elif roll < 0.50:
            steps.append(_update(rng))
        elif roll < 0.65:
            fault = rng.choices(FAULTS, weights=[3, 2, 2, 3, 3, 2])[0]
            if fault not in open_faults:
                steps.append(step("fault_on", fault=fault))
                never = fault == "smtp" and rng.random() < 0.4
                open_faults[fault] = -1 if never else rng.randint(1, 6)
        elif roll < 0.90:
            steps += [_sleep(rng), _deliver(rng)]
        elif roll < 0.95:
            steps.append(step("restart_worker"))
        elif roll < 0.97:
            steps.append(step("email_crash_after_accept"))
        else:
            steps.append(step("event_for_other_customer"))
        for fault, left in list(open_faults.items()):
            if left == 1:
                steps.append(step("fault_off", fault=fault))
                del open_faults[fault]
            elif left > 1:
                open_faults[fault] = left - 1
    return Schedule(seed, setup, tuple(steps))
