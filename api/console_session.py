"""The support console's sign-in: a signed, expiring session in an HttpOnly cookie, and the
CSRF token every form carries.

The cookie holds the operator's name, its expiry and the session's CSRF token, signed with
HMAC-SHA256 under `CONSOLE_SESSION_SECRET`; nothing is stored server-side, so any API process
reads it. A form is accepted only with the CSRF token of the session that posts it: another
site can make a signed-in browser post, but cannot read the token out of our pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.config import Settings

SESSION_COOKIE = "console_session"
# Before sign-in there is no session: the sign-in form's CSRF token is a cookie of its own
# (double submit), so another site cannot sign a browser in under its own operator.
SIGN_IN_COOKIE = "console_sign_in"
NOTICE_COOKIE = "console_notice"
COOKIE_PATH = "/console"


@dataclass(frozen=True)
class ConsoleSession:
    operator: str
    csrf_token: str
    expires_at: datetime

    def accepts(self, csrf_token: str | None) -> bool:
        return csrf_token is not None and hmac.compare_digest(csrf_token, self.csrf_token)


def sign(value: dict[str, str | int], secret: str) -> str:
    """`value` as JSON, with its signature: readable, not forgeable."""
    body = base64.urlsafe_b64encode(json.dumps(value, sort_keys=True).encode()).decode()
    return f"{body}.{_signature(body, secret)}"


def unsign(signed: str | None, secret: str) -> dict[str, str | int] | None:
    """The value `sign` made, or None for anything else (tampered, truncated, not ours)."""
    if not signed or "." not in signed:
        return None
    body, signature = signed.rsplit(".", 1)
    if not hmac.compare_digest(signature, _signature(body, secret)):
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(body.encode()))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _signature(body: str, secret: str) -> str:
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def new_session(operator: str, settings: Settings, now: datetime) -> tuple[ConsoleSession, str]:
    """A session for `operator` and its cookie value."""
    session = ConsoleSession(
        operator=operator,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=now + timedelta(minutes=settings.console_session_minutes),
    )
    cookie = sign(
        {
            "operator": session.operator,
            "csrf": session.csrf_token,
            "expires": int(session.expires_at.timestamp()),
        },
        settings.console_session_secret.get_secret_value(),
    )
    return session, cookie


def read_session(cookie: str | None, settings: Settings, now: datetime) -> ConsoleSession | None:
    """The session the cookie holds, or None when it is missing, forged or expired."""
    value = unsign(cookie, settings.console_session_secret.get_secret_value())
    if value is None:
        return None
    expires_at = datetime.fromtimestamp(int(value["expires"]), tz=UTC)
    if expires_at <= now:
        return None
    return ConsoleSession(str(value["operator"]), str(value["csrf"]), expires_at)


def operator_for(token: str, typed_name: str, settings: Settings) -> str | None:
    """Who signs in with `token`: the operator it belongs to, or the typed name with the admin
    token; None when the token is nobody's (or the admin token comes without a name)."""
    for name, operator_token in settings.console_operator_tokens.items():
        if hmac.compare_digest(token.encode(), operator_token.encode()):
            return name
    if hmac.compare_digest(token.encode(), settings.admin_api_token.encode()):
        return typed_name.strip() or None
    return None
