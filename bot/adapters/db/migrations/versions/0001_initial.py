"""The store's first schema: incidents, alerts, timeline, jobs, outbox, groups, counters, audit.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
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
    op.create_table(
        "incidents",
        sa.Column("seq", Serial, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("service", sa.String(255)),
        sa.Column("routed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("opened_at", _when(), nullable=False),
        sa.Column("acknowledged_at", _when()),
        sa.Column("acknowledged_by", sa.String(255)),
        sa.Column("resolved_at", _when()),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_incidents"),
        sa.UniqueConstraint("id", name="uq_incidents_id"),
        sa.CheckConstraint("state IN ('triggered', 'acknowledged', 'resolved')", name="ck_incidents_state"),
    )
    op.create_index("ix_incidents_key", "incidents", ["key"])
    op.create_index("ix_incidents_opened_at", "incidents", ["opened_at"])
    op.create_index(
        "uq_incidents_open_key",
        "incidents",
        ["key"],
        unique=True,
        postgresql_where=sa.text("state <> 'resolved'"),
        sqlite_where=sa.text("state <> 'resolved'"),
    )

    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("incident_id", sa.String(64)),
        sa.Column("status", sa.Integer()),
        sa.Column("first_seen", _when(), nullable=False),
        sa.Column("last_seen", _when(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_alerts"),
        _incident_fk("alerts"),
    )
    op.create_index("ix_alerts_incident_id", "alerts", ["incident_id"])

    op.create_table(
        "events",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("at", _when(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("data", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        _incident_fk("events"),
    )
    op.create_index("ix_events_incident_id", "events", ["incident_id"])

    op.create_table(
        "jobs",
        sa.Column("seq", Serial, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_until", _when()),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("finished_at", _when()),
        sa.PrimaryKeyConstraint("seq", name="pk_jobs"),
        sa.UniqueConstraint("id", name="uq_jobs_id"),
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="ck_jobs_state"),
        _incident_fk("jobs"),
    )
    op.create_index("ix_jobs_state_created_at", "jobs", ["state", "created_at"])

    op.create_table(
        "outbox",
        sa.Column("seq", Serial, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("delivered_at", _when()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("id", name="uq_outbox_id"),
        _incident_fk("outbox"),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["incident_id", "seq"],
        postgresql_where=sa.text("delivered_at IS NULL"),
        sqlite_where=sa.text("delivered_at IS NULL"),
    )

    op.create_table(
        "groups",
        sa.Column("key", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_groups"),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_counters"),
    )
    op.create_table(
        "audit",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("at", _when(), nullable=False),
        sa.Column("trigger", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("argv", Json, nullable=False),
        sa.Column("exit_status", sa.Integer()),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("output_sha256", sa.String(64), nullable=False),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_at", "audit", ["at"])


def downgrade() -> None:
    for table in ("audit", "counters", "groups", "outbox", "jobs", "events", "alerts", "incidents"):
        op.drop_table(table)
