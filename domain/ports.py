"""The domain's ports: what it needs from the world, as Protocols with their contracts.

Adapters subclass these explicitly (``class PostgresRunRepository(RunRepository)``) so the
type checker proves they conform. One contract suite in ``tests/contract`` runs against
the in-memory fakes and the Postgres adapters alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from domain.channels import ChannelSpec
from domain.cluster import Heartbeat, NodeInfo, NodeStatus
from domain.listing import ListedRun, RunPage, RunQuery
from domain.logs import LogBatch, LogLine, LogStream
from domain.messages import Message
from domain.notifications import Routing
from domain.outbox import (
    Attempt,
    ChannelStats,
    Claimed,
    Delivery,
    DeliveryPage,
    DeliveryQuery,
    Outcome,
    SendResult,
)
from domain.policies import Admission
from domain.run import EndReason, Run, RunStatus
from domain.tasks import TaskSpec


class Clock(Protocol):
    """The only source of time."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for measuring intervals."""
        ...


@dataclass(frozen=True, slots=True)
class Admitted:
    """A trigger as recorded: the run (pending, or ended skipped) and runs to stop for it."""

    run: Run
    decision: Admission
    to_stop: Sequence[Run] = ()


@dataclass(frozen=True, slots=True)
class RunCount:
    """How many stored runs of one task are in one status (and end reason, if ended)."""

    task_name: str
    status: RunStatus
    end_reason: EndReason | None
    n: int


class RunRepository(Protocol):
    """Where runs are recorded. Every method is one transaction.

    Contract:
    - ``add`` inserts a new run; ids are unique.
    - ``add_cron_run`` inserts a cron run unless a first attempt (``retry_attempt`` 0) of the
      same task at the same ``created_at`` tick exists; it returns False then, so a tick is
      recorded once however many loops see it.
    - ``replace`` is compare-and-set: it stores ``new`` only if the stored run still has
      ``expected`` status, and says whether it did. Two racing enders cannot both win.
      ``follow_up`` (a retry) is inserted in the same transaction, only if it did.
    - ``admit`` records a new trigger under the task's overlap policy, deciding with
      ``domain.policies.admit`` on the task's load read under a per-task lock in the same
      transaction, so concurrent triggers from any number of clients or daemons cannot
      exceed the policy. It stores the run pending, or ended ``skipped`` (exit -1), and for
      ``terminate`` returns the running runs to stop (``policies.runs_to_terminate``).
      With ``start_at``, an accepted run that finds a free slot and no run queued before
      it is stored running from ``start_at`` instead, claimed in the same transaction.
    - ``claim`` moves a pending run to running at ``at`` only if the task has fewer than
      ``max_concurrent`` running runs, deciding under a per-task lock of the claims' own
      (a claim leaves the number of active runs, all admission depends on, unchanged);
      None if it is no longer pending or no slot is free.
    - ``release`` gives back every delivery ``node`` holds (a graceful stop): due at once,
      its cut-off try recorded as a retry; returns how many.
    - ``prune`` deletes, in one bounded batch, ended runs of a task beyond its newest
      ``keep_runs`` ended runs or ended before ``ended_before``, with their logs; it returns
      how many it deleted (0 when done). Active runs are never pruned.
    - ``last_ticks``/``save_last_tick`` keep, per task, the latest cron tick handled, so a
      restarted daemon knows which ticks it missed.
    - ``get`` returns None for an unknown id.
    - ``list`` filters, orders and windows exactly as ``domain.listing.apply_query`` does,
      with ``total`` counting every match regardless of ``limit``/``offset``.
    - ``active`` returns the runs in ``pending`` or ``running``, oldest first.
    - ``delete`` removes an ended run and says whether one was removed.
    - ``counts`` returns the number of stored runs per (task, status, end reason), without
      zero counts, read from counters rather than by counting rows (cheap at any size).
    - ``last_ended`` returns the ended run with one of ``reasons`` that ended last (ties:
      the greatest id), or None; it uses an index, not a scan of the history.
    - ``newest`` returns, for each of ``task_names``, its newest ``limit`` runs (only
      ended ones with ``ended_only``) in the listing's default order (``created_at`` then
      ``id``, descending), as listed runs; a name without runs maps to an empty list. One
      read for all the names, each an index probe, whatever the history's size.
    """

    async def add(self, run: Run) -> None: ...

    async def add_cron_run(self, run: Run) -> bool: ...

    async def replace(
        self, new: Run, expected: RunStatus, follow_up: Run | None = None
    ) -> bool: ...

    async def admit(
        self, run: Run, task: TaskSpec, start_at: datetime | None = None
    ) -> Admitted: ...

    async def claim(self, run: Run, at: datetime, max_concurrent: int) -> Run | None: ...

    async def prune(
        self, task_name: str, keep_runs: int | None, ended_before: datetime | None, batch: int
    ) -> int: ...

    async def last_ticks(self) -> dict[str, datetime]: ...

    async def save_last_tick(self, task_name: str, tick: datetime) -> None: ...

    async def get(self, run_id: str) -> Run | None: ...

    async def active(self, task_name: str | None = None) -> list[Run]: ...

    async def delete(self, run_id: str) -> bool: ...

    async def counts(self) -> Sequence[RunCount]: ...

    async def last_ended(self, reasons: Collection[EndReason]) -> Run | None: ...

    async def newest(
        self, task_names: Sequence[str], limit: int, ended_only: bool = False
    ) -> dict[str, Sequence[ListedRun]]: ...

    # Last, so that its name does not shadow the builtin in the annotations above.
    async def list(self, query: RunQuery) -> RunPage: ...


