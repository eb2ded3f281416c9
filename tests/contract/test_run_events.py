"""The PostgreSQL run event source: migration 0003's NOTIFY trigger and the listener.

Changes are made through the run repository, as the daemon makes them, and the events are
compared with what the repository then stores.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres import events as events_module
from adapters.postgres.events import PostgresRunEvents
from adapters.postgres.runs import PostgresRunRepository
from domain.errors import StoreUnavailable
from domain.ports import RunEvent, RunEventKind, RunSubscription, SubscriptionLost
from domain.run import EndReason, Run, TriggeredBy
from domain.tasks import OverlapPolicy, TaskKind, TaskSpec
from tests.contract.conftest import new_id

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def source(database_url: str) -> AsyncIterator[PostgresRunEvents]:
    listening = PostgresRunEvents(database_url)
    await listening.start()
    assert listening.connected
    try:
        yield listening
    finally:
        await listening.stop()


@pytest.fixture
def repo(engine: AsyncEngine) -> PostgresRunRepository:
    return PostgresRunRepository(engine)


async def take(subscription: RunSubscription, count: int) -> list[RunEvent]:
    """The next ``count`` events (a missing one fails the test rather than hanging it)."""
    async with asyncio.timeout(30):
        return [await subscription.next() for _ in range(count)]


def new_run(task: str = "job") -> Run:
    return Run(new_id(T0), task, T0, TriggeredBy.API)


async def test_a_runs_lifecycle_arrives_in_order_carrying_the_stored_run(
    source: PostgresRunEvents, repo: PostgresRunRepository
) -> None:
    subscription = source.subscribe()
    run = new_run()
    await repo.add(run)
    started = await repo.claim(run, T0 + timedelta(seconds=1), max_concurrent=1)
    assert started is not None
    ended = started.ended(EndReason.SUCCESS, T0 + timedelta(seconds=2), 0)
    assert await repo.replace(ended, started.status)
    got = await take(subscription, 3)
    assert [e.kind for e in got] == [
        RunEventKind.CREATED,
        RunEventKind.STARTED,
        RunEventKind.COMPLETED,
    ]
    # Exact to the microsecond: the payload carries what the row holds.
    assert [e.run for e in got] == [run, started, ended]
    assert [e.seq for e in got] == sorted({e.seq for e in got})


async def test_every_end_reason_but_success_is_a_failed_event(
    source: PostgresRunEvents, repo: PostgresRunRepository
) -> None:
    subscription = source.subscribe()
    run = new_run()
    await repo.add(run)
    stopped = run.ended(EndReason.STOPPED, T0)
    assert await repo.replace(stopped, run.status)
    got = await take(subscription, 2)
    assert [(e.kind, e.run.end_reason) for e in got] == [
        (RunEventKind.CREATED, None),
        (RunEventKind.FAILED, EndReason.STOPPED),
    ]


async def test_a_skipped_trigger_is_created_then_failed(
    source: PostgresRunEvents, repo: PostgresRunRepository
) -> None:
    task = TaskSpec(
        name="job",
        kind=TaskKind.TASK,
        run="true",
        max_concurrent=1,
        on_overlap=OverlapPolicy.SKIP,
    )
    subscription = source.subscribe()
    first = (await repo.admit(new_run(), task)).run
    skipped = (await repo.admit(new_run(), task)).run
    got = await take(subscription, 3)
    assert [(e.kind, e.run.id) for e in got] == [
        (RunEventKind.CREATED, first.id),
        (RunEventKind.CREATED, skipped.id),
        (RunEventKind.FAILED, skipped.id),
    ]
    assert got[2].run == skipped
    assert skipped.end_reason is EndReason.SKIPPED


async def test_a_deleted_run_is_announced_as_it_was(
    source: PostgresRunEvents, repo: PostgresRunRepository
) -> None:
    subscription = source.subscribe()
    run = new_run().ended(EndReason.FAILED, T0, 3)
    await repo.add(run)
    assert await repo.delete(run.id)
    got = await take(subscription, 3)
    assert [e.kind for e in got] == [
        RunEventKind.CREATED,
        RunEventKind.FAILED,
        RunEventKind.DELETED,
    ]
    assert got[2].run == run


async def test_updates_that_keep_the_status_are_not_events(
    source: PostgresRunEvents, repo: PostgresRunRepository, database_url: str
) -> None:
    subscription = source.subscribe()
    run = new_run()
    await repo.add(run)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("UPDATE runs SET pid = 42, status = status WHERE id = $1", run.id)
    finally:
        await connection.close()
    marker = new_run()
    await repo.add(marker)
    got = await take(subscription, 2)
    assert [(e.kind, e.run.id) for e in got] == [
        (RunEventKind.CREATED, run.id),
        (RunEventKind.CREATED, marker.id),
    ]


async def test_a_task_filter_keeps_only_that_tasks_events(
    source: PostgresRunEvents, repo: PostgresRunRepository
) -> None:
    subscription = source.subscribe("wanted")
    await repo.add(new_run("unwanted"))
    wanted = new_run("wanted")
    await repo.add(wanted)
    (event,) = await take(subscription, 1)
    assert event.run == wanted


async def test_a_subscriber_that_falls_behind_is_dropped_and_the_others_are_not(
    source: PostgresRunEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "QUEUE_SIZE", 3)
    slow = source.subscribe()
    keen = source.subscribe()
    payload = {
        "op": "insert",
        "task_name": "job",
        "status": "pending",
        "exit_code": 0,
        "created_at": 0,
        "triggered_by": "api",
        "replica_index": 0,
        "retry_attempt": 0,
    }
    for n in range(5):
        source.publish(json.dumps({**payload, "id": f"run-{n}"}))
        assert (await keen.next()).run.id == f"run-{n}"
    with pytest.raises(SubscriptionLost, match="behind"):
        await slow.next()
    assert source.subscribers == 1


async def test_closed_or_forgotten_subscriptions_free_their_slot(
    source: PostgresRunEvents,
) -> None:
    closed = source.subscribe()
    source.subscribe()  # dropped at once, never closed
    gc.collect()
    assert source.subscribers == 1
    closed.close()
    closed.close()
    assert source.subscribers == 0


async def test_a_lost_connection_ends_subscriptions_then_listening_resumes(
    source: PostgresRunEvents, repo: PostgresRunRepository, database_url: str
) -> None:
    subscription = source.subscribe()
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            events_module.APPLICATION_NAME,
        )
    finally:
        await connection.close()
    with pytest.raises(SubscriptionLost, match="interrupted"):
        async with asyncio.timeout(30):
            await subscription.next()
    async with asyncio.timeout(30):
        await source.listening()
    again = source.subscribe()
    run = new_run()
    await repo.add(run)
    (event,) = await take(again, 1)
    assert event.run == run


async def test_subscribing_before_listening_is_store_unavailable(database_url: str) -> None:
    with pytest.raises(StoreUnavailable):
        PostgresRunEvents(database_url).subscribe()
