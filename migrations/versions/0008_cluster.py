"""The cluster: nodes and their leases, run ownership, service slots, stop requests.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Every daemon is a node with a row in ``nodes`` that it heart-beats (``heartbeat_at =
now()``: the database's clock is the only one leases are judged on). A run records the
node that holds it in ``runs.node_id``: whose queue has it while pending, whose process it
is while running. ``stop_requested_at`` asks the owner to stop it (with a NOTIFY on
``runwarden_control``; the owner also polls). ``service_slots`` holds one row per instance
slot of each service, claimed by a node; ``generation`` counts the cluster-wide stop and
restart commands and ``acked_generation`` the last one its owner carried out.
``cluster_leases`` holds leases of one-node-at-a-time duties (retention).

The dispatch-path functions of migrations 0005 and 0006 learn the owner:

- ``runwarden_replace`` stores ``node_id`` and fences: a running run is replaced only by a
  write that names the node holding it (``expected = 'running'``), so a node that was
  reaped can never record the end of a run a survivor already settled.
- ``runwarden_claim_many`` takes a ``node`` per item, claims only for a node that is
  ``up``, and records it as the owner.
- ``runwarden_admit_many`` stores ``node_id`` and stores a cron tick running at once only
  for a node that is ``up``.

They are those functions' texts with these changes applied (checked: each change must
find what it replaces), so the two versions cannot drift apart silently. The single-run
``runwarden_admit`` and ``runwarden_claim`` of 0005 have had no caller since 0006 and
would not record owners: they are dropped.
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_OLD_COLUMNS = "pid, not_before"
_NEW_COLUMNS = "pid, not_before, node_id"


def _patched(sql: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        if old not in sql:
            raise RuntimeError(f"migration 0008: expected text not found: {old!r}")
        sql = sql.replace(old, new)
    return sql


def _functions() -> list[str]:
    fast = importlib.import_module("migrations.versions.0005_fast_paths")
    batched = importlib.import_module("migrations.versions.0006_batched_dispatch")
    replace = _patched(
        fast.REPLACE,
        ("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"),
        (_OLD_COLUMNS, _NEW_COLUMNS),
        ("new_run.not_before", "new_run.not_before, new_run.node_id"),
        ("follow_up.not_before", "follow_up.not_before, follow_up.node_id"),
        (
            "WHERE r.id = new_run.id AND r.status = p_expected;",
            "WHERE r.id = new_run.id AND r.status = p_expected\n"
            "      AND (p_expected <> 'running'\n"
            "           OR r.node_id IS NOT DISTINCT FROM new_run.node_id);",
        ),
    )
    claim_many = _patched(
        batched.CLAIM_MANY,
        ("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"),
        (
            "    claimed runs;\nBEGIN",
            "    claimed runs;\n"
            "    -- Read once per batch (a query per item cost more than the claims).\n"
            "    up_nodes uuid[] := ARRAY(SELECT n.id FROM nodes n WHERE n.state = 'up');\n"
            "BEGIN",
        ),
        (
            "CONTINUE WHEN n_running >= (e.v ->> 'max')::integer;",
            "CONTINUE WHEN n_running >= (e.v ->> 'max')::integer;\n"
            "        -- Only a live node takes a slot: one that was reaped owns nothing.\n"
            "        CONTINUE WHEN e.v ->> 'node' IS NOT NULL\n"
            "            AND NOT (e.v ->> 'node')::uuid = ANY (up_nodes);",
        ),
        (
            "start_at = (e.v ->> 'at')::timestamptz, pid = NULL",
            "start_at = (e.v ->> 'at')::timestamptz, pid = NULL,\n"
            "               node_id = (e.v ->> 'node')::uuid",
        ),
    )
    admit_many = _patched(
        batched.ADMIT_MANY,
        ("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"),
        (_OLD_COLUMNS, _NEW_COLUMNS),
        (
            "    t integer;\nBEGIN",
            "    t integer;\n"
            "    -- Read once per batch (a query per item cost more than the admits).\n"
            "    up_nodes uuid[] := ARRAY(SELECT n.id FROM nodes n WHERE n.state = 'up');\n"
            "BEGIN",
        ),
        (
            "AND n_running[t] < max_c[k] THEN",
            "AND n_running[t] < max_c[k]\n"
            "              AND (r.node_id IS NULL OR r.node_id = ANY (up_nodes))\n"
            "              THEN",
        ),
    )
    return [replace, claim_many, admit_many]


NODES = """
CREATE TABLE nodes (
    id uuid PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    boot_id text NOT NULL,
    version text NOT NULL,
    config_hash text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'dead')),
    dead_at timestamptz
)
"""

SERVICE_SLOTS = """
CREATE TABLE service_slots (
    service text COLLATE "C" NOT NULL,
    replica_index integer NOT NULL CHECK (replica_index >= 0),
    node_id uuid,
    state text NOT NULL DEFAULT 'wanted' CHECK (state IN ('wanted', 'stopped', 'given_up')),
    generation bigint NOT NULL DEFAULT 0,
    acked_generation bigint NOT NULL DEFAULT 0,
    freed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, replica_index)
)
"""

CLUSTER_LEASES = """
CREATE TABLE cluster_leases (
    name text PRIMARY KEY,
    node_id uuid NOT NULL,
    expires_at timestamptz NOT NULL
)
"""


def upgrade() -> None:
    """Create the cluster tables and columns; teach the dispatch functions owners."""
    op.execute(NODES)
    op.execute(SERVICE_SLOTS)
    op.execute(CLUSTER_LEASES)
    # Nullable without a default: instant on a table of any size.
    op.execute("ALTER TABLE runs ADD COLUMN node_id uuid, ADD COLUMN stop_requested_at timestamptz")
    op.execute("CREATE INDEX ix_runs_node_active ON runs (node_id) WHERE status <> 'ended'")
    for sql in _functions():
        op.execute(sql)
    op.execute("DROP FUNCTION IF EXISTS runwarden_claim(text, text, timestamptz, integer)")
    op.execute("DROP FUNCTION IF EXISTS runwarden_admit(jsonb, integer, text, integer)")


def downgrade() -> None:
    """Restore the functions of 0005 and 0006 and drop the cluster's schema."""
    fast = importlib.import_module("migrations.versions.0005_fast_paths")
    batched = importlib.import_module("migrations.versions.0006_batched_dispatch")
    op.execute("DROP FUNCTION IF EXISTS runwarden_admit_many(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS runwarden_claim_many(jsonb)")
    op.execute(
        "DROP FUNCTION IF EXISTS runwarden_replace(jsonb, text, jsonb, text[], text[], text[])"
    )
    for sql in (fast.ADMIT, fast.CLAIM, fast.REPLACE, batched.ADMIT_MANY, batched.CLAIM_MANY):
        op.execute(sql)
    op.execute("DROP INDEX IF EXISTS ix_runs_node_active")
    op.execute("ALTER TABLE runs DROP COLUMN IF EXISTS stop_requested_at, DROP COLUMN node_id")
    op.execute("DROP TABLE IF EXISTS cluster_leases")
    op.execute("DROP TABLE IF EXISTS service_slots")
    op.execute("DROP TABLE IF EXISTS nodes")
