"""Tamper-evident audit log: the kind of each entry and its hash-chain link (issue #9).

Rows written before this revision keep ``prev`` and ``hash`` NULL: ``incident-bot audit verify``
reports them as unchained legacy entries and skips them (they are accepted only before the first
chained row). They are not chained here, since a chain made now would vouch for rows nobody checked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
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
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="command"))
        batch.add_column(sa.Column("prev", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    op.create_index("ix_audit_prev", "audit", ["prev"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_audit_prev", table_name="audit")
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev")
        batch.drop_column("kind")
