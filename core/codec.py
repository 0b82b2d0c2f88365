"""Workflow payloads encrypted before they reach Temporal: history holds emails and names.

A `PayloadCodec` runs in every client and worker of this service (and in the codec server the
Web UI calls), so the Temporal server only ever stores ciphertext. AES-256-GCM with a random
96-bit nonce per payload; the key id travels in the payload's metadata, so keys rotate without
re-encrypting history: new payloads use the newest key, old ones decrypt with whichever
configured key they name. Payloads that were never encrypted pass through unchanged, so turning
the codec on for an existing cluster keeps its older histories readable.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12


class PayloadDecryptionError(ValueError):
    """A payload that is encrypted but cannot be decrypted: unknown key, or tampered with."""


@dataclass(frozen=True)
class CodecKey:
    key_id: str
    secret: bytes

    def __repr__(self) -> str:
        # Keys end up in tracebacks and debug output: only the id may show.
        return f"CodecKey(key_id={self.key_id!r})"


def parse_codec_keys(spec: str) -> list[CodecKey]:
    """`id:base64,id:base64` (newest first) as keys; a ValueError names what is wrong.

    The messages never quote the key material: they end up in startup errors and logs.
    """
    keys: list[CodecKey] = []
    for position, entry in enumerate(spec.split(","), start=1):
        key_id, separator, encoded = entry.strip().partition(":")
        if not separator or not key_id or not encoded:
            raise ValueError(f"entry {position} is not `id:base64-key`")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except binascii.Error as err:
            raise ValueError(f"key {key_id!r} is not valid base64") from err
        if len(secret) != KEY_BYTES:
            raise ValueError(f"key {key_id!r} is {len(secret)} bytes; AES-256 needs {KEY_BYTES}")
        if any(key.key_id == key_id for key in keys):
            raise ValueError(f"key id {key_id!r} is listed twice")
        keys.append(CodecKey(key_id, secret))
    return keys


def new_codec_key_spec(key_id: str) -> str:
    """A fresh `id:base64` entry for PAYLOAD_CODEC_KEYS."""
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """Encrypts with the first key, decrypts with any key by the id in the payload."""

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise ValueError("the codec needs at least one key")
        self._current = keys[0]
        self._ciphers = {key.key_id: AESGCM(key.secret) for key in keys}

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._current.key_id
        nonce = os.urandom(NONCE_BYTES)
        # The key id is authenticated too: relabelling a payload with another id fails.
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(f"payload encrypted with unknown key {key_id!r}")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag as err:
            raise PayloadDecryptionError(
                f"payload under key {key_id!r} failed authentication (altered or truncated)"
            ) from err
        return Payload.FromString(plain)


def codec_from_spec(spec: str | None) -> EncryptionCodec | None:
    """The codec for a PAYLOAD_CODEC_KEYS value; None when encryption is off."""
    return EncryptionCodec(parse_codec_keys(spec)) if spec else None
