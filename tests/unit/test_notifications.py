"""The pure notification rules: routing, coalescing windows, streaks, retries, messages."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import pytest

from adapters.memory import FakeClock, InMemoryRunRepository
from adapters.memory_notify import InMemoryOutbox
from domain.messages import TAIL_BYTES, message_for, output_tail
from domain.notifications import (
    BACKOFF_CAP,
    ChannelRoute,
    DeliveryStatus,
    Routing,
    Send,
    Stream,
    Verdict,
    after_failure,
    channels_for,
    coalesce,
    end_effects,
    glob_regex,
    long_running_due,
    missed_ticks,
    retry_delay,
    verdict_for_status,
    window_closed,
)
from domain.outbox import Delivery
from domain.run import EndReason, Run, RunStatus, TriggeredBy

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
HOUR = 3600.0


def test_first_occurrence_is_sent_and_repeats_are_held_until_the_window_ends() -> None:
    closed, stream, send = coalesce(None, T0, HOUR, "r1")
    assert (closed, send, stream) == (None, Send.NOW, Stream(T0))
    for n, minutes in enumerate((1, 30, 59), start=1):
        closed, stream, send = coalesce(stream, T0 + timedelta(minutes=minutes), HOUR, f"r{n}")
        assert (closed, send, stream.held) == (None, Send.HOLD, n)
    assert not window_closed(stream, T0 + timedelta(minutes=59), HOUR)
    assert window_closed(stream, T0 + timedelta(hours=1), HOUR)
    # The next occurrence after the window: the held ones are summarised first.
    closed, fresh, send = coalesce(stream, T0 + timedelta(hours=1, seconds=1), HOUR, "r9")
    assert closed is not None
    assert (closed.held, closed.last_run_id) == (3, "r3")
    assert (send, fresh.held, fresh.window_started_at) == (
        Send.NOW,
        0,
        T0 + timedelta(hours=1, seconds=1),
    )


def test_window_zero_sends_everything() -> None:
    stream = None
    for _ in range(3):
        _, stream, send = coalesce(stream, T0, 0, "r")
        assert send is Send.NOW


def test_recovered_only_after_a_notified_streak() -> None:
    failing = end_effects(EndReason.FAILED, False, has_channels=True, send=Send.NOW)
    assert failing.failure_notified
    recovered = end_effects(EndReason.SUCCESS, failing.failure_notified, True, None)
    assert recovered.recovered
    assert recovered.flush_task
    assert not recovered.failure_notified
    # A streak that reached nobody: no recovered.
    silent = end_effects(EndReason.TIMEOUT, False, has_channels=False, send=None)
    assert not silent.failure_notified
    assert not end_effects(EndReason.SUCCESS, silent.failure_notified, True, None).recovered
    # Stopped and skipped neither end nor extend a streak.
    assert end_effects(EndReason.STOPPED, True, True, None).failure_notified


def test_recovered_once_with_the_memory_outbox_and_a_fake_clock() -> None:
    clock = FakeClock(T0)
    repo = InMemoryRunRepository()
    box = InMemoryOutbox(repo, clock)
    box.routing = Routing(channels=(ChannelRoute("ops"),), coalesce_window=HOUR)

    def end(n: int, reason: EndReason) -> None:
        run = Run(f"r{n}", "job", clock.now(), TriggeredBy.CRON, status=RunStatus.RUNNING)
        repo.runs[run.id] = run
        repo.on_end(run.ended(reason, clock.now(), 1))
        clock.advance(60)

    for n in range(5):
        end(n, EndReason.FAILED)
    end(5, EndReason.SUCCESS)
    end(6, EndReason.SUCCESS)
    sent = [d for d in box.deliveries.values() if d.status is DeliveryStatus.PENDING]
    assert [(d.type, d.count) for d in sent] == [
        ("run.failed", 1),
        ("run.failed", 4),  # the summary, flushed by the recovery
        ("run.recovered", 1),
    ]


def test_long_running_is_due_once_past_warn_after() -> None:
    assert not long_running_due(T0, T0 + timedelta(seconds=59), 60)
    assert long_running_due(T0, T0 + timedelta(seconds=60), 60)
    assert not long_running_due(T0, T0 + timedelta(days=1), None)


def test_missed_ticks_are_those_catch_up_dropped() -> None:
    ticks = [T0 + timedelta(minutes=i) for i in range(5)]
    assert missed_ticks(ticks, ticks[-1:]) == ticks[:-1]
    assert missed_ticks(ticks, ticks) == []


def test_routing_by_event_task_glob_and_task_list() -> None:
    routing = Routing(
        channels=(
            ChannelRoute("ops"),
            ChannelRoute("backups", tasks=("backup-*",)),
            ChannelRoute("wins", on=frozenset({"success"})),
        ),
        task_channels={"backup-db": ("backups",), "quiet": ()},
    )
    assert channels_for(routing, "web", "run.failed") == ["ops"]
    assert channels_for(routing, "backup-db", "run.failed") == ["backups"]
    assert channels_for(routing, "backup-logs", "run.failed") == ["backups", "ops"]
    assert channels_for(routing, "quiet", "run.failed") == []
    assert channels_for(routing, "web", "run.success") == ["wins"]
    assert channels_for(routing, "web", "run.stopped") == []


@pytest.mark.parametrize(
    "pattern", ["*", "backup-*", "a?c", "[ab]*", "[!x]y", "x.y", "*.daily", "[]a]", "a["]
)
@pytest.mark.parametrize(
    "name", ["backup-db", "abc", "bzz", "xy", "zy", "x.y", "xzy", "a.daily", "]", "a["]
)
def test_glob_regex_matches_what_fnmatch_matches(pattern: str, name: str) -> None:
    # Python's re stands in for PostgreSQL's ~ here (the contract tests use the real one).
    assert bool(re.match(glob_regex(pattern), name)) == fnmatchcase(name, pattern)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.DEAD),
        (400, Verdict.DEAD),
        (404, Verdict.DEAD),
        (408, Verdict.RETRY),
        (410, Verdict.DEAD),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_status_codes(code: int, verdict: Verdict) -> None:
    assert verdict_for_status(code) is verdict


def test_backoff_doubles_with_jitter_up_to_five_minutes() -> None:
    rng = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 256), (10, 300), (40, 300)]:
        delay = retry_delay(attempt, None, rng)
        assert base * 0.8 <= delay <= min(base * 1.2, BACKOFF_CAP)


def test_retry_after_is_honoured_when_longer() -> None:
    rng = random.Random(1)
    assert retry_delay(1, 30.0, rng) == 30.0
    assert retry_delay(5, 0.5, rng) >= 16 * 0.8


def test_budget_makes_a_retry_dead() -> None:
    rng = random.Random(3)
    assert after_failure(Verdict.RETRY, 1, 0, 86400, None, rng)[0] is Verdict.RETRY
    assert after_failure(Verdict.RETRY, 1, 86399.5, 86400, None, rng) == (Verdict.DEAD, 0.0)
    assert after_failure(Verdict.DEAD, 1, 0, 86400, None, rng) == (Verdict.DEAD, 0.0)


def test_output_tail_keeps_20_lines_and_4_kb() -> None:
    lines = [f"line {i}" for i in range(100)]
    assert output_tail(lines) == lines[-20:]
    fat = ["x" * 1000] * 20
    assert sum(len(t) + 1 for t in output_tail(fat)) <= TAIL_BYTES
    assert len(output_tail(["é" * 5000])[0].encode()) < TAIL_BYTES


def test_message_facts() -> None:
    start = int(T0.timestamp() * 1_000_000)
    delivery = Delivery(
        id="d1",
        event_id="e1",
        type="run.failed",
        channel="ops",
        status=DeliveryStatus.PENDING,
        created_at=T0,
        task_name="job",
        run_id="r1",
        data={
            "task": "job",
            "run_id": "r1",
            "exit_code": 3,
            "started_at": start,
            "ended_at": start + 2_500_000,
            "summary": True,
        },
        count=4,
    )
    message = message_for(delivery, "http://x/api/tasks/job/runs/r1", ["a", "b"])
    body = message.body()
    assert body["type"] == "run.failed"
    assert body["timestamp"] == "2026-12-06T03:00:00.000Z"
    assert body["data"]["started_at"] == "2026-12-06T03:00:00.000Z"
    assert body["data"]["duration_seconds"] == 2.5
    assert body["data"]["count"] == 4
    assert "summary" not in body["data"]
    assert message.title == "job: failed (exit 3) (4 times)"
    assert "last output:\na\nb" in message.text()
