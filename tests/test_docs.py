"""The docs are checked against the code, so they cannot drift.

`docs/lifecycle.md`: the contract table's states, access, plan and message codes against
`domain.entitlements` (STATE_ACCESS and, for the overrides, `entitlements_for`), its notices
against `domain.lifecycle`, the grace table against the catalog.
`docs/runbook.md`: every case has a section, every admin CLI command in it parses, every
search attribute it filters on exists.
`README.md`: every `dataface-billing` command in it parses (also when run through compose), and
"Deploying" is the production sequence, one numbered step per command; what the Stripe steps
do is tested against the simulator in `tests/deploy/test_stripe_steps.py`.
Every source or test file the README, `docs/` and `tests/README.md` name (`api/edge.py`,
`tests/api/test_outages.py::test_...`) exists, and so does the test it names.
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

import cli
from domain.catalog import default_catalog
from domain.entitlements import STATE_ACCESS, entitlements_for
from domain.lifecycle import (
    PAID_STATES,
    BillingState,
    Comp,
    Lifecycle,
    Lock,
    Notice,
    SubscriptionObserved,
    TimePassed,
    transition,
)
from notifications.render import EMAIL_KINDS
from tests.workflows.harness import subscription
from workflows.account import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LIFECYCLE = DOCS / "lifecycle.md"
RUNBOOK = DOCS / "runbook.md"
CODE = re.compile(r"`([a-z_]+)`")
NOW = datetime(2026, 11, 1, tzinfo=UTC)
OVERRIDES = ("comped", "locked")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_after(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table under `heading`, as one dict per row keyed by the header."""
    section = text.split(heading, 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    # The first contiguous run of table lines is the table.
    first = section.splitlines().index(lines[0])
    table = []
    for line in section.splitlines()[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    header, _separator, *rows = table
    names = cells(header)
    return [dict(zip(names, cells(row), strict=True)) for row in rows]


@pytest.fixture(scope="module")
def contract() -> dict[str, dict[str, str]]:
    rows = table_after(LIFECYCLE.read_text(), "## The contract")
    by_state = {CODE.search(row["billing state"]).group(1): row for row in rows}  # type: ignore[union-attr]
    assert len(by_state) == len(rows), "a state has two rows"
    return by_state


def code(cell: str) -> str | None:
    """The first `code` in a cell; None for a cell saying "—"."""
    if cell.startswith("—"):
        return None
    found = CODE.search(cell)
    assert found is not None, f"no code in {cell!r}"
    return found.group(1)


def paid(plan: str = "pro") -> Lifecycle:
    return Lifecycle(state=BillingState.ACTIVE, subscription=subscription("cus_doc", plan=plan))


def test_every_state_has_exactly_one_row(contract: dict[str, dict[str, str]]) -> None:
    assert set(contract) == {str(state) for state in BillingState} | set(OVERRIDES)


@pytest.mark.parametrize("state", list(BillingState))
def test_access_plan_and_message_of_each_billing_state(
    contract: dict[str, dict[str, str]], state: BillingState
) -> None:
    row = contract[str(state)]
    access, plan_applies, message = STATE_ACCESS[state]
    assert code(row["access"]) == str(access)
    assert row["plan"] == ("subscribed plan" if plan_applies else "free plan")
    assert code(row["app message"]) == (None if message is None else str(message))

    # And what the app actually receives for an account in that state.
    answer = entitlements_for(
        Lifecycle(state=state, subscription=subscription("cus_doc", plan="team")),
        default_catalog(),
    )
    assert (str(answer.access), answer.effective_state) == (code(row["access"]), str(state))
    assert answer.plan == ("team" if plan_applies else "free")


def notices_on_entry(state: BillingState) -> set[str]:
    """Every notice the lifecycle emits on moving into `state` from another state, plus the
    plan change notice of a paid state."""
    found: set[str] = set()
    for before in BillingState:
        if before is state:
            continue
        for result in _moves(before, state):
            found.update(str(notice) for notice in result)
    if state in PAID_STATES:
        found.add(str(Notice.PLAN_CHANGED))
    return found


def _moves(before: BillingState, after: BillingState) -> list[tuple[Notice, ...]]:
    """The notices of driving a `before` account into `after` through the real transition."""
    start = _lifecycle_in(before)
    if after is BillingState.RESTRICTED:
        if before is not BillingState.PAST_DUE:
            start = transition(start, _observed("past_due"), NOW).after
            if start.state is not BillingState.PAST_DUE:
                return []
        result = transition(start, TimePassed(), NOW + timedelta(days=30))
        return [result.notices] if result.after.state is after else []
    status = {
        BillingState.FREE: None,
        BillingState.INCOMPLETE: "incomplete",
        BillingState.TRIALING: "trialing",
        BillingState.ACTIVE: "active",
        BillingState.CANCELING: "canceling",
        BillingState.PAST_DUE: "past_due",
        BillingState.PAUSED: "paused",
    }[after]
    result = transition(start, _observed(status), NOW)
    return [result.notices] if result.after.state is after else []


def _observed(status: str | None) -> SubscriptionObserved:
    if status is None:
        return SubscriptionObserved(None, grace_days=7)
    cancel = status == "canceling"
    sub = subscription("cus_doc", "active" if cancel else status, cancel=cancel)
    return SubscriptionObserved(sub, grace_days=7)


def _lifecycle_in(state: BillingState) -> Lifecycle:
    if state is BillingState.RESTRICTED:
        past_due = transition(Lifecycle(), _observed("past_due"), NOW).after
        return transition(past_due, TimePassed(), NOW + timedelta(days=30)).after
    status = None if state is BillingState.FREE else str(state)
    lifecycle = transition(Lifecycle(), _observed(status), NOW).after
    assert lifecycle.state is state
    return lifecycle


@pytest.mark.parametrize("state", list(BillingState))
def test_notices_on_entry_are_what_the_lifecycle_sends(
    contract: dict[str, dict[str, str]], state: BillingState
) -> None:
    documented = set(CODE.findall(contract[str(state)]["notices on entry"]))
    # Other states are named in the cell ("from past_due"); keep notice codes only.
    documented &= {str(notice) for notice in Notice}
    assert documented == notices_on_entry(state)


@pytest.mark.parametrize("state", list(BillingState))
def test_a_comp_grants_its_plan_in_full_over_any_billing_state(
    contract: dict[str, dict[str, str]], state: BillingState
) -> None:
    row = contract["comped"]
    comp = Comp("enterprise", NOW + timedelta(days=30), "partner", "ops")
    answer = entitlements_for(
        Lifecycle(state=state, subscription=subscription("cus_doc"), comp=comp),
        default_catalog(),
    )
    assert answer.effective_state == "comped"
    assert str(answer.access) == code(row["access"])
    assert answer.message == code(row["app message"])
    assert row["plan"] == "granted plan" and answer.plan == "enterprise"
    assert answer.billing_state == str(state)


@pytest.mark.parametrize("comped", [False, True])
@pytest.mark.parametrize("state", list(BillingState))
def test_a_lock_removes_access_over_any_state_and_any_comp(
    contract: dict[str, dict[str, str]], state: BillingState, comped: bool
) -> None:
    row = contract["locked"]
    comp = Comp("enterprise", NOW + timedelta(days=30), "partner", "ops") if comped else None
    lifecycle = Lifecycle(
        state=state, subscription=subscription("cus_doc"), comp=comp, lock=Lock("fraud", "ops")
    )
    answer = entitlements_for(lifecycle, default_catalog())
    assert answer.effective_state == "locked"
    assert str(answer.access) == code(row["access"])
    assert answer.message == code(row["app message"])
    assert row["plan"].startswith("unchanged") and not any(answer.features.values())


def test_grace_and_dunning_defaults_are_the_catalog_s() -> None:
    catalog = default_catalog()
    rows = table_after(LIFECYCLE.read_text(), "## Grace and dunning defaults")
    documented = {
        row["interval"]: (
            row["grace"],
            row["reminders (days after the failure)"],
            row["final reminder (days before restriction)"],
        )
        for row in rows
    }
    expected = {}
    for interval, days in catalog.grace_days.items():
        ladder = catalog.dunning_for(interval)
        expected[interval] = (
            f"{days} days",
            ", ".join(str(day) for day in ladder.reminders_after_days),
            str(ladder.final_reminder_days_before),
        )
    assert documented == expected


def test_every_override_verb_in_the_lifecycle_doc_exists() -> None:
    rows = table_after(LIFECYCLE.read_text(), "## Operator overrides")
    for row in rows:
        argv = shlex.split(row["CLI verb"].strip("`").replace("ACCOUNT", "acct_1"))
        argv = [arg for arg in argv if arg not in ("P", "D", "C", "A")]
        verb = argv[1]
        parsed = cli.build_parser().parse_args([*argv[:2], *_required_for(verb), "--reason", "r"])
        if row["action"].startswith("`"):
            assert parsed.action == code(row["action"])


def _required_for(verb: str) -> list[str]:
    return {
        "comp": ["acct_1", "--plan", "team", "--until", "2030-01-01"],
        "extend-grace": ["acct_1", "--until", "2030-01-01"],
        "link": ["--customer", "cus_1", "--account", "acct_1"],
    }.get(verb, ["acct_1"])


RUNBOOK_CASES = [
    "Disputed charge",
    "Refund",
    "Pay-by-invoice customer",
    "Stuck incomplete checkout",
    "Disabled webhook endpoint",
    "Stripe outage",
    "Temporal outage",
    "Wrong plan granted",
    "Customer routed to the wrong account",
    "Unroutable events",
    "Terminating a workflow from the Web UI",
]


def test_the_runbook_covers_every_case_with_symptom_place_and_steps() -> None:
    text = RUNBOOK.read_text()
    sections = dict(
        (match.group(1), body)
        for match, body in zip(
            re.finditer(r"^## (.+)$", text, re.MULTILINE),
            re.split(r"^## .+$", text, flags=re.MULTILINE)[1:],
            strict=True,
        )
    )
    for case in RUNBOOK_CASES:
        [body] = [body for heading, body in sections.items() if heading.startswith(case)] or [""]
        assert body, f"runbook has no section {case!r}"
        for part in ("**Symptom.**", "**Where.**", "**Do.**"):
            assert part in body, f"{case}: missing {part}"
        assert "dataface-billing admin" in body or "temporal workflow" in body, case


def runbook_admin_commands() -> list[str]:
    text = RUNBOOK.read_text()
    return sorted(set(re.findall(r"dataface-billing admin [^`\n]+", text)))


@pytest.mark.parametrize("command", runbook_admin_commands())
def test_every_admin_command_in_the_runbook_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    if argv[1:] in ([], ["VERB", "..."]):
        return  # the generic form in the introduction
    cli.build_parser().parse_args(argv)


def test_search_attributes_in_the_runbook_exist() -> None:
    text = RUNBOOK.read_text()
    used = set(re.findall(r"\b([A-Z][A-Za-z]+) = \"", text))
    assert used, "the runbook shows no Web UI filter"
    assert used <= {key.name for key in SEARCH_ATTRIBUTES}


def test_email_kinds_in_the_lifecycle_doc_exist() -> None:
    text = LIFECYCLE.read_text()
    emails = text.split("## Grace and dunning defaults", 1)[1].split("## Operator overrides")[0]
    bullets = [line for line in emails.splitlines() if line.startswith("- ")]
    # Event types are dotted and so not matched; what remains are email kinds.
    named = {kind for line in bullets for kind in CODE.findall(line)}
    assert named and named <= set(EMAIL_KINDS)
    # Every notice of the contract is an email of the same name.
    assert {str(notice) for notice in Notice} <= set(EMAIL_KINDS)


def shell_lines(markdown: str) -> list[str]:
    """The lines of the ```bash blocks, comments and blank lines left out."""
    blocks = re.findall(r"^ *```bash\n(.*?)^ *```", markdown, re.MULTILINE | re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def cli_arguments(line: str) -> list[str] | None:
    """What a README line passes to `dataface-billing`, directly, through `./scripts/run` or
    through a compose service of the project's image (whose entrypoint it is); None for any
    other command."""
    words = shlex.split(line, comments=True)
    if words[0] == "dataface-billing":
        return words[1:]
    if words[0] == "./scripts/run":  # `exec dataface-billing local "$@"`
        return ["local", *words[1:]]
    if words[:3] == ["docker", "compose", "run"]:
        options_end = next(i for i, word in enumerate(words[3:], 3) if not word.startswith("-"))
        service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
            words[options_end]
        ]
        assert service.get("build") == ".", f"{words[options_end]} does not run our image"
        return words[options_end + 1 :]
    return None


def subcommand(argv: list[str]) -> str:
    """`catalog apply` for `catalog apply`, `api` for `api --port 8000`."""
    action = argv[1:2] if len(argv) > 1 and not argv[1].startswith("-") else []
    return " ".join([argv[0], *action])


def readme_commands() -> list[list[str]]:
    found = [cli_arguments(line) for line in shell_lines(README.read_text())]
    return [argv for argv in found if argv is not None]


@pytest.mark.parametrize("argv", readme_commands(), ids=" ".join)
def test_every_command_in_the_readme_parses(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.command == argv[0]


def test_deploying_is_the_production_sequence_one_numbered_step_per_command() -> None:
    section = README.read_text().split("## Deploying", 1)[1].split("\n## ", 1)[0]
    steps = re.split(r"^(\d+)\. ", section, flags=re.MULTILINE)
    numbers = steps[1::2]
    # A step's text is indented under its number; the first unindented line ends the list.
    bodies = [re.split(r"\n(?=\S)", body)[0] for body in steps[2::2]]
    assert numbers == [str(n) for n in range(1, len(numbers) + 1)]
    commands = [
        [subcommand(argv) for line in shell_lines(body) if (argv := cli_arguments(line))]
        for body in bodies
    ]
    assert commands == [
        ["migrate"],
        ["setup-temporal"],
        ["catalog apply"],
        ["webhook-endpoint ensure"],
        ["api", "worker", "email-sender"],
    ]
    assert "STRIPE_WEBHOOK_SECRET" in bodies[3]


# A file named from the repository's root, as `api/edge.py` or `tests/x/test_y.py::test_z`.
NAMED_FILE = re.compile(r"`((?:[a-z_]+/)+[a-z_]+\.py)(?:::([a-z_0-9]+))?`")


def named_files() -> list[tuple[str, str, str | None]]:
    docs = [README, *sorted(DOCS.glob("*.md")), ROOT / "tests" / "README.md"]
    named = {
        (doc.relative_to(ROOT).as_posix(), found[1], found[2])
        for doc in docs
        for found in NAMED_FILE.finditer(doc.read_text())
    }
    return sorted(named, key=lambda entry: (entry[0], entry[1], entry[2] or ""))


@pytest.mark.parametrize(
    ("doc", "path", "test"),
    named_files(),
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_every_file_the_docs_name_exists(doc: str, path: str, test: str | None) -> None:
    named = ROOT / path
    assert named.is_file(), f"{doc} names {path}, which does not exist"
    if test is not None:
        defined = re.search(rf"^(async )?def {test}\(", named.read_text(), re.MULTILINE)
        assert defined, f"{doc} names {path}::{test}, which is not a test there"
