"""A real SMTP server for tests (aiosmtpd on 127.0.0.1) that keeps every message it accepts.

    with SmtpRecorder() as server:
        settings = Settings(smtp_host=server.host, smtp_port=server.port)
        ...
        await wait_for(lambda: len(server.messages) == 1, what="the email")

It can be stopped and started again on the same port, to test a mail server that goes away.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

from aiosmtpd.controller import Controller


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    # The client's address and port: messages from one connection share it.
    peer: tuple[str, int]

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "no text/plain part"
        return cast(EmailMessage, part).get_content()

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None, "no text/html part"
        return cast(EmailMessage, part).get_content()


class _Collect:
    def __init__(self, recorder: SmtpRecorder) -> None:
        self._recorder = recorder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self._recorder._received(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=cast(EmailMessage, parsed),
                peer=tuple(session.peer),
            )
        )
        # The client's send returns only after this reply: the message is recorded by then.
        return "250 Message accepted for delivery"


class SmtpRecorder:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._messages: list[ReceivedMessage] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        assert self._controller is None, "already running"
        # A fresh controller each time: a stopped one has closed its event loop.
        controller = Controller(_Collect(self), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _received(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)

    def __enter__(self) -> SmtpRecorder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
