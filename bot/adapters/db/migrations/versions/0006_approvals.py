"""Approvals: requests to run a mutating runbook, waiting for a second person (issue #9).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("runbook", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.Column("asked_by", sa.String(255), nullable=False),
        sa.Column("asker", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("expires_at", _when(), nullable=False),
        sa.Column("decided_by", sa.String(255)),
        sa.Column("decider", sa.String(255)),
        sa.Column("decided_at", _when()),
        sa.Column("outcome", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.CheckConstraint(
            "state IN ('pending', 'running', 'done', 'failed', 'denied', 'expired')", name="ck_approvals_state"
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_approvals_incident_id_incidents",
            deferrable=True,
            initially="DEFERRED",
        ),
    )
    op.create_index("ix_approvals_state_expires_at", "approvals", ["state", "expires_at"])
    op.create_index("ix_approvals_incident_id", "approvals", ["incident_id"])


def downgrade() -> None:
    op.drop_table("approvals")
