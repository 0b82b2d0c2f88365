"""Every email kind renders; a missing variable fails loudly; context and MIME details."""

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from importlib import resources

import pytest

from domain.catalog import default_catalog
from domain.lifecycle import Notice
from notifications.context import email_context, format_date, format_money
from notifications.message import compose_message, message_id_for
from notifications.render import (
    EMAIL_KINDS,
    EmailRenderError,
    RenderedEmail,
    UnknownEmailKind,
    render_email,
)

PORTAL = "https://billing.example.test/portal"
INVOICE = "https://invoice.example.test/i/in_123?locale=en&x=<y>"
FULL = {
    "plan": "team",
    "previous_plan": "pro",
    "interval": "month",
    "seats": "3",
    "grace_ends_at": "2026-12-01T09:30:00+00:00",
    "period_ends_at": "2026-12-24T00:00:00+00:00",
    "trial_ends_at": "2026-12-10T00:00:00+00:00",
    "cancel_at": "2027-01-24T00:00:00+00:00",
    "open_invoice_url": INVOICE,
}
DUNNING = ("payment_failed", "payment_reminder", "final_reminder")
# Per kind, the keys of the workflow's context the email cannot go without ("plan" for all).
REQUIRED = {
    **{kind: ("plan", "grace_ends_at") for kind in DUNNING},
    "payment_action_required": ("plan", "open_invoice_url"),
    "trial_ending": ("plan", "trial_ends_at"),
    "cancellation_scheduled": ("plan", "cancel_at"),
    "downgrade_scheduled": ("plan", "period_ends_at"),
}


def render(kind: str, raw: dict[str, str]) -> RenderedEmail:
    return render_email(kind, email_context(raw, default_catalog(), billing_portal_url=PORTAL))


@pytest.mark.parametrize("kind", EMAIL_KINDS)
def test_every_kind_renders_text_and_html_with_a_full_context(kind: str) -> None:
    email = render(kind, FULL)

    assert email.subject and "\n" not in email.subject
    for part in (email.subject + email.text, email.html):
        assert "None" not in part
    assert "Team" in email.text and "Team" in email.html
    assert email.text.startswith("Hi,\n\n") and "\n\n\n" not in email.text
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert PORTAL in email.text and PORTAL in email.html


@pytest.mark.parametrize("kind", EMAIL_KINDS)
def test_every_kind_renders_with_only_the_plan(kind: str) -> None:
    raw = {key: FULL[key] for key in REQUIRED.get(kind, ("plan",))}
    email = render(kind, raw)
    assert "None" not in email.text


@pytest.mark.parametrize(
    ("kind", "key"), [(kind, key) for kind in EMAIL_KINDS for key in REQUIRED.get(kind, ("plan",))]
)
def test_a_missing_required_variable_fails_loudly(kind: str, key: str) -> None:
    raw = {k: v for k, v in FULL.items() if k != key}
    with pytest.raises(EmailRenderError, match=kind):
        render(kind, raw)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(UnknownEmailKind, match="payment_exploded"):
        render_email("payment_exploded", {})


@pytest.mark.parametrize("kind", DUNNING)
def test_dunning_emails_give_the_grace_end_and_the_invoice_link(kind: str) -> None:
    email = render(kind, FULL)
    assert "1 December 2026" in email.text and "1 December 2026" in email.html
    assert "$45.00" in email.text
    assert f"Pay the open invoice: {INVOICE}" in email.text
    # Escaped in the HTML part, as-is in the text part.
    assert 'href="https://invoice.example.test/i/in_123?locale=en&amp;x=&lt;y&gt;"' in email.html


@pytest.mark.parametrize("kind", DUNNING)
def test_without_an_open_invoice_dunning_emails_link_the_billing_portal(kind: str) -> None:
    raw = {k: v for k, v in FULL.items() if k != "open_invoice_url"}
    email = render(kind, raw)
    assert f"Update your card: {PORTAL}" in email.text
    assert "invoice.example.test" not in email.text + email.html


def test_payment_action_required_links_the_hosted_invoice() -> None:
    email = render("payment_action_required", FULL)
    assert f"Confirm the payment: {INVOICE}" in email.text
    assert "in_123" in email.html


def test_only_the_html_part_is_escaped() -> None:
    context = email_context({**FULL, "plan": "pro"}, default_catalog(), billing_portal_url=PORTAL)
    email = render_email("plan_changed", {**context, "plan_name": "Pro & <Co>"})
    assert email.subject == "Your Dataface plan is now Pro & <Co>"
    assert "you're now on the Pro & <Co> plan. The new price is $29.00 per month." in email.text
    assert "the Pro &amp; &lt;Co&gt; plan" in email.html


def test_every_lifecycle_notice_has_an_email() -> None:
    assert {str(notice) for notice in Notice} <= set(EMAIL_KINDS)


