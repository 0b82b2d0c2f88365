"""What every simulated account of one process shares: the
Stripe simulator (with the catalog and an add-on price that is not in it), an SMTP server that
records every message, the database, and the worker's connections.

Accounts run one after another on a world, each on its own account id, customer, test clock,
task queue and time-skipping server, so one seed's run does not depend on which seeds ran before it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.payloads import DATA_CONVERTER
from core.smtp import SmtpSender
from core.temporal import installed_binary, register_search_attributes
from db.engine import make_engine, make_session_factory
from domain.catalog import Catalog, default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer
from stripe_sim.settings import SimulatorSettings
from tests.smtp_server import SmtpRecorder
from worker import worker_connections
from workflows.account import SEARCH_ATTRIBUTES

# An add-on (not in the catalog) per interval: Stripe wants one interval per subscription.
ADDON_LOOKUP_KEYS = {"month": "sim_addon_month", "year": "sim_addon_year"}


@dataclass
class EventTap:
    """Every event the simulator emits, by the customer it is about (the webhook gateway's
    routing, without HTTP): accounts take theirs when a `deliver` step runs."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _by_customer: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def __call__(self, event: dict[str, Any]) -> None:
        obj = event["data"]["object"]
        customer = obj.get("id") if obj.get("object") == "customer" else obj.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        if isinstance(customer, str):
            with self._lock:
                self._by_customer[customer].append(event)

    def take(self, customer_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._by_customer.pop(customer_id, [])


@dataclass
class World:
    sim: SimulatorServer
    stripe: stripe.StripeClient
    smtp: SmtpRecorder
    mail: SmtpSender
    settings: Settings
    sessions: sessionmaker[Session]
    catalog: Catalog
    executor: ThreadPoolExecutor
    events: EventTap
    prices: dict[str, str]  # lookup key → price id


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """One per seed: a seed's leftovers (a terminated run's activity still in flight) would
    hold back time skipping in the next, and each seed's time starts afresh."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(installed_binary("temporal-test-server")),
        data_converter=DATA_CONVERTER,
    )
    try:
        await register_search_attributes(env.client, SEARCH_ATTRIBUTES, env.client.namespace)
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def running_world(database_url: str) -> AsyncIterator[World]:
    if True:
        # No webhook endpoint: events reach the workflows through the tap, with the
        # simulation's own delivery faults.
        with (
            SimulatorServer(settings=SimulatorSettings(realtime_tick_seconds=3600)) as sim,
            SmtpRecorder() as smtp,
            ThreadPoolExecutor(max_workers=16) as executor,
        ):
            tap = EventTap()
            sim.store.event_listeners.append(tap)
            settings = Settings(
                _env_file=None,
                database_url=database_url,
                smtp_port=smtp.port,
                stripe_simulator_url=sim.url,
                task_queue="sim-unused",
            )
            engine = make_engine(database_url)
            async with worker_connections(settings) as connections:
                catalog = default_catalog()
                client = connections.stripe
                apply_catalog_changes(client, catalog, plan_catalog_changes(client, catalog))
                product = client.v1.products.create(params={"name": "Sim add-on"})
                for interval, lookup_key in ADDON_LOOKUP_KEYS.items():
                    client.v1.prices.create(
                        params={
                            "product": product.id,
                            "unit_amount": 500,
                            "currency": "usd",
                            "recurring": {"interval": interval},
                            "lookup_key": lookup_key,
                        }
                    )
                prices = {
                    str(p.lookup_key): str(p.id)
                    for p in client.v1.prices.list(params={"limit": 100}).data
                    if p.lookup_key and p.active
                }
                try:
                    yield World(
                        sim=sim,
                        stripe=client,
                        smtp=smtp,
                        mail=connections.mail,
                        settings=settings,
                        sessions=make_session_factory(engine),
                        catalog=catalog,
                        executor=executor,
                        events=tap,
                        prices=prices,
                    )
                finally:
                    engine.dispose()
