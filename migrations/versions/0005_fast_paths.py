"""Server-side admit, claim and replace: one round trip each on the dispatch path.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Each function does what ``adapters/postgres/runs.py`` used to do in a transaction of five to
seven statements, so it runs as a single autocommitted statement and holds the task's
advisory lock (space ``0x72770001`` = 1920401409, as ``locks.TASK_LOCK_SPACE``) only inside
the server. A run travels as ``jsonb`` with the keys of ``rows.to_row``.

- ``runwarden_admit`` applies ``domain.policies.admit`` (mirrored here; a contract test
  compares the two over a grid of loads) and returns one ``stored`` row (the decision and
  the number pending), or one ``repeat`` row (the stored run a repeated trigger stands
  for), or nothing (the id is taken); after ``stored`` of a ``terminate`` come the task's
  ``running`` runs, from which Python picks the ones to stop.
- ``runwarden_claim`` returns the started run, or nothing.
- ``runwarden_replace`` first locks the given counter rows in the given (sorted) order,
  as ``locks.counter_lock_order`` orders them, then updates, then inserts the follow-up.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    "id, task_name, status, end_reason, exit_code, start_at, end_at, created_at, triggered_by, "
    "replica_index, retry_attempt, retry_of_run_id, external_execution_id, pid, not_before"
)


def _values(var: str) -> str:
    return ", ".join(f"{var}.{c.strip()}" for c in _COLUMNS.split(","))


REPEAT = """
CREATE FUNCTION runwarden_repeat(p_run runs) RETURNS TABLE (decision text, run runs)
LANGUAGE sql STABLE AS $$
    SELECT found.decision, found.run FROM (
        (SELECT 1 AS rank, 'accept' AS decision, r AS run FROM runs r
          WHERE p_run.external_execution_id IS NOT NULL
            AND r.external_execution_id = p_run.external_execution_id LIMIT 1)
        UNION ALL
        (SELECT 2, 'skip', r FROM runs r
          WHERE p_run.triggered_by = 'cron' AND p_run.retry_attempt = 0
            AND r.task_name = p_run.task_name AND r.created_at = p_run.created_at
            AND r.triggered_by = 'cron' AND r.retry_attempt = 0 LIMIT 1)
    ) found ORDER BY found.rank LIMIT 1
$$
"""

ADMIT = f"""
CREATE FUNCTION runwarden_admit(
    p_run jsonb, p_max_concurrent integer, p_on_overlap text, p_queue_max integer
) RETURNS TABLE (kind text, decision text, pending bigint, run runs)
LANGUAGE plpgsql AS $$
DECLARE
    new_run runs := jsonb_populate_record(NULL::runs, p_run);
    hit record;
    n_running bigint;
    n_pending bigint;
    inserted integer;
BEGIN
    PERFORM pg_advisory_xact_lock(1920401409, hashtext(new_run.task_name));
    SELECT h.decision AS d, h.run AS r INTO hit FROM runwarden_repeat(new_run) h;
    IF FOUND THEN
        kind := 'repeat'; decision := hit.d; run := hit.r;
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE r.status = 'running'),
           count(*) FILTER (WHERE r.status = 'pending')
      INTO n_running, n_pending
      FROM runs r WHERE r.task_name = new_run.task_name AND r.status <> 'ended';
    -- domain.policies.admit
    IF n_running + n_pending < p_max_concurrent THEN
        decision := 'accept';
    ELSIF p_on_overlap = 'skip' THEN
        decision := 'skip';
    ELSIF p_on_overlap = 'terminate' THEN
        decision := 'terminate';
    ELSIF n_pending + 1 - greatest(p_max_concurrent - n_running, 0) <= p_queue_max THEN
        decision := 'accept';
    ELSE
        decision := 'skip';
    END IF;
    IF decision = 'skip' THEN
        -- Run.ended(SKIPPED, created_at)
        new_run.status := 'ended';
        new_run.end_reason := 'skipped';
        new_run.exit_code := -1;
        new_run.end_at := new_run.created_at;
    END IF;
    -- Without a conflict target: a tick or an external id recorded meanwhile by a writer
    -- that does not take the lock is no error.
    INSERT INTO runs ({_COLUMNS}) VALUES ({_values("new_run")}) ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted = 1 THEN
        kind := 'stored'; pending := n_pending;
        RETURN NEXT;
        IF decision = 'terminate' THEN
            RETURN QUERY SELECT 'running', NULL::text, NULL::bigint, r FROM runs r
                WHERE r.task_name = new_run.task_name AND r.status = 'running';
        END IF;
        RETURN;
    END IF;
    SELECT h.decision AS d, h.run AS r INTO hit FROM runwarden_repeat(new_run) h;
    IF FOUND THEN
        kind := 'repeat'; decision := hit.d; run := hit.r;
        RETURN NEXT;
    END IF;
END
$$
"""

CLAIM = """
CREATE FUNCTION runwarden_claim(
    p_id text, p_task text, p_at timestamptz, p_max_concurrent integer
) RETURNS SETOF runs
LANGUAGE plpgsql AS $$
DECLARE
    stored_task text;
    n_running bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1920401409, hashtext(p_task));
    SELECT r.task_name INTO stored_task FROM runs r WHERE r.id = p_id AND r.status = 'pending';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT count(*) INTO n_running FROM runs r
     WHERE r.task_name = stored_task AND r.status = 'running';
    IF n_running >= p_max_concurrent THEN
        RETURN;
    END IF;
    -- Enders do not take the lock: the run may have been stopped since it was read.
    RETURN QUERY UPDATE runs r SET status = 'running', start_at = p_at, pid = NULL
        WHERE r.id = p_id AND r.status = 'pending' RETURNING r.*;
END
$$
"""

REPLACE = f"""
CREATE FUNCTION runwarden_replace(
    p_new jsonb, p_expected text, p_follow_up jsonb,
    p_lock_tasks text[], p_lock_statuses text[], p_lock_reasons text[]
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    new_run runs := jsonb_populate_record(NULL::runs, p_new);
    follow_up runs;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_lock_tasks), 0) LOOP
        INSERT INTO run_counts AS c (task_name, status, end_reason, n)
        VALUES (p_lock_tasks[i], p_lock_statuses[i], p_lock_reasons[i], 0)
        ON CONFLICT (task_name, status, end_reason) DO UPDATE SET n = c.n;
    END LOOP;
    UPDATE runs r SET ({_COLUMNS.removeprefix("id, ")}) = (
        {_values("new_run").removeprefix("new_run.id, ")}
    ) WHERE r.id = new_run.id AND r.status = p_expected;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_follow_up IS NOT NULL THEN
        follow_up := jsonb_populate_record(NULL::runs, p_follow_up);
        INSERT INTO runs ({_COLUMNS}) VALUES ({_values("follow_up")});
    END IF;
    RETURN true;
END
$$
"""


def upgrade() -> None:
    """Create the functions."""
    for sql in (REPEAT, ADMIT, CLAIM, REPLACE):
        op.execute(sql)


def downgrade() -> None:
    """Drop the functions."""
    op.execute(
        "DROP FUNCTION IF EXISTS runwarden_replace(jsonb, text, jsonb, text[], text[], text[])"
    )
    op.execute("DROP FUNCTION IF EXISTS runwarden_claim(text, text, timestamptz, integer)")
    op.execute("DROP FUNCTION IF EXISTS runwarden_admit(jsonb, integer, text, integer)")
    op.execute("DROP FUNCTION IF EXISTS runwarden_repeat(runs)")
