"""The payload codec (AES-GCM, key ids, rotation) and the codec server the Web UI calls."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from temporalio.api.common.v1 import Payload

from core.codec import (
    KEY_ID_METADATA,
    EncryptionCodec,
    PayloadDecryptionError,
    codec_from_spec,
    new_codec_key_spec,
    parse_codec_keys,
)
from core.config import Settings
from core.payloads import DATA_CONVERTER
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, ClientFactory

UI_ORIGIN = "http://ui.billing.test:8080"
OLD_KEYS = new_codec_key_spec("2026-01")
NEW_KEYS = f"{new_codec_key_spec('2026-07')},{OLD_KEYS}"


def payload(value: object) -> Payload:
    [encoded] = DATA_CONVERTER.payload_converter.to_payloads([value])
    return encoded


def value_of(decoded: Payload) -> object:
    [result] = DATA_CONVERTER.payload_converter.from_payloads([decoded])
    return result


def codec(spec: str) -> EncryptionCodec:
    built = codec_from_spec(spec)
    assert built is not None
    return built


async def test_round_trip_hides_the_plaintext_and_names_the_key() -> None:
    secret = {"email": "ada@example.com", "name": "Ada Lovelace"}
    old = codec(OLD_KEYS)

    [encrypted] = await old.encode([payload(secret)])
    [decrypted] = await old.decode([encrypted])

    assert b"ada@example.com" not in encrypted.SerializeToString()
    assert encrypted.metadata["encoding"] == b"binary/encrypted"
    assert encrypted.metadata[KEY_ID_METADATA] == b"2026-01"
    assert value_of(decrypted) == secret


async def test_rotation_encrypts_with_the_newest_key_and_still_reads_the_old() -> None:
    written_before = (await codec(OLD_KEYS).encode([payload("before rotation")]))[0]
    rotated = codec(NEW_KEYS)

    [written_after] = await rotated.encode([payload("after rotation")])
    decoded = await rotated.decode([written_before, written_after])

    assert written_after.metadata[KEY_ID_METADATA] == b"2026-07"
    assert [value_of(p) for p in decoded] == ["before rotation", "after rotation"]
    # Dropping the old key before its payloads are gone makes them unreadable, loudly.
    with pytest.raises(PayloadDecryptionError, match="unknown key '2026-01'"):
        await codec(NEW_KEYS.split(",")[0]).decode([written_before])


async def test_a_tampered_or_relabelled_payload_is_refused() -> None:
    rotated = codec(NEW_KEYS)
    [encrypted] = await rotated.encode([payload({"plan": "pro"})])

    flipped = bytearray(encrypted.data)
    flipped[-1] ^= 1
    tampered = Payload(metadata=dict(encrypted.metadata), data=bytes(flipped))
    relabelled = Payload(
        metadata={**encrypted.metadata, KEY_ID_METADATA: b"2026-01"}, data=encrypted.data
    )

    for bad in (tampered, relabelled):
        with pytest.raises(PayloadDecryptionError, match="failed authentication"):
            await rotated.decode([bad])


async def test_payloads_written_before_encryption_pass_through() -> None:
    plain = payload({"account_id": "acct_1"})

    [decoded] = await codec(OLD_KEYS).decode([plain])

    assert decoded == plain


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("no-separator", "is not `id:base64-key`"),
        ("k1:not base64!", "not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "is 5 bytes; AES-256 needs 32"),
        (f"{new_codec_key_spec('k1')},{new_codec_key_spec('k1')}", "listed twice"),
    ],
)
def test_malformed_keys_are_refused_without_quoting_them(spec: str, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_codec_keys(spec)

    message = str(raised.value)
    assert problem in message
    secrets = [entry.partition(":")[2] for entry in spec.split(",")]
    assert not any(secret and secret in message for secret in secrets)


# The codec server: the Web UI posts {"payloads": [...]} in protobuf JSON.


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
