"""The RunRepository contract, run against the in-memory fake and PostgreSQL alike.

Expected orders and counts are computed here by hand, not with ``domain.listing``, so the
reference implementation is checked too.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from domain.listing import RunQuery, SortDirection, SortField, parse_status_filter
from domain.ports import RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from tests.contract.conftest import new_id

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
# Look-alikes: an unescaped LIKE would let "_" match "X" or "-".
TASKS = ("nightly_backup", "nightlyXbackup", "nightly-backup", "report")


def pending(task: str = "job", at: datetime = T0, **fields: object) -> Run:
    return Run(new_id(at), task, at, TriggeredBy.API, **fields)


async def seed(repo: RunRepository) -> list[Run]:
    """Sixty runs over four tasks in every state, with ties on every sort key."""
    rng = random.Random(7)
    made: list[Run] = []
    for i in range(60):
        created = T0 + timedelta(minutes=rng.randrange(15))  # many equal created_at
        run = pending(TASKS[i % len(TASKS)], created)
        state = rng.choice(["pending", "running", "ended", "ended", "skipped"])
        if state != "pending" and state != "skipped":
            run = run.started(created + timedelta(seconds=rng.choice([0, 1, 1, 30])), pid=i)
        if state == "ended":
            took = timedelta(seconds=rng.choice([0.5, 1, 1, 2.000001]))
            reason = rng.choice([EndReason.SUCCESS, EndReason.FAILED, EndReason.TIMEOUT])
            assert run.start_at is not None
            run = run.ended(reason, run.start_at + took, rng.choice([0, 1, 2, 0]))
        if state == "skipped":
            run = run.ended(EndReason.SKIPPED, created + timedelta(seconds=1))
        await repo.add(run)
        made.append(run)
    return made


def by_hand(runs: list[Run], field: str, descending: bool) -> list[str]:
    def key(run: Run) -> tuple[object, str]:
        if field == "start_at":
            value: object = run.start_at or run.created_at
        elif field == "duration":
            ran = run.start_at is not None and run.end_at is not None
            value = (run.end_at - run.start_at) if ran else timedelta(0)
        elif field == "status":
            value = run.status.value
        elif field in ("task_name", "exit_code"):
            value = getattr(run, field)
        else:
            value = run.created_at
        return (value, run.id)

    return [r.id for r in sorted(runs, key=key, reverse=descending)]


def ids(page_runs: object) -> list[str]:
    return [r.id for r in page_runs]


async def test_a_run_reads_back_with_every_field(repo: RunRepository) -> None:
    run = Run(
        id=new_id(),
        task_name="svc",
        created_at=T0,
        triggered_by=TriggeredBy.CLOUD,
        status=RunStatus.ENDED,
        end_reason=EndReason.LOG_OVERFLOW,
        exit_code=-(2**40),
        start_at=T0 + timedelta(microseconds=1),
        end_at=T0 + timedelta(days=3, microseconds=999999),
        replica_index=3,
        retry_attempt=2,
        retry_of_run_id=new_id(),
        external_execution_id="exec-42",
        pid=65535,
        not_before=T0 + timedelta(seconds=5, microseconds=7),
    )
    await repo.add(run)
    got = await repo.get(run.id)
    assert got == run
    assert got is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert isinstance(got.status, RunStatus)
    assert isinstance(got.end_reason, EndReason)
    assert isinstance(got.triggered_by, TriggeredBy)


async def test_a_pending_run_reads_back_without_optional_fields(repo: RunRepository) -> None:
    run = pending()
    await repo.add(run)
    assert await repo.get(run.id) == run


async def test_an_unknown_id_reads_as_none(repo: RunRepository) -> None:
    assert await repo.get("01ZZZZZZZZZZZZZZZZZZZZZZZZ") is None


async def test_a_cron_tick_is_recorded_once(repo: RunRepository) -> None:
    first = dataclasses.replace(pending("tick"), triggered_by=TriggeredBy.CRON)
    again = dataclasses.replace(first, id=new_id())
    assert await repo.add_cron_run(first) is True
    assert await repo.add_cron_run(again) is False
    assert await repo.get(again.id) is None
    retry = dataclasses.replace(first, id=new_id(), retry_attempt=1, retry_of_run_id=first.id)
    other_task = dataclasses.replace(first, id=new_id(), task_name="tock")
    next_tick = dataclasses.replace(first, id=new_id(), created_at=T0 + timedelta(minutes=1))
    assert await repo.add_cron_run(retry) is True
    assert await repo.add_cron_run(other_task) is True
    assert await repo.add_cron_run(next_tick) is True
    assert (await repo.list(RunQuery(task_name="tick"))).total == 3


async def test_the_second_of_two_racing_enders_loses(repo: RunRepository) -> None:
    run = pending()
    await repo.add(run)
    running = run.started(T0 + timedelta(seconds=1), pid=10)
    assert await repo.replace(running, RunStatus.PENDING) is True
    assert await repo.replace(running, RunStatus.PENDING) is False
    done = running.ended(EndReason.SUCCESS, T0 + timedelta(seconds=2), 0)
    stopped = running.ended(EndReason.STOPPED, T0 + timedelta(seconds=3), -1)
    assert await repo.replace(done, RunStatus.RUNNING) is True
    assert await repo.replace(stopped, RunStatus.RUNNING) is False
    assert await repo.get(run.id) == done


async def test_replacing_an_unknown_run_stores_nothing(repo: RunRepository) -> None:
    ghost = pending()
    assert await repo.replace(ghost.started(T0), RunStatus.PENDING) is False
    assert await repo.get(ghost.id) is None


async def test_active_lists_pending_and_running_runs_oldest_first(repo: RunRepository) -> None:
    late = pending("a", T0 + timedelta(minutes=2))
    early = pending("b", T0).started(T0 + timedelta(seconds=1))
    middle = pending("a", T0 + timedelta(minutes=1))
    over = pending("a", T0).ended(EndReason.SKIPPED, T0)
    for run in (late, early, middle, over):
        await repo.add(run)
    assert ids(await repo.active()) == [early.id, middle.id, late.id]
    assert ids(await repo.active("a")) == [middle.id, late.id]
    assert await repo.active("nobody") == []


async def test_delete_removes_only_ended_runs(repo: RunRepository) -> None:
    live = pending()
    over = pending().ended(EndReason.STOPPED, T0)
    await repo.add(live)
    await repo.add(over)
    assert await repo.delete(live.id) is False
    assert await repo.get(live.id) == live
    assert await repo.delete(over.id) is True
    assert await repo.get(over.id) is None
    assert await repo.delete(over.id) is False


@pytest.mark.parametrize("field", list(SortField))
async def test_listing_orders_by_every_field_with_ties_broken_on_id(
    repo: RunRepository, field: SortField
) -> None:
    made = await seed(repo)
    for direction in SortDirection:
        descending = direction is not SortDirection.ASC
        for task in (None, TASKS[0]):
            subset = [r for r in made if task is None or r.task_name == task]
            query = RunQuery(task_name=task, sort_field=field, sort_direction=direction, limit=1000)
            page = await repo.list(query)
            assert ids(page.runs) == by_hand(subset, field.value, descending), (direction, task)
            assert page.total == len(subset)


async def test_pages_neither_overlap_nor_skip(repo: RunRepository) -> None:
    made = await seed(repo)
    seen: list[str] = []
    for offset in range(0, 70, 7):
        query = RunQuery(sort_field=SortField.EXIT_CODE, limit=7, offset=offset)
        page = await repo.list(query)
        assert page.total == len(made)
        seen += ids(page.runs)
    assert seen == by_hand(made, "exit_code", descending=True)


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [
        ("running", lambda r: r.status is RunStatus.RUNNING),
        ("failed", lambda r: r.end_reason is EndReason.FAILED),
        ("ended", lambda r: r.status is RunStatus.ENDED),
        (
            "pending, failed,timeout",
            lambda r: (
                r.status is RunStatus.PENDING
                or r.end_reason in (EndReason.FAILED, EndReason.TIMEOUT)
            ),
        ),
        ("crashed", lambda r: False),
    ],
)
async def test_status_filters_match_phases_and_end_reasons(
    repo: RunRepository, raw: str, wanted: object
) -> None:
    made = await seed(repo)
    for task in (None, TASKS[1]):
        expected = [r for r in made if wanted(r) and task in (None, r.task_name)]
        query = RunQuery(task_name=task, status=parse_status_filter(raw), limit=3)
        page = await repo.list(query)
        assert page.total == len(expected)
        assert ids(page.runs) == by_hand(expected, "created_at", descending=True)[:3]


@pytest.mark.parametrize(
    ("needle", "tasks"),
    [
        ("y_b", {"nightly_backup"}),
        ("NIGHTLY-", {"nightly-backup"}),
        ("%", set()),
        ("ly%ba", set()),
        ("\\", set()),
        ("_", {"nightly_backup"}),
        ("PORT", {"report"}),
    ],
)
async def test_search_matches_task_names_literally_and_ignoring_case(
    repo: RunRepository, needle: str, tasks: set[str]
) -> None:
    made = await seed(repo)
    expected = [r for r in made if r.task_name in tasks]
    page = await repo.list(RunQuery(search=needle, limit=1000))
    assert ids(page.runs) == by_hand(expected, "created_at", descending=True)
    assert page.total == len(expected)


async def test_search_matches_an_id_fragment_with_other_filters(repo: RunRepository) -> None:
    made = await seed(repo)
    target = made[17]
    fragment = target.id[12:20].lower()
    query = RunQuery(task_name=target.task_name, search=fragment, status=parse_status_filter(""))
    page = await repo.list(query)
    assert ids(page.runs) == [target.id]
    assert page.total == 1
    ended = RunQuery(search=fragment, status=parse_status_filter("ended"))
    assert (await repo.list(ended)).total == (1 if target.status is RunStatus.ENDED else 0)


async def test_totals_follow_updates_and_deletes(repo: RunRepository) -> None:
    made = [pending("counted", T0 + timedelta(seconds=i)) for i in range(6)]
    for run in made:
        await repo.add(run)
    for run in made[:4]:
        started = run.started(T0 + timedelta(minutes=1))
        assert await repo.replace(started, RunStatus.PENDING)
        reason = EndReason.FAILED if run is made[0] else EndReason.SUCCESS
        assert await repo.replace(
            started.ended(reason, T0 + timedelta(minutes=2), 1), RunStatus.RUNNING
        )
    assert await repo.delete(made[1].id)

    async def total(raw: str | None, task: str | None = "counted") -> int:
        query = RunQuery(task_name=task, status=parse_status_filter(raw))
        return (await repo.list(query)).total

    assert await total(None) == 5
    assert await total(None, task=None) == 5
    assert await total("pending") == 2
    assert await total("running") == 0
    assert await total("ended") == 3
    assert await total("success") == 2
    assert await total("failed,pending") == 3
    assert await total("success", task="other") == 0
