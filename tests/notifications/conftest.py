"""Fixtures for the email tests: a real SMTP server, a fake Stripe, the activities."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import pytest
import stripe
from sqlalchemy.orm import Session, sessionmaker

from activities.notifications import NotificationActivities
from core.config import Settings
from core.smtp import SmtpSender
from domain.catalog import default_catalog
from tests.smtp_server import SmtpRecorder

PORTAL_URL = "https://billing.example.test/portal"


@dataclass
class FakeStripe:
    """The part of a StripeClient the email activity uses: `GET /v1/customers/{id}`, raw."""

    emails: dict[str, str | None] = field(default_factory=dict)
    retrieved: list[str] = field(default_factory=list)

    async def raw_request_async(self, method: str, path: str, **params: Any) -> Any:
        customer = path.removeprefix("/v1/customers/")
        assert (method, path) == ("get", f"/v1/customers/{customer}"), (method, path)
        self.retrieved.append(customer)
        if customer not in self.emails:
            raise stripe.InvalidRequestError(
                f"No such customer: '{customer}'", "id", code="resource_missing"
            )
        body: dict[str, Any] = {"id": customer, "object": "customer"}
        if self.emails[customer] is not None:
            body["email"] = self.emails[customer]
        return SimpleNamespace(data=body)

    def add_customer(self, email: str | None) -> str:
        customer_id = f"cus_{uuid4().hex[:14]}"
        self.emails[customer_id] = email
        return customer_id


def smtp_settings(port: int, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_timeout_seconds": 5,
        "billing_portal_url": PORTAL_URL,
        **changes,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def smtp_server() -> Iterator[SmtpRecorder]:
    with SmtpRecorder() as server:
        yield server


@pytest.fixture
def fake_stripe() -> FakeStripe:
    return FakeStripe()


def make_activities(
    sessions: sessionmaker[Session], fake_stripe: FakeStripe, port: int
) -> NotificationActivities:
    settings = smtp_settings(port)
    return NotificationActivities(
        sessions,
        cast(stripe.StripeClient, fake_stripe),
        default_catalog(),
        settings,
        SmtpSender(settings),
    )
