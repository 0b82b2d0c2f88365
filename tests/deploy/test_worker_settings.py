"""The worker takes its limits from the settings, so operators can size it from the environment."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import sessionmaker
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from domain.catalog import default_catalog
from tests.smtp_server import free_port
from worker import YOUNG_GENERATION_THRESHOLD, build_worker, metrics_runtime, worker_connections

REPO = Path(__file__).resolve().parents[2]


async def test_the_worker_is_sized_by_the_settings(workflow_env: WorkflowEnvironment) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        worker_max_cached_workflows=7,
        worker_max_concurrent_activities=3,
        worker_max_concurrent_workflow_tasks=5,
    )
    async with worker_connections(settings) as connections:
        with ThreadPoolExecutor(max_workers=3) as executor:
            worker = build_worker(
                workflow_env.client,
                settings,
                stripe_client=connections.stripe,
                sessions=sessionmaker(),
                catalog=default_catalog(),
                executor=executor,
                mail=connections.mail,
            )
            config = worker.config()

    assert config.get("max_cached_workflows") == 7
    assert config.get("max_concurrent_activities") == 3
    assert config.get("max_concurrent_workflow_tasks") == 5


def test_a_worker_process_sets_its_start_up_objects_aside_from_garbage_collection() -> None:
    # In a process of its own: freezing is for the whole interpreter.
    probe = (
        "import gc, json, worker; worker.tune_garbage_collector(); "
        "print(json.dumps({'threshold': gc.get_threshold(), 'frozen': gc.get_freeze_count()}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    tuned = json.loads(completed.stdout)

    assert tuned["threshold"][0] == YOUNG_GENERATION_THRESHOLD
    # The interpreter's and the worker's modules, classes and functions: tens of thousands.
    assert tuned["frozen"] > 10_000


def accepts_connections(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


@pytest.mark.parametrize(
    ("metrics_host", "reachable_beside_loopback"), [(None, False), ("0.0.0.0", True)]
)
def test_the_metrics_endpoint_listens_on_loopback_unless_told_otherwise(
    metrics_host: str | None, reachable_beside_loopback: bool
) -> None:
    chosen = {} if metrics_host is None else {"metrics_host": metrics_host}
    settings = Settings(_env_file=None, metrics_port=free_port(), **chosen)  # type: ignore[arg-type]
    assert settings.metrics_port is not None

    runtime = metrics_runtime(settings)

    assert runtime is not None
    assert accepts_connections("127.0.0.1", settings.metrics_port)
    # 127.0.0.2 is loopback too, but not the address 127.0.0.1 names: a socket bound to
    # 127.0.0.1 refuses it, one bound to every address accepts it.
    assert accepts_connections("127.0.0.2", settings.metrics_port) is reachable_beside_loopback


def test_the_metrics_host_must_be_an_address() -> None:
    with pytest.raises(ValidationError, match="metrics_host"):
        Settings(_env_file=None, metrics_host="metrics.internal")  # type: ignore[arg-type]
