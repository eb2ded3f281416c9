"""Dashboard login sessions, shared by every node.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``ui_sessions`` holds one row per browser logged in through ``/ui/login``: ``key`` is the
SHA-256 digest of the session's secret id (the cookie's value is never stored),
``token_digest`` the SHA-256 digest of the API token that opened it (a session is refused
once that token is no longer configured), and its times on the database's clock. Expired
rows are removed when a session is created; the index keeps that cheap.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``ui_sessions``."""
    op.execute(
        """
CREATE TABLE ui_sessions (
    key bytea PRIMARY KEY CHECK (octet_length(key) = 32),
    token_digest bytea NOT NULL CHECK (octet_length(token_digest) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
)"""
    )
    op.execute("CREATE INDEX ix_ui_sessions_expires ON ui_sessions (expires_at)")


def downgrade() -> None:
    """Undo ``upgrade``."""
    op.execute("DROP TABLE IF EXISTS ui_sessions")
