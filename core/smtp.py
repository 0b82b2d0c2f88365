"""The one way this service reaches SMTP: hand a finished message to the configured server."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from email.message import Message

import aiosmtplib

from core.config import Settings

# A connection is kept for the next message only this long: servers close idle ones after a
# minute or more (RFC 5321 asks for at least five), and one found closed costs a reconnect.
IDLE_SECONDS = 30.0
# Connections kept open between messages; more are opened while more messages are in flight.
KEEP_OPEN = 4


@dataclass
class _Idle:
    client: aiosmtplib.SMTP
    since: float


class SmtpSender:
    """Sends through connections kept open between messages, so that a message costs its
    MAIL, RCPT and DATA only, not a connection, EHLO, TLS handshake and login each time.

    Connections belong to the event loop that opened them: one sender per loop.
    """

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_starttls and settings.smtp_implicit_tls:
            raise ValueError("set smtp_starttls or smtp_implicit_tls, not both")
        self._settings = settings
        self._idle: list[_Idle] = []

    async def send_message(self, message: Message) -> None:
        """Deliver `message` to its recipients through the configured SMTP server.

        Raises `aiosmtplib.SMTPException` when the server is unreachable or refuses it.
        """
        kept = self._take_idle()
        if kept is not None:
            try:
                await kept.send_message(message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # The server closed it while it sat idle; nothing was accepted: start over.
                kept.close()
            except aiosmtplib.SMTPResponseException as err:
                kept.close()
                if err.code != 421:  # 421: closing the channel, message not accepted
                    raise
            except BaseException:
                kept.close()
                raise
            else:
                await self._keep(kept)
                return
        client = await self._connect()
        try:
            await client.send_message(message)
        except BaseException:
            client.close()
            raise
        await self._keep(client)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for entry in idle:
            await _quit(entry.client)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            entry = self._idle.pop()
            if entry.client.is_connected and now - entry.since < IDLE_SECONDS:
                return entry.client
            entry.client.close()
        return None

    async def _keep(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < KEEP_OPEN:
            self._idle.append(_Idle(client, time.monotonic()))
        else:
            await _quit(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=settings.smtp_implicit_tls,
            # Explicit, never None: aiosmtplib would otherwise upgrade whenever offered.
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
        await client.connect()
        return client


async def _quit(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await client.quit()
    client.close()
