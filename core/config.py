"""Settings from the environment (and an optional `.env`), in one place."""

from __future__ import annotations

from functools import cache
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    IPvAnyAddress,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.codec import parse_codec_keys

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
    temporal_tls_cert: str | None = Field(
        None, description="Path of the client certificate (PEM) for mTLS to Temporal."
    )
    temporal_tls_key: str | None = Field(
        None, description="Path of that certificate's private key (PEM)."
    )
    temporal_api_key: SecretStr | None = Field(
        None, description="A Temporal Cloud API key (TLS is then on)."
    )
    payload_codec_keys: SecretStr | None = Field(
        None,
        description="`id:base64-32-bytes` pairs, comma-separated, newest first: workflow "
        "payloads are encrypted with the first and decrypted with any. Unset: no encryption.",
    )
    codec_cors_origins: str = Field(
        "",
        description="Comma-separated browser origins (the Temporal Web UI) allowed to call "
        "the codec endpoints.",
    )
    worker_max_concurrent_activities: int = Field(
        16, gt=0, description="Activities one worker runs at once (each on its own thread)."
    )
    worker_max_concurrent_workflow_tasks: int = Field(
        100, ge=2, description="Workflow tasks one worker runs at once."
    )
    worker_max_cached_workflows: int = Field(
        1000,
        ge=0,
        description="Account workflows one worker keeps in memory; an event for one not kept "
        "replays its run from the history first.",
    )
    metrics_port: int | None = Field(
        None, gt=0, lt=65536, description="Port of the worker's Prometheus endpoint; unset: off."
    )
    metrics_host: IPvAnyAddress = Field(
        IPv4Address("127.0.0.1"),
        description="Address the worker's Prometheus endpoint listens on: loopback unless a "
        "scraper on another host must reach it (0.0.0.0 in a container).",
    )
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    stripe_secret_key: str | None = Field(
        None, description="A real Stripe key; unset means the local Stripe simulator."
    )
    stripe_simulator_url: str = SIMULATOR_URL
    stripe_webhook_secret: str = Field("whsec_local_development", min_length=1)
    webhook_tolerance_seconds: int = 300
    webhook_max_body_bytes: int = 512 * 1024
    api_max_body_bytes: int = Field(
        64 * 1024,
        gt=0,
        description="Larger request bodies are refused on every route but the webhook's "
        "(and the codec's, bounded by Temporal's message size).",
    )

    entitlement_cache_size: int = Field(
        100_000,
        ge=0,
        description="Entitlement answers each API process keeps, current from the change log; "
        "0: every read asks the database.",
    )
    entitlement_cache_poll_seconds: float = Field(
        0.05,
        gt=0,
        le=0.5,
        description="How often the API reads the change log: cached answers lag the database "
        "by at most this (plus the read).",
    )

    app_api_token: str = Field("dev-app-token", min_length=1)
    admin_api_token: str = Field("dev-admin-token", min_length=1)

    console_operator_tokens: dict[str, str] = Field(
        default_factory=dict,
        description='The support console\'s operators, as JSON `{"name": "token"}`: each '
        "signs in with their own token and is the actor of what they do. The admin token "
        "signs in too, with the operator's name typed on the sign-in page.",
    )
    console_session_secret: SecretStr = Field(
        SecretStr("dev-console-session-secret"),
        description="Signs the console's session cookies: the same on every API process, "
        "long and random in production (changing it signs everybody out).",
    )
    console_session_minutes: int = Field(480, gt=0, description="How long a console sign-in lasts.")
    temporal_web_url: str = Field(
        "http://127.0.0.1:8233",
        description="The Temporal Web UI the console links each account's workflow to.",
    )

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
    automatic_tax: bool = Field(
        False,
        description="Stripe Tax on new subscriptions: Checkout asks for the billing address "
        "(and an optional tax id) and Stripe adds the tax of the customer's country.",
    )
    checkout_allow_promotion_codes: bool = Field(
        True, description="Whether Checkout offers the customer a promotion code field."
    )

    reconcile_events_every_minutes: int = Field(
        10, gt=0, description="How often Stripe's event list is replayed for lost webhooks."
    )
    sweep_every_minutes: int = Field(
        60, gt=0, description="How often every Stripe subscription is compared with the store."
    )

    @model_validator(mode="before")
    @classmethod
    def empty_means_unset(cls, values: Any) -> Any:
        """`SMTP_USERNAME=` in an env file or compose means "not set" for optional settings."""
        if not isinstance(values, dict):
            return values
        optional = {name for name, field in cls.model_fields.items() if field.default is None}
        return {
            name: value
            for name, value in values.items()
            if not (name in optional and isinstance(value, str) and not value.strip())
        }

    @field_validator("log_level", mode="before")
    @classmethod
    def level_in_any_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("payload_codec_keys")
    @classmethod
    def codec_keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_codec_keys(value.get_secret_value())
        return value

    @field_validator("temporal_tls_cert", "temporal_tls_key")
    @classmethod
    def tls_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no file at {value}")
        return value

    @model_validator(mode="after")
    def tls_cert_and_key_together(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError(
                "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together: set both or neither"
            )
        return self

    @property
    def codec_cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.codec_cors_origins.split(",") if origin.strip()]


def describe_settings_errors(error: ValidationError) -> str:
    """What is wrong with the environment, by variable name, without echoing any value: the
    value may be a secret."""
    problems = []
    for item in error.errors():
        names = ", ".join(str(part).upper() for part in item["loc"])
        reason = item["msg"].removeprefix("Value error, ")
        problems.append(f"{names}: {reason}" if names else reason)
    return (
        f"dataface-billing cannot start: {len(problems)} setting(s) are wrong. "
        + "; ".join(problems)
        + ". Fix the environment (or .env) and start again; README.md lists every setting."
    )


@cache
def get_settings() -> Settings:
    return Settings()
