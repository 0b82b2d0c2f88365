"""The reconciliation schedules, against the real Temporal dev server (the time-skipping test
server has no schedules)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleIntervalSpec
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.payloads import DATA_CONVERTER
from core.temporal import installed_binary
from ops.schedules import EVENTS_SCHEDULE_ID, SWEEP_SCHEDULE_ID, ensure_schedules
from tests.conftest import wait_for


@pytest.fixture
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(installed_binary("temporal")),
        data_converter=DATA_CONVERTER,
        ui=False,
    )
    yield env
    await env.shutdown()


async def intervals(env: WorkflowEnvironment, schedule_id: str) -> list[timedelta]:
    described = await env.client.get_schedule_handle(schedule_id).describe()
    specs = described.schedule.spec.intervals
    assert all(isinstance(s, ScheduleIntervalSpec) for s in specs)
    return [s.every for s in specs]


async def test_schedules_are_created_once_and_updated_in_place(
    dev_server: WorkflowEnvironment,
) -> None:
    settings = Settings(_env_file=None, task_queue="billing-schedules-test")
    await ensure_schedules(dev_server.client, settings)
    await ensure_schedules(dev_server.client, settings)  # a second setup changes nothing

    assert await intervals(dev_server, EVENTS_SCHEDULE_ID) == [timedelta(minutes=10)]
    assert await intervals(dev_server, SWEEP_SCHEDULE_ID) == [timedelta(minutes=60)]
    described = await dev_server.client.get_schedule_handle(EVENTS_SCHEDULE_ID).describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue) == (
        "EventsReconciliationWorkflow",
        "billing-schedules-test",
    )

    # An operator paused one; new settings change the interval and keep the pause.
    await dev_server.client.get_schedule_handle(SWEEP_SCHEDULE_ID).pause(note="maintenance")
    faster = settings.model_copy(update={"sweep_every_minutes": 15})
    await ensure_schedules(dev_server.client, faster)

    assert await intervals(dev_server, SWEEP_SCHEDULE_ID) == [timedelta(minutes=15)]
    paused = await dev_server.client.get_schedule_handle(SWEEP_SCHEDULE_ID).describe()
    assert paused.schedule.state.paused and paused.schedule.state.note == "maintenance"

    async def both_listed_once() -> bool:
        listed = [s.id async for s in await dev_server.client.list_schedules()]
        return sorted(listed) == sorted([EVENTS_SCHEDULE_ID, SWEEP_SCHEDULE_ID])

    # The list comes from the visibility store, which catches up asynchronously.
    await wait_for(both_listed_once, what="the two schedules listed")
