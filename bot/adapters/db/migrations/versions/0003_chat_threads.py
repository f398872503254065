"""Chat targets: each outbox message names its target, and each incident's thread on each target is kept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("target", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "chat_threads",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("root", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "target", name="pk_chat_threads"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_chat_threads_incident_id_incidents",
            deferrable=True,
            initially="DEFERRED",
        ),
    )
    op.create_index("ix_chat_threads_target_channel_root", "chat_threads", ["target", "channel", "root"])


def downgrade() -> None:
    op.drop_table("chat_threads")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("target")
