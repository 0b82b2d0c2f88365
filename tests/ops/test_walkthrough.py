"""docs/walkthrough.md and the README's "Try it", as written, against the local stack
(`dataface-billing local`, what `./scripts/run` runs) started as a process in an empty
directory, as on a fresh clone.

The walkthrough's bash blocks run in one shell, in order, with `set -euo pipefail`: a command
that fails fails the test. Between blocks the test waits for the state the step documents,
as a reader would before reading the `ent` line: Stripe delivers webhooks shortly after the
call that caused them, not before it returns. The walkthrough names fixed ports (the local
defaults), so the test needs them free.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from core.config import Settings
from core.stripe_client import make_stripe_client
from tests.conftest import wait_for
from tests.signing import stripe_signature

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"
README = ROOT / "README.md"
LOCAL_PORTS = (8000, 7233, 8233, 12111, 1025)
APP = {"Authorization": "Bearer dev-app-token"}
WALKTHROUGH_ENTITLEMENTS = "http://127.0.0.1:8000/v1/accounts/acct_walk/entitlements"
# The billing state each block leads to (None: the block does not change it).
STATE_AFTER_BLOCK = [None, None, "trialing", "active", "past_due", "active"]
BLOCK_DONE = "walkthrough-block-done"


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def fresh_clone_environment() -> dict[str, str]:
    """This environment without any of the service's settings (the defaults apply), with
    this checkout's code first on the path (the `.venv` may be another checkout's)."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {name: value for name, value in os.environ.items() if name not in settings}
    return {**env, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
async def local_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """`dataface-billing local` in an empty directory, up; stopped with Ctrl-C (SIGINT)
    afterwards, which must end it quietly."""
    taken = [port for port in LOCAL_PORTS if port_taken(port)]
    if taken:
        pytest.skip(f"the local stack's ports are in use: {taken} (is ./scripts/run up?)")
    clone = tmp_path_factory.mktemp("fresh_clone")
    (clone / ".venv").symlink_to(sys.prefix)
    (clone / "scripts").symlink_to(ROOT / "scripts")
    output = (clone / "stack.log").open("w+")
    stack = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import cli; cli.main()",
        "local",
        cwd=clone,
        env=fresh_clone_environment(),
        stdout=output,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_for(
            lambda: "Dataface Billing is up." in read(output) or stack.returncode is not None,
            within=60,
            what="the local stack to start",
        )
        assert stack.returncode is None, read(output)
        yield clone
    finally:
        stack.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(stack.wait(), 60)
    log = read(output)
    assert code == 0, log
    assert "KeyboardInterrupt" not in log


def read(output: IO[str]) -> str:
    output.seek(0)
    return output.read()


class Shell:
    """One bash (`set -euo pipefail`) in `directory`: blocks run in it share variables and
    functions, as when a reader pastes them into one terminal."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process, self._stdin, self._stdout = process, process.stdin, process.stdout

    @classmethod
    @asynccontextmanager
    async def open(cls, directory: Path) -> AsyncIterator[Shell]:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            cwd=directory,
            env=fresh_clone_environment(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            yield cls(process)
        finally:
            process.stdin.close()  # type: ignore[union-attr]
            await process.wait()

    async def run(self, block: str) -> str:
        """The block's output; fails the test when a command in it fails."""
        self._stdin.write(f"{block}\necho {BLOCK_DONE}\n".encode())
        await self._stdin.drain()
        output = []
        while True:
            line = (await self._stdout.readline()).decode()
            assert line, f"this block failed:\n{block}\nwith:\n{''.join(output)}"
            # After a last line without a newline (curl's JSON), the marker ends that line.
            if line.endswith(f"{BLOCK_DONE}\n"):
                output.append(line.removesuffix(f"{BLOCK_DONE}\n"))
                return "".join(output)
            output.append(line)


async def account_is(state: str) -> bool:
    async with httpx.AsyncClient() as client:
        answer = await client.get(WALKTHROUGH_ENTITLEMENTS, headers=APP)
    return bool(answer.json()["billing_state"] == state)


def mail_subjects(directory: Path) -> list[str]:
    return sorted(
        line
        for mail in (directory / ".data" / "mail").glob("*.eml")
        for line in mail.read_text().splitlines()
        if line.startswith("Subject: ")
    )


async def test_the_walkthrough_runs_as_written(local_stack: Path) -> None:
    blocks = bash_blocks(WALKTHROUGH.read_text())
    assert len(blocks) == len(STATE_AFTER_BLOCK), "a block was added: say what it leads to"
    async with Shell.open(local_stack) as shell:
        for number, (block, state) in enumerate(zip(blocks, STATE_AFTER_BLOCK, strict=True)):
            output = await shell.run(block)
            if state is not None:
                await wait_for(
                    lambda state=state: account_is(state),
                    within=20,
                    what=f"{state} after block {number}",
                )

    assert "account   acct_walk" in output  # the last block's `admin show` answered
    # The emails the walkthrough's last step greps for.
    emails = [
        "Subject: Payment failed for your Dataface Pro plan",
        "Subject: Payment received, thank you",
        "Subject: Welcome to Dataface Pro",
    ]
    await wait_for(lambda: mail_subjects(local_stack) == emails, what="the three emails")


async def test_the_readme_s_try_it_runs_as_written(local_stack: Path) -> None:
    section = README.read_text().split("## Try it", 1)[1].split("\n## ", 1)[0]
    first_read, subscribe_and_read = bash_blocks(section)
    async with Shell.open(local_stack) as shell:
        free = json.loads(await shell.run(first_read))
        subscribed = await shell.run(subscribe_and_read)
    assert (free["billing_state"], free["plan"]) == ("free", "free")
    now = json.loads(subscribed.splitlines()[-1])
    assert (now["billing_state"], now["plan"], now["seats"]) == ("active", "team", 3)


async def test_a_webhook_hand_signed_with_the_documented_secret_is_accepted(
    local_stack: Path,
) -> None:
    stripe = make_stripe_client(Settings(_env_file=None))
    customer = stripe.v1.customers.create(params={"metadata": {"account_id": "acct_hand"}})
    event = {
        "id": "evt_hand_signed",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": "sub_hand_signed",
                "object": "subscription",
                "customer": customer.id,
                "metadata": {"account_id": "acct_hand"},
            }
        },
    }
    body = json.dumps(event).encode()
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            "http://127.0.0.1:8000/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": stripe_signature(body, "whsec_local_development")},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"
