"""Log chunks compressed with lz4 where the server has it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

A ``run_logs`` body is a few hundred kB of text, compressed by TOAST on insert. With the
default pglz, compressing is most of the server's time per stored chunk (measured: 6-15 ms
for a 520 kB chunk, against 3-3.5 ms with lz4), and capture waits for it. lz4 applies to
chunks written from now on; older ones stay pglz and read the same. A server built
without lz4 keeps pglz.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (
                SELECT 1 FROM pg_settings
                WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
            ) THEN
                ALTER TABLE run_logs ALTER COLUMN body SET COMPRESSION lz4;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE run_logs ALTER COLUMN body SET COMPRESSION default")
