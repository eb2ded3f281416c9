"""A synthetic run history: what a busy runwarden has recorded after months of work.

One task ``big`` holds ``task_runs`` runs (a cron every 10 s); the rest are spread over 50
tasks of several kinds: cron tasks with and without retries, an API-only task, a ``cloud``
task with external execution ids, and services whose instances carry replica indexes. Every
end reason occurs, durations are log-normal with a long tail, and the newest runs of some
tasks are still ``running`` or ``pending``.

Rows come out in the column order of :data:`COLUMNS`, ready for ``copy_records_to_table``;
generated columns (``sort_start_at``, ``duration``) are left to PostgreSQL.
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

BIG_TASK = "big"
OTHER_TASKS = 50
BATCH = 50_000

COLUMNS = (
    "id",
    "task_name",
    "status",
    "end_reason",
    "exit_code",
    "start_at",
    "end_at",
    "created_at",
    "triggered_by",
    "replica_index",
    "retry_attempt",
    "retry_of_run_id",
    "external_execution_id",
    "pid",
)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
# base64's RFC 4648 alphabet mapped onto Crockford's: the same 5-bit values, other letters.
_B32_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD.encode())
_WORDS = ("backup", "report", "sync", "cleanup", "ingest", "export", "billing", "mailer")

# (end reason, cumulative probability) for a run that ended on its own.
_ENDINGS = (
    ("success", 0.82),
    ("failed", 0.90),
    ("skipped", 0.95),
    ("stopped", 0.97),
    ("timeout", 0.985),
    ("log_overflow", 0.995),
    ("crashed", 1.0),
)
_FAILED_EXITS = (1, 1, 1, 2, 2, 3, 127, 126, 255)
_FIXED_EXITS = {"success": 0, "skipped": -1, "stopped": -1, "timeout": -1, "log_overflow": -1}
_RETRIED = frozenset({"failed", "timeout", "crashed", "log_overflow"})


def ulid_time_part(ms: int) -> str:
    """The 10-character time part of a ULID (48-bit milliseconds, Crockford base32)."""
    return (
        _PAIRS[(ms >> 40) & 0x3FF]
        + _PAIRS[(ms >> 30) & 0x3FF]
        + _PAIRS[(ms >> 20) & 0x3FF]
        + _PAIRS[(ms >> 10) & 0x3FF]
        + _PAIRS[ms & 0x3FF]
    )


def ulid_randomness(count: int) -> list[str]:
    """``count`` random 16-character ULID tails (80 bits each), made in one go."""
    # 10 random bytes are exactly 16 base32 characters, so a block of them needs no padding.
    text = base64.b32encode(os.urandom(10 * count)).translate(_B32_TO_CROCKFORD).decode()
    return [text[i : i + 16] for i in range(0, 16 * count, 16)]


@dataclass(frozen=True, slots=True)
class TaskShape:
    """How one synthetic task behaves."""

    name: str
    runs: int
    interval: float
    kind: str  # cron | api | cloud | service
    retries: int
    median_seconds: float
    timeout: float


def task_shapes(total: int, task_runs: int, rng: random.Random) -> list[TaskShape]:
    """``big`` plus 50 other tasks sharing ``total - task_runs`` runs."""
    shapes = [TaskShape(BIG_TASK, task_runs, 10.0, "cron", 2, 3.0, 60.0)]
    rest = total - task_runs
    for i in range(OTHER_TASKS):
        runs = rest // OTHER_TASKS + (1 if i < rest % OTHER_TASKS else 0)
        kind = {0: "cloud", 1: "api", 2: "service", 3: "service"}.get(i, "cron")
        shapes.append(
            TaskShape(
                name=f"{_WORDS[i % len(_WORDS)]}-{i:02d}",
                runs=runs,
                interval=rng.choice((30.0, 60.0, 120.0, 300.0, 600.0)),
                kind=kind,
                retries=2 if i % 3 == 0 else 0,
                median_seconds=rng.choice((0.2, 1.0, 5.0, 20.0)),
                timeout=rng.choice((30.0, 120.0, 600.0)),
            )
        )
    return shapes


def _ending(rng: random.Random) -> str:
    draw = rng.random()
    for reason, cumulative in _ENDINGS:
        if draw < cumulative:
            return reason
    return "success"


def _task_rows(shape: TaskShape, end: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """The task's runs, oldest first; the newest may still be running or pending."""
    span = timedelta(seconds=shape.interval * shape.runs)
    # Ticks land on whole seconds so cron ticks of a task are distinct instants.
    first = (end - span).replace(microsecond=0)
    tails = ulid_randomness(shape.runs)
    active = 30 if shape.name == BIG_TASK else rng.choice((0, 0, 1))
    made = 0
    tick = 0
    previous: tuple[Any, ...] | None = None  # (id, end_at, reason, attempt) of the last attempt
    previous_trigger = "cron"
    while made < shape.runs:
        newest = shape.runs - made <= active
        if previous is not None and previous[2] in _RETRIED and previous[3] < shape.retries:
            attempt = previous[3] + 1
            created = previous[1] + timedelta(seconds=5.0 * 2 ** (attempt - 1))
            retry_of = previous[0]
        else:
            attempt, retry_of = 0, None
            offset = tick * shape.interval
            if shape.kind in ("api", "service"):
                offset += rng.random() * shape.interval * 0.5
            created = first + timedelta(seconds=offset)
            tick += 1
        trigger = {"cron": "cron", "cloud": "cloud"}.get(shape.kind, "api")
        if retry_of is not None:
            trigger = previous_trigger  # retries inherit the trigger
        elif shape.kind == "cron" and rng.random() < 0.03:
            trigger = "api"  # someone pressed "run now"
            created += timedelta(milliseconds=rng.randrange(1, 999))
        previous_trigger = trigger
        run_id = ulid_time_part(int(created.timestamp() * 1000)) + tails[made]
        external = f"exec-{run_id.lower()}" if trigger == "cloud" else None
        replica = made % 3 if shape.kind == "service" else 0
        start = created + timedelta(milliseconds=rng.randrange(2, 40))
        if newest:
            status = "running" if shape.runs - made > active // 3 else "pending"
            pid = rng.randrange(1000, 4_000_000) if status == "running" else None
            yield (run_id, shape.name, status, None, 0,
                   start if status == "running" else None, None, created, trigger,
                   replica, attempt, retry_of, external, pid)  # fmt: skip
            made += 1
            previous = None
            continue
        reason = _ending(rng)
        seconds = min(rng.lognormvariate(0, 1.2) * shape.median_seconds, shape.timeout)
        if reason == "timeout":
            seconds = shape.timeout + rng.random()
        exit_code = _FIXED_EXITS.get(reason)
        if exit_code is None:
            exit_code = -2 if reason == "crashed" else rng.choice(_FAILED_EXITS)
        if reason == "skipped":
            row_start, row_end, pid = None, created + timedelta(milliseconds=1), None
        else:
            row_start, row_end = start, start + timedelta(seconds=seconds)
            pid = rng.randrange(1000, 4_000_000)
        yield (run_id, shape.name, "ended", reason, exit_code, row_start, row_end, created,
               trigger, replica, attempt, retry_of, external, pid)  # fmt: skip
        previous = (run_id, row_end, reason, attempt)
        made += 1


def generate(total: int, task_runs: int, seed: int = 20261129) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of rows for ``total`` runs, ``task_runs`` of them in ``big``."""
    if not 0 <= task_runs <= total:
        raise ValueError("task_runs must be between 0 and runs")
    rng = random.Random(seed)
    end = datetime.now(UTC) - timedelta(minutes=5)
    batch: list[tuple[Any, ...]] = []
    for shape in task_shapes(total, task_runs, rng):
        for row in _task_rows(shape, end, rng):
            batch.append(row)
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch
