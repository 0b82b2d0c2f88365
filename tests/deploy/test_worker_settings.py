"""The worker takes its limits from the settings, so operators can size it from the environment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import sessionmaker
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.smtp import SmtpSender
from core.stripe_client import make_stripe_client
from domain.catalog import default_catalog
from worker import build_worker


async def test_the_worker_is_sized_by_the_settings(workflow_env: WorkflowEnvironment) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        worker_max_cached_workflows=7,
        worker_max_concurrent_activities=3,
        worker_max_concurrent_workflow_tasks=5,
    )
    with ThreadPoolExecutor(max_workers=3) as executor:
        worker = build_worker(
            workflow_env.client,
            settings,
            stripe_client=make_stripe_client(settings),
            sessions=sessionmaker(),
            catalog=default_catalog(),
            executor=executor,
            mail=SmtpSender(settings),
        )
        config = worker.config()

    assert config.get("max_cached_workflows") == 7
    assert config.get("max_concurrent_activities") == 3
    assert config.get("max_concurrent_workflow_tasks") == 5
