"""Initial schema: runs, their per-status counters, and chunked logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Every listing sort key gets an index led by task_name (the per-task listing) and one
# without it (the all-tasks listing); ``id`` last makes the tie-break index-ordered too.
SORT_KEYS = ("created_at", "sort_start_at", "exit_code", "duration", "status")

RUNS = """
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    task_name text COLLATE "C" NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'running', 'ended')),
    end_reason text CHECK (end_reason IN (
        'success', 'failed', 'stopped', 'timeout', 'crashed', 'skipped', 'log_overflow')),
    exit_code bigint NOT NULL DEFAULT 0,
    start_at timestamptz,
    end_at timestamptz,
    created_at timestamptz NOT NULL,
    triggered_by text NOT NULL CHECK (triggered_by IN ('cron', 'api', 'cloud')),
    replica_index integer NOT NULL DEFAULT 0,
    retry_attempt integer NOT NULL DEFAULT 0,
    retry_of_run_id text COLLATE "C",
    external_execution_id text UNIQUE,
    pid integer,
    sort_start_at timestamptz NOT NULL GENERATED ALWAYS AS (coalesce(start_at, created_at)) STORED,
    duration interval NOT NULL GENERATED ALWAYS AS (
        CASE WHEN start_at IS NOT NULL AND end_at IS NOT NULL
             THEN end_at - start_at ELSE interval '0' END) STORED,
    CONSTRAINT runs_end_reason_iff_ended CHECK ((status = 'ended') = (end_reason IS NOT NULL))
)
"""

RUN_COUNTS = """
CREATE TABLE run_counts (
    task_name text COLLATE "C" NOT NULL,
    status text NOT NULL,
    end_reason text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (task_name, status, end_reason)
)
"""

# The counters change once per key per statement (transition tables), not once per row: a
# bulk insert into one task would otherwise update the same counter row a million times in
# one transaction, and each update walks the growing chain of that row's versions.
# Keys are touched in sorted order so two transactions lock counter rows in the same order
# and cannot deadlock.
APPLY_DELTAS = """
    INSERT INTO run_counts AS c (task_name, status, end_reason, n)
    SELECT task_name, status, end_reason, sum(d)
    FROM (%s) AS delta (task_name, status, end_reason, d)
    GROUP BY task_name, status, end_reason
    HAVING sum(d) <> 0
    ORDER BY task_name, status, end_reason
    ON CONFLICT (task_name, status, end_reason) DO UPDATE SET n = c.n + excluded.n
"""
NEW_ROWS = "SELECT task_name, status, coalesce(end_reason, ''), 1 FROM new_runs"
OLD_ROWS = "SELECT task_name, status, coalesce(end_reason, ''), -1 FROM old_runs"
COUNTER_SOURCES = {
    "insert": ("INSERT", "NEW TABLE AS new_runs", NEW_ROWS),
    "delete": ("DELETE", "OLD TABLE AS old_runs", OLD_ROWS),
    "update": (
        "UPDATE",
        "OLD TABLE AS old_runs NEW TABLE AS new_runs",
        f"{OLD_ROWS} UNION ALL {NEW_ROWS}",
    ),
}


def _counter_statements() -> list[str]:
    statements = []
    for name, (event, referencing, source) in COUNTER_SOURCES.items():
        statements.append(
            f"""
CREATE FUNCTION runs_count_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{APPLY_DELTAS % source};
    RETURN NULL;
END
$$"""
        )
        statements.append(
            f"CREATE TRIGGER runs_count_{name} AFTER {event} ON runs "
            f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION runs_count_{name}()"
        )
    statements.append(
        """
CREATE FUNCTION runs_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_counts;
    RETURN NULL;
END
$$"""
    )
    statements.append(
        "CREATE TRIGGER runs_count_truncate AFTER TRUNCATE ON runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION runs_count_truncate()"
    )
    return statements


RUN_LOGS = """
CREATE TABLE run_logs (
    run_id text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    first_n bigint NOT NULL,
    last_n bigint NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (run_id, first_n),
    CHECK (last_n >= first_n)
)
"""

RUN_LOG_META = """
CREATE TABLE run_log_meta (
    run_id text COLLATE "C" PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    first_available bigint NOT NULL,
    total_lines bigint NOT NULL
)
"""


def upgrade() -> None:
    """Create the schema."""
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(RUNS)
    for key in SORT_KEYS:
        op.execute(f"CREATE INDEX ix_runs_task_{key} ON runs (task_name, {key}, id)")
        op.execute(f"CREATE INDEX ix_runs_{key} ON runs ({key}, id)")
    op.execute("CREATE INDEX ix_runs_task_id ON runs (task_name, id)")
    op.execute("CREATE INDEX ix_runs_task_filter ON runs (task_name, status, end_reason)")
    op.execute("CREATE INDEX ix_runs_id_trgm ON runs USING gin (id gin_trgm_ops)")
    op.execute("CREATE INDEX ix_runs_task_name_trgm ON runs USING gin (task_name gin_trgm_ops)")
    op.execute(
        "CREATE INDEX ix_runs_active ON runs (task_name, created_at, id) WHERE status <> 'ended'"
    )
    # A cron tick is recorded once, however many scheduler loops see it.
    op.execute(
        "CREATE UNIQUE INDEX uq_runs_cron_tick ON runs (task_name, created_at) "
        "WHERE triggered_by = 'cron' AND retry_attempt = 0"
    )
    op.execute(RUN_COUNTS)
    for statement in _counter_statements():
        op.execute(statement)
    op.execute(RUN_LOGS)
    op.execute(RUN_LOG_META)


def downgrade() -> None:
    """Drop the schema. pg_trgm stays: other schemas of the database may use it."""
    op.execute("DROP TABLE IF EXISTS run_log_meta")
    op.execute("DROP TABLE IF EXISTS run_logs")
    op.execute("DROP TABLE IF EXISTS runs")
    op.execute("DROP TABLE IF EXISTS run_counts")
    for name in (*COUNTER_SOURCES, "truncate"):
        op.execute(f"DROP FUNCTION IF EXISTS runs_count_{name}()")
