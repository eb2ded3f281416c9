"""A human reading of common cron shapes ("every 5 minutes"); None for the rest.

Pure and conservative: it reads only shapes it can say exactly, and the page shows the raw
expression beside it anyway, so an unusual schedule is never misdescribed, just not read.
"""

from __future__ import annotations

import re

from domain.schedule import ALIASES

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
_NUMBER = re.compile(r"^\d+$")
_STEP = re.compile(r"^\*/(\d+)$")
_EVERY = re.compile(r"^(\d+)\s*([smhd])$")


def _plural(n: int, unit: str) -> str:
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def _every(rest: str) -> str | None:
    parts = rest.split()
    if not parts:
        return None
    spans = []
    for part in parts:
        found = _EVERY.match(part)
        if found is None:
            return None
        spans.append((int(found.group(1)), _UNITS[found.group(2)]))
    if len(spans) == 1:
        return _plural(*spans[0])
    return "every " + " ".join(f"{n} {u}{'s' if n != 1 else ''}" for n, u in spans)


def _numbers(field: str, low: int, high: int) -> list[int] | None:
    """A comma list of plain numbers in range; None for anything else (ranges, steps)."""
    values = []
    for part in field.split(","):
        if not _NUMBER.match(part) or not low <= int(part) <= high:
            return None
        values.append(int(part))
    return values


def _days(field: str) -> str | None:
    if field in ("1-5", "MON-FRI", "mon-fri"):
        return "on weekdays"
    if field in ("0,6", "6,0", "SAT,SUN", "sat,sun"):
        return "on weekends"
    numbers = _numbers(field, 0, 7)
    if numbers is None:
        return None
    names = [DAYS[n % 7] for n in numbers]
    return "on " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(expression: str | None) -> str | None:
    """A reading of ``expression`` for people, or None when it is not a common shape."""
    if not expression:
        return None
    text = expression.strip()
    if text.startswith("@every"):
        return _every(text[len("@every") :])
    text = ALIASES.get(text.lower(), text)
    fields = text.split()
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    if minute == "*" and hour == "*" and dom == month == dow == "*":
        return "every minute"
    if dom == month == dow == "*" and hour == "*" and (step := _STEP.match(minute)):
        return _plural(int(step.group(1)), "minute")
    minutes = _numbers(minute, 0, 59)
    if minutes is None or len(minutes) != 1:
        return None
    at_minute = minutes[0]
    if dom == month == dow == "*":
        if hour == "*":
            return "every hour" if at_minute == 0 else f"every hour at minute {at_minute}"
        if step := _STEP.match(hour):
            return f"{_plural(int(step.group(1)), 'hour')} at minute {at_minute}"
    hours = _numbers(hour, 0, 23)
    if hours is None:
        return None
    times = "at " + _and([f"{h:02d}:{at_minute:02d}" for h in hours])
    if dom == month == "*":
        if dow == "*":
            return f"every day {times}"
        days = _days(dow)
        return f"{days} {times}" if days else None
    if dow != "*":
        return None
    days_of_month = _numbers(dom, 1, 31)
    if days_of_month is None or len(days_of_month) != 1:
        return None
    day = days_of_month[0]
    if month == "*":
        return f"on day {day} of every month {times}"
    months = _numbers(month, 1, 12)
    if months is None or len(months) != 1:
        return None
    return f"every year on {day} {MONTHS[months[0] - 1]} {times}"
