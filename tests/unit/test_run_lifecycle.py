"""The run state machine and the exit-code rules of the contract, without I/O."""

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import IllegalTransition
from domain.run import (
    EXIT_CRASHED,
    EXIT_NOT_EXECUTED,
    EndReason,
    Run,
    RunStatus,
    TriggeredBy,
    end_reason_for_exit,
)

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def pending() -> Run:
    return Run(
        id="01J0000000000000000000000A", task_name="t", created_at=T0, triggered_by=TriggeredBy.API
    )


def test_a_new_run_is_pending_with_exit_code_zero() -> None:
    run = pending()
    assert run.status is RunStatus.PENDING
    assert run.exit_code == 0
    assert run.end_reason is None


def test_starting_records_start_time_and_pid() -> None:
    run = pending().started(T0 + timedelta(seconds=1), pid=42)
    assert run.status is RunStatus.RUNNING
    assert run.start_at == T0 + timedelta(seconds=1)
    assert run.pid == 42


@pytest.mark.parametrize("code", [0, 3, 255])
def test_a_running_run_ends_with_the_process_exit_code(code: int) -> None:
    run = pending().started(T0).ended(EndReason.FAILED, T0 + timedelta(seconds=2), code)
    assert (run.status, run.exit_code, run.end_at) == (
        RunStatus.ENDED,
        code,
        T0 + timedelta(seconds=2),
    )
    assert run.duration_seconds == 2.0


def test_skipped_runs_record_exit_minus_one_whatever_was_passed() -> None:
    run = pending().ended(EndReason.SKIPPED, T0, exit_code=0)
    assert run.exit_code == EXIT_NOT_EXECUTED
    assert run.start_at is None


def test_crashed_runs_record_exit_minus_two() -> None:
    run = pending().started(T0).ended(EndReason.CRASHED, T0, exit_code=0)
    assert run.exit_code == EXIT_CRASHED


def test_a_run_that_never_started_records_exit_minus_one() -> None:
    run = pending().ended(EndReason.FAILED, T0, exit_code=127)
    assert run.exit_code == EXIT_NOT_EXECUTED


def test_nothing_leaves_ended() -> None:
    run = pending().ended(EndReason.STOPPED, T0)
    with pytest.raises(IllegalTransition):
        run.started(T0)
    for reason in EndReason:
        with pytest.raises(IllegalTransition):
            run.ended(reason, T0)


def test_a_running_run_cannot_be_skipped_or_started_again() -> None:
    run = pending().started(T0)
    with pytest.raises(IllegalTransition):
        run.ended(EndReason.SKIPPED, T0)
    with pytest.raises(IllegalTransition):
        run.started(T0)


@pytest.mark.parametrize("reason", [EndReason.SUCCESS, EndReason.TIMEOUT, EndReason.LOG_OVERFLOW])
def test_a_pending_run_cannot_end_as_if_it_had_run(reason: EndReason) -> None:
    with pytest.raises(IllegalTransition):
        pending().ended(reason, T0)


def test_transitions_return_new_values_and_leave_the_old_one_alone() -> None:
    before = pending()
    after = before.started(T0)
    assert before.status is RunStatus.PENDING
    assert after.status is RunStatus.RUNNING


def test_duration_is_zero_until_ended() -> None:
    assert pending().started(T0).duration_seconds == 0.0


@pytest.mark.parametrize(
    ("flags", "code", "expected"),
    [
        ({}, 0, EndReason.SUCCESS),
        ({}, 1, EndReason.FAILED),
        ({"stopped": True}, 0, EndReason.STOPPED),
        ({"stopped": True, "log_overflowed": True}, -1, EndReason.LOG_OVERFLOW),
        ({"stopped": True, "log_overflowed": True, "timed_out": True}, -1, EndReason.TIMEOUT),
    ],
)
def test_end_reason_precedence_is_timeout_log_overflow_stopped_then_exit_code(
    flags: dict[str, bool], code: int, expected: EndReason
) -> None:
    assert end_reason_for_exit(code, frozenset({0}), **flags) is expected


def test_custom_success_codes_count_as_success() -> None:
    assert end_reason_for_exit(2, frozenset({0, 2})) is EndReason.SUCCESS
    assert end_reason_for_exit(0, frozenset({2})) is EndReason.FAILED
