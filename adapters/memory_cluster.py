"""In-memory fakes of the cluster ports, over an :class:`InMemoryRunRepository`.

The fake clock stands for the database's clock. Same contracts as
``adapters/postgres/cluster.py`` and ``slots.py`` (the contract suite runs both); no method
awaits midway, so each is atomic within one event loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.memory import FakeClock, InMemoryRunRepository
from domain import policies
from domain.cluster import Heartbeat, NodeInfo, NodeState, NodeStatus, lease_expired
from domain.ports import ClusterStore, Reaped, SlotLedger, SlotRecord, SlotState
from domain.run import EndReason, Run, RunStatus
from domain.services import new_run_id
from domain.tasks import TaskSpec


@dataclass
class _Node:
    info: NodeInfo
    started_at: datetime
    heartbeat_at: datetime
    state: NodeState = NodeState.UP


@dataclass
class _Slot:
    node_id: str | None = None
    state: SlotState = SlotState.WANTED
    generation: int = 0
    acked_generation: int = 0
    freed_at: datetime | None = None


class InMemoryCluster(ClusterStore, SlotLedger):
    """Nodes, leases and slots in dicts, sharing the runs of ``repo``."""

    def __init__(self, repo: InMemoryRunRepository, clock: FakeClock) -> None:
        self.repo = repo
        self.clock = clock
        self.nodes_by_id: dict[str, _Node] = {}
        self.slot_rows: dict[tuple[str, int], _Slot] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}
        self.stop_requested: set[str] = set()
        self.notices: list[dict[str, str | None]] = []
        """What the Postgres store would NOTIFY, in order."""
        repo.node_up = self._up

    def _up(self, node_id: str) -> bool:
        node = self.nodes_by_id.get(node_id)
        return node is not None and node.state is NodeState.UP

    def _alive(self, node: _Node, lease: float) -> bool:
        now = self.clock.now()
        return node.state is NodeState.UP and not lease_expired(node.heartbeat_at, now, lease)

    # -- ClusterStore -------------------------------------------------------------------

    async def register(self, node: NodeInfo) -> None:
        now = self.clock.now()
        if node.id in self.nodes_by_id:
            raise ValueError(f"node {node.id} is already registered")
        self.nodes_by_id[node.id] = _Node(node, now, now)

    async def heartbeat(
        self, node_id: str, lease: float, config_hash: str | None = None
    ) -> Heartbeat | None:
        me = self.nodes_by_id.get(node_id)
        if me is None or me.state is not NodeState.UP:
            return None
        me.heartbeat_at = self.clock.now()
        if config_hash is not None:
            me.info = dataclasses.replace(me.info, config_hash=config_hash)
        live = [n for n in self.nodes_by_id.values() if self._alive(n, lease)]
        peers = sum(1 for n in live if n.info.id != node_id)
        return Heartbeat(peers, frozenset(n.info.config_hash for n in live))

    async def leave(self, node_id: str) -> None:
        for run in list(self.repo.runs.values()):
            if run.node_id == node_id and run.status is RunStatus.PENDING:
                self.repo.runs[run.id] = dataclasses.replace(run, node_id=None)
        for slot in self.slot_rows.values():
            if slot.node_id == node_id:
                self._free(slot)
                slot.acked_generation = slot.generation
        self.nodes_by_id.pop(node_id, None)
        self.notices.append({"op": "slots"})

    async def nodes(self, lease: float) -> list[NodeStatus]:
        found = []
        for node in sorted(self.nodes_by_id.values(), key=lambda n: (n.started_at, n.info.id)):
            running = sum(
                1
                for r in self.repo.runs.values()
                if r.node_id == node.info.id and r.status is RunStatus.RUNNING
            )
            alive = self._alive(node, lease)
            found.append(
                NodeStatus(
                    node.info, node.started_at, node.heartbeat_at, node.state, alive, running
                )
            )
        return found

    async def running_runs_of(self, node_ids: Collection[str]) -> list[Run]:
        wanted = set(node_ids)
        return [
            r
            for r in self.repo.runs.values()
            if r.status is RunStatus.RUNNING and (r.node_id is None or r.node_id in wanted)
        ]

    async def reap(
        self,
        me: str,
        lease: float,
        tasks: Mapping[str, TaskSpec],
        forced: Collection[str] = (),
        settle_unowned: bool = False,
    ) -> Reaped:
        now = self.clock.now()
        dead = []
        for node in self.nodes_by_id.values():
            if node.info.id == me or node.state is not NodeState.UP:
                continue
            if lease_expired(node.heartbeat_at, now, lease) or node.info.id in forced:
                node.state = NodeState.DEAD
                dead.append(node.info.id)
        crashed: list[Run] = []
        retries: list[Run] = []
        released = 0
        for run in sorted(self.repo.runs.values(), key=lambda r: (r.created_at, r.id)):
            if not run.is_active or (run.node_id is not None and self._up(run.node_id)):
                continue
            if run.node_id is None and (run.status is RunStatus.PENDING or not settle_unowned):
                continue
            task = tasks.get(run.task_name)
            if run.status is RunStatus.RUNNING:
                ended = run.ended(EndReason.CRASHED, now)
                retry = None
                if task is not None and run.id not in self.stop_requested:
                    retry = policies.next_retry(task, ended, now, new_run_id(now))
                self.repo.runs[run.id] = ended
                self.repo.on_end(ended)
                crashed.append(ended)
                if retry is not None:
                    self.repo.runs[retry.id] = retry
                    retries.append(retry)
            elif (task is not None and task.is_service) or (task is None and run.node_id in forced):
                self.repo.runs[run.id] = run.ended(EndReason.SKIPPED, now)
                self.repo.on_end(self.repo.runs[run.id])
            else:
                self.repo.runs[run.id] = dataclasses.replace(run, node_id=None)
                released += 1
        freed = 0
        for slot in self.slot_rows.values():
            if slot.node_id is not None and not self._up(slot.node_id):
                self._free(slot)
                freed += 1
        if freed:
            self.notices.append({"op": "slots"})
        return Reaped(tuple(dead), tuple(crashed), tuple(retries), released, freed)

    async def adopt(self, me: str, task_names: Collection[str], limit: int) -> list[Run]:
        if not self._up(me):
            return []
        found = sorted(
            (
                r
                for r in self.repo.runs.values()
                if r.status is RunStatus.PENDING and r.node_id is None and r.task_name in task_names
            ),
            key=lambda r: (r.created_at, r.id),
        )[: max(limit, 0)]
        adopted = [dataclasses.replace(r, node_id=me) for r in found]
        for run in adopted:
            self.repo.runs[run.id] = run
        return adopted

    async def request_stop(self, run_id: str) -> Run | None:
        run = self.repo.runs.get(run_id)
        if run is None or not run.is_active:
            return None
        self.stop_requested.add(run_id)
        self.notices.append({"op": "stop", "run": run_id, "node": run.node_id})
        return run

    async def stop_requests(self, me: str) -> list[str]:
        return [
            r.id
            for r in self.repo.runs.values()
            if r.node_id == me and r.status is RunStatus.RUNNING and r.id in self.stop_requested
        ]

    async def try_lead(self, duty: str, me: str, ttl: float) -> bool:
        now = self.clock.now()
        holder = self.leases.get(duty)
        if not self._up(me) or (holder is not None and holder[0] != me and holder[1] >= now):
            return False
        self.leases[duty] = (me, now + timedelta(seconds=ttl))
        return True

    # -- SlotLedger ---------------------------------------------------------------------

    def _free(self, slot: _Slot) -> None:
        slot.node_id = None
        slot.freed_at = self.clock.now()

    def _record(self, key: tuple[str, int], slot: _Slot) -> SlotRecord:
        free_for = 0.0
        if slot.node_id is None:
            since = slot.freed_at or self.clock.now()
            free_for = max((self.clock.now() - since).total_seconds(), 0.0)
        return SlotRecord(
            key[0], key[1], slot.node_id, slot.state, slot.generation, slot.acked_generation,
            free_for,
        )  # fmt: skip

    async def sync(self, services: Mapping[str, int]) -> None:
        for name, count in services.items():
            for index in range(count):
                self.slot_rows.setdefault((name, index), _Slot(freed_at=self.clock.now()))
            for key, slot in list(self.slot_rows.items()):
                if key[0] == name and key[1] >= count and slot.node_id is None:
                    del self.slot_rows[key]

    async def slots(self, services: Collection[str]) -> list[SlotRecord]:
        return [
            self._record(key, slot)
            for key, slot in sorted(self.slot_rows.items())
            if key[0] in services
        ]

    async def claim(self, me: str, service: str, count: int) -> list[SlotRecord]:
        if not self._up(me) or count <= 0:
            return []
        claimed: list[SlotRecord] = []
        for key, slot in sorted(self.slot_rows.items()):
            if len(claimed) == count:
                break
            if key[0] == service and slot.node_id is None and slot.state is SlotState.WANTED:
                slot.node_id = me
                slot.acked_generation = slot.generation
                claimed.append(self._record(key, slot))
        return claimed

    async def record_instance(self, run: Run) -> bool:
        slot = self.slot_rows.get((run.task_name, run.replica_index))
        if (
            slot is None
            or run.node_id is None
            or slot.node_id != run.node_id
            or slot.state is not SlotState.WANTED
            or not self._up(run.node_id)
        ):
            return False
        await self.repo.add(run)
        return True

    async def settle(
        self,
        me: str,
        service: str,
        index: int,
        *,
        generation: int,
        state: SlotState | None = None,
        release: bool = False,
    ) -> bool:
        slot = self.slot_rows.get((service, index))
        if slot is None or slot.node_id != me:
            return False
        slot.acked_generation = max(slot.acked_generation, generation)
        if state is not None:
            slot.state = state
        if release:
            self._free(slot)
            self.notices.append({"op": "slots", "service": service})
        return True

    async def command(self, service: str, *, stop: bool) -> int:
        generation = 0
        for key, slot in self.slot_rows.items():
            if key[0] != service:
                continue
            slot.generation += 1
            slot.state = SlotState.STOPPED if stop else SlotState.WANTED
            if slot.node_id is None:
                slot.acked_generation = slot.generation
            generation = max(generation, slot.generation)
        self.notices.append({"op": "slots", "service": service})
        return generation

    async def settled(self, service: str, generation: int) -> bool:
        return all(
            slot.acked_generation >= generation
            for key, slot in self.slot_rows.items()
            if key[0] == service
        )
