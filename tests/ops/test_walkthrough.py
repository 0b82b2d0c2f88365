"""docs/walkthrough.md, as written, against the local stack (`dataface-billing local`, what
`./scripts/run` runs) started as a process in an empty directory, as on a fresh clone.

The walkthrough's bash blocks run in one shell, in order, with `set -euo pipefail`: a command
that fails fails the test. Between blocks the test waits for the state the step documents,
as a reader would before reading the `ent` line: Stripe delivers webhooks shortly after the
call that caused them, not before it returns. The walkthrough names fixed ports (the local
defaults), so the test needs them free.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from core.config import Settings
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"
LOCAL_PORTS = (8000, 7233, 8233, 12111, 1025)
APP = {"Authorization": "Bearer dev-app-token"}
ENTITLEMENTS = "http://127.0.0.1:8000/v1/accounts/acct_walk/entitlements"
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


@pytest.fixture
async def local_stack(tmp_path: Path) -> AsyncIterator[Path]:
    """`dataface-billing local` in `tmp_path`, up; stopped with Ctrl-C (SIGINT) afterwards,
    which must end it quietly."""
    taken = [port for port in LOCAL_PORTS if port_taken(port)]
    if taken:
        pytest.skip(f"the local stack's ports are in use: {taken} (is ./scripts/run up?)")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    output = (tmp_path / "stack.log").open("w+")
    stack = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import cli; cli.main()",
        "local",
        cwd=tmp_path,
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
        yield tmp_path
    finally:
        stack.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(stack.wait(), 60)
    log = read(output)
    assert code == 0, log
    assert "Traceback" not in log


def read(output: IO[str]) -> str:
    output.seek(0)
    return output.read()


async def account_is(state: str) -> bool:
    async with httpx.AsyncClient() as client:
        answer = await client.get(ENTITLEMENTS, headers=APP)
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
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        cwd=local_stack,
        env=fresh_clone_environment(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert shell.stdin is not None and shell.stdout is not None
    transcript: list[str] = []
    try:
        for number, (block, state) in enumerate(zip(blocks, STATE_AFTER_BLOCK, strict=True)):
            shell.stdin.write(f"{block}\necho {BLOCK_DONE}\n".encode())
            await shell.stdin.drain()
            while (line := (await shell.stdout.readline()).decode()) != f"{BLOCK_DONE}\n":
                assert line, f"block {number} failed:\n{''.join(transcript)}"
                transcript.append(line)
            if state is not None:
                await wait_for(
                    lambda state=state: account_is(state),
                    within=20,
                    what=f"{state} after block {number}",
                )
    finally:
        shell.stdin.close()
        await shell.wait()

    assert "account   acct_walk" in "".join(transcript)  # `admin show` answered
    # The emails the walkthrough's last step greps for.
    emails = [
        "Subject: Payment failed for your Dataface Pro plan",
        "Subject: Payment received, thank you",
        "Subject: Welcome to Dataface Pro",
    ]
    await wait_for(lambda: mail_subjects(local_stack) == emails, what="the three emails")
