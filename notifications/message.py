"""A rendered email as the MIME message that goes over SMTP."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from notifications.render import RenderedEmail

KEY_HEADER = "X-Dataface-Email-Key"


def message_id_for(key: str, sender: str) -> str:
    """The same Message-ID for every attempt at one email key.

    If a crash lands between the SMTP server accepting a message and the outbox saying `sent`,
    the retry sends it again; with the same Message-ID, mail systems can tell it is a repeat.
    Hashed because a key may hold characters a Message-ID may not.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "dataface.local"
    return f"<{digest}@{domain}>"


def compose_message(
    *, key: str, sender: str, recipient: str, email: RenderedEmail, now: datetime | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = email.subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_for(key, sender)
    # Tells mail servers not to answer it with vacation replies (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    message[KEY_HEADER] = key
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message