class LogStore(Protocol):
    """Where run output lines are kept.

    Contract:
    - ``append`` stores lines of one run; their ``n`` are consecutive and continue the
      run's previous append. Appends of one run are never concurrent. A batch is the
      columnar form the capture makes; a sequence of lines is taken as the same batch.
    - ``read_batch`` returns up to ``limit`` stored lines with ``n >= first``, in order, as
      one batch; ``read`` returns the same lines as one object each. With ``max_bytes`` it
      stops at the first appended batch that begins once that much text has been read
      (so it returns at least one batch's lines, and fewer than ``limit`` may remain).
    - ``stats`` returns (first available n, total lines ever appended); (0, 0) when none.
    - ``trim`` drops the run's oldest stored lines, whole batches at a time, until at most
      ``max_bytes`` of text remain (``drop_old``); ``first available`` moves past them and
      line numbers of what remains never change.
    - ``delete`` removes every line of the run.
    """

    async def append(self, run_id: str, lines: LogBatch | Sequence[LogLine]) -> None: ...

    async def read_batch(
        self, run_id: str, first: int, limit: int, max_bytes: int | None = None
    ) -> LogBatch: ...

    async def read(self, run_id: str, first: int, limit: int) -> list[LogLine]:
        """``read_batch`` as one :class:`LogLine` per line (tests, small reads)."""
        return (await self.read_batch(run_id, first, limit)).lines()

    def raw_text(self, run_id: str, end: int) -> AsyncIterator[bytes]:
        """The stored lines before ``end``, from the first available, as UTF-8 text (each
        line ending in a newline), in pieces of bounded size (the raw download)."""
        return _raw_text(self, run_id, end)

    async def stats(self, run_id: str) -> tuple[int, int]: ...

    async def trim(self, run_id: str, max_bytes: int) -> None: ...

    async def delete(self, run_id: str) -> None: ...


RAW_BATCH = 1000
"""Lines the generic ``raw_text`` reads per ``read_batch`` and yields as one piece."""


async def _raw_text(store: LogStore, run_id: str, end: int) -> AsyncIterator[bytes]:
    """``LogStore.raw_text`` for any store, by ``read_batch``."""
    first = 0
    while first < end:
        batch = await store.read_batch(run_id, first, min(RAW_BATCH, end - first))
        if not batch.count:
            return
        yield batch.text().encode()
        first = batch.end


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """How to start one run's process: ``shell -c command`` in its own process group."""

    command: str
    shell: str = "/bin/sh"
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None


class OutputSink(Protocol):
    """Receives a process's output as raw chunks, in order per stream."""

    async def write(self, stream: LogStream, data: bytes) -> None:
        """Take one chunk. May await to apply backpressure to the process."""
        ...


class RunningProcess(Protocol):
    """A started process group."""

    @property
    def pid(self) -> int:
        """The shell's pid, which is also the process group id."""
        ...

    async def wait(self) -> int:
        """Wait for exit and for both pipes to be drained into the sink.

        Returns the exit status, or -1 if a signal killed the process.
        """
        ...

    async def terminate(self, stop_signal: str, grace: float) -> None:
        """Send ``stop_signal`` to the whole group, then SIGKILL after ``grace`` seconds.

        Returns once the group's leader has exited. Safe to call more than once.
        """
        ...


class ProcessStartError(Exception):
    """The process could not be started; the message says why (for a system log line)."""


