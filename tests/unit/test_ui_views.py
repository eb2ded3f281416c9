"""The dashboard's pure parts: cron readings, chart geometry, durations, URL state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.ui.chart import HEIGHT, MIN_BAR, WIDTH, duration_bars, seconds_of
from app.ui.cron_text import describe
from app.ui.filters import duration
from app.ui.outcomes import letter, outcome
from app.ui.views import RunFilters, pager, parse_filters
from domain.listing import ListedRun, SortDirection, SortField
from domain.run import EndReason, RunStatus, TriggeredBy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "reading"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("*/1 * * * *", "every minute"),
        ("0 * * * *", "every hour"),
        ("15 * * * *", "every hour at minute 15"),
        ("30 */2 * * *", "every 2 hours at minute 30"),
        ("0 3 * * *", "every day at 03:00"),
        ("5 9,17 * * *", "every day at 09:05 and 17:05"),
        ("0 8 * * 1-5", "on weekdays at 08:00"),
        ("0 10 * * 0,6", "on weekends at 10:00"),
        ("45 23 * * 1", "on Monday at 23:45"),
        ("0 6 * * 1,3,5", "on Monday, Wednesday and Friday at 06:00"),
        ("0 0 1 * *", "on day 1 of every month at 00:00"),
        ("0 12 25 12 *", "every year on 25 December at 12:00"),
        ("@daily", "every day at 00:00"),
        ("@hourly", "every hour"),
        ("@weekly", "on Sunday at 00:00"),
        ("@every 90s", "every 90 seconds"),
        ("@every 1h", "every hour"),
        ("@every 1h 30m", "every 1 hour 30 minutes"),
    ],
)
def test_common_cron_shapes_read_as_words(cron: str, reading: str) -> None:
    assert describe(cron) == reading


@pytest.mark.parametrize(
    "cron",
    [None, "", "*/5 9-17 * * 1-5", "0 0 L * *", "0 0 * * * 2027", "1-5 * * * *", "@every x"],
)
def test_other_shapes_are_not_read_so_the_raw_expression_stands(cron: str | None) -> None:
    assert describe(cron) is None


def listed(
    i: int, reason: EndReason | None, seconds: float | None, status: RunStatus = RunStatus.ENDED
) -> ListedRun:
    start = NOW - timedelta(hours=1, minutes=i)
    return ListedRun(
        id=f"RUN{i:03d}",
        task_name="t",
        status=status,
        end_reason=reason,
        exit_code=0,
        start_at=start if seconds is not None else None,
        end_at=start + timedelta(seconds=seconds) if seconds is not None and reason else None,
        created_at=start,
        triggered_by=TriggeredBy.API,
        replica_index=0,
        retry_attempt=0,
        retry_of_run_id=None,
        external_execution_id=None,
    )


def test_chart_bars_scale_to_the_longest_oldest_on_the_left() -> None:
    newest_first = [
        listed(0, EndReason.SUCCESS, 10),
        listed(1, EndReason.FAILED, 40),
        listed(2, EndReason.SKIPPED, None),
    ]

    chart = duration_bars(newest_first, NOW, slots=4)

    assert [b.run_id for b in chart.bars] == ["RUN002", "RUN001", "RUN000"]
    assert chart.longest == 40
    skipped, failed, success = chart.bars
    assert failed.height == HEIGHT
    assert failed.y == 0
    assert success.height == HEIGHT / 4
    assert success.y == HEIGHT - HEIGHT / 4
    assert skipped.height == MIN_BAR
    assert [b.letter for b in chart.bars] == ["K", "F", "S"]
    assert [b.bad for b in chart.bars] == [False, True, False]
    step = WIDTH / 4
    assert [b.x for b in chart.bars] == [1, step + 1, 2 * step + 1]
    assert all(b.width == step - 2 for b in chart.bars)


def test_a_running_run_is_measured_up_to_now_and_an_empty_chart_has_no_bars() -> None:
    running = listed(0, None, 0, RunStatus.RUNNING)

    assert seconds_of(running, NOW) == 3600
    assert outcome(running) == "running"
    assert letter("running") == "R"
    assert duration_bars([], NOW).bars == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0.25, "250 ms"), (12.34, "12.3 s"), (245, "4 m 05 s"), (7380, "2 h 03 m")],
)
def test_durations_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_filters_round_trip_through_the_query_string() -> None:
    filters, errors = parse_filters(
        {"status": "failed,timeout", "search": " abc ", "sort_field": "duration", "limit": "20"}
    )

    assert errors == []
    assert filters == RunFilters("failed,timeout", "abc", "duration", "", 20, 0)
    query = filters.query("t")
    assert query.sort_field is SortField.DURATION
    assert query.sort_direction is SortDirection.NONE
    assert query.status is not None
    assert filters.params(offset=40) == (
        "?status=failed%2Ctimeout&search=abc&sort_field=duration&limit=20&offset=40"
    )
    assert filters.aria_sort("duration") == "descending"
    assert filters.aria_sort("created_at") == "none"
    assert "sort_direction=asc" in filters.sort_params("duration")
    assert "sort_direction=desc" in filters.sort_params("exit_code")
    assert RunFilters().aria_sort("created_at") == "descending"


def test_bad_filters_are_named_and_fall_back_to_defaults() -> None:
    filters, errors = parse_filters(
        {
            "status": "nope",
            "offset": "-1",
            "limit": "0",
            "sort_direction": "up",
            "search": "x" * 101,
        }
    )

    assert filters == RunFilters()
    assert len(errors) == 5
    assert errors[0].startswith("unknown status 'nope'")


def test_the_pager_counts_exactly_and_links_around() -> None:
    middle = pager(RunFilters(limit=50, offset=50), 50, 12345)
    assert middle.text == "51\u2013100 of 12,345"
    assert middle.prev == ""  # the first page: the bare path
    assert middle.next == "?offset=100"
    last = pager(RunFilters(limit=50, offset=12300), 45, 12345)
    assert last.text == "12,301\u201312,345 of 12,345"
    assert last.next is None
    assert pager(RunFilters(), 0, 0).text == "0 of 0"
    assert pager(RunFilters(offset=500), 0, 10).text == "0 of 10"


def test_the_strip_says_each_outcome_by_letter_and_the_whole_in_its_label() -> None:
    from zoneinfo import ZoneInfo

    from app.ui.task_rows import Cell, strip_html

    winter = datetime(2026, 12, 7, 0, 26, 59, 123456, tzinfo=UTC)
    cells = [
        Cell("A", "success", "S", winter),
        Cell("B", "log_overflow", "O", winter + timedelta(days=200)),
    ]

    html = str(strip_html(cells, ZoneInfo("Europe/Paris")))

    assert html == (
        '<span class="strip" role="img" aria-label="Last 2 outcomes, oldest first:'
        ' 1 success, 1 log overflow; newest log overflow">'
        '<span class="cell o-success" title="success · 2026-12-07 01:26:59 CET">S</span>'
        '<span class="cell o-log_overflow" title="log overflow · 2027-06-25 02:26:59 CEST">'
        "O</span></span>"
    )
