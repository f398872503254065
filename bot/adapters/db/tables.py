"""The store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Datetimes are UTC on both sides of the border: :class:`UTCDateTime` refuses naive values, stores UTC
(naive on SQLite, which keeps no zone; ``timestamptz`` on PostgreSQL) and hands back aware UTC.
Rows that the service writes before their incident exists in the same transaction (the "opened"
event, the first job) point at ``incidents.id`` through foreign keys checked at commit
(``DEFERRABLE INITIALLY DEFERRED``). Migrations in ``migrations/versions`` must create exactly
this; ``tests/adapters/db`` compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store: use an aware (UTC) one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: Autoincrementing keys: SQLite only autoincrements ``INTEGER PRIMARY KEY``.
Serial = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


def _incident_fk() -> ForeignKey:
    return ForeignKey("incidents.id", deferrable=True, initially="DEFERRED")


incidents = Table(
    "incidents",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("key", String(512), nullable=False),
    Column("service", String(255)),
    Column("routed", Boolean, nullable=False),
    Column("status", Integer),
    Column("state", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("url", Text),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("acknowledged_at", UTCDateTime),
    Column("acknowledged_by", String(255)),
    Column("resolved_at", UTCDateTime),
    Column("alert_count", Integer, nullable=False),
    Column("oncall", Text),
    CheckConstraint("state IN ('triggered', 'acknowledged', 'resolved')", name="state"),
    Index("ix_incidents_key", "key"),
    Index("ix_incidents_opened_at", "opened_at"),
    # The last line of defence against two open incidents for one group (the group lock is the first).
    Index(
        "uq_incidents_open_key",
        "key",
        unique=True,
        postgresql_where=text("state <> 'resolved'"),
        sqlite_where=text("state <> 'resolved'"),
    ),
)

alerts = Table(
    "alerts",
    metadata,
    Column("fingerprint", String(255), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("incident_id", String(64), _incident_fk()),
    Column("status", Integer),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("repeats", Integer, nullable=False),
    Index("ix_alerts_incident_id", "incident_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("incident_id", String(64), _incident_fk(), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("actor", String(255)),
    Column("data", Json, nullable=False),
    Index("ix_events_incident_id", "incident_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("incident_id", String(64), _incident_fk(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(255)),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
    Index("ix_jobs_state_created_at", "state", "created_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("incident_id", String(64), _incident_fk(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("target", String(64), nullable=False, server_default=""),
    Index(
        "ix_outbox_pending",
        "incident_id",
        "seq",
        postgresql_where=text("delivered_at IS NULL"),
        sqlite_where=text("delivered_at IS NULL"),
    ),
)

#: One row per incident group, only ever locked (``SELECT … FOR UPDATE``) to serialise its alerts.
groups = Table("groups", metadata, Column("key", String(512), primary_key=True))

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("trigger", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("argv", Json, nullable=False),
    Column("exit_status", Integer),
    Column("duration", Float, nullable=False),
    Column("output_sha256", String(64), nullable=False),
    Column("error", Text),
    Column("kind", String(16), nullable=False, server_default="command"),
    #: The hash chain (bot/core/audit_chain.py); NULL on rows written before migration 0005. ``prev`` is
    #: unique: two rows can never follow the same entry, so the chain cannot fork whatever the writers do.
    Column("prev", String(64)),
    Column("hash", String(64)),
    Index("ix_audit_at", "at"),
    Index("ix_audit_prev", "prev", unique=True),
)

#: Every diagnosis a worker made of an incident (the latest one is the incident's current diagnosis).
diagnoses = Table(
    "diagnoses",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("incident_id", String(64), _incident_fk(), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("body", Json, nullable=False),
    Index("ix_diagnoses_incident_id", "incident_id"),
)

#: Where each incident's thread lives on each chat target (written by the target's sender).
chat_threads = Table(
    "chat_threads",
    metadata,
    Column("incident_id", String(64), _incident_fk(), primary_key=True),
    Column("target", String(64), primary_key=True),
    Column("channel", String(255), nullable=False),
    Column("root", String(255), nullable=False),
    Column("topic", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_chat_threads_target_channel_root", "target", "channel", "root"),
)

# -- paging and escalation (issue #7; migration 0004) --------------------------------------------------

#: Where paging each incident stands (``bot.core.incidents.Paging``).
pagings = Table(
    "pagings",
    metadata,
    Column("incident_id", String(64), _incident_fk(), primary_key=True),
    Column("service", String(255)),
    Column("state", String(16), nullable=False),
    Column("round", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("paged_at", UTCDateTime),
    Column("storm_of", String(64)),
    Column("pagerduty", Boolean, nullable=False),
    Column("found", Json, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("state IN ('waiting', 'paged', 'acknowledged', 'resolved', 'folded', 'unpaged')", name="state"),
    Index("ix_pagings_service_paged_at", "service", "paged_at"),
    Index("ix_pagings_storm_of", "storm_of"),
)

#: Escalation timers, claimed under a lease like jobs (pending → claimed → fired, or cancelled).
escalation_timers = Table(
    "escalation_timers",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("incident_id", String(64), _incident_fk(), nullable=False),
    Column("level", Integer, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(255)),
    Column("lease_until", UTCDateTime),
    Column("finished_at", UTCDateTime),
    CheckConstraint("state IN ('pending', 'claimed', 'fired', 'cancelled')", name="state"),
    Index("ix_escalation_timers_state_due_at", "state", "due_at"),
    Index("ix_escalation_timers_incident_id", "incident_id"),
)

#: Temporary on-call overrides (``bot.core.oncall.Override``), shared by every replica.
oncall_overrides = Table(
    "oncall_overrides",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("schedule", String(255), nullable=False),
    Column("person", String(255), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(255), nullable=False),
    Index("ix_oncall_overrides_ends_at", "ends_at"),
)

# -- approvals of mutating runbooks (issue #9; migration 0006) ----------------------------------------

#: Requests to run a mutating runbook (``bot.core.approvals.Approval``); every change is a conditional update.
approvals = Table(
    "approvals",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("incident_id", String(64), _incident_fk(), nullable=False),
    Column("runbook", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("params", Json, nullable=False),
    Column("asked_by", String(255), nullable=False),
    Column("asker", String(255), nullable=False),
    Column("channel", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("decided_by", String(255)),
    Column("decider", String(255)),
    Column("decided_at", UTCDateTime),
    Column("outcome", Text),
    CheckConstraint("state IN ('pending', 'running', 'done', 'failed', 'denied', 'expired')", name="state"),
    Index("ix_approvals_state_expires_at", "state", "expires_at"),
    Index("ix_approvals_incident_id", "incident_id"),
)
