"""Paging and escalation: who was paged on each incident, escalation timers, on-call overrides.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _incident_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["incident_id"],
        ["incidents.id"],
        name=f"fk_{table}_incident_id_incidents",
        deferrable=True,
        initially="DEFERRED",
    )


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("oncall", sa.Text(), nullable=True))

    op.create_table(
        "pagings",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("paged_at", _when()),
        sa.Column("storm_of", sa.String(64)),
        sa.Column("pagerduty", sa.Boolean(), nullable=False),
        sa.Column("found", Json, nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name="pk_pagings"),
        sa.CheckConstraint(
            "state IN ('waiting', 'paged', 'acknowledged', 'resolved', 'folded', 'unpaged')", name="ck_pagings_state"
        ),
        _incident_fk("pagings"),
    )
    op.create_index("ix_pagings_service_paged_at", "pagings", ["service", "paged_at"])
    op.create_index("ix_pagings_storm_of", "pagings", ["storm_of"])

    op.create_table(
        "escalation_timers",
        sa.Column("seq", Serial, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("due_at", _when(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_until", _when()),
        sa.Column("finished_at", _when()),
        sa.PrimaryKeyConstraint("seq", name="pk_escalation_timers"),
        sa.UniqueConstraint("id", name="uq_escalation_timers_id"),
        sa.CheckConstraint("state IN ('pending', 'claimed', 'fired', 'cancelled')", name="ck_escalation_timers_state"),
        _incident_fk("escalation_timers"),
    )
    op.create_index("ix_escalation_timers_state_due_at", "escalation_timers", ["state", "due_at"])
    op.create_index("ix_escalation_timers_incident_id", "escalation_timers", ["incident_id"])

    op.create_table(
        "oncall_overrides",
        sa.Column("seq", Serial, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("schedule", sa.String(255), nullable=False),
        sa.Column("person", sa.String(255), nullable=False),
        sa.Column("starts_at", _when(), nullable=False),
        sa.Column("ends_at", _when(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_oncall_overrides"),
        sa.UniqueConstraint("id", name="uq_oncall_overrides_id"),
    )
    op.create_index("ix_oncall_overrides_ends_at", "oncall_overrides", ["ends_at"])


def downgrade() -> None:
    op.drop_table("oncall_overrides")
    op.drop_table("escalation_timers")
    op.drop_table("pagings")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("oncall")
