"""Admit, claim and replace many runs in one statement: what the daemon sends under load.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

``adapters/postgres/batching.py`` gathers the admits (and the claims, the ends) that arrive
while one is in flight and sends them together: one statement pays one round trip and one
commit. ``runwarden_admit_many`` is set-based: it locks the batch's tasks, counts their
active runs once, decides item after item as ``runwarden_admit`` would had each been sent
alone (each sees the runs accepted before it), and stores every run with one ``INSERT``.
An item with a ``start_at`` that is accepted with a free slot and nothing queued before it
is stored ``running`` from then (the cron loop's ticks: no separate claim)
(one firing of each statement trigger; 200 cron ticks took 60 ms item by item, ~25 ms so).
A run the insert skips is a repeat, answered as ``runwarden_admit`` answers it (it was
counted as accepted, so later triggers of that task in the batch decide on one run too
many: only ever more cautiously). The other two apply the single-run functions of migration
0005 to each item.

``runwarden_claim_many`` serializes claims by a lock of their own per task (the slot
lock, ``locks.SLOT_LOCK_SPACE``), not the task lock that admits hold: a claim leaves the
number of active runs unchanged, and that number is all an admission decides on, so a
claim need not wait for the admits of its task (it did, for whole batches of them). An
admit that stores a run running takes the slot lock too, after the task lock.

Items are taken in task-name order (items of one task in the order given, so a task's
triggers stay first in, first out), the order in which every batch takes task locks and
counter rows: two batches never wait for each other in a cycle. ``runwarden_replace_many``
first takes every counter row its items will move, in the sorted order given (as
``locks.counter_lock_order`` sorts them), as a single replace with a follow-up does. Each
returned row carries ``item``, the 0-based index of its item in the array.
"""

from __future__ import annotations

from alembic import op

_COLUMNS = (
    "id, task_name, status, end_reason, exit_code, start_at, end_at, created_at, triggered_by, "
    "replica_index, retry_attempt, retry_of_run_id, external_execution_id, pid, not_before"
)

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ADMIT_MANY = f"""
CREATE FUNCTION runwarden_admit_many(p_items jsonb)
RETURNS TABLE (item integer, kind text, decision text, pending bigint, run runs)
LANGUAGE plpgsql AS $$
DECLARE
    runs_in runs[];
    item_no integer[];
    max_c integer[];
    policy text[];
    queue_max integer[];
    claim_at timestamptz[];
    decided text[];
    pending_before bigint[];
    tasks text[];
    n_running bigint[];
    n_pending bigint[];
    inserted text[];
    counted record;
    hit record;
    name text;
    r runs;
    d text;
    t integer;
BEGIN
    SELECT array_agg(jsonb_populate_record(NULL::runs, x.v -> 'run') ORDER BY x.key, x.n),
           array_agg((x.n - 1)::integer ORDER BY x.key, x.n),
           array_agg((x.v ->> 'max_concurrent')::integer ORDER BY x.key, x.n),
           array_agg(x.v ->> 'on_overlap' ORDER BY x.key, x.n),
           array_agg((x.v ->> 'queue_max')::integer ORDER BY x.key, x.n),
           array_agg((x.v ->> 'start_at')::timestamptz ORDER BY x.key, x.n)
      INTO runs_in, item_no, max_c, policy, queue_max, claim_at
      FROM (SELECT e.v, e.n, (e.v -> 'run' ->> 'task_name') COLLATE "C" AS key
              FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e (v, n)) AS x;
    SELECT array_agg(DISTINCT (u).task_name ORDER BY (u).task_name) INTO tasks
      FROM unnest(runs_in) AS u;
    FOREACH name IN ARRAY tasks LOOP
        PERFORM pg_advisory_xact_lock(1920401409, hashtext(name));
    END LOOP;
    -- A run stored running takes a slot: then also the slot locks, as claims do.
    FOR name IN
        SELECT DISTINCT u.task_name FROM unnest(runs_in) WITH ORDINALITY AS u
         WHERE claim_at[u.ordinality] IS NOT NULL ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(1920401410, hashtext(name));
    END LOOP;
    n_running := array_fill(0::bigint, ARRAY[cardinality(tasks)]);
    n_pending := array_fill(0::bigint, ARRAY[cardinality(tasks)]);
    FOR counted IN
        SELECT a.task_name,
               count(*) FILTER (WHERE a.status = 'running') AS nr,
               count(*) FILTER (WHERE a.status = 'pending') AS np
          FROM runs a WHERE a.task_name = ANY (tasks) AND a.status <> 'ended'
         GROUP BY a.task_name
    LOOP
        t := array_position(tasks, counted.task_name::text);
        n_running[t] := counted.nr;
        n_pending[t] := counted.np;
    END LOOP;
    -- domain.policies.admit, item after item, each seeing the runs accepted before it.
    decided := array_fill(NULL::text, ARRAY[cardinality(runs_in)]);
    pending_before := array_fill(0::bigint, ARRAY[cardinality(runs_in)]);
    FOR k IN 1 .. cardinality(runs_in) LOOP
        r := runs_in[k];
        t := array_position(tasks, r.task_name);
        IF n_running[t] + n_pending[t] < max_c[k] THEN
            d := 'accept';
        ELSIF policy[k] = 'skip' THEN
            d := 'skip';
        ELSIF policy[k] = 'terminate' THEN
            d := 'terminate';
        ELSIF n_pending[t] + 1 - greatest(max_c[k] - n_running[t], 0) <= queue_max[k] THEN
            d := 'accept';
        ELSE
            d := 'skip';
        END IF;
        pending_before[k] := n_pending[t];
        IF d = 'skip' THEN
            r.status := 'ended';
            r.end_reason := 'skipped';
            r.exit_code := -1;
            r.end_at := r.created_at;
            runs_in[k] := r;
        ELSIF d = 'accept' AND claim_at[k] IS NOT NULL AND n_pending[t] = 0
              AND n_running[t] < max_c[k] THEN
            -- A free slot and nothing queued before it: claimed at once.
            r.status := 'running';
            r.start_at := claim_at[k];
            runs_in[k] := r;
            n_running[t] := n_running[t] + 1;
        ELSE
            n_pending[t] := n_pending[t] + 1;
        END IF;
        decided[k] := d;
    END LOOP;
    -- One insert. A row that is not inserted is a repeat of a stored cloud execution or
    -- cron tick (or its id is taken): answered from what is stored, as runwarden_admit does.
    WITH stored AS (
        INSERT INTO runs ({_COLUMNS})
        SELECT {_COLUMNS} FROM unnest(runs_in)
        ON CONFLICT DO NOTHING
        RETURNING runs.id
    )
    SELECT coalesce(array_agg(stored.id), '{{}}') INTO inserted FROM stored;
    FOR k IN 1 .. cardinality(runs_in) LOOP
        r := runs_in[k];
        item := item_no[k];
        IF r.id = ANY (inserted) THEN
            kind := 'stored'; decision := decided[k]; pending := pending_before[k]; run := r;
            RETURN NEXT;
            IF decided[k] = 'terminate' THEN
                RETURN QUERY SELECT item_no[k], 'running', NULL::text, NULL::bigint, a
                  FROM runs a WHERE a.task_name = r.task_name AND a.status = 'running';
            END IF;
        ELSE
            SELECT h.decision AS d, h.run AS found INTO hit FROM runwarden_repeat(r) h;
            IF FOUND THEN
                kind := 'repeat'; decision := hit.d; pending := NULL; run := hit.found;
                RETURN NEXT;
            END IF;
        END IF;
    END LOOP;
END
$$
"""

