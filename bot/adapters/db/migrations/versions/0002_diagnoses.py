"""Diagnoses: every diagnosis a worker made of an incident, as the JSON of DESIGN §4.2.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
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

Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "diagnoses",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_diagnoses"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_diagnoses_incident_id_incidents",
            deferrable=True,
            initially="DEFERRED",
        ),
    )
    op.create_index("ix_diagnoses_incident_id", "diagnoses", ["incident_id"])


def downgrade() -> None:
    op.drop_table("diagnoses")
