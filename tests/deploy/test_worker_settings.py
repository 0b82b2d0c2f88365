"""The worker takes its limits from the settings, so operators can size it from the environment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import sessionmaker
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from domain.catalog import default_catalog
from worker import build_worker, worker_connections


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
