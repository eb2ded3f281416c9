"""Cron schedules: field formats, shorthands, @every, windows, and daylight saving."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.schedule import InvalidSchedule, Schedule


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def walk(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    ticks = []
    for _ in range(count):
        after = schedule.next_tick(after)
        ticks.append(after)
    return ticks


def test_five_fields_fire_on_every_matching_minute() -> None:
    schedule = Schedule.parse("*/20 9 * * *", "UTC")
    assert walk(schedule, utc(2026, 1, 5, 8, 0), 4) == [
        utc(2026, 1, 5, 9, 0),
        utc(2026, 1, 5, 9, 20),
        utc(2026, 1, 5, 9, 40),
        utc(2026, 1, 6, 9, 0),
    ]


def test_six_fields_read_the_first_one_as_seconds() -> None:
    schedule = Schedule.parse("15 */5 * * * *", "UTC")
    assert walk(schedule, utc(2026, 1, 5, 8, 0), 2) == [
        utc(2026, 1, 5, 8, 0, 15),
        utc(2026, 1, 5, 8, 5, 15),
    ]


def test_next_tick_is_strictly_after_the_instant_given() -> None:
    schedule = Schedule.parse("0 * * * *", "UTC")
    assert schedule.next_tick(utc(2026, 1, 5, 8, 0)) == utc(2026, 1, 5, 9, 0)
    assert schedule.next_tick(utc(2026, 1, 5, 7, 59, 59, 999999)) == utc(2026, 1, 5, 8, 0)


def test_ticks_come_out_in_utc_whatever_the_input_zone() -> None:
    schedule = Schedule.parse("0 12 * * *", "Europe/Berlin")
    tokyo = datetime(2026, 7, 1, 18, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 09:00Z
    tick = schedule.next_tick(tokyo)
    assert tick.tzinfo is UTC
    assert tick == utc(2026, 7, 1, 10, 0)  # noon in Berlin summer time


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Schedule.parse("* * * * *", "UTC").next_tick(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("alias", "cron"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_shorthands_fire_like_their_cron_expressions(alias: str, cron: str) -> None:
    start = utc(2026, 5, 17, 13, 7)
    expected = walk(Schedule.parse(cron, "Europe/Berlin"), start, 3)
    assert walk(Schedule.parse(alias, "Europe/Berlin"), start, 3) == expected


def test_every_counts_intervals_from_the_unix_epoch() -> None:
    schedule = Schedule.parse("@every 90s", "Europe/Berlin")
    assert walk(schedule, utc(2026, 1, 1, 0, 0, 1), 3) == [
        utc(2026, 1, 1, 0, 1, 30),
        utc(2026, 1, 1, 0, 3, 0),
        utc(2026, 1, 1, 0, 4, 30),
    ]
    # The same ticks whatever instant the walk starts from.
    assert schedule.next_tick(utc(2026, 1, 1, 0, 2, 59)) == utc(2026, 1, 1, 0, 3, 0)


def test_every_accepts_compound_durations() -> None:
    schedule = Schedule.parse("@every 1h30m", "UTC")
    assert walk(schedule, utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 1, 30), utc(2026, 1, 1, 3)]


def test_ticks_between_excludes_the_start_and_includes_the_end() -> None:
    schedule = Schedule.parse("0 * * * *", "UTC")
    assert schedule.ticks_between(utc(2026, 1, 1, 1), utc(2026, 1, 1, 3), 10) == [
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
    ]


@pytest.mark.parametrize("expression", ["*/10 * * * *", "@every 10m"])
def test_ticks_between_keeps_the_latest_ticks_when_over_the_limit(expression: str) -> None:
    schedule = Schedule.parse(expression, "UTC")
    ticks = schedule.ticks_between(utc(2026, 1, 1), utc(2026, 1, 2), 3)
    assert ticks == [utc(2026, 1, 1, 23, 40), utc(2026, 1, 1, 23, 50), utc(2026, 1, 2)]


def test_ticks_between_is_empty_for_an_empty_window_or_no_room() -> None:
    schedule = Schedule.parse("* * * * *", "UTC")
    assert schedule.ticks_between(utc(2026, 1, 2), utc(2026, 1, 1), 10) == []
    assert schedule.ticks_between(utc(2026, 1, 1), utc(2026, 1, 2), 0) == []


def test_ticks_between_over_years_of_seconds_stays_cheap() -> None:
    schedule = Schedule.parse("* * * * * *", "UTC")
    ticks = schedule.ticks_between(utc(2020, 1, 1), utc(2026, 1, 1), 5)
    assert ticks == [utc(2025, 12, 31, 23, 59, 56) + timedelta(seconds=i) for i in range(5)]


# Europe/Berlin 2026: clocks go 02:00 -> 03:00 on 29 March (01:00Z) and
# 03:00 -> 02:00 on 25 October (01:00Z), so 02:xx happens twice that night.


def test_berlin_fall_back_fires_a_repeated_wall_time_once() -> None:
    schedule = Schedule.parse("30 2 * * *", "Europe/Berlin")
    ticks = schedule.ticks_between(utc(2026, 10, 24), utc(2026, 10, 27), 10)
    assert ticks == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    assert schedule.next_tick(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)


def test_berlin_fall_back_skips_the_second_pass_of_the_repeated_hour() -> None:
    schedule = Schedule.parse("*/30 * * * *", "Europe/Berlin")
    expected = [
        utc(2026, 10, 24, 23, 30),  # 01:30 CEST
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST; 02:00 and 02:30 CET do not fire again
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
        utc(2026, 10, 25, 2, 30),
    ]
    assert walk(schedule, utc(2026, 10, 24, 23), 5) == expected
    assert schedule.ticks_between(utc(2026, 10, 24, 23), utc(2026, 10, 25, 2, 30), 10) == expected


def test_berlin_window_ending_in_the_second_pass_still_sees_the_first_pass() -> None:
    schedule = Schedule.parse("*/30 * * * *", "Europe/Berlin")
    # 01:15Z is 02:15 CET, the second pass; 02:30 CEST (00:30Z) is before it.
    assert schedule.ticks_between(utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 1, 15), 10) == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
    ]
    assert schedule.next_tick(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 25, 2, 0)


def test_berlin_spring_forward_fires_a_missing_time_once_at_the_end_of_the_gap() -> None:
    schedule = Schedule.parse("30 2 * * *", "Europe/Berlin")
    ticks = schedule.ticks_between(utc(2026, 3, 27), utc(2026, 3, 31), 10)
    assert ticks == [
        utc(2026, 3, 27, 1, 30),
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: 02:30 did not exist
        utc(2026, 3, 30, 0, 30),
    ]


# America/New_York 2026: 02:00 -> 03:00 on 8 March (07:00Z), 02:00 -> 01:00 on
# 1 November (06:00Z).


def test_new_york_spring_forward_collapses_the_gap_into_one_tick() -> None:
    schedule = Schedule.parse("*/15 * * * *", "America/New_York")
    assert schedule.ticks_between(utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30), 10) == [
        utc(2026, 3, 8, 6, 45),  # 01:45 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT, standing in for 02:00-02:45 too
        utc(2026, 3, 8, 7, 15),
        utc(2026, 3, 8, 7, 30),
    ]


def test_new_york_fall_back_fires_one_am_once() -> None:
    schedule = Schedule.parse("0 1 * * *", "America/New_York")
    assert schedule.ticks_between(utc(2026, 10, 31, 12), utc(2026, 11, 2, 12), 10) == [
        utc(2026, 11, 1, 5, 0),  # 01:00 EDT; 01:00 EST (06:00Z) is the same wall time
        utc(2026, 11, 2, 6, 0),
    ]


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("", "empty"),
        ("* * * *", "expected 5 fields"),
        ("0 0 1 1 * 2026 *", "got 7"),
        ("61 * * * *", "minute field '61'"),
        ("* 24 * * *", "hour field '24'"),
        ("* * * 13 *", "month field '13'"),
        ("70 * * * * *", "second field '70'"),
        ("0 0 30 2 *", "never fires"),
        ("@fortnightly", "unknown shorthand"),
        ("@every", "needs a duration"),
        ("@every soon", "invalid duration"),
        ("@every 500ms", "shorter than 1s"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, complaint: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        Schedule.parse(expression, "UTC")
    assert complaint in caught.value.message
    assert caught.value.expression == expression


def test_an_unknown_time_zone_is_invalid() -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Mars/Olympus'"):
        Schedule.parse("* * * * *", "Mars/Olympus")


@pytest.mark.parametrize(
    ("expression", "zone"),
    [("* * * * * *", "UTC"), ("30 2 * * *", "Europe/Berlin"), ("@every 90s", "UTC")],
)
def test_walking_the_ticks_gives_what_next_tick_gives_one_by_one(
    expression: str, zone: str
) -> None:
    schedule = Schedule.parse(expression, zone)
    # Across the spring-forward night in Berlin (2:30 does not exist on 2026-03-29).
    start = datetime(2026, 3, 27, 23, 0, tzinfo=UTC)
    walked = list(itertools.islice(schedule.ticks_after(start), 5))
    expected = []
    at = start
    for _ in range(5):
        at = schedule.next_tick(at)
        expected.append(at)
    assert walked == expected
