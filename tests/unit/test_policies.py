"""Overlap, retry, restart and log-budget decisions, and catch-up tick selection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.policies import (
    Admission,
    LogVerdict,
    TaskLoad,
    admit,
    log_verdict,
    next_retry,
    restart_delay,
    retry_delay,
    runs_to_terminate,
    select_ticks,
)
from domain.run import EndReason, Run, TriggeredBy
from domain.tasks import Backoff, CatchUp, LogOnFull, OverlapPolicy, TaskKind, TaskSpec

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def task(**kw: object) -> TaskSpec:
    return TaskSpec(name="t", run="x", **kw)  # type: ignore[arg-type]


# --- overlap -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(OverlapPolicy))
def test_a_free_slot_always_accepts(policy: OverlapPolicy) -> None:
    assert admit(task(on_overlap=policy, max_concurrent=2), TaskLoad(1, 0)) is Admission.ACCEPT


def test_skip_policy_skips_when_every_slot_is_taken() -> None:
    spec = task(on_overlap=OverlapPolicy.SKIP, max_concurrent=2)
    assert admit(spec, TaskLoad(running=2, pending=0)) is Admission.SKIP
    assert admit(spec, TaskLoad(running=1, pending=1)) is Admission.SKIP


def test_queue_policy_accepts_until_queue_max_runs_wait() -> None:
    spec = task(on_overlap=OverlapPolicy.QUEUE, max_concurrent=1, queue_max=2)
    assert admit(spec, TaskLoad(running=1, pending=0)) is Admission.ACCEPT
    assert admit(spec, TaskLoad(running=1, pending=1)) is Admission.ACCEPT
    assert admit(spec, TaskLoad(running=1, pending=2)) is Admission.SKIP


def test_queue_max_zero_means_no_waiting_at_all() -> None:
    spec = task(on_overlap=OverlapPolicy.QUEUE, queue_max=0)
    assert admit(spec, TaskLoad(running=1, pending=0)) is Admission.SKIP


def test_terminate_policy_replaces_the_oldest_running_run() -> None:
    spec = task(on_overlap=OverlapPolicy.TERMINATE, max_concurrent=2)
    assert admit(spec, TaskLoad(running=2, pending=0)) is Admission.TERMINATE
    runs = [
        Run(id=f"0{i}", task_name="t", created_at=T0, triggered_by=TriggeredBy.API).started(
            T0 + timedelta(seconds=s)
        )
        for i, s in enumerate([30, 10, 20])
    ]
    assert [r.id for r in runs_to_terminate(spec, runs, pending=0)] == ["01", "02"]
    assert runs_to_terminate(spec, runs[:1], pending=0) == []


# --- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Backoff.CONSTANT, [5, 5, 5, 5]),
        (Backoff.LINEAR, [5, 10, 15, 20]),
        (Backoff.EXPONENTIAL, [5, 10, 20, 40]),
    ],
)
def test_retry_delays_follow_the_backoff(backoff: Backoff, delays: list[float]) -> None:
    spec = task(retry_delay=5.0, retry_backoff=backoff)
    assert [retry_delay(spec, n) for n in range(1, 5)] == delays


@pytest.mark.parametrize("backoff", list(Backoff))
def test_retry_delays_are_capped_at_five_minutes(backoff: Backoff) -> None:
    assert retry_delay(task(retry_delay=400.0, retry_backoff=backoff), 50) == 300.0


def ended(reason: EndReason, attempt: int = 0, trigger: TriggeredBy = TriggeredBy.CRON) -> Run:
    run = Run(id="01R", task_name="t", created_at=T0, triggered_by=trigger, retry_attempt=attempt)
    return run.started(T0).ended(reason, T0 + timedelta(seconds=1), 1)


@pytest.mark.parametrize(
    "reason", [EndReason.FAILED, EndReason.TIMEOUT, EndReason.CRASHED, EndReason.LOG_OVERFLOW]
)
def test_failures_are_retried_with_the_original_trigger(reason: EndReason) -> None:
    now = T0 + timedelta(seconds=1)
    retry = next_retry(task(retry_attempts=2, retry_delay=3.0), ended(reason), now, "01S")
    assert retry is not None
    assert (retry.retry_attempt, retry.retry_of_run_id, retry.triggered_by) == (
        1,
        "01R",
        TriggeredBy.CRON,
    )
    assert retry.not_before == now + timedelta(seconds=3)
    assert retry.status.value == "pending"


@pytest.mark.parametrize("reason", [EndReason.SUCCESS, EndReason.STOPPED])
def test_success_and_stopped_are_never_retried(reason: EndReason) -> None:
    assert next_retry(task(retry_attempts=3), ended(reason), T0, "x") is None


def test_skipped_runs_are_never_retried() -> None:
    skipped = Run(id="01R", task_name="t", created_at=T0, triggered_by=TriggeredBy.API).ended(
        EndReason.SKIPPED, T0
    )
    assert next_retry(task(retry_attempts=3), skipped, T0, "x") is None


def test_retries_stop_after_retry_attempts() -> None:
    spec = task(retry_attempts=2)
    assert next_retry(spec, ended(EndReason.FAILED, attempt=1), T0, "x") is not None
    assert next_retry(spec, ended(EndReason.FAILED, attempt=2), T0, "x") is None


def test_cloud_runs_and_services_are_never_retried_locally() -> None:
    cloud = ended(EndReason.FAILED, trigger=TriggeredBy.CLOUD)
    assert next_retry(task(retry_attempts=3), cloud, T0, "x") is None
    service = TaskSpec(name="t", run="x", kind=TaskKind.SERVICE, retry_attempts=3)
    assert next_retry(service, ended(EndReason.FAILED), T0, "x") is None


# --- service restarts --------------------------------------------------------------------


def test_service_restarts_back_off_exponentially_up_to_a_minute() -> None:
    spec = task(restart_delay=1.0, restart_backoff=Backoff.EXPONENTIAL)
    assert [restart_delay(spec, n) for n in (0, 1, 2, 3, 4, 7, 30)] == [1, 1, 2, 4, 8, 60, 60]


def test_constant_restart_backoff_stays_put() -> None:
    spec = task(restart_delay=2.0, restart_backoff=Backoff.CONSTANT)
    assert restart_delay(spec, 9) == 2.0


# --- log budget --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "verdict"),
    [
        (LogOnFull.DROP_NEW, LogVerdict.DROP),
        (LogOnFull.DROP_OLD, LogVerdict.TRIM),
        (LogOnFull.KILL_TASK, LogVerdict.KILL),
    ],
)
def test_output_beyond_the_budget_gets_the_policy_verdict(
    policy: LogOnFull, verdict: LogVerdict
) -> None:
    spec = task(log_max_size=100, log_on_full=policy)
    assert log_verdict(spec, 60, 40) is LogVerdict.KEEP
    assert log_verdict(spec, 60, 41) is verdict


# --- catch-up ----------------------------------------------------------------------------


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MISSED = [NOW - timedelta(hours=h) for h in (5, 4, 3, 2, 1)]


def test_latest_catch_up_runs_only_the_most_recent_missed_tick() -> None:
    assert select_ticks(task(catch_up=CatchUp.LATEST), MISSED, NOW) == MISSED[-1:]


def test_all_catch_up_runs_up_to_max_catch_up_runs_newest_kept() -> None:
    spec = task(catch_up=CatchUp.ALL, max_catch_up_runs=3)
    assert select_ticks(spec, MISSED, NOW) == MISSED[-3:]


def test_skip_catch_up_runs_no_missed_tick() -> None:
    assert select_ticks(task(catch_up=CatchUp.SKIP), MISSED, NOW) == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(CatchUp.SKIP, 1), (CatchUp.LATEST, 2), (CatchUp.ALL, 6)],
)
def test_the_on_time_tick_always_runs_after_the_missed_ones(policy: CatchUp, expected: int) -> None:
    on_time = NOW - timedelta(seconds=2)
    chosen = select_ticks(task(catch_up=policy), [*MISSED, on_time], NOW)
    assert chosen[-1] == on_time
    assert len(chosen) == expected


def test_a_single_tick_found_late_counts_as_missed() -> None:
    late = NOW - timedelta(minutes=1)
    assert select_ticks(task(catch_up=CatchUp.SKIP), [late], NOW) == []
    assert select_ticks(task(catch_up=CatchUp.LATEST), [late], NOW) == [late]


def test_a_loop_a_little_late_still_runs_its_tick() -> None:
    tick = NOW - timedelta(milliseconds=300)
    assert select_ticks(task(catch_up=CatchUp.SKIP), [tick], NOW) == [tick]
