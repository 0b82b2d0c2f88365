"""A local SMTP server for development: every message it receives becomes an `.eml` file.

Nothing is relayed anywhere. Open a file with any mail client, or read it as text.

    with MailSink(Path(".data/mail"), host="127.0.0.1", port=1025):
        ...  # point SMTP_HOST / SMTP_PORT here
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import uuid4

from aiosmtpd.controller import Controller

log = logging.getLogger("dataface_billing.mail")


class _SaveToFolder:
    """aiosmtpd handler: write the message as received, then accept it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.folder / f"{stamp}-{uuid4().hex[:8]}.eml"
        await asyncio.to_thread(path.write_bytes, content)
        # Only the headers: the log line needs the subject, not the parsed body.
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(content)
        log.info("mail to %s: %s (%s)", ", ".join(envelope.rcpt_tos), headers["Subject"], path.name)
        return "250 Message accepted for delivery"


class MailSink:
    """An SMTP server on a thread of its own, storing messages in `folder`."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.folder = folder
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        controller = Controller(_SaveToFolder(self.folder), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        log.info("mail sink on %s:%d, storing in %s", self.host, self.port, self.folder)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
