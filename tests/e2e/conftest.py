from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from tests.e2e.browser import browser_page, require_browser
from tests.e2e.stack import Stack, running_stack


@pytest.fixture
async def stack(
    workflow_env: WorkflowEnvironment, database_url: str, session_factory: sessionmaker[Session]
) -> AsyncIterator[Stack]:
    async with running_stack(workflow_env, database_url, session_factory) as running:
        yield running


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """A page in a headless Chromium (`tests.e2e.browser`)."""
    async with browser_page(require_browser()) as page:
        yield page
