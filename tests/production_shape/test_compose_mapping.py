"""docker-compose.yml read as the processes the production-shape run starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.production_shape import compose
from tests.production_shape.compose import (
    BILLING_SERVICES,
    INFRASTRUCTURE,
    ComposeDrift,
    StandIns,
    billing_services,
)

HERE = StandIns(
    database_url="postgresql+psycopg://postgres@127.0.0.1:6543/run",
    temporal_address="127.0.0.1:17233",
    smtp_host="127.0.0.1",
    smtp_port=2525,
    stripe_simulator_url="http://127.0.0.1:12999",
)
ENV_FILE = {
    "POSTGRES_PASSWORD": "unused",
    "STRIPE_SECRET_KEY": "sk_unused",
    "STRIPE_WEBHOOK_SECRET": "whsec_run",
    "APP_API_TOKEN": "app",
    "ADMIN_API_TOKEN": "admin",
}


def test_billing_services_start_in_compose_order_with_the_stand_ins_addresses() -> None:
    services = billing_services(ENV_FILE, HERE)

    assert [s.name for s in services] == [
        "migrate",
        "setup-temporal",
        "api",
        "email-sender",
        "worker",
    ]
    assert [s.one_shot for s in services] == [True, True, False, False, False]
    for service in services:
        env = service.environment
        assert env["DATABASE_URL"] == HERE.database_url
        assert env["TEMPORAL_ADDRESS"] == HERE.temporal_address
        assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("127.0.0.1", "2525")
        # Unset STRIPE_SECRET_KEY: the service calls the simulator.
        assert "STRIPE_SECRET_KEY" not in env
        assert env["STRIPE_SIMULATOR_URL"] == HERE.stripe_simulator_url
        assert env["STRIPE_WEBHOOK_SECRET"] == "whsec_run"
        assert env["LOG_FORMAT"] == "json"


def test_long_running_services_move_to_their_own_port_and_keep_the_healthcheck() -> None:
    api, email_sender, worker = billing_services(ENV_FILE, HERE)[2:]

    assert api.command_on(8101) == ["api", "--host", "127.0.0.1", "--port", "8101"]
    assert api.health_url(8101) == "http://127.0.0.1:8101/readyz"
    assert worker.command_on(9501) == ["worker"]
    assert worker.environment_on(9501)["METRICS_PORT"] == "9501"
    assert worker.health_url(9501) == "http://127.0.0.1:9501/metrics"
    assert email_sender.command_on(9502) == ["email-sender"]
    assert email_sender.environment_on(9502)["METRICS_PORT"] == "9502"
    assert email_sender.health_url(9502) == "http://127.0.0.1:9502/metrics"


@pytest.fixture
def compose_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the loader at a changed copy of docker-compose.yml."""
    original = yaml.safe_load(compose.COMPOSE_FILE.read_text())

    def write(change: Any) -> None:
        changed = change(original)
        path = tmp_path / "docker-compose.yml"
        path.write_text(yaml.safe_dump(changed))
        monkeypatch.setattr(compose, "COMPOSE_FILE", path)

    yield write


def test_a_service_the_mapping_does_not_know_fails_the_load(compose_with: Any) -> None:
    def add_redis(definition: dict[str, Any]) -> dict[str, Any]:
        definition["services"]["redis"] = {"image": "redis:7.4"}
        return definition

    compose_with(add_redis)
    with pytest.raises(ComposeDrift, match="redis"):
        billing_services(ENV_FILE, HERE)


def test_a_mapped_service_gone_from_compose_fails_the_load(compose_with: Any) -> None:
    def drop_mailpit(definition: dict[str, Any]) -> dict[str, Any]:
        del definition["services"]["mailpit"]
        definition["services"]["worker"]["depends_on"].pop("mailpit")
        definition["services"]["email-sender"]["depends_on"].pop("mailpit")
        return definition

    compose_with(drop_mailpit)
    with pytest.raises(ComposeDrift, match="mailpit"):
        billing_services(ENV_FILE, HERE)


def test_every_compose_service_is_started_or_stood_in_for() -> None:
    services = set(yaml.safe_load(compose.COMPOSE_FILE.read_text())["services"])
    assert services == BILLING_SERVICES | set(INFRASTRUCTURE)
