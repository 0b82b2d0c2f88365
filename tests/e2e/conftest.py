from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from tests.e2e.stack import Stack, running_stack


@pytest.fixture
async def stack(
    workflow_env: WorkflowEnvironment, database_url: str, session_factory: sessionmaker[Session]
) -> AsyncIterator[Stack]:
    async with running_stack(workflow_env, database_url, session_factory) as running:
        yield running