class Executor(Protocol):
    """Starts processes."""

    async def start(self, spec: ProcessSpec, sink: OutputSink) -> RunningProcess:
        """Start ``spec`` and feed its output to ``sink``.

        Raises :class:`ProcessStartError` if the shell or working directory is unusable.
        """
        ...

    async def reap_orphans(self, run_ids: Collection[str], node_ids: Collection[str]) -> int:
        """Kill processes a dead daemon left running for these runs; return how many.

        Only processes that provably belong to one of the runs *and* were started by one of
        the nodes ``node_ids`` (or by a daemon older than the cluster, which named no node)
        are touched: a run id alone could belong to a live node's process.
        """
        ...


class RunEventKind(StrEnum):
    """A run lifecycle event, named as on the wire (``GET /api/runs/stream``).

    A run is ``created`` when recorded (whatever its phase), ``started`` when it moves
    pending -> running, and ends with exactly one of ``completed`` (end reason ``success``)
    or ``failed`` (every other end reason: failed, stopped, timeout, crashed, skipped,
    log_overflow). A run recorded already running or ended (a service instance, a skipped
    trigger, a bulk import) yields ``created`` and then the event of that phase.
    """

    CREATED = "run.created"
    STARTED = "run.started"
    COMPLETED = "run.completed"
    FAILED = "run.failed"
    DELETED = "run.deleted"


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One lifecycle change of a run; ``run`` as it was right after it (for ``deleted``:
    as it was when deleted). ``seq`` numbers the events of one source, increasing."""

    seq: int
    kind: RunEventKind
    run: Run


class SubscriptionLost(Exception):
    """The source ended a subscription (it fell behind, or the feed was interrupted): events
    may have been missed. The message says why."""


class RunSubscription(Protocol):
    """One subscriber's view of a :class:`RunEventSource`."""

    async def next(self) -> RunEvent:
        """The next event, waiting for one; safe to cancel (e.g. by a timeout).

        Raises :class:`SubscriptionLost` once the source has dropped this subscription.
        """
        ...

    def close(self) -> None:
        """Stop receiving events; safe to call more than once."""
        ...