def test_each_kind_has_exactly_its_three_templates() -> None:
    folder = resources.files("notifications").joinpath("templates")
    names = {entry.name for entry in folder.iterdir() if entry.name.endswith(".j2")}
    kinds = {name.split(".")[0] for name in names if not name.startswith("_")}
    assert kinds == set(EMAIL_KINDS)
    for kind in EMAIL_KINDS:
        assert {f"{kind}.subject.j2", f"{kind}.txt.j2", f"{kind}.html.j2"} <= names


def test_the_context_prices_the_plan_from_the_catalog() -> None:
    catalog = default_catalog()
    team = email_context(
        {"plan": "team", "interval": "year", "seats": "2"}, catalog, billing_portal_url=PORTAL
    )
    assert team["plan_name"] == "Team"
    assert team["amount"] == "$300.00"
    assert team["price"] == "$300.00 per year (2 seats at $150.00 each)"
    pro = email_context({"plan": "pro", "interval": "month"}, catalog, billing_portal_url=PORTAL)
    assert (pro["amount"], pro["price"]) == ("$29.00", "$29.00 per month")
    # Enterprise has no self-serve price: the email says nothing about money.
    enterprise = email_context({"plan": "enterprise"}, catalog, billing_portal_url=PORTAL)
    assert (enterprise["amount"], enterprise["price"]) == (None, None)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"plan": "platinum"}, "unknown plan"),
        ({"plan": "pro", "grace_ends_at": "next tuesday"}, "grace_ends_at is not an ISO date"),
        ({"plan": "pro", "seats": "many"}, "seats is not a number"),
        ({"plan": "pro", "seats": "0"}, "seats must be at least 1"),
    ],
)
def test_bad_context_values_fail_loudly(raw: dict[str, str], error: str) -> None:
    with pytest.raises(EmailRenderError, match=error):
        email_context(raw, default_catalog(), billing_portal_url=PORTAL)


def test_money_and_dates_read_naturally() -> None:
    assert format_money(123456, "usd") == "$1,234.56"
    assert format_money(900, "eur") == "€9.00"
    assert format_money(5000, "jpy") == "5,000 JPY"
    assert format_money(1999, "chf") == "19.99 CHF"
    assert format_date("d", "2027-01-05") == "5 January 2027"
    assert format_date("d", "2026-12-01T23:59:59Z") == "1 December 2026"


def test_the_message_id_is_the_same_for_a_key_and_different_across_keys() -> None:
    sender = "Dataface Billing <billing@dataface.local>"
    first = message_id_for("acct_1:2026-11:payment_failed", sender)
    assert first == message_id_for("acct_1:2026-11:payment_failed", sender)
    assert first != message_id_for("acct_1:2026-12:payment_failed", sender)
    assert first.startswith("<") and first.endswith("@dataface.local>")


def test_the_message_has_a_text_and_an_html_alternative() -> None:
    email = render("payment_failed", FULL)
    message = compose_message(
        key="acct_1:2026-11:payment_failed",
        sender="Dataface Billing <billing@dataface.local>",
        recipient="ada@example.com",
        email=email,
    )
    # As the mail server receives it.
    received = message_from_bytes(message.as_bytes(), policy=email_policy.default)
    assert isinstance(received, EmailMessage)
    assert received.get_content_type() == "multipart/alternative"
    assert received["Subject"] == email.subject
    assert received["To"] == "ada@example.com"
    assert received["X-Dataface-Email-Key"] == "acct_1:2026-11:payment_failed"
    assert [part.get_content_type() for part in received.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    text, html = (received.get_body((kind,)) for kind in ("plain", "html"))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert (text.get_content(), html.get_content()) == (email.text, email.html)


def test_a_subject_and_body_beyond_ascii_arrive_intact() -> None:
    email = RenderedEmail(
        subject="Zahlung fehlgeschlagen — Jörg's Team", text="Grüße, €12\n", html="<p>Grüße</p>\n"
    )
    message = compose_message(
        key="k", sender="billing@dataface.local", recipient="jörg@example.com", email=email
    )
    received = message_from_bytes(message.as_bytes(), policy=email_policy.default)
    assert isinstance(received, EmailMessage)
    text = received.get_body(("plain",))
    assert isinstance(text, EmailMessage)
    assert (received["Subject"], text.get_content()) == (email.subject, email.text)


def test_a_line_break_in_a_header_is_refused() -> None:
    email = render("payment_failed", FULL)
    with pytest.raises(ValueError, match="To header"):
        compose_message(
            key="acct_1:2026-11:payment_failed",
            sender="Dataface Billing <billing@dataface.local>",
            recipient="ada@example.com\r\nBcc: eve@example.com",
            email=email,
        )
