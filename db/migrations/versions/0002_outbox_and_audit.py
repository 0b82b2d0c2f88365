"""The email outbox and the operator audit trail.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
FEED_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "email_deliveries",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_email_deliveries")),
    )
    op.create_index(op.f("ix_email_deliveries_account_id"), "email_deliveries", ["account_id"])
    op.create_table(
        "operator_actions",
        sa.Column("id", FEED_ID, autoincrement=True, nullable=False),
        sa.Column("update_id", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request", JSON_DOCUMENT, nullable=False),
        sa.Column("before", JSON_DOCUMENT, nullable=False),
        sa.Column("after", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
        sa.UniqueConstraint("update_id", name=op.f("uq_operator_actions_update_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_operator_actions_account_id"), "operator_actions", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_actions_account_id"), table_name="operator_actions")
    op.drop_table("operator_actions")
    op.drop_index(op.f("ix_email_deliveries_account_id"), table_name="email_deliveries")
    op.drop_table("email_deliveries")