CLAIM_MANY = """
CREATE FUNCTION runwarden_claim_many(p_items jsonb)
RETURNS TABLE (item integer, run runs)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    name text;
    n_running bigint;
    claimed runs;
BEGIN
    -- The slot locks of the batch's tasks (space 0x72770002, locks.SLOT_LOCK_SPACE) before
    -- any row: the claims' own lock, not the task lock admits hold.
    FOR name IN
        SELECT DISTINCT (x.v ->> 'task') COLLATE "C" AS t
          FROM jsonb_array_elements(p_items) AS x (v) ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(1920401410, hashtext(name));
    END LOOP;
    FOR e IN
        SELECT (x.n - 1)::integer AS i, x.v
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x (v, n)
         ORDER BY (x.v ->> 'task') COLLATE "C", x.n
    LOOP
        SELECT count(*) INTO n_running FROM runs r
         WHERE r.task_name = e.v ->> 'task' AND r.status = 'running';
        CONTINUE WHEN n_running >= (e.v ->> 'max')::integer;
        -- Enders take no lock: the run may have been stopped since it was read.
        UPDATE runs r SET status = 'running', start_at = (e.v ->> 'at')::timestamptz, pid = NULL
         WHERE r.id = e.v ->> 'id' AND r.status = 'pending'
        RETURNING r.* INTO claimed;
        IF FOUND THEN
            item := e.i;
            run := claimed;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$
"""

REPLACE_MANY = """
CREATE FUNCTION runwarden_replace_many(
    p_items jsonb, p_lock_tasks text[], p_lock_statuses text[], p_lock_reasons text[]
) RETURNS TABLE (item integer, replaced boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_lock_tasks), 0) LOOP
        INSERT INTO run_counts AS c (task_name, status, end_reason, n)
        VALUES (p_lock_tasks[i], p_lock_statuses[i], p_lock_reasons[i], 0)
        ON CONFLICT (task_name, status, end_reason) DO UPDATE SET n = c.n;
    END LOOP;
    FOR e IN
        SELECT (x.n - 1)::integer AS i, x.v
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x (v, n)
         ORDER BY x.n
    LOOP
        item := e.i;
        replaced := runwarden_replace(
            e.v -> 'new', e.v ->> 'expected', nullif(e.v -> 'follow_up', 'null'::jsonb),
            '{}', '{}', '{}'
        );
        RETURN NEXT;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    """Create the functions."""
    op.execute(ADMIT_MANY)
    op.execute(CLAIM_MANY)
    op.execute(REPLACE_MANY)


def downgrade() -> None:
    """Drop the functions."""
    op.execute("DROP FUNCTION IF EXISTS runwarden_replace_many(jsonb, text[], text[], text[])")
    op.execute("DROP FUNCTION IF EXISTS runwarden_claim_many(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS runwarden_admit_many(jsonb)")
