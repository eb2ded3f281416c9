"""The cluster on PostgreSQL: node leases, reaping, adoption, stop requests, leader duties.

Lease arithmetic is SQL on the server's ``now()`` in short autocommitted statements, so no
node's clock takes part. Reaping is one transaction: mark the expired nodes dead, then
settle everything a node that is not ``up`` holds, through the same fenced
``runwarden_replace_many`` the owners use (racing reapers: each run is replaced once, the
second finds it ended). Notifications on ``runwarden_control`` tell owners about stop
requests and freed slots; owners poll as well, so a lost NOTIFY costs a second.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.postgres.database import autocommit, transaction
from adapters.postgres.rows import from_row
from adapters.postgres.runs import replace_many_params
from adapters.postgres.tables import RUN_COLUMNS
from domain import policies
from domain.cluster import Heartbeat, NodeInfo, NodeState, NodeStatus
from domain.ports import ClusterStore, Reaped
from domain.run import EndReason, Run, RunStatus
from domain.services import new_run_id
from domain.tasks import TaskSpec

CONTROL_CHANNEL = "runwarden_control"
"""NOTIFY channel of requests to nodes: ``{"op": "stop", "run", "node"}`` and
``{"op": "slots", "service"}``."""
DEAD_NODES_KEPT = "1 hour"
"""How long a dead node stays listed by ``GET /api/nodes`` before its row goes."""

_REGISTER = sa.text(
    "INSERT INTO nodes (id, host, pid, boot_id, version, config_hash) "
    "VALUES (:id, :host, :pid, :boot_id, :version, :config_hash)"
)
_HEARTBEAT = sa.text(
    """
    WITH me AS (
        UPDATE nodes SET heartbeat_at = now(), config_hash = coalesce(:hash, config_hash)
         WHERE id = :id AND state = 'up' RETURNING id
    )
    SELECT count(*) FILTER (WHERE n.id <> :id) AS peers,
           array_agg(DISTINCT n.config_hash) AS hashes
      FROM me, nodes n
     WHERE n.state = 'up'
       AND (n.id = :id OR n.heartbeat_at >= now() - make_interval(secs => :lease))
    """
)
_LEAVE = [
    sa.text("UPDATE runs SET node_id = NULL WHERE node_id = :id AND status = 'pending'"),
    sa.text(
        "UPDATE service_slots SET node_id = NULL, freed_at = now(), "
        "acked_generation = generation WHERE node_id = :id"
    ),
    sa.text("DELETE FROM nodes WHERE id = :id"),
    sa.text(f"SELECT pg_notify('{CONTROL_CHANNEL}', '{{\"op\": \"slots\"}}')"),
]
_NODES = sa.text(
    """
    SELECT n.*, n.state = 'up' AND n.heartbeat_at >= now() - make_interval(secs => :lease)
               AS alive,
           (SELECT count(*) FROM runs r WHERE r.node_id = n.id AND r.status = 'running')
               AS running_runs
      FROM nodes n ORDER BY n.started_at, n.id
    """
)
_MARK_DEAD = sa.text(
    """
    UPDATE nodes SET state = 'dead', dead_at = now()
     WHERE state = 'up' AND id <> :me
       AND (heartbeat_at < now() - make_interval(secs => :lease) OR id = ANY (:forced))
    RETURNING id
    """
)
# Active runs held by a node that is not up (dead, or its row is gone), and running runs
# held by no node (left by a daemon older than the cluster).
_ORPHANED = sa.text(
    f"""
    SELECT {", ".join(c.name for c in RUN_COLUMNS)}, stop_requested_at IS NOT NULL AS stopping
      FROM runs r
     WHERE r.status <> 'ended'
       AND ((:unowned AND r.node_id IS NULL AND r.status = 'running')
            OR (r.node_id IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM nodes n WHERE n.id = r.node_id AND n.state = 'up')))
    """
)
_RELEASE_PENDING = sa.text(
    "UPDATE runs SET node_id = NULL WHERE id = ANY (:ids) AND status = 'pending'"
)
_FREE_SLOTS = sa.text(
    """
    UPDATE service_slots s SET node_id = NULL, freed_at = now()
     WHERE s.node_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.node_id AND n.state = 'up')
    """
)
_FORGET_DEAD = sa.text(
    f"DELETE FROM nodes WHERE state = 'dead' AND dead_at < now() - interval '{DEAD_NODES_KEPT}'"
)
_REPLACE_MANY = sa.text(
    "SELECT f.item, f.replaced FROM runwarden_replace_many(:items, :tasks, :statuses, :reasons) f"
)
_ADOPT = sa.text(
    f"""
    UPDATE runs r SET node_id = :me
     WHERE r.id IN (
        SELECT a.id FROM runs a
         WHERE a.status = 'pending' AND a.node_id IS NULL AND a.task_name = ANY (:tasks)
         ORDER BY a.created_at, a.id
         LIMIT :limit
           FOR UPDATE SKIP LOCKED)
       AND r.status = 'pending' AND r.node_id IS NULL
       AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = :me AND n.state = 'up')
    RETURNING {", ".join("r." + c.name for c in RUN_COLUMNS)}
    """
)
_REQUEST_STOP = sa.text(
    f"""
    WITH asked AS (
        UPDATE runs SET stop_requested_at = coalesce(stop_requested_at, now())
         WHERE id = :id AND status <> 'ended'
        RETURNING {", ".join(c.name for c in RUN_COLUMNS)}
    )
    SELECT asked.*, pg_notify('{CONTROL_CHANNEL}', json_build_object(
               'op', 'stop', 'run', asked.id, 'node', asked.node_id)::text) AS notified
      FROM asked
    """
)
_STOP_REQUESTS = sa.text(
    "SELECT id FROM runs WHERE node_id = :me AND status = 'running' "
    "AND stop_requested_at IS NOT NULL"
)
_TRY_LEAD = sa.text(
    """
    INSERT INTO cluster_leases AS l (name, node_id, expires_at)
    SELECT :duty, :me, now() + make_interval(secs => :ttl)
     WHERE EXISTS (SELECT 1 FROM nodes n WHERE n.id = :me AND n.state = 'up')
    ON CONFLICT (name) DO UPDATE SET node_id = excluded.node_id, expires_at = excluded.expires_at
     WHERE l.node_id = excluded.node_id OR l.expires_at < now()
    RETURNING node_id
    """
)
_RUNNING_OF = sa.text(
    f"""
    SELECT {", ".join(c.name for c in RUN_COLUMNS)} FROM runs
     WHERE status = 'running' AND (node_id = ANY (:nodes) OR node_id IS NULL)
    """
)


def _node_status(row: RowMapping) -> NodeStatus:
    info = NodeInfo(
        id=str(row["id"]),
        host=row["host"],
        pid=row["pid"],
        boot_id=row["boot_id"],
        version=row["version"],
        config_hash=row["config_hash"],
    )
    return NodeStatus(
        info=info,
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        state=NodeState(row["state"]),
        alive=bool(row["alive"]),
        running_runs=int(row["running_runs"]),
    )


class PostgresCluster(ClusterStore):
    """Nodes and their holdings in PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def register(self, node: NodeInfo) -> None:
        """Insert the node's row, ``up`` with a fresh lease."""
        params = {
            "id": node.id,
            "host": node.host,
            "pid": node.pid,
            "boot_id": node.boot_id,
            "version": node.version,
            "config_hash": node.config_hash,
        }
        async with autocommit(self._engine) as conn:
            await conn.execute(_REGISTER, params)

    async def heartbeat(
        self, node_id: str, lease: float, config_hash: str | None = None
    ) -> Heartbeat | None:
        """Renew the lease; None if the node was reaped (its row is dead or gone)."""
        params = {"id": node_id, "lease": lease, "hash": config_hash}
        async with autocommit(self._engine) as conn:
            row = (await conn.execute(_HEARTBEAT, params)).mappings().one()
        if row["hashes"] is None:  # no row of ours was renewed
            return None
        return Heartbeat(peers=int(row["peers"]), config_hashes=frozenset(row["hashes"]))

    async def leave(self, node_id: str) -> None:
        """Release the node's pending runs and slots and remove its row."""
        async with transaction(self._engine) as conn:
            for statement in _LEAVE:
                await conn.execute(statement, {"id": node_id})

    async def nodes(self, lease: float) -> builtins.list[NodeStatus]:
        """Every node row, oldest first, judged alive on the server's clock."""
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(_NODES, {"lease": lease})).mappings().all()
        return [_node_status(row) for row in rows]

    async def running_runs_of(self, node_ids: Collection[str]) -> builtins.list[Run]:
        """Running runs held by ``node_ids`` or by no node."""
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(_RUNNING_OF, {"nodes": list(node_ids)})).mappings().all()
        return [from_row(row) for row in rows]

    async def reap(
        self,
        me: str,
        lease: float,
        tasks: Mapping[str, TaskSpec],
        forced: Collection[str] = (),
        settle_unowned: bool = False,
    ) -> Reaped:
        """Declare expired (and ``forced``) nodes dead and settle what dead nodes hold."""
        async with transaction(self._engine) as conn:
            now: datetime = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
            params = {"me": me, "lease": lease, "forced": list(forced)}
            dead = [str(r[0]) for r in (await conn.execute(_MARK_DEAD, params)).all()]
            found = await conn.execute(_ORPHANED, {"unowned": settle_unowned})
            orphaned = found.mappings().all()
            crashed, retries, released = await _settle(conn, orphaned, tasks, now, set(forced))
            freed = (await conn.execute(_FREE_SLOTS)).rowcount
            await conn.execute(_FORGET_DEAD)
            if freed:
                await conn.execute(
                    sa.text(f"SELECT pg_notify('{CONTROL_CHANNEL}', '{{\"op\": \"slots\"}}')")
                )
        return Reaped(tuple(dead), tuple(crashed), tuple(retries), released, int(freed))

    async def adopt(self, me: str, task_names: Collection[str], limit: int) -> builtins.list[Run]:
        """Hold up to ``limit`` pending runs nobody holds, of the named tasks."""
        if not task_names or limit <= 0:
            return []
        params = {"me": me, "tasks": list(task_names), "limit": limit}
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(_ADOPT, params)).mappings().all()
        adopted = [from_row(row) for row in rows]
        return sorted(adopted, key=lambda r: (r.created_at, r.id))

    async def request_stop(self, run_id: str) -> Run | None:
        """Mark an active run as to be stopped and notify its owner."""
        if "\x00" in run_id:
            return None
        async with autocommit(self._engine) as conn:
            row = (await conn.execute(_REQUEST_STOP, {"id": run_id})).mappings().first()
        return from_row(row) if row is not None else None

    async def stop_requests(self, me: str) -> builtins.list[str]:
        """Ids of ``me``'s running runs that somebody asked to stop."""
        async with autocommit(self._engine) as conn:
            return [r[0] for r in (await conn.execute(_STOP_REQUESTS, {"me": me})).all()]

    async def try_lead(self, duty: str, me: str, ttl: float) -> bool:
        """Take or renew the lease of ``duty``; True while ``me`` holds it."""
        async with autocommit(self._engine) as conn:
            row = (await conn.execute(_TRY_LEAD, {"duty": duty, "me": me, "ttl": ttl})).first()
        return row is not None


