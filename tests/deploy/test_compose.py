"""docker-compose.yml, .env.example and the Dockerfile, checked against the code.

No Docker engine runs here, so the stack is not started: these tests read the files and check
that they agree with `core.config.Settings` and the CLI, which is where drift would bite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

import cli
from core.config import Settings
from tests.production_shape.compose import INTERPOLATION, interpolate

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BILLING_SERVICES = ("migrate", "setup-temporal", "api", "worker", "email-sender")
ONE_SHOTS = {"temporal-schema", "temporal-namespace", "migrate", "setup-temporal"}
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
# What production must set explicitly: the defaults are for a developer's machine.
MUST_BE_SET = {
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "APP_API_TOKEN",
    "ADMIN_API_TOKEN",
    "SMTP_HOST",
    "SMTP_PORT",
    "LOG_FORMAT",
}


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def environment(service: str) -> dict[str, str]:
    return {name: str(value) for name, value in SERVICES[service].get("environment", {}).items()}


def test_the_stack_has_every_piece() -> None:
    assert set(SERVICES) == {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "mailpit",
        "migrate",
        "setup-temporal",
        "api",
        "worker",
        "email-sender",
    }


@pytest.mark.parametrize("service", sorted(set(SERVICES) - set(BILLING_SERVICES)))
def test_official_images_are_pinned(service: str) -> None:
    image = SERVICES[service]["image"]
    name, _, tag = image.rpartition(":")
    assert name and tag, f"{service}: {image} has no tag"
    assert tag != "latest" and "$" not in tag, f"{service}: {image} is not pinned"
    assert re.search(r"\d", tag), f"{service}: {image} is not a version"


@pytest.mark.parametrize("service", BILLING_SERVICES)
def test_the_service_runs_the_project_image_with_a_real_command(service: str) -> None:
    definition = SERVICES[service]
    assert definition["build"] == "."
    command = definition["command"]
    args = cli.build_parser().parse_args(command)
    assert args.command == command[0]


@pytest.mark.parametrize("service", sorted(set(SERVICES) - ONE_SHOTS))
def test_long_running_services_have_healthchecks(service: str) -> None:
    check = SERVICES[service]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert SERVICES[service]["restart"] == "unless-stopped"


@pytest.mark.parametrize("service", sorted(ONE_SHOTS))
def test_one_shots_run_once(service: str) -> None:
    assert SERVICES[service]["restart"] == "no"
    assert "healthcheck" not in SERVICES[service]


def test_depends_on_waits_for_health_or_completion_in_start_order() -> None:
    for service, definition in SERVICES.items():
        for needed, how in definition.get("depends_on", {}).items():
            assert needed in SERVICES, f"{service} needs unknown {needed}"
            expected = (
                "service_completed_successfully" if needed in ONE_SHOTS else "service_healthy"
            )
            assert how == {"condition": expected}, f"{service} → {needed}"

    def needs(service: str) -> set[str]:
        direct = set(SERVICES[service].get("depends_on", {}))
        return direct.union(*(needs(n) for n in direct)) if direct else set()

    assert {"postgres", "temporal-schema", "temporal", "temporal-namespace"} <= needs(
        "setup-temporal"
    )
    assert {"migrate", "setup-temporal", "mailpit"} <= needs("worker")
    assert {"migrate", "mailpit"} <= needs("email-sender")
    assert {"postgres", "migrate"} <= needs("api")
    assert needs("temporal-ui") >= {"temporal"}


def test_named_volumes_are_declared_and_used() -> None:
    used = {
        mount.split(":", 1)[0]
        for definition in SERVICES.values()
        for mount in definition.get("volumes", [])
        if not mount.startswith((".", "/"))
    }
    assert used == set(COMPOSE["volumes"])


@pytest.mark.parametrize("service", BILLING_SERVICES)
def test_service_environment_is_exactly_real_settings(service: str) -> None:
    env = environment(service)

    unknown = set(env) - SETTING_NAMES
    assert not unknown, f"{service} sets variables no setting reads: {unknown}"
    required = {n.upper() for n, f in Settings.model_fields.items() if f.is_required()}
    assert required | MUST_BE_SET <= set(env)


@pytest.mark.parametrize("service", BILLING_SERVICES)
def test_with_the_example_env_the_settings_validate_and_point_at_the_stack(service: str) -> None:
    env = {name: interpolate(value, env_example()) for name, value in environment(service).items()}

    settings = Settings(_env_file=None, **{name.lower(): value for name, value in env.items()})  # type: ignore[arg-type]

    database = make_url(settings.database_url)
    postgres = environment("postgres")
    assert database.get_backend_name() == "postgresql"
    assert (database.host, database.port) == ("postgres", 5432)
    assert (database.username, database.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_DB"],
    )
    assert database.password == env_example()["POSTGRES_PASSWORD"]
    assert settings.temporal_address == "temporal:7233"
    assert settings.temporal_namespace == interpolate(
        environment("temporal-namespace")["NAMESPACE"], env_example()
    )
    assert (settings.smtp_host, settings.smtp_port) == ("mailpit", 1025)
    assert settings.log_format == "json"
    # Empty optional values in .env mean "unset", not an empty key or path.
    assert settings.temporal_api_key is None and settings.temporal_tls_cert is None
    ui = environment("temporal-ui")
    assert urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"]).path == "/codec"
    assert settings.codec_cors_origin_list == [ui["TEMPORAL_CORS_ORIGINS"]]


def test_ports_match_the_commands_and_settings() -> None:
    api = SERVICES["api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert f"{port}:{port}" in api["ports"]
    assert port in " ".join(api["healthcheck"]["test"])
    assert str(urlsplit(environment("temporal-ui")["TEMPORAL_CODEC_ENDPOINT"]).port) == port

    for name in ("worker", "email-sender"):
        service = SERVICES[name]
        metrics_port = environment(name)["METRICS_PORT"]
        assert metrics_port in service["expose"]
        # Prometheus scrapes from another container: loopback, the default, would shut it out.
        assert environment(name)["METRICS_HOST"] == "0.0.0.0"
        assert f":{metrics_port}/metrics" in " ".join(service["healthcheck"]["test"])
        assert environment(name)["SMTP_PORT"] == "1025"


def test_every_variable_compose_reads_is_in_the_example_env_and_nothing_else_is() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    referenced = {match["name"] for match in INTERPOLATION.finditer(text)}
    required = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] == ":?"}
    example = env_example()

    assert required <= {name for name, value in example.items() if value}
    assert set(example) == referenced


def test_the_dockerfile_builds_in_stages_and_runs_as_a_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    final = lines[stages[-1] :]
    assert re.match(r"FROM python:3\.11-slim", final[0])
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    final_text = "\n".join(final)
    for build_tool in ("gcc", "build-essential", "pip install"):
        assert build_tool not in final_text
    assert "COPY --from=" in final_text
    assert 'ENTRYPOINT ["dataface-billing"]' in final


def test_the_docker_context_leaves_out_secrets_and_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".data", ".git"} <= ignored
