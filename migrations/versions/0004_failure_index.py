"""Index for the runs summary: the latest run that ended with a given end reason.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

``GET /api/runs/summary`` reports the last failure. ``ix_runs_end_reason_end_at`` lets that
be one short backward index scan per failure reason instead of a scan of every ended run.
It is not partial: the query's reason arrives as a bound parameter, which a generic plan
cannot match against an index predicate, and the rows it would leave out (runs still active,
whose ``end_reason`` is NULL) are few.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the index."""
    op.execute("CREATE INDEX ix_runs_end_reason_end_at ON runs (end_reason, end_at, id)")


def downgrade() -> None:
    """Drop the index."""
    op.execute("DROP INDEX IF EXISTS ix_runs_end_reason_end_at")
