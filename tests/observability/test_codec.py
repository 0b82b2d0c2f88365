"""The payload codec: AES-GCM, key ids, rotation (its server, the codec router, is tested in
`tests/api/routes/test_codec.py`)."""

from __future__ import annotations

import base64

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
from core.payloads import DATA_CONVERTER

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
