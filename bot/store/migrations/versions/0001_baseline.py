"""Baseline: sessions, feedback and applied writes, as created before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "coachbot_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("user_identifier", sa.String(255), index=True),
        sa.Column("user_role", sa.String(32)),
        sa.Column("thread_id", sa.String(64), index=True),
        sa.Column("scenario_id", sa.String(255)),
        sa.Column("scenario_title", sa.String(500)),
        sa.Column("difficulty", sa.String(16)),
        sa.Column("seed", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("score", sa.Integer),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False, index=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_table(
        "coachbot_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "session_id",
            sa.String(32),
            sa.ForeignKey("coachbot_sessions.id", ondelete="SET NULL"),
            index=True,
        ),
        sa.Column("thread_id", sa.String(64), nullable=False, index=True),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("value", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("user_identifier", sa.String(255)),
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("thread_id", "step_id", name="uq_coachbot_feedback_thread_step"),
    )
    op.create_table(
        "coachbot_applied_writes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("op", sa.String(32), nullable=False),
        sa.Column("applied_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("coachbot_applied_writes")
    op.drop_table("coachbot_feedback")
    op.drop_table("coachbot_sessions")
