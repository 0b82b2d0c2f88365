"""The SMTP sender against a real SMTP server: one connection for many messages, and a new
one when the kept one is gone."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import pytest

from core import smtp
from core.config import Settings
from core.smtp import SmtpSender
from tests.smtp_server import SmtpRecorder, free_port


def settings_for(port: int, **changes: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout_seconds=5,
        **changes,
    )


def message(subject: str) -> EmailMessage:
    composed = EmailMessage()
    composed["From"] = "billing@dataface.local"
    composed["To"] = "ada@example.com"
    composed["Subject"] = subject
    composed.set_content("Body text")
    return composed


async def test_messages_one_after_the_other_share_one_connection() -> None:
    with SmtpRecorder() as server:
        sender = SmtpSender(settings_for(server.port))
        for n in range(3):
            await sender.send_message(message(f"message {n}"))
        await sender.close()
    assert [m.message["Subject"] for m in server.messages] == [f"message {n}" for n in range(3)]
    assert len({m.peer for m in server.messages}) == 1


async def test_a_connection_the_server_dropped_is_replaced_without_an_error() -> None:
    server = SmtpRecorder()
    sender = SmtpSender(settings_for(server.port))
    with server:
        await sender.send_message(message("before the restart"))
    with server:  # the same port; the kept connection died with the old server
        await sender.send_message(message("after the restart"))
        await sender.close()
    subjects = [m.message["Subject"] for m in server.messages]
    assert subjects == ["before the restart", "after the restart"]
    assert len({m.peer for m in server.messages}) == 2


async def test_a_connection_idle_for_too_long_is_not_used_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(smtp, "IDLE_SECONDS", 0.0)
    with SmtpRecorder() as server:
        sender = SmtpSender(settings_for(server.port))
        await sender.send_message(message("first"))
        await sender.send_message(message("second"))
        await sender.close()
    assert len({m.peer for m in server.messages}) == 2


async def test_a_server_that_is_down_fails_the_send() -> None:
    sender = SmtpSender(settings_for(free_port()))
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await sender.send_message(message("nobody listens"))


def test_both_tls_modes_at_once_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        SmtpSender(settings_for(free_port(), smtp_starttls=True, smtp_implicit_tls=True))
