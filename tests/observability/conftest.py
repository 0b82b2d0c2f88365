"""The API fixtures of tests/api (app on the test database, Temporal as a recording fake), and
a way to run the real account workflow through a client of the test's own making."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.api.conftest import client, make_client, settings, temporal

__all__ = ["client", "make_client", "settings", "temporal", "with_client"]


def with_client(env: WorkflowEnvironment, client: Client) -> WorkflowEnvironment:
    """`env` as `tests/workflows/harness.py` uses it (`client`, `sleep`), talking through
    `client`: another data converter or runtime on the same time-skipping server."""
    return cast(WorkflowEnvironment, SimpleNamespace(client=client, sleep=env.sleep))
