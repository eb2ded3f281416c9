"""The schema as SQLAlchemy Core tables: the queries' view of the migrations.

The migrations (``0001_initial``, ``0002_policies``) are the authority (they also create the
trigger, the trigram indexes and the partial indexes); these objects only name the columns
so queries are built with bound parameters. Keep the two in step.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

# Byte-wise collation: ids and task names sort by code point, as Python's ``sorted`` does,
# and btree comparisons stay cheap.
C_TEXT = sa.Text(collation="C")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", C_TEXT, primary_key=True),
    sa.Column("task_name", C_TEXT, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("end_reason", sa.Text, nullable=True),
    sa.Column("exit_code", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("triggered_by", sa.Text, nullable=False),
    sa.Column("replica_index", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_of_run_id", C_TEXT, nullable=True),
    sa.Column("external_execution_id", sa.Text, nullable=True, unique=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
    # The node holding the run (migration 0008); fenced writes compare it.
    sa.Column("node_id", pg.UUID(as_uuid=False), nullable=True),
    sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True),
    # Generated so that every listing sort has a plain column to index.
    sa.Column(
        "sort_start_at",
        sa.DateTime(timezone=True),
        sa.Computed("coalesce(start_at, created_at)", persisted=True),
        nullable=False,
    ),
    sa.Column(
        "duration",
        pg.INTERVAL,
        sa.Computed(
            "CASE WHEN start_at IS NOT NULL AND end_at IS NOT NULL "
            "THEN end_at - start_at ELSE interval '0' END",
            persisted=True,
        ),
        nullable=False,
    ),
)

run_counts = sa.Table(
    "run_counts",
    metadata,
    sa.Column("task_name", C_TEXT, primary_key=True),
    sa.Column("status", sa.Text, primary_key=True),
    # '' stands for "no end reason" so the column can be part of the primary key.
    sa.Column("end_reason", sa.Text, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

run_logs = sa.Table(
    "run_logs",
    metadata,
    sa.Column("run_id", C_TEXT, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("first_n", sa.BigInteger, primary_key=True),
    sa.Column("last_n", sa.BigInteger, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    # UTF-8 bytes of the chunk's line texts: what a log budget counts.
    sa.Column("text_bytes", sa.BigInteger, nullable=False, server_default="0"),
)

run_log_meta = sa.Table(
    "run_log_meta",
    metadata,
    sa.Column("run_id", C_TEXT, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("first_available", sa.BigInteger, nullable=False),
    sa.Column("total_lines", sa.BigInteger, nullable=False),
    # Sum of ``text_bytes`` over the chunks still stored.
    sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),
)

task_ticks = sa.Table(
    "task_ticks",
    metadata,
    sa.Column("task_name", C_TEXT, primary_key=True),
    sa.Column("last_tick", sa.DateTime(timezone=True), nullable=False),
)

# Columns of ``runs`` that hold a Run's fields (the generated ones are for sorting only).
RUN_COLUMNS = tuple(c for c in runs.c if c.computed is None and c.name != "stop_requested_at")

# The cluster (migration 0008).
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("boot_id", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("config_hash", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
)

service_slots = sa.Table(
    "service_slots",
    metadata,
    sa.Column("service", C_TEXT, primary_key=True),
    sa.Column("replica_index", sa.Integer, primary_key=True),
    sa.Column("node_id", pg.UUID(as_uuid=False), nullable=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("acked_generation", sa.BigInteger, nullable=False),
    sa.Column("freed_at", sa.DateTime(timezone=True), nullable=False),
)

cluster_leases = sa.Table(
    "cluster_leases",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("node_id", pg.UUID(as_uuid=False), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# Dashboard login sessions (migration 0010): only digests, never the cookie's secret.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("token_digest", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
