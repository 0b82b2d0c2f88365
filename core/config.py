"""Settings from the environment (and an optional `.env`), in one place."""

from __future__ import annotations

from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SIMULATOR_URL = "http://127.0.0.1:12111"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///.data/billing.db",
        description="SQLAlchemy URL; PostgreSQL in production (postgresql+psycopg://...).",
    )
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "billing"

    stripe_secret_key: str | None = Field(
        None, description="A real Stripe key; unset means the local Stripe simulator."
    )
    stripe_simulator_url: str = SIMULATOR_URL
    stripe_webhook_secret: str = Field("whsec_local_development", min_length=1)
    webhook_tolerance_seconds: int = 300
    webhook_max_body_bytes: int = 512 * 1024

    app_api_token: str = Field("dev-app-token", min_length=1)
    admin_api_token: str = Field("dev-admin-token", min_length=1)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_starttls: bool = Field(False, description="Upgrade the connection with STARTTLS.")
    smtp_implicit_tls: bool = Field(False, description="TLS from the first byte (port 465).")
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_seconds: float = 10
    email_sender: str = "Dataface Billing <billing@dataface.local>"
    billing_portal_url: str = Field(
        "http://127.0.0.1:8000/billing",
        description="Where emails send customers to update their card or manage the plan.",
    )

    checkout_success_url: str = Field(
        "http://127.0.0.1:8000/billing/done", description="Where Checkout returns the customer."
    )
    checkout_cancel_url: str = "http://127.0.0.1:8000/billing/canceled"


@cache
def get_settings() -> Settings:
    return Settings()
