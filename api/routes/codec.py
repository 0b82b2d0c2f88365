"""The codec server: the Temporal Web UI and CLI send encrypted payloads here to read them.

Temporal's codec server protocol: `POST {endpoint}/decode` and `/encode` with a JSON body
`{"payloads": [...]}` in protobuf's JSON form (bytes as base64), answered in the same shape.
Only operators may decrypt (admin token), and only the configured browser origins (the Web
UI's) may call it from a page, so it is mounted as its own app with its own CORS policy.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payloads

from api.deps import AdminTokenDep
from core.codec import EncryptionCodec, PayloadDecryptionError
from core.config import Settings

MOUNT_PATH = "/codec"
# Temporal's gRPC messages are at most 4 MiB: no batch of payloads the Web UI sends is larger.
MAX_BODY_BYTES = 4 * 1024 * 1024
# The Web UI names the namespace; the keys are the same for every namespace here.
UI_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]


def codec_app(settings: Settings, codec: EncryptionCodec) -> FastAPI:
    app = FastAPI(title="Dataface Billing codec server", docs_url=None, redoc_url=None)
    # The admin-token dependency reads the settings from the app that serves the request.
    app.state.settings = settings
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.codec_cors_origin_list,
        allow_methods=["POST"],
        allow_headers=UI_HEADERS,
        allow_credentials=True,
    )

    @app.post("/encode")
    async def encode(_: AdminTokenDep, request: Request) -> Response:
        payloads = _parse(await request.body())
        encoded = await codec.encode(payloads.payloads)
        return _answer(Payloads(payloads=encoded))

    @app.post("/decode")
    async def decode(_: AdminTokenDep, request: Request) -> Response:
        payloads = _parse(await request.body())
        try:
            decoded = await codec.decode(payloads.payloads)
        except PayloadDecryptionError as err:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(err)) from err
        return _answer(Payloads(payloads=decoded))

    return app


def _parse(body: bytes) -> Payloads:
    try:
        return json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError) as err:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail='expected {"payloads": [...]} in protobuf JSON'
        ) from err


def _answer(payloads: Payloads) -> Response:
    return Response(json_format.MessageToJson(payloads), media_type="application/json")
