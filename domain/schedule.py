"""When a task's cron schedule fires: ticks in UTC from an expression and a time zone.

The only module that imports croniter. croniter is driven on *naive wall-clock* times of
the task's zone, where its arithmetic is plain and predictable; this module then maps each
wall-clock tick to an instant itself, which is where daylight saving is decided:

- fall-back: a wall-clock time that occurs twice fires once, at its first occurrence;
- spring-forward: wall-clock times in the gap do not exist; they fire once, at the gap's
  end (a 02:30 daily job runs at 03:00 on that day, as croniter's own zone mode also does).

``@every <duration>`` schedules ignore the zone: they fire every ``duration`` counted from
the Unix epoch, so every process computes the same ticks. No I/O, no wall clock: the time
always comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from domain.durations import parse_duration

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The ``@name`` shorthands and the 5-field expressions they stand for."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# A reference instant for checking at parse time that an expression fires at all
# ("0 0 30 2 *" never does); fixed so parsing never depends on the clock.
_PROBE_START = datetime(2000, 1, 1)
_EXAMPLES = '"0 2 * * *", "*/10 * * * * *" (leading seconds), "@daily" or "@every 90s"'


class InvalidSchedule(ValueError):
    """A schedule expression (or its time zone) cannot be used; ``message`` says why."""

    def __init__(self, expression: str, message: str) -> None:
        self.expression = expression
        self.message = message
        super().__init__(f"invalid schedule {expression!r}: {message}")


class Schedule:
    """A parsed schedule: build it with :meth:`parse`, ask it for ticks.

    Every datetime going in must be timezone-aware; every datetime coming out is in UTC.
    """

    __slots__ = ("_cron", "_interval_us", "_zone", "expression", "timezone")

    def __init__(
        self, expression: str, timezone: str, cron: str | None, interval_us: int | None
    ) -> None:
        self.expression = expression
        self.timezone = timezone
        self._cron = cron
        self._interval_us = interval_us
        self._zone = ZoneInfo(timezone)

    @classmethod
    def parse(cls, expression: str, timezone: str) -> Schedule:
        """Parse ``expression`` for the IANA zone ``timezone``.

        Accepts 5-field cron (``min hour dom mon dow``), 6 fields with *leading* seconds,
        the ``@yearly``-style shorthands of :data:`ALIASES`, and ``@every <duration>``
        (at least ``1s``). Raises :class:`InvalidSchedule` saying what is wrong.
        """
        text = " ".join(expression.split())
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(expression, f"unknown time zone {timezone!r}") from None
        if not text:
            raise InvalidSchedule(expression, f"the expression is empty; use e.g. {_EXAMPLES}")
        if text.lower().startswith("@every"):
            return cls(expression, timezone, None, _parse_interval(expression, text[6:]))
        if text.startswith("@"):
            cron = ALIASES.get(text.lower())
            if cron is None:
                known = ", ".join([*ALIASES, "@every <duration>"])
                raise InvalidSchedule(expression, f"unknown shorthand {text!r}; use {known}")
        else:
            cron = text
        _check_cron(expression, cron)
        return cls(expression, timezone, cron, None)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``."""
        _require_aware(after)
        if self._interval_us is not None:
            index = _micros(after) // self._interval_us + 1
            return _EPOCH + index * self._interval_us * _MICROSECOND
        for tick in self._forward(after):
            return tick
        raise AssertionError("unreachable: cron ticks never run out")  # pragma: no cover

    def ticks_after(self, after: datetime) -> Iterator[datetime]:
        """The ticks strictly after ``after``, oldest first, without end.

        Walking on costs a third of a fresh :meth:`next_tick` per tick (no new croniter).
        """
        _require_aware(after)
        if self._interval_us is None:
            return self._forward(after)
        return self._every(after)

    def _every(self, after: datetime) -> Iterator[datetime]:
        index = _micros(after) // self._interval_us + 1 if self._interval_us else 0
        while self._interval_us is not None:
            yield _EPOCH + index * self._interval_us * _MICROSECOND
            index += 1

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The ticks ``t`` with ``start < t <= end``, oldest first, at most ``limit``.

        When more than ``limit`` ticks fall in the window, the *latest* ``limit`` are
        returned: catch-up after a long outage replays the most recent missed ticks.
        """
        _require_aware(start)
        _require_aware(end)
        if limit <= 0 or end <= start:
            return []
        if self._interval_us is not None:
            first = _micros(start) // self._interval_us + 1
            last = _micros(end) // self._interval_us
            first = max(first, last - limit + 1)
            return [_EPOCH + i * self._interval_us * _MICROSECOND for i in range(first, last + 1)]
        ticks: list[datetime] = []
        for tick in self._backward(end):
            if tick <= start or len(ticks) == limit:
                break
            ticks.append(tick)
        ticks.reverse()
        return ticks

    def _forward(self, after: datetime) -> Iterator[datetime]:
        # Wall-clock -> instant is non-decreasing, so no tick later than `after` has a wall
        # time at or before `after`'s own; ticks in the repeated hour map to their first
        # occurrence and may still land before `after`, hence the filter.
        after = after.astimezone(UTC)
        wall = _wall(after, self._zone)
        last: datetime | None = None
        for tick in self._instants(croniter(self._cron, wall, second_at_beginning=True), True):
            if tick > after and tick != last:
                yield tick
            last = tick

    def _backward(self, end: datetime) -> Iterator[datetime]:
        end = end.astimezone(UTC)
        local = end.astimezone(self._zone)
        # In the second pass of a repeated hour, later wall times of that hour map to their
        # first pass, before `end`: start the walk back past the whole repeated hour.
        margin = timedelta(0)
        if local.fold:
            early = local.replace(fold=0).utcoffset() or timedelta(0)
            margin = early - (local.utcoffset() or timedelta(0))
        start = _wall(end, self._zone) + margin + timedelta(seconds=1)
        iterator = croniter(self._cron, start, is_prev=True, second_at_beginning=True)
        last: datetime | None = None
        for tick in self._instants(iterator, False):
            if tick <= end and tick != last:
                yield tick
            last = tick

    def _instants(self, iterator: croniter, forward: bool) -> Iterator[datetime]:
        step = iterator.get_next if forward else iterator.get_prev
        while True:
            yield _instant(step(datetime), self._zone)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (self.expression, self.timezone) == (other.expression, other.timezone)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    def __repr__(self) -> str:
        return f"Schedule({self.expression!r}, {self.timezone!r})"


def _parse_interval(expression: str, text: str) -> int:
    text = text.strip()
    if not text:
        raise InvalidSchedule(expression, '"@every" needs a duration, e.g. "@every 90s"')
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise InvalidSchedule(expression, str(error)) from None
    if seconds < 1:
        raise InvalidSchedule(expression, f"the interval {text!r} is shorter than 1s")
    return round(seconds * 1_000_000)


_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)


def _check_cron(expression: str, cron: str) -> None:
    fields = cron.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            expression,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 with "
            f"leading seconds, got {len(fields)}; use e.g. {_EXAMPLES}",
        )
    names = _FIELDS if len(fields) == 5 else (("second", "0-59"), *_FIELDS)
    try:
        croniter(cron, _PROBE_START, second_at_beginning=True).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidSchedule(expression, "it never fires (no such date)") from None
    except (ValueError, KeyError):  # croniter's parse errors are ValueErrors
        # Name the first field that is wrong on its own, with its allowed values.
        for index, (name, allowed) in enumerate(names):
            alone = ["*"] * len(fields)
            alone[index] = fields[index]
            try:
                croniter(" ".join(alone), _PROBE_START, second_at_beginning=True)
            except (ValueError, KeyError):
                raise InvalidSchedule(
                    expression,
                    f"the {name} field {fields[index]!r} is invalid (allowed: {allowed})",
                ) from None
        raise InvalidSchedule(expression, f"not a cron expression; use e.g. {_EXAMPLES}") from None


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware one (UTC)")


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock tick fires: the first of two, or the end of a gap."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return min(first, second)  # exists; when repeated, its first occurrence
    # In a gap, fold=0 reads the wall time with the offset before the change and fold=1
    # with the one after; the change itself lies between the two readings.
    return _transition(min(first, second), max(first, second), zone)


def _transition(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in ``(low, high]`` whose UTC offset is ``high``'s."""
    target = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            break
        if middle.astimezone(zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return high
