"""Assignments: a trainer sets a scenario, a difficulty, a due date and a pass mark.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coachbot_assignments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("assignee", sa.String(255), nullable=False, index=True),  # a user, or "*"
        sa.Column("scenario_id", sa.String(255), nullable=False),
        sa.Column("difficulty", sa.String(16), nullable=False),
        sa.Column("pass_mark", sa.Integer, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("coachbot_assignments")
