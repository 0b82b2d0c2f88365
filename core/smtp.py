"""The one way this service reaches SMTP: hand a finished message to the configured server."""

from __future__ import annotations

from email.message import Message

import aiosmtplib

from core.config import Settings


async def send_message(settings: Settings, message: Message) -> None:
    """Deliver `message` to its recipients through the configured SMTP server.

    Raises `aiosmtplib.SMTPException` when the server is unreachable or refuses the message.
    """
    if settings.smtp_starttls and settings.smtp_implicit_tls:
        raise ValueError("set smtp_starttls or smtp_implicit_tls, not both")
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        use_tls=settings.smtp_implicit_tls,
        # Explicit, never None: aiosmtplib would otherwise upgrade whenever offered.
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_seconds,
    )
