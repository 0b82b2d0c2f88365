"""The whole service in one test process, against the Stripe simulator.

Stripe simulator (its own threads) → signed webhooks → the API (uvicorn in its own thread and
event loop, as in production it is its own process) → Temporal time-skipping server → the
production worker (`worker.build_worker`) with real activities → the database.

Stripe's time is a test clock (advanced through the API, as against real test mode); the
workflow's time is Temporal's (skipped with `skip`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
import stripe
import uvicorn
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.config import Settings
from core.payloads import DATA_CONVERTER
from core.temporal import client_metric_meter
from domain.catalog import default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer
from stripe_sim.settings import SimulatorSettings
from tests.conftest import wait_for
from tests.smtp_server import SmtpRecorder
from worker import build_email_sender, build_worker, sending_emails, worker_connections

APP_TOKEN = "e2e-app-token"
ADMIN_TOKEN = "e2e-admin-token"


class ApiServer:
    """The API on a free loopback port, in a thread with its own loop and Temporal client."""

    def __init__(self, temporal_target: str, namespace: str) -> None:
        self._target = temporal_target
        self._namespace = namespace
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def _serve(self, settings: Settings) -> None:
        client = await Client.connect(
            self._target, namespace=self._namespace, data_converter=DATA_CONVERTER
        )
        app = create_app(settings, temporal_client=client)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        await self._server.serve(sockets=[self._socket])

    def start(self, settings: Settings) -> None:
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(settings),))
        self._thread.start()
        deadline = time.monotonic() + 10
        while self._server is None or not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class Stack:
    env: WorkflowEnvironment
    sim: SimulatorServer
    stripe: stripe.StripeClient
    settings: Settings
    sessions: sessionmaker[Session]
    api: httpx.AsyncClient
    smtp: SmtpRecorder

    def emails_to(self, account_id: str) -> list[str]:
        """Subjects of the emails received for the account's customer (address from
        `new_customer`), in order."""
        address = f"{account_id}@example.com"
        return [m.message["Subject"] for m in self.smtp.messages if address in m.rcpt_tos]

    async def deliveries_done(self) -> None:
        """Every webhook the simulator owes has been answered by the gateway."""
        await asyncio.to_thread(self.sim.wait_idle, 20)

    async def entitlements(self, account_id: str) -> dict[str, Any]:
        response = await self.api.get(
            f"/v1/accounts/{account_id}/entitlements",
            headers={"Authorization": f"Bearer {APP_TOKEN}"},
        )
        response.raise_for_status()
        return dict(response.json())

    async def wait_for_entitlements(self, account_id: str, **expected: Any) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            answer = await self.entitlements(account_id)
            return answer if all(answer[k] == v for k, v in expected.items()) else None

        return await wait_for(probe, within=20, what=f"{account_id} entitlements {expected}")

    async def skip(self, duration: timedelta) -> None:
        await self.env.sleep(duration)

    def new_clock(self, frozen_time: int) -> str:
        return str(
            self.stripe.v1.test_helpers.test_clocks.create(
                params={"frozen_time": frozen_time, "name": f"e2e-{uuid4().hex[:6]}"}
            ).id
        )

    async def advance_clock(self, clock_id: str, frozen_time: int) -> None:
        """Advance a Stripe test clock as test-mode code does: ask, then poll until ready."""
        clocks = self.stripe.v1.test_helpers.test_clocks
        await asyncio.to_thread(clocks.advance, clock_id, {"frozen_time": frozen_time})

        async def ready() -> bool:
            clock = await asyncio.to_thread(clocks.retrieve, clock_id)
            return clock.status == "ready"

        await wait_for(ready, what=f"test clock {clock_id} ready")
        await self.deliveries_done()

    def new_customer(self, account_id: str, *, clock: str | None = None) -> str:
        params: dict[str, Any] = {
            "email": f"{account_id}@example.com",
            "metadata": {"account_id": account_id},
        }
        if clock:
            params["test_clock"] = clock
        return str(self.stripe.v1.customers.create(params=params).id)  # type: ignore[arg-type]

    def attach_card(self, customer_id: str, card: str = "pm_card_visa") -> str:
        method = self.stripe.v1.payment_methods.attach(card, params={"customer": customer_id})
        self.stripe.v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": method.id}}
        )
        return str(method.id)

    def price_id(self, lookup_key: str) -> str:
        [price] = self.stripe.v1.prices.list(params={"lookup_keys": [lookup_key]}).data
        return str(price.id)

    async def paying_account(
        self, lookup_key: str = "pro_monthly", *, clock: str | None = None
    ) -> tuple[str, str]:
        """A new account and its customer, paying for `lookup_key` with a working card, once
        the account's workflow shows it active."""
        account_id = f"acct_{uuid4().hex[:10]}"
        customer_id = self.new_customer(account_id, clock=clock)
        self.attach_card(customer_id)
        self.stripe.v1.subscriptions.create(
            params={
                "customer": customer_id,
                "items": [{"price": self.price_id(lookup_key)}],
                "metadata": {"account_id": account_id},
            }
        )
        await self.deliveries_done()
        await self.wait_for_entitlements(account_id, billing_state="active")
        return account_id, customer_id

    def negotiated_price(self, plan_lookup_key: str, unit_amount: int, deal: str) -> str:
        """An enterprise deal's price, made as in the Dashboard: on the product of the catalog
        price `plan_lookup_key`, with its own lookup key and no metadata."""
        plan_price = self.stripe.v1.prices.retrieve(self.price_id(plan_lookup_key))
        price = self.stripe.v1.prices.create(
            params={
                "product": str(plan_price.product),
                "unit_amount": unit_amount,
                "currency": plan_price.currency,
                "recurring": {"interval": "year"},
                "lookup_key": deal,
            }
        )
        return str(price.id)


