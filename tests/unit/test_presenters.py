"""Timestamps on the wire: RFC 3339 in UTC, a ``Z`` and always six fraction digits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app.presenters import timestamp


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC), "2026-11-29T10:00:00.123456Z"),
        # A whole second still carries its fraction.
        (datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC), "2026-11-29T10:00:00.000000Z"),
        (datetime(2026, 11, 29, 10, 0, 0, 120000, tzinfo=UTC), "2026-11-29T10:00:00.120000Z"),
        (datetime(2026, 11, 29, 10, 0, 0, 7, tzinfo=UTC), "2026-11-29T10:00:00.000007Z"),
        # Other offsets are converted to UTC.
        (
            datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),
            "2025-12-31T23:30:00.000000Z",
        ),
        (
            datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris")),
            "2026-07-01T10:00:00.000000Z",
        ),
        (datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")), "2026-01-01T00:00:00.000000Z"),
    ],
)
def test_timestamp_is_rfc3339_utc_with_microseconds(value: datetime, text: str) -> None:
    assert timestamp(value) == text
