"""Run events: every phase change of a run is announced with NOTIFY on ``runwarden_runs``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Every daemon sharing the database LISTENs on the channel, so each sees the changes of all
of them (``adapters/postgres/events.py``). One notification per changed row, sent at
commit, in commit order: an insert, an update that changes ``status`` (pending -> running,
-> ended), a delete. The payload is the run's wire fields as JSON, timestamps as integer
microseconds since the epoch (exact, and independent of the writer's TimeZone):

    {"op": "insert"|"update"|"delete", "from": <old status, updates only>, "id": ...,
     "task_name": ..., "status": ..., "end_reason": ..., "exit_code": ..., "start_at": ...,
     "end_at": ..., "created_at": ..., "triggered_by": ..., "replica_index": ...,
     "retry_attempt": ..., "retry_of_run_id": ..., "external_execution_id": ...}

NOTIFY payloads must stay under 8000 bytes: a payload that would not drops
``external_execution_id`` and ``retry_of_run_id``; one still too long (a huge id or task
name written by hand) sends nothing rather than failing the write.

Bulk loads pay one NOTIFY per row (memory of the writing backend grows with the
transaction's notifications). A loader that needs no events runs
``SET LOCAL runwarden.notify_runs = 'off'`` in its transaction; the trigger's WHEN clause
then skips the function entirely.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANNEL = "runwarden_runs"
MAX_PAYLOAD = 7900
"""Bytes; PostgreSQL rejects a NOTIFY payload of 8000 or more."""

NOTIFY_FUNCTION = f"""
CREATE FUNCTION runs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r runs;
    old_status text;
    body jsonb;
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        old_status := OLD.status;
    END IF;
    body := jsonb_build_object(
        'op', lower(TG_OP),
        'from', old_status,
        'id', r.id,
        'task_name', r.task_name,
        'status', r.status,
        'end_reason', r.end_reason,
        'exit_code', r.exit_code,
        'start_at', round(extract(epoch FROM r.start_at) * 1000000)::bigint,
        'end_at', round(extract(epoch FROM r.end_at) * 1000000)::bigint,
        'created_at', round(extract(epoch FROM r.created_at) * 1000000)::bigint,
        'triggered_by', r.triggered_by,
        'replica_index', r.replica_index,
        'retry_attempt', r.retry_attempt,
        'retry_of_run_id', r.retry_of_run_id,
        'external_execution_id', r.external_execution_id);
    payload := body::text;
    IF octet_length(payload) > {MAX_PAYLOAD} THEN
        payload := (body - 'external_execution_id' - 'retry_of_run_id')::text;
    END IF;
    IF octet_length(payload) <= {MAX_PAYLOAD} THEN
        PERFORM pg_notify('{CHANNEL}', payload);
    END IF;
    RETURN NULL;
END
$$
"""

# A WHEN clause is evaluated without entering PL/pgSQL, so switched-off bulk loads pay
# almost nothing per row.
ENABLED = "coalesce(current_setting('runwarden.notify_runs', true), '') <> 'off'"


def upgrade() -> None:
    """Create the notifying function and its triggers."""
    op.execute(NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER runs_notify_insert_delete AFTER INSERT OR DELETE ON runs "
        f"FOR EACH ROW WHEN ({ENABLED}) EXECUTE FUNCTION runs_notify()"
    )
    op.execute(
        "CREATE TRIGGER runs_notify_status AFTER UPDATE OF status ON runs FOR EACH ROW "
        f"WHEN (OLD.status IS DISTINCT FROM NEW.status AND {ENABLED}) "
        "EXECUTE FUNCTION runs_notify()"
    )


def downgrade() -> None:
    """Undo ``upgrade``."""
    op.execute("DROP TRIGGER IF EXISTS runs_notify_status ON runs")
    op.execute("DROP TRIGGER IF EXISTS runs_notify_insert_delete ON runs")
    op.execute("DROP FUNCTION IF EXISTS runs_notify()")