class RunEventSource(Protocol):
    """Run lifecycle events of every daemon that shares the store.

    Contract:
    - ``subscribe`` returns a subscription that receives every event the source learns of
      from then on, of any writer of the store, filtered to ``task_name`` when given; events
      arrive in the order their changes were committed, never twice. The feed is
      asynchronous: a change committed just before ``subscribe`` may still arrive, so a
      reader that needs completeness subscribes first, then reads the store.
    - A subscriber that falls behind by more than the source's bound is dropped
      (:class:`SubscriptionLost`) rather than slowing the others or growing memory; so are
      all subscribers when the source loses its feed, since events may have been missed.
    - ``subscribe`` raises ``StoreUnavailable`` while the feed is down.
    - ``subscribers`` counts open subscriptions.
    """

    def subscribe(self, task_name: str | None = None) -> RunSubscription: ...

    @property
    def subscribers(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one reaping pass settled."""

    nodes: tuple[str, ...] = ()
    """Nodes it declared dead."""
    crashed: tuple[Run, ...] = ()
    """Their running runs, as recorded ``crashed``."""
    retries: tuple[Run, ...] = ()
    """Retries of those, pending and held by no node (any node adopts them)."""
    released: int = 0
    """Their pending runs, now held by no node."""
    freed_slots: int = 0
    """Service slots they held, now free for the others to claim."""


class ClusterStore(Protocol):
    """Nodes, their leases, and the runs they hold, in the store every node shares.

    Contract:
    - Lease arithmetic uses the store's clock only: ``register`` and ``heartbeat`` stamp
      the store's ``now``; a node is alive while ``now - heartbeat_at <= lease``.
    - ``heartbeat`` renews the lease of an ``up`` node and says how many *other* live
      nodes there are and which config hashes the live nodes run; None when the node's
      row is gone or dead (it was reaped: it owns nothing any more).
    - ``reap`` declares dead, in one transaction, every ``up`` node other than ``me``
      whose lease expired, and those in ``forced`` (a starting node's earlier
      incarnations); then settles what is held by a node that is not up: running runs end
      ``crashed`` (retried per ``tasks`` unless a stop was requested; retries are held by
      no node), pending task runs are released (held by no node), pending service runs
      end ``skipped``, as do pending runs of tasks unknown to ``tasks`` held by a
      ``forced`` node; slots are freed. With ``settle_unowned`` (a node's start) running
      runs held by no node (left by a daemon older than the cluster) end ``crashed`` too.
      Idempotent: racing reapers settle each run once.
    - ``leave`` is a graceful exit: the node's pending runs and slots are released and
      its row removed, so the others take over at once.
    - ``adopt`` gives ``me`` up to ``limit`` pending runs held by no node, of the named
      tasks, oldest first; two adopters never get the same run.
    - ``request_stop`` marks an active run as to be stopped and tells its owner (NOTIFY,
      or the owner's poll of ``stop_requests``); returns the run as stored, None if it is
      absent or ended.
    - ``try_lead`` takes or renews the lease of a one-node-at-a-time duty for ``ttl``
      seconds; True while ``me`` holds it.
    """

    async def register(self, node: NodeInfo) -> None: ...

    async def heartbeat(
        self, node_id: str, lease: float, config_hash: str | None = None
    ) -> Heartbeat | None:
        """Renew the lease (publishing ``config_hash`` when given; see the class doc)."""
        ...

    async def leave(self, node_id: str) -> None: ...

    async def nodes(self, lease: float) -> Sequence[NodeStatus]: ...

    async def running_runs_of(self, node_ids: Collection[str]) -> Sequence[Run]:
        """Running runs held by these nodes, or (for a pre-cluster history) by no node."""
        ...

    async def reap(
        self,
        me: str,
        lease: float,
        tasks: Mapping[str, TaskSpec],
        forced: Collection[str] = (),
        settle_unowned: bool = False,
    ) -> Reaped: ...

    async def adopt(self, me: str, task_names: Collection[str], limit: int) -> Sequence[Run]: ...

    async def request_stop(self, run_id: str) -> Run | None: ...

    async def stop_requests(self, me: str) -> Sequence[str]:
        """Ids of running runs of ``me`` that somebody asked to stop."""
        ...

    async def try_lead(self, duty: str, me: str, ttl: float) -> bool: ...


class SlotState(StrEnum):
    """What the cluster wants of one service instance slot."""

    WANTED = "wanted"
    """Keep an instance running in it."""
    STOPPED = "stopped"
    """The service was stopped (API): no instance until it is restarted."""
    GIVEN_UP = "given_up"
    """Its instance died ``start_retries`` times in a row: empty until a restart."""


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """One service instance slot as stored."""

    service: str
    index: int
    node_id: str | None
    state: SlotState
    generation: int
    """Stop and restart commands given to the service so far."""
    acked_generation: int
    """The last command its owner carried out (or that needed no owner)."""
    free_for: float
    """Seconds it has been held by no node (0 while held)."""


class SlotLedger(Protocol):
    """Service instance slots, claimed by nodes so each runs exactly ``instances``.

    Contract:
    - ``sync`` makes each service have slots ``0 .. instances-1``; slots beyond that
      which no node holds are removed.
    - ``claim`` gives ``me`` (if up) up to ``count`` free ``wanted`` slots of the service,
      lowest index first; two claimers never get the same slot. Claiming acknowledges
      the commands given so far (the claimer starts fresh).
    - ``record_instance`` inserts the pending run of an instance only while its node
      holds its slot (``replica_index``) in state ``wanted`` and is up; says whether.
    - ``settle`` is the holder's report on a slot: it carried out command ``generation``,
      optionally moved the slot to ``state``, and with ``release`` lets go of it; False if
      the slot is not held by ``me`` (then nothing changes).
    - ``command`` stops (``stop=True``) or restarts every slot of a service: increments
      its generation, sets the state (``stopped`` / ``wanted``), acknowledges it for slots
      no node holds, and tells the holders; returns the new generation.
    - ``settled`` says whether every slot of the service has acknowledged ``generation``.
    """

    async def sync(self, services: Mapping[str, int]) -> None: ...

    async def slots(self, services: Collection[str]) -> Sequence[SlotRecord]: ...

    async def claim(self, me: str, service: str, count: int) -> Sequence[SlotRecord]: ...

    async def record_instance(self, run: Run) -> bool: ...

    async def settle(
        self,
        me: str,
        service: str,
        index: int,
        *,
        generation: int,
        state: SlotState | None = None,
        release: bool = False,
    ) -> bool: ...

    async def command(self, service: str, *, stop: bool) -> int: ...

    async def settled(self, service: str, generation: int) -> bool: ...


class NotificationOutbox(Protocol):
    """Notification events and their deliveries, one per channel, in the shared store.

    Contract:
    - ``configure`` replaces the routing the store applies (channels, tasks' ``notify``
      lists and ``warn_after``, the coalescing window). Every node writes the same.
    - A run's end records, in the same transaction, its ``run.<end_reason>`` event (when
      some channel wants it, per ``domain.notifications.channels_for``) with one delivery
      per such channel: ``pending``, or ``suppressed`` when coalescing holds it
      (``domain.notifications.coalesce`` on the store's clock); and ``run.recovered``
      after a success that ends a notified failure streak, the streak's held repeats
      summarised first (``end_effects``).
    - ``emit`` records an event now with one pending delivery per channel it routes to
      (``only_channel``: to that channel alone, whatever its ``on``); with ``dedupe_key``
      an event already recorded with that key is not recorded again (None returned).
      Returns the delivery ids.
    - ``emit_long_running`` records ``run.long_running`` once per running run past its
      task's ``warn_after``; returns how many it recorded. Racing callers record each once.
    - ``flush`` records the summary of every window that closed with repeats held
      (``count`` = the repeats); returns how many. Racing callers summarise each once.
    - ``claim`` leases up to ``limit`` due deliveries (pending, retrying whose time came,
      or sending whose lease ran out) to ``node`` for ``lease`` seconds, oldest due first,
      counting an attempt; two claimers never get the same delivery at once.
    - ``finish`` records the try numbered ``attempt`` and, if ``node`` still holds the
      delivery from that claim, its new state; says whether it did.
    - ``retry`` makes a ``dead`` delivery pending again with a fresh budget; False if it is
      not dead.
    - ``release`` gives back every delivery ``node`` holds (a graceful stop): due at once,
      its cut-off try recorded as a retry; returns how many.
    - ``prune`` deletes, in one bounded batch, events created before ``before`` whose
      deliveries are all settled (delivered, dead, suppressed), with their deliveries and
      attempts; returns how many events it deleted.
    - ``get``/``attempts``/``list``/``stats``/``count_for_run`` read.
    """

    async def configure(self, routing: Routing) -> None: ...

    async def emit(
        self,
        type: str,
        task_name: str | None,
        run_id: str | None,
        data: Mapping[str, Any],
        *,
        only_channel: str | None = None,
        dedupe_key: str | None = None,
        count: int = 1,
    ) -> Sequence[str] | None: ...

    async def emit_long_running(self) -> int: ...

    async def flush(self) -> int: ...

    async def claim(self, node: str, limit: int, lease: float) -> Sequence[Claimed]: ...

    async def finish(self, delivery_id: str, node: str, attempt: int, outcome: Outcome) -> bool: ...

    async def retry(self, delivery_id: str) -> bool: ...

    async def release(self, node: str) -> int: ...

    async def prune(self, before: datetime, batch: int) -> int: ...

    async def get(self, delivery_id: str) -> Delivery | None: ...

    async def attempts(self, delivery_id: str) -> Sequence[Attempt]: ...

    async def stats(self) -> Sequence[ChannelStats]: ...

    async def count_for_run(self, run_id: str) -> int: ...

    # Last, so that its name does not shadow the builtin in the annotations above.
    async def list(self, query: DeliveryQuery) -> DeliveryPage: ...


class ChannelSender(Protocol):
    """Sends one message on one channel.

    Contract: returns how the try went and never raises for the receiver's failures — a
    network error or a timeout is a ``retry`` with the error's text; a 2xx is
    ``delivered``; other answers per ``domain.notifications.verdict_for_status``
    (redirects are not followed). Gives up after the channel's ``timeout``. Error texts
    contain none of the channel's secrets (``ChannelSpec.redact``).
    """

    async def send(self, channel: ChannelSpec, message: Message) -> SendResult: ...

    async def close(self) -> None:
        """Release connections."""
        ...


class SessionStore(Protocol):
    """Dashboard login sessions, in the store every node shares (``/ui/login``).

    A session is known only by ``key``, the SHA-256 digest of its secret id (the cookie's
    value never reaches the store), and remembers ``token``, the SHA-256 digest of the API
    token that opened it, so the caller can refuse it once that token is no longer
    accepted.

    Contract:
    - Times are the store's clock only: ``create`` stamps the store's ``now`` and the
      session lives until ``now + ttl`` seconds; it is live while the store's ``now`` is
      before that.
    - ``create`` records a session (replacing one with the same key) and removes every
      session whose time is up.
    - ``token_of`` is the token digest of a live session; None for an unknown or expired
      key.
    - ``delete`` ends a session at once, on every node; says whether one was there.
    - ``purge_expired`` removes the sessions whose time is up; how many.
    """

    async def create(self, key: bytes, token: bytes, ttl: float) -> None: ...

    async def token_of(self, key: bytes) -> bytes | None: ...

    async def delete(self, key: bytes) -> bool: ...

    async def purge_expired(self) -> int: ...
