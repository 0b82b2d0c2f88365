"""Rendering one email kind into its subject, plain-text and HTML parts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

# Every email this service sends; each has `<kind>.subject.j2`, `.txt.j2` and `.html.j2`.
EMAIL_KINDS: tuple[str, ...] = (
    "payment_failed",
    "payment_reminder",
    "final_reminder",
    "access_restricted",
    "payment_recovered",
    "payment_action_required",
    "payment_incomplete",
    "trial_ending",
    "subscription_started",
    "subscription_ended",
    "subscription_paused",
    "cancellation_scheduled",
    "cancellation_revoked",
    "plan_changed",
    "plan_upgraded",
    "downgrade_scheduled",
    "downgrade_applied",
)


class EmailRenderError(ValueError):
    """An email cannot be rendered: retrying will not help, the input or a template is wrong."""


class UnknownEmailKind(EmailRenderError):
    pass


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _autoescape(template_name: str | None) -> bool:
    # Only the HTML part is markup; escaping the subject or text would show "&amp;" to people.
    return template_name is not None and template_name.endswith(".html.j2")


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("notifications", "templates"),
    autoescape=_autoescape,
    # A variable a template needs but was not given is an error, never an empty string.
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def render_email(kind: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render `kind` with `context`; raises `EmailRenderError` for a bad kind or a missing
    variable."""
    if kind not in EMAIL_KINDS:
        raise UnknownEmailKind(f"unknown email kind {kind!r}")
    try:
        subject = _ENVIRONMENT.get_template(f"{kind}.subject.j2").render(context)
        text = _ENVIRONMENT.get_template(f"{kind}.txt.j2").render(context)
        html = _ENVIRONMENT.get_template(f"{kind}.html.j2").render(context)
    except jinja2.UndefinedError as err:
        raise EmailRenderError(f"email {kind!r}: {err.message}") from err
    # A header is one line.
    return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)
