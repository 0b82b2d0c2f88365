"""The `harness` fixture: the real account workflow and database activities on a fresh task
queue of the test's own time-skipping server (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from .harness import Harness, running_harness


@pytest.fixture
async def harness(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> AsyncIterator[Harness]:
    async with running_harness(workflow_env, session_factory) as h:
        yield h
