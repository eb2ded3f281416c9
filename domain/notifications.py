"""Notifications: which events a run causes, who gets them, when repeats are held, retries.

Pure rules, no I/O; time comes in as arguments. The PostgreSQL outbox (migration 0009)
applies the same rules in the transaction that records a run's end; the in-memory fake
calls these functions, and one contract suite holds both to the same behaviour.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase

from domain.run import EndReason

FAILURES = frozenset(
    {EndReason.FAILED, EndReason.TIMEOUT, EndReason.CRASHED, EndReason.LOG_OVERFLOW}
)
"""End reasons that make a failure streak (``recovered`` ends one)."""

EVENTS = (
    *(f"run.{reason.value}" for reason in EndReason),
    "run.recovered",
    "run.long_running",
    "run.missed",
    "notify.test",
)
"""Every event type."""

ON_NAMES = tuple(e.removeprefix("run.") for e in EVENTS if e.startswith("run."))
"""What a channel's ``on`` may list: the event types without ``run.``."""

DEFAULT_ON = ("failed", "timeout", "crashed", "log_overflow", "recovered")
"""A channel's ``on`` when the config does not say."""

TEST_EVENT = "notify.test"
TAIL_EVENTS = frozenset({*(f"run.{reason.value}" for reason in EndReason), "run.long_running"})
"""Events whose message carries the run's last output lines."""
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 300.0
DEFAULT_BUDGET = 24 * 3600.0
"""Seconds after its creation when a delivery that keeps failing is given up (``dead``)."""
DEFAULT_COALESCE_WINDOW = 3600.0
INTERRUPTED = "interrupted: the daemon sending it stopped"
"""The error of a try a graceful stop cut off (``NotificationOutbox.release``)."""


class DeliveryStatus(StrEnum):
    """Where a delivery is in its life."""

    PENDING = "pending"
    """Waiting for its first try."""
    SENDING = "sending"
    """Claimed by a node, which has a lease on it until ``claimed_until``."""
    DELIVERED = "delivered"
    """The receiver accepted it (2xx, or the mail server took it)."""
    RETRYING = "retrying"
    """The last try failed in a way worth repeating; tried again at ``next_attempt_at``."""
    DEAD = "dead"
    """Given up: refused for good (4xx other than 408/429) or the retry budget ran out."""
    SUPPRESSED = "suppressed"
    """A repeat held by coalescing: never sent alone, counted in the next summary."""


@dataclass(frozen=True, slots=True)
class ChannelRoute:
    """What of a ``[notifiers.NAME]`` table the outbox needs to route events."""

    name: str
    on: frozenset[str] = frozenset(DEFAULT_ON)
    tasks: tuple[str, ...] = ("*",)
    """Glob patterns (``fnmatch``, case-sensitive) of task and service names."""


@dataclass(frozen=True, slots=True)
class Routing:
    """Everything the outbox needs from the config: channels, tasks' lists, the window."""

    channels: tuple[ChannelRoute, ...] = ()
    task_channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """A task's ``notify`` list; a task not in here takes every channel."""
    warn_after: Mapping[str, float] = field(default_factory=dict)
    """Seconds after which a task's still running run causes ``run.long_running``."""
    coalesce_window: float = DEFAULT_COALESCE_WINDOW


def channels_for(routing: Routing, task: str, event: str) -> list[str]:
    """The channels an event of ``task`` goes to, by name: the task's list (if any), each
    channel's ``on`` and ``tasks`` filters."""
    allowed = routing.task_channels.get(task)
    short = event.removeprefix("run.")
    return sorted(
        c.name
        for c in routing.channels
        if short in c.on
        and any(fnmatchcase(task, pattern) for pattern in c.tasks)
        and (allowed is None or c.name in allowed)
    )


