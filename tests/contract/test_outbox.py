"""The notification outbox (``NotificationOutbox``) on the in-memory fake and PostgreSQL.

Run ends are recorded through the run repository, as the daemon records them; the
outbox's rows must appear with them. Time passes on the store's clock: on PostgreSQL a
test moves the stored instants back (as the cluster tests move heartbeats), on the fake
it moves the fake clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.memory import FakeClock, InMemoryRunRepository
from adapters.memory_notify import InMemoryOutbox
from adapters.postgres.database import async_url
from adapters.postgres.notifications import PostgresOutbox
from adapters.postgres.runs import PostgresRunRepository
from domain.notifications import ChannelRoute, DeliveryStatus, Routing, Verdict
from domain.outbox import Delivery, DeliveryQuery, Outcome
from domain.ports import NotificationOutbox, RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from tests.contract.conftest import CROWD, new_id

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ALL_ENDS = frozenset(r.value for r in EndReason) | {"recovered", "long_running", "missed"}
OPS = ChannelRoute("ops")
NODE_A = str(uuid.uuid4())
NODE_B = str(uuid.uuid4())

_SHIFT = [
    "UPDATE notify_streams SET window_started_at = window_started_at - make_interval(secs => :s)",
    "UPDATE notify_deliveries SET next_attempt_at = next_attempt_at - make_interval(secs => :s),"
    " budget_from = budget_from - make_interval(secs => :s)",
    "UPDATE runs SET start_at = start_at - make_interval(secs => :s) WHERE status = 'running'",
]


@dataclass
class Outbox:
    """One implementation: its run repository, its outbox, and a way to let time pass."""

    runs: RunRepository
    box: NotificationOutbox
    time_passes: Callable[[float], Awaitable[None]]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    """The store's clock, near enough (Postgres: this machine's, which the server shares)."""

    async def end(self, task: str, reason: EndReason, code: int = 1) -> Run:
        run = Run(new_id(T0), task, T0, TriggeredBy.API)
        await self.runs.add(run)
        running = run.started(T0)
        assert await self.runs.replace(running, RunStatus.PENDING)
        ended = running.ended(reason, T0, 0 if reason is EndReason.SUCCESS else code)
        assert await self.runs.replace(ended, RunStatus.RUNNING)
        return ended

    async def all(self, **filters: object) -> list[Delivery]:
        page = await self.box.list(DeliveryQuery(limit=1000, **filters))  # type: ignore[arg-type]
        return list(reversed(page.deliveries))  # oldest first


def _memory() -> Outbox:
    clock = FakeClock(T0)
    runs = InMemoryRunRepository()
    box = InMemoryOutbox(runs, clock)

    async def passes(seconds: float) -> None:
        clock.advance(seconds)

    return Outbox(runs, box, passes, clock.now)


@pytest.fixture(params=["memory", "postgres"])
def outbox(request: pytest.FixtureRequest) -> Outbox:
    """Each implementation, with one channel ``ops`` on the default events."""
    if request.param == "memory":
        return _memory()
    engine = request.getfixturevalue("engine")

    async def passes(seconds: float) -> None:
        async with engine.begin() as conn:
            for sql in _SHIFT:
                await conn.execute(sa.text(sql), {"s": seconds})

    return Outbox(PostgresRunRepository(engine), PostgresOutbox(engine), passes)


async def test_a_failure_writes_one_pending_delivery_per_matching_channel(outbox: Outbox) -> None:
    routing = Routing(
        channels=(
            OPS,
            ChannelRoute("mail", tasks=("backup-*",)),
            ChannelRoute("chat", on=frozenset({"success"})),
        ),
    )
    await outbox.box.configure(routing)
    failed = await outbox.end("backup-db", EndReason.FAILED, 3)
    await outbox.end("other", EndReason.STOPPED)  # no channel wants stopped
    found = await outbox.all()
    assert sorted(d.channel for d in found) == ["mail", "ops"]
    for d in found:
        assert (d.type, d.status, d.run_id, d.task_name) == (
            "run.failed",
            DeliveryStatus.PENDING,
            failed.id,
            "backup-db",
        )
        assert d.data["exit_code"] == 3
        assert d.data["end_reason"] == "failed"
        assert d.count == 1
    assert await outbox.box.count_for_run(failed.id) == 2


async def test_a_task_list_restricts_and_an_empty_list_mutes(outbox: Outbox) -> None:
    await outbox.box.configure(
        Routing(
            channels=(OPS, ChannelRoute("mail")),
            task_channels={"only-mail": ("mail",), "muted": ()},
        )
    )
    await outbox.end("only-mail", EndReason.FAILED)
    await outbox.end("muted", EndReason.TIMEOUT)
    assert [(d.task_name, d.channel) for d in await outbox.all()] == [("only-mail", "mail")]


async def test_no_channel_means_no_rows(outbox: Outbox) -> None:
    await outbox.box.configure(Routing())
    await outbox.end("job", EndReason.FAILED)
    assert await outbox.all() == []


async def test_repeats_are_held_and_summarised_when_the_window_closes(outbox: Outbox) -> None:
    await outbox.box.configure(Routing(channels=(OPS,), coalesce_window=3600))
    first = await outbox.end("job", EndReason.FAILED)
    await outbox.end("job", EndReason.FAILED)
    last = await outbox.end("job", EndReason.FAILED)
    await outbox.end("job", EndReason.TIMEOUT)  # another event: its own window
    assert [d.status for d in await outbox.all(run_id=first.id)] == [DeliveryStatus.PENDING]
    assert len(await outbox.all(status=[DeliveryStatus.SUPPRESSED])) == 2
    assert await outbox.box.flush() == 0  # the window is still open
    await outbox.time_passes(3601)
    assert await outbox.box.flush() == 1
    assert await outbox.box.flush() == 0  # once
    summary = (await outbox.all())[-1]
    assert (summary.type, summary.count, summary.run_id) == ("run.failed", 2, last.id)
    assert summary.data["summary"] is True
    assert summary.status is DeliveryStatus.PENDING
    # After the window, the next failure is sent at once again.
    again = await outbox.end("job", EndReason.FAILED)
    assert [d.status for d in await outbox.all(run_id=again.id)] == [DeliveryStatus.PENDING]


async def test_window_zero_sends_every_occurrence(outbox: Outbox) -> None:
    await outbox.box.configure(Routing(channels=(OPS,), coalesce_window=0))
    for _ in range(3):
        await outbox.end("job", EndReason.FAILED)
    assert [d.status for d in await outbox.all()] == [DeliveryStatus.PENDING] * 3


async def test_recovered_follows_a_notified_streak_and_flushes_its_repeats(
    outbox: Outbox,
) -> None:
    await outbox.box.configure(Routing(channels=(OPS,)))
    await outbox.end("job", EndReason.SUCCESS)  # no streak: nothing
    await outbox.end("job", EndReason.FAILED)
    await outbox.end("job", EndReason.FAILED)  # held
    ok = await outbox.end("job", EndReason.SUCCESS)
    types = [(d.type, d.count, d.status) for d in await outbox.all()]
    assert types == [
        ("run.failed", 1, DeliveryStatus.PENDING),
        ("run.failed", 1, DeliveryStatus.SUPPRESSED),
        ("run.failed", 1, DeliveryStatus.PENDING),  # the summary, at recovery
        ("run.recovered", 1, DeliveryStatus.PENDING),
    ]
    assert (await outbox.all())[-1].run_id == ok.id
    await outbox.end("job", EndReason.SUCCESS)  # streak over: no second recovered
    fresh = await outbox.end("job", EndReason.FAILED)  # a new streak: sent at once
    assert [d.status for d in await outbox.all(run_id=fresh.id)] == [DeliveryStatus.PENDING]
    assert len(await outbox.all()) == 5


async def test_no_recovered_after_a_streak_nobody_was_told_of(outbox: Outbox) -> None:
    await outbox.box.configure(
        Routing(channels=(ChannelRoute("ops", on=frozenset({"recovered"})),))
    )
    await outbox.end("job", EndReason.FAILED)
    await outbox.end("job", EndReason.SUCCESS)
    assert await outbox.all() == []


async def test_skipped_admissions_are_ends_too(outbox: Outbox) -> None:
    await outbox.box.configure(Routing(channels=(ChannelRoute("ops", on=ALL_ENDS),)))
    run = Run(new_id(T0), "job", T0, TriggeredBy.API)
    await outbox.runs.add(run)
    await outbox.runs.replace(run.ended(EndReason.SKIPPED, T0), RunStatus.PENDING)
    assert [d.type for d in await outbox.all()] == ["run.skipped"]


async def test_emit_routes_dedupes_and_targets_one_channel(outbox: Outbox) -> None:
    await outbox.box.configure(
        Routing(channels=(ChannelRoute("ops", on=ALL_ENDS), ChannelRoute("mail")))
    )
    ids = await outbox.box.emit("run.missed", "job", None, {"task": "job"}, dedupe_key="m:1")
    assert ids is not None
    assert len(ids) == 1
    assert await outbox.box.emit("run.missed", "job", None, {}, dedupe_key="m:1") is None
    test = await outbox.box.emit("notify.test", None, None, {}, only_channel="mail")
    assert test is not None
    assert [(await outbox.box.get(i)).channel for i in test] == ["mail"]  # type: ignore[union-attr]


async def test_long_running_is_emitted_once_per_run(outbox: Outbox) -> None:
    await outbox.box.configure(
        Routing(
            channels=(ChannelRoute("ops", on=frozenset({"long_running"})),),
            warn_after={"slow": 60},
        )
    )
    run = Run(new_id(T0), "slow", T0, TriggeredBy.API)
    await outbox.runs.add(run)
    await outbox.runs.replace(run.started(outbox.now()), RunStatus.PENDING)
    assert await outbox.box.emit_long_running() == 0
    await outbox.time_passes(61)
    assert await outbox.box.emit_long_running() == 1
    assert await outbox.box.emit_long_running() == 0
    (found,) = await outbox.all()
    assert (found.type, found.run_id) == ("run.long_running", run.id)


async def _pending(outbox: Outbox, n: int) -> list[str]:
    await outbox.box.configure(Routing(channels=(OPS,)))
    ids: list[str] = []
    for _ in range(n):
        ids += await outbox.box.emit("notify.test", None, None, {}, only_channel="ops") or []
    return ids


async def test_claim_leases_and_finish_is_fenced(outbox: Outbox) -> None:
    (one,) = await _pending(outbox, 1)
    (claimed,) = await outbox.box.claim(NODE_A, 10, lease=30)
    assert (claimed.delivery.id, claimed.attempt) == (one, 1)
    assert claimed.delivery.status is DeliveryStatus.SENDING
    assert await outbox.box.claim(NODE_B, 10, lease=30) == []
    await outbox.time_passes(31)  # A's lease runs out: B takes it, a second attempt
    (again,) = await outbox.box.claim(NODE_B, 10, lease=30)
    assert again.attempt == 2
    late = Outcome(Verdict.DELIVERED, status_code=200)
    assert not await outbox.box.finish(one, NODE_A, 1, late)  # A lost it
    assert await outbox.box.finish(one, NODE_B, 2, late)
    found = await outbox.box.get(one)
    assert found is not None
    assert found.status is DeliveryStatus.DELIVERED
    assert [a.n for a in await outbox.box.attempts(one)] == [1, 2]


async def test_release_gives_back_what_a_stopping_node_holds(outbox: Outbox) -> None:
    (one,) = await _pending(outbox, 1)
    await outbox.box.claim(NODE_A, 10, lease=300)
    assert await outbox.box.release(NODE_B) == 0
    assert await outbox.box.release(NODE_A) == 1
    (again,) = await outbox.box.claim(NODE_B, 10, lease=300)  # at once, not after 300 s
    assert (again.delivery.id, again.attempt) == (one, 2)
    (cut,) = await outbox.box.attempts(one)
    assert (cut.n, cut.verdict) == (1, Verdict.RETRY)
    assert cut.error is not None
    assert "interrupted" in cut.error


async def test_retry_waits_its_delay_then_dead_can_be_retried_by_hand(outbox: Outbox) -> None:
    (one,) = await _pending(outbox, 1)
    (c,) = await outbox.box.claim(NODE_A, 10, 30)
    await outbox.box.finish(one, NODE_A, c.attempt, Outcome(Verdict.RETRY, 10, 500, "boom"))
    assert await outbox.box.claim(NODE_A, 10, 30) == []
    await outbox.time_passes(11)
    (c,) = await outbox.box.claim(NODE_A, 10, 30)
    await outbox.box.finish(one, NODE_A, c.attempt, Outcome(Verdict.DEAD, 0, 404, "gone"))
    dead = await outbox.box.get(one)
    assert dead is not None
    assert (dead.status, dead.last_status_code, dead.attempts) == (DeliveryStatus.DEAD, 404, 2)
    (stats,) = await outbox.box.stats()
    assert (stats.channel, stats.dead, stats.pending, stats.last_error) == ("ops", 1, 0, "gone")
    assert await outbox.box.retry(one)
    assert not await outbox.box.retry(one)  # pending now, not dead
    (c,) = await outbox.box.claim(NODE_A, 10, 30)
    assert c.attempt == 3
    assert c.age < 5  # a fresh budget


async def test_listing_is_newest_first_filtered_and_paged(outbox: Outbox) -> None:
    await outbox.box.configure(Routing(channels=(OPS, ChannelRoute("mail"))))
    runs = [await outbox.end(f"t{i}", EndReason.FAILED) for i in range(3)]
    page = await outbox.box.list(DeliveryQuery(channel="ops", limit=2, offset=0))
    assert page.total == 3
    assert [d.run_id for d in page.deliveries] == [runs[2].id, runs[1].id]
    rest = await outbox.box.list(DeliveryQuery(channel="ops", limit=2, offset=2))
    assert [d.run_id for d in rest.deliveries] == [runs[0].id]
    only = await outbox.box.list(DeliveryQuery(task_name="t1", run_id=runs[1].id))
    assert only.total == 2
    assert await outbox.box.get("no-such-id") is None
    assert await outbox.box.get(str(uuid.uuid4())) is None


async def test_prune_removes_old_settled_events_only(outbox: Outbox) -> None:
    ids = await _pending(outbox, 2)
    (claimed,) = await outbox.box.claim(NODE_A, 1, 30)
    settled = claimed.delivery.id
    (waiting,) = set(ids) - {settled}
    await outbox.box.finish(settled, NODE_A, 1, Outcome(Verdict.DELIVERED))
    assert await outbox.box.prune(outbox.now() - timedelta(hours=1), 100) == 0  # too young
    assert await outbox.box.prune(outbox.now() + timedelta(seconds=5), 100) == 1
    assert await outbox.box.get(settled) is None
    assert await outbox.box.attempts(settled) == []
    assert await outbox.box.get(waiting) is not None


async def _no_time(seconds: float) -> None:
    raise NotImplementedError


@pytest.fixture(params=["memory", "postgres"])
async def crowded(request: pytest.FixtureRequest) -> AsyncIterator[Outbox]:
    """Each implementation; on Postgres with enough connections for racing claimers."""
    if request.param == "memory":
        yield _memory()
        return
    url = request.getfixturevalue("database_url")
    engine = create_async_engine(async_url(url), pool_size=CROWD, max_overflow=0)

    try:
        yield Outbox(PostgresRunRepository(engine), PostgresOutbox(engine), _no_time)
    finally:
        await engine.dispose()


async def test_racing_claimers_never_share_a_delivery(crowded: Outbox) -> None:
    ids = await _pending(crowded, 200)
    got: list[str] = []

    async def claimer(node: str) -> None:
        while batch := await crowded.box.claim(node, 7, lease=60):
            for c in batch:
                got.append(c.delivery.id)
                await crowded.box.finish(c.delivery.id, node, c.attempt, Outcome(Verdict.DELIVERED))

    await asyncio.gather(*(claimer(str(uuid.uuid4())) for _ in range(12)))
    assert sorted(got) == sorted(ids)


async def test_racing_ends_of_one_task_send_the_first_once(crowded: Outbox) -> None:
    await crowded.box.configure(Routing(channels=(OPS,), coalesce_window=3600))
    await asyncio.gather(*(crowded.end("job", EndReason.FAILED) for _ in range(20)))
    found = await crowded.all()
    statuses = sorted(d.status.value for d in found)
    assert statuses == ["pending"] + ["suppressed"] * 19


async def test_an_end_begun_before_a_window_opened_is_not_inside_it(engine: Any) -> None:
    """PostgreSQL's now() is when a transaction began: an end whose transaction began
    before another end opened the window, and commits after it, is not a repeat."""
    runs, box = PostgresRunRepository(engine), PostgresOutbox(engine)
    await box.configure(Routing(channels=(OPS,), coalesce_window=0))
    early = Run(new_id(T0), "job", T0, TriggeredBy.API)
    await runs.add(early)
    running = early.started(T0)
    assert await runs.replace(running, RunStatus.PENDING)
    ended = running.ended(EndReason.FAILED, T0, 1)
    async with engine.connect() as conn:
        await conn.execute(sa.text("BEGIN"))
        await conn.execute(sa.text("SELECT now()"))  # this transaction's clock stops here
        await Outbox(runs, box, _no_time).end("job", EndReason.FAILED)  # opens the window
        await conn.execute(
            sa.text(
                "UPDATE runs SET status = 'ended', end_reason = 'failed', exit_code = 1, "
                "end_at = now() WHERE id = :id"
            ),
            {"id": ended.id},
        )
        await conn.execute(sa.text("COMMIT"))
    page = await box.list(DeliveryQuery())
    assert [d.status.value for d in page.deliveries] == ["pending", "pending"]
