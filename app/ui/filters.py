"""Jinja globals and filters of the dashboard: times, durations, status labels.

Everything here returns escaped markup (``markupsafe``): a task name or a log line can never
become HTML.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from app.ui.chart import seconds_of
from app.ui.outcomes import letter, outcome
from app.ui.render import DisplayZone, iso

# Each status has a shape as well as a colour, so it never depends on colour alone.
STATUS_ICONS = {
    "pending": "○",
    "running": "▶",
    "succeeded": "✔",
    "failed": "✖",
    "timed_out": "◷",
    "crashed": "✖",
    "skipped": "↷",
    "stopped": "■",
    "overflowed": "⚠",
    # The end reasons as the API names them (pages show a run's outcome by these).
    "success": "✔",
    "timeout": "◷",
    "log_overflow": "⚠",
}


def _zone(context: Context) -> DisplayZone:
    zone = context.get("zone")
    assert isinstance(zone, DisplayZone), "page() puts the display zone in every context"
    return zone


@pass_context
def when(context: Context, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> Markup:
    """``<time>`` with the instant in UTC, the time in the display zone, its zone on hover."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    zone = _zone(context)
    local = value.astimezone(zone.zone)
    absolute = local.strftime("%Y-%m-%d %H:%M:%S %Z") + f" ({zone.zone.key})"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso(value), absolute, local.strftime(fmt)
    )


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 m 05 s``, ``2 h 03 m``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def status_badge(status: Any) -> Markup:
    """A status as an icon and a word (never colour alone), styled by its class."""
    name = str(getattr(status, "value", status))
    icon = STATUS_ICONS.get(name, "•")
    return Markup(
        '<span class="status status-{0}"><span aria-hidden="true">{1}</span> {2}</span>'
    ).format(name, icon, name.replace("_", " "))


def register(env: Environment) -> None:
    """Add the dashboard's globals and filters to the template engine."""
    env.globals["when"] = when
    env.globals["status_badge"] = status_badge
    env.filters["duration"] = duration
    env.globals["outcome"] = outcome
    env.filters["iso"] = iso
    env.globals["outcome_letter"] = letter
    env.globals["run_seconds"] = seconds_of
