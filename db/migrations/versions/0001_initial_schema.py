"""Accounts, entitlements and their change log, received and unroutable Stripe events.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("stripe_customer_id", sa.String(255), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("stripe_customer_id", name=op.f("uq_accounts_stripe_customer_id")),
    )
    op.create_table(
        "entitlements",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("billing_state", sa.String(32), nullable=False),
        sa.Column("effective_state", sa.String(32), nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("interval", sa.String(16), nullable=True),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("features", JSON_DOCUMENT, nullable=False),
        sa.Column("limits", JSON_DOCUMENT, nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(64), nullable=True),
        sa.Column("period_ends_at", TIMESTAMP, nullable=True),
        sa.Column("grace_ends_at", TIMESTAMP, nullable=True),
        sa.Column("trial_ends_at", TIMESTAMP, nullable=True),
        sa.Column("cancel_at", TIMESTAMP, nullable=True),
        sa.Column("open_invoice_url", sa.Text(), nullable=True),
        sa.Column("lifecycle", JSON_DOCUMENT, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name=op.f("fk_entitlements_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_entitlements")),
    )
    op.create_table(
        "entitlement_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("billing_state", sa.String(32), nullable=False),
        sa.Column("effective_state", sa.String(32), nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("document", JSON_DOCUMENT, nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("notices", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name=op.f("fk_entitlement_changes_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlement_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_entitlement_changes_account_id"), "entitlement_changes", ["account_id"]
    )
    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_stripe_events")),
    )
    op.create_index(op.f("ix_stripe_events_account_id"), "stripe_events", ["account_id"])
    op.create_table(
        "unroutable_events",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=True),
        sa.Column("payload", JSON_DOCUMENT, nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("resolved_at", TIMESTAMP, nullable=True),
        sa.Column("resolved_account_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_unroutable_events")),
    )
    op.create_index(op.f("ix_unroutable_events_customer_id"), "unroutable_events", ["customer_id"])


def downgrade() -> None:
    op.drop_table("unroutable_events")
    op.drop_table("stripe_events")
    op.drop_table("entitlement_changes")
    op.drop_table("entitlements")
    op.drop_table("accounts")