@asynccontextmanager
async def running_stack(
    env: WorkflowEnvironment,
    database_url: str,
    sessions: sessionmaker[Session],
    **setting_overrides: Any,
) -> AsyncIterator[Stack]:
    """The service (API and worker) against a fresh simulator; `setting_overrides` are
    service settings (`automatic_tax=True`) for a test that needs other than the defaults."""
    sim_settings = SimulatorSettings(
        webhook_backoff_seconds=(0.05, 0.1, 0.2), webhook_max_attempts=5
    )
    task_queue = f"billing-e2e-{uuid4()}"
    with SimulatorServer(settings=sim_settings) as sim, SmtpRecorder() as smtp:
        settings = Settings(
            _env_file=None,
            database_url=database_url,
            smtp_port=smtp.port,
            stripe_simulator_url=sim.url,
            app_api_token=APP_TOKEN,
            admin_api_token=ADMIN_TOKEN,
            task_queue=task_queue,
            **setting_overrides,
        )
        async with worker_connections(settings) as connections:
            stripe_client = connections.stripe
            catalog = default_catalog()
            apply_catalog_changes(
                stripe_client, catalog, plan_catalog_changes(stripe_client, catalog)
            )

            api_server = ApiServer(
                env.client.service_client.config.target_host, env.client.namespace
            )
            endpoint = stripe_client.v1.webhook_endpoints.create(
                params={"url": f"{api_server.url}/webhooks/stripe", "enabled_events": ["*"]}
            )
            settings = settings.model_copy(update={"stripe_webhook_secret": endpoint.secret})
            api_server.start(settings)
            try:
                with ThreadPoolExecutor(
                    max_workers=settings.worker_max_concurrent_activities
                ) as executor:
                    email_sender = build_email_sender(
                        settings,
                        stripe_client=stripe_client,
                        sessions=sessions,
                        catalog=catalog,
                        mail=connections.mail,
                        meter=client_metric_meter(env.client),
                    )
                    worker = build_worker(
                        env.client,
                        settings,
                        stripe_client=stripe_client,
                        sessions=sessions,
                        catalog=catalog,
                        executor=executor,
                        mail=connections.mail,
                    )
                    async with (
                        worker,
                        sending_emails(email_sender),
                        httpx.AsyncClient(base_url=api_server.url) as api,
                    ):
                        yield Stack(env, sim, stripe_client, settings, sessions, api, smtp)
            finally:
                api_server.stop()
