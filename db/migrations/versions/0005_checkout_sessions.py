"""Each account's latest Checkout Session, so a second checkout reuses or expires it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkout_sessions",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("lookup_key", sa.String(128), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name=op.f("fk_checkout_sessions_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_checkout_sessions")),
    )


def downgrade() -> None:
    op.drop_table("checkout_sessions")
