"""Admit, claim and replace many runs in one statement: what the daemon sends under load.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

``adapters/postgres/batching.py`` gathers the admits (and the claims) that arrive while one
is in flight and sends them together. Each function applies the single-run function of
migration 0005 to every item, so the decisions are exactly those of one call per item; one
statement pays one round trip, one commit, one firing of each statement trigger.

Items are taken in task-name order (items of one task in the order given, so a task's
triggers stay first in, first out), the order in which every batch takes task locks and
counter rows: two batches never wait for each other in a cycle. ``runwarden_replace_many``
first takes every counter row its items will move, in the sorted order given (as
``locks.counter_lock_order`` sorts them), as a single replace with a follow-up does. Each
returned row carries ``item``, the 0-based index of its item in the array.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ADMIT_MANY = """
CREATE FUNCTION runwarden_admit_many(p_items jsonb)
RETURNS TABLE (item integer, kind text, decision text, pending bigint, run runs)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
BEGIN
    FOR e IN
        SELECT (x.n - 1)::integer AS i, x.v
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x (v, n)
         ORDER BY (x.v -> 'run' ->> 'task_name') COLLATE "C", x.n
    LOOP
        RETURN QUERY SELECT e.i, f.kind, f.decision, f.pending, f.run
          FROM runwarden_admit(
              e.v -> 'run', (e.v ->> 'max_concurrent')::integer,
              e.v ->> 'on_overlap', (e.v ->> 'queue_max')::integer
          ) AS f;
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
BEGIN
    FOR e IN
        SELECT (x.n - 1)::integer AS i, x.v
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x (v, n)
         ORDER BY (x.v ->> 'task') COLLATE "C", x.n
    LOOP
        RETURN QUERY SELECT e.i, c
          FROM runwarden_claim(
              e.v ->> 'id', e.v ->> 'task', (e.v ->> 'at')::timestamptz,
              (e.v ->> 'max')::integer
          ) AS c;
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
