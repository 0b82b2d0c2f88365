"""With LOG_FORMAT=json every line is one JSON object, the Temporal SDK core's too: during an
outage the core (Rust) used to write its warnings to stderr as coloured text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.temporal import SDK_CORE_LOGGER, installed_binary
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
WORKER_READY_LINE = "worker polling task queue"


def worker_environment(temporal_address: str, data_dir: Path) -> dict[str, str]:
    """This process's environment without any of the service's settings, plus the worker's;
    the worktree's code first on the path."""
    ours = {name.upper() for name in Settings.model_fields}
    environment = {k: v for k, v in os.environ.items() if k.upper() not in ours}
    environment.update(
        TEMPORAL_ADDRESS=temporal_address,
        TASK_QUEUE="json-logs",
        DATABASE_URL=f"sqlite:///{data_dir / 'billing.db'}",
        LOG_FORMAT="json",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    return environment


def start_worker(environment: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """The production worker (`python -m worker`), its output to `log_file`."""
    with log_file.open("wb") as log:
        # cwd: the temporary folder, so a developer's `.env` cannot leak in.
        return subprocess.Popen(
            [sys.executable, "-m", "worker"],
            env=environment,
            cwd=log_file.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_a_worker_writes_only_json_lines_while_temporal_is_unreachable(
    tmp_path: Path,
) -> None:
    temporal = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(installed_binary("temporal-test-server"))
    )
    address = temporal.client.service_client.config.target_host
    log_file = tmp_path / "worker.log"
    worker = start_worker(worker_environment(address, tmp_path), log_file)
    try:
        await wait_for(
            lambda: WORKER_READY_LINE in log_file.read_text(), within=60, what="the worker to poll"
        )
        await temporal.shutdown()
        # The core retries its polls (`poll_workflow_task_queue`, ...), then warns, naming
        # them, formatted or not; a worker that exited ends the wait too.
        await wait_for(
            lambda: worker.poll() is not None or "poll_" in log_file.read_text(),
            within=60,
            what="the SDK core to warn about the outage",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        await temporal.shutdown()

    lines = log_file.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in records), lines
    core = [record for record in records if record["logger"] == SDK_CORE_LOGGER.name]
    assert core, lines
    assert {record["level"] for record in core} <= {"WARNING", "ERROR"}
    assert all("\x1b[" not in line for line in lines)