async def _settle(
    conn: AsyncConnection,
    orphaned: Sequence[RowMapping],
    tasks: Mapping[str, TaskSpec],
    now: datetime,
    forced: set[str],
) -> tuple[builtins.list[Run], builtins.list[Run], int]:
    """End or release what dead nodes held; returns (crashed, retries, released count)."""
    items: list[tuple[Run, RunStatus, Run | None]] = []
    release: list[str] = []
    for row in orphaned:
        run = from_row(row)
        task = tasks.get(run.task_name)
        if run.status is RunStatus.RUNNING:
            ended = run.ended(EndReason.CRASHED, now)
            retry = None
            if task is not None and not row["stopping"]:
                retry = policies.next_retry(task, ended, now, new_run_id(now))
            items.append((ended, RunStatus.RUNNING, retry))
        elif (task is not None and task.is_service) or (task is None and run.node_id in forced):
            # Instances are started afresh by whoever takes the slot; a task the restarted
            # daemon no longer has will not be run by it.
            items.append((run.ended(EndReason.SKIPPED, now), RunStatus.PENDING, None))
        else:
            release.append(run.id)
    released = 0
    if release:
        released = (await conn.execute(_RELEASE_PENDING, {"ids": release})).rowcount
    if not items:
        return [], [], int(released)
    # The owners' own batched replace, fenced the same way, inside this transaction.
    rows = (await conn.execute(_REPLACE_MANY, replace_many_params(items))).all()
    done = {item for item, replaced in rows if replaced}
    crashed = [items[i][0] for i in sorted(done) if items[i][1] is RunStatus.RUNNING]
    retries = [f for i in sorted(done) if (f := items[i][2]) is not None]
    return crashed, retries, int(released)
