"""Shared fixtures: a Temporal time-skipping server from the wheel, and wait-for helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from core.payloads import DATA_CONVERTER
from core.temporal import installed_binary, register_search_attributes
from workflows.account import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

pytest_plugins = ["tests.fixtures_db"]

T = TypeVar("T")


@pytest.fixture
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: one test's leftovers (an activity in flight when its
    worker stopped) would otherwise hold back time skipping in the next."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(installed_binary("temporal-test-server")),
        data_converter=DATA_CONVERTER,
    )
    await register_search_attributes(env.client, SEARCH_ATTRIBUTES, env.client.namespace)
    yield env
    await env.shutdown()


async def wait_for(
    probe: Callable[[], Awaitable[T] | T], *, within: float = 15.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def isolated_stack(
    workflow_env: WorkflowEnvironment, own_database: tuple[str, sessionmaker[Session]]
) -> AsyncIterator[Stack]:
    """The e2e stack (tests/e2e/stack.py) on a database of its own."""
    from tests.e2e.stack import running_stack  # it imports this module's helpers

    url, sessions = own_database
    async with running_stack(workflow_env, url, sessions) as running:
        yield running