def glob_regex(pattern: str) -> str:
    """``pattern`` (``*``, ``?``, ``[seq]``, ``[!seq]``) as an anchored POSIX regular
    expression that matches what ``fnmatchcase`` matches (for the database's ``~``)."""
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and (end := pattern.find("]", i + (pattern[i : i + 1] in "!]"))) > 0:
            body = pattern[i:end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append("\\" + ch if not ch.isalnum() else ch)
    return "".join(out) + "$"


@dataclass(frozen=True, slots=True)
class Stream:
    """Coalescing state of one (task, event): the window and the repeats held in it."""

    window_started_at: datetime
    held: int = 0
    last_run_id: str | None = None
    """The latest held repeat: the summary carries its facts."""


class Send(StrEnum):
    """What to do with one occurrence of an event."""

    NOW = "now"
    HOLD = "hold"


def coalesce(
    stream: Stream | None, now: datetime, window: float, run_id: str | None
) -> tuple[Stream | None, Stream, Send]:
    """Decide one occurrence: returns (a window that closed with repeats still held — to be
    summarised first —, the stream's new state, send now or hold).

    The first occurrence, and the first after a window ended, is sent at once and opens a
    window of ``window`` seconds; repeats inside it are held. ``window`` 0 sends all.
    """
    if stream is not None and now < stream.window_started_at + timedelta(seconds=window):
        return None, Stream(stream.window_started_at, stream.held + 1, run_id), Send.HOLD
    closed = stream if stream is not None and stream.held > 0 else None
    return closed, Stream(now, 0, None), Send.NOW


def window_closed(stream: Stream, now: datetime, window: float) -> bool:
    """Whether ``stream`` has held repeats whose window is over (a summary is due)."""
    return stream.held > 0 and now >= stream.window_started_at + timedelta(seconds=window)


@dataclass(frozen=True, slots=True)
class EndEffects:
    """What one run end does to a task's notification state."""

    send: Send | None
    """The end's own event: sent now, held, or nothing (no channel wants it)."""
    recovered: bool
    """``run.recovered`` is due (a success after a notified failure streak)."""
    failure_notified: bool
    """The task's new state: a failure of the current streak reached some channel."""
    flush_task: bool
    """Summarise every held repeat of the task now and forget its windows."""


def end_effects(
    reason: EndReason, failure_notified: bool, has_channels: bool, send: Send | None
) -> EndEffects:
    """Recovery and streak bookkeeping for one end.

    A success ends a streak: if a failure of it was notified, ``run.recovered`` is due and
    the held repeats are summarised at once (not at the window's end); either way the next
    failure is the first of a new streak and is sent at once. A failure that reaches some
    channel marks the streak notified. Other ends (stopped, skipped) change nothing.
    """
    if reason is EndReason.SUCCESS:
        return EndEffects(send, failure_notified, False, flush_task=True)
    if reason in FAILURES:
        return EndEffects(send, False, failure_notified or has_channels, flush_task=False)
    return EndEffects(send, False, failure_notified, flush_task=False)


def long_running_due(started_at: datetime, now: datetime, warn_after: float | None) -> bool:
    """Whether a run started at ``started_at`` is now past its task's ``warn_after``."""
    return warn_after is not None and now - started_at >= timedelta(seconds=warn_after)


def missed_ticks(due: Sequence[datetime], chosen: Sequence[datetime]) -> list[datetime]:
    """The cron ticks ``catch_up`` dropped: due but not chosen to run."""
    keep = set(chosen)
    return [tick for tick in due if tick not in keep]


class Verdict(StrEnum):
    """How one try of a delivery went."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


def verdict_for_status(code: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx retried; anything else (3xx: redirects are not
    followed, other 4xx) is refused for good."""
    if 200 <= code < 300:
        return Verdict.DELIVERED
    if code in (408, 429) or code >= 500:
        return Verdict.RETRY
    return Verdict.DEAD


def retry_delay(
    attempt: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds before try ``attempt + 1`` after try ``attempt`` (1-based) failed.

    1 s, 2 s, 4 s ... capped at 5 min, each with up to 20% jitter either way, so many
    deliveries failing together do not come back together; a receiver's ``Retry-After``
    is honoured when it asks for longer (and is not capped: it knows best).
    """
    base = min(BACKOFF_FIRST * float(2 ** min(max(attempt - 1, 0), 30)), BACKOFF_CAP)
    jitter = float((rng or random).uniform(0.8, 1.2))
    delay = min(base * jitter, BACKOFF_CAP)
    return max(delay, retry_after) if retry_after is not None else delay


def after_failure(
    verdict: Verdict,
    attempt: int,
    age: float,
    budget: float,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> tuple[Verdict, float]:
    """(final verdict, delay) after a failed try: a retry whose next try would fall beyond
    the budget (seconds since the delivery was created) is dead instead."""
    if verdict is not Verdict.RETRY:
        return verdict, 0.0
    delay = retry_delay(attempt, retry_after, rng)
    if age + delay > budget:
        return Verdict.DEAD, 0.0
    return Verdict.RETRY, delay


def title(event: str, task: str | None, data: Mapping[str, object]) -> str:
    """A readable one-line title for chat and e-mail."""
    count = data.get("count", 1)
    more = f" ({count} times)" if isinstance(count, int) and count > 1 else ""
    match event:
        case "notify.test":
            return "runwarden: test notification"
        case "run.recovered":
            return f"{task}: recovered (succeeded after failing)"
        case "run.long_running":
            return f"{task}: still running after {data.get('warn_after_seconds')}s"
        case "run.missed":
            return f"{task}: {count} scheduled run(s) missed while no daemon was up"
        case "run.success":
            return f"{task}: succeeded{more}"
    reason = event.removeprefix("run.")
    code = data.get("exit_code")
    tail = f" (exit {code})" if code is not None and reason == "failed" else ""
    return f"{task}: {reason.replace('_', ' ')}{tail}{more}"
