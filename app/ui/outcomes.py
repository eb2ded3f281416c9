"""A run's outcome as the dashboard names it: the end reason once ended, else the phase."""

from __future__ import annotations

from domain.run import EndReason, RunStatus

LETTERS = {
    "pending": "P",
    "running": "R",
    "success": "S",
    "failed": "F",
    "timeout": "T",
    "crashed": "C",
    "skipped": "K",
    "stopped": "X",
    "log_overflow": "O",
}
"""One letter per outcome: the strip and the chart show it, so colour is not the only cue."""

ATTENTION = frozenset({"failed", "timeout", "crashed", "log_overflow"})
"""Outcomes that put a task under "needs attention"."""
BAD = ATTENTION
"""Outcomes drawn hatched in the chart."""


def outcome(run: object) -> str:
    """``success``, ``failed``, ... for an ended run; ``pending`` or ``running`` before."""
    status = getattr(run, "status", None)
    reason = getattr(run, "end_reason", None)
    if status is RunStatus.ENDED and isinstance(reason, EndReason):
        return reason.value
    return str(getattr(status, "value", status))


def letter(name: str) -> str:
    """The outcome's letter; ``?`` for one this version does not know."""
    return LETTERS.get(name, "?")


def label(name: str) -> str:
    """The outcome in words: ``log overflow``."""
    return name.replace("_", " ")
