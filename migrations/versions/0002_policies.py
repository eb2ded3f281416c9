"""Policies: retry delays, cron tick state, log byte accounting, retention index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Chunks written before this revision count 0 bytes (their size is inside msgpack bodies and
rewriting a large ``run_logs`` to measure them is not worth it): trimming drops them first
anyway, being the oldest.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TASK_TICKS = """
CREATE TABLE task_ticks (
    task_name text COLLATE "C" PRIMARY KEY,
    last_tick timestamptz NOT NULL
)
"""


def upgrade() -> None:
    """Add the columns, the tick table and the retention index."""
    # Constant defaults: PostgreSQL adds these columns without rewriting the tables.
    op.execute("ALTER TABLE runs ADD COLUMN not_before timestamptz")
    op.execute("ALTER TABLE run_logs ADD COLUMN text_bytes bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE run_log_meta ADD COLUMN stored_bytes bigint NOT NULL DEFAULT 0")
    op.execute(TASK_TICKS)
    # Pruning by age finds a task's runs that ended before a cutoff without a scan.
    op.execute("CREATE INDEX ix_runs_task_ended ON runs (task_name, end_at) WHERE status = 'ended'")


def downgrade() -> None:
    """Undo ``upgrade``."""
    op.execute("DROP INDEX IF EXISTS ix_runs_task_ended")
    op.execute("DROP TABLE IF EXISTS task_ticks")
    op.execute("ALTER TABLE run_log_meta DROP COLUMN IF EXISTS stored_bytes")
    op.execute("ALTER TABLE run_logs DROP COLUMN IF EXISTS text_bytes")
    op.execute("ALTER TABLE runs DROP COLUMN IF EXISTS not_before")
