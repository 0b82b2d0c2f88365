"""The codec server the Temporal Web UI and CLI call (`api/routes/codec.py`): operators only,
the Web UI's origin only, payloads in protobuf JSON."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from temporalio.api.common.v1 import Payload

from core.codec import KEY_ID_METADATA
from core.config import Settings
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, ClientFactory
from tests.observability.test_codec import NEW_KEYS, codec, payload

UI_ORIGIN = "http://ui.billing.test:8080"


@pytest.fixture
def codec_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "payload_codec_keys": Settings(
                _env_file=None, payload_codec_keys=NEW_KEYS
            ).payload_codec_keys,
            "codec_cors_origins": UI_ORIGIN,
        }
    )


def as_json(*payloads: Payload) -> dict[str, object]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def from_json(body: dict[str, list[dict[str, object]]]) -> list[Payload]:
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},  # type: ignore[union-attr]
            data=base64.b64decode(p.get("data", "")),  # type: ignore[arg-type]
        )
        for p in body["payloads"]
    ]


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Namespace": "default"}


async def test_the_codec_server_encodes_and_decodes_for_operators(
    make_client: ClientFactory, codec_settings: Settings
) -> None:
    original = payload({"email": "ada@example.com"})
    async with make_client(temporal_client=None, settings=codec_settings) as api:
        encoded = await api.post("/codec/encode", json=as_json(original), headers=ADMIN)
        [encrypted] = from_json(encoded.json())
        decoded = await api.post("/codec/decode", json=as_json(encrypted), headers=ADMIN)

    assert encoded.status_code == decoded.status_code == 200
    assert encrypted.metadata[KEY_ID_METADATA] == b"2026-07"
    assert from_json(decoded.json()) == [original]


async def test_the_codec_server_wants_the_admin_token(
    make_client: ClientFactory, codec_settings: Settings
) -> None:
    body = as_json(payload("x"))
    async with make_client(temporal_client=None, settings=codec_settings) as api:
        answers = [
            await api.post("/codec/decode", json=body),
            await api.post("/codec/decode", json=body, headers={"Authorization": APP_TOKEN}),
            await api.post(
                "/codec/decode", json=body, headers={"Authorization": f"Bearer {APP_TOKEN}"}
            ),
        ]

    assert [a.status_code for a in answers] == [401, 401, 401]


async def test_a_tampered_payload_is_a_bad_request(
    make_client: ClientFactory, codec_settings: Settings
) -> None:
    [encrypted] = await codec(NEW_KEYS).encode([payload("x")])
    tampered = Payload(metadata=dict(encrypted.metadata), data=encrypted.data[:-1] + b"\0")
    async with make_client(temporal_client=None, settings=codec_settings) as api:
        answer = await api.post("/codec/decode", json=as_json(tampered), headers=ADMIN)
        garbage = await api.post("/codec/decode", content=b"not json", headers=ADMIN)

    assert answer.status_code == 400
    assert "failed authentication" in answer.json()["detail"]
    assert garbage.status_code == 400


async def test_the_web_ui_origin_may_call_it_from_the_browser(
    make_client: ClientFactory, codec_settings: Settings
) -> None:
    preflight = {
        "Origin": UI_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with make_client(temporal_client=None, settings=codec_settings) as api:
        allowed = await api.options("/codec/decode", headers=preflight)
        other = await api.options(
            "/codec/decode", headers={**preflight, "Origin": "http://evil.test"}
        )
        posted = await api.post(
            "/codec/decode", json=as_json(payload("x")), headers={**ADMIN, "Origin": UI_ORIGIN}
        )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert posted.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_without_keys_there_is_no_codec_server(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/codec/decode", content=json.dumps(as_json(payload("x"))), headers=ADMIN
    )

    assert answer.status_code == 404
