"""What the client prints: aligned tables (colour on a terminal only) or JSON."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_STYLES = {
    "success": "green",
    "running": "yellow",
    "pending": "cyan",
    "failed": "red",
    "timeout": "red",
    "crashed": "red",
    "log_overflow": "red",
    "stopped": "magenta",
    "skipped": "dim",
    "alive": "green",
    "dead": "red",
}


class Output:
    """stdout for results, stderr for notes and errors; ``as_json`` prints JSON only."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # A table is never cut to the terminal's width (an id or a time cut short is
        # useless): a long row wraps instead. rich prints colour only to a terminal, and
        # never with NO_COLOR set.
        self.out = Console(highlight=False, width=4096, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False)

    def json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def json_line(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def table(self, columns: list[str], rows: list[list[str]], footer: str | None = None) -> None:
        table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=True, overflow="ignore")
        for row in rows:
            table.add_row(*(Text(cell, style=_STYLES.get(cell, "")) for cell in row))
        if rows:
            with self.out.capture() as captured:
                self.out.print(table)
            # Padding after the last column is noise in a pipe or a diff.
            sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
            sys.stdout.flush()
        if footer or not rows:
            self.note(footer or "nothing to show")

    def fields(self, pairs: list[tuple[str, str]]) -> None:
        """A run or a node: ``key  value`` lines, aligned."""
        width = max(len(key) for key, _ in pairs)
        for key, value in pairs:
            self.out.print(Text(f"{key:<{width}}  ") + Text(value, style=_STYLES.get(value, "")))

    def text(self, line: str) -> None:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()

    def note(self, message: str) -> None:
        self.err.print(Text(message, style="dim"))


def when(timestamp: str | None) -> str:
    """``2026-12-06T21:00:00.123Z`` -> ``2026-12-06 21:00:00`` (UTC); ``-`` for none."""
    if not timestamp:
        return "-"
    return timestamp.replace("T", " ")[:19]


def duration(start: str | None, end: str | None) -> str:
    """``1.2s``, ``3m04s``, ``2h05m``; ``-`` until both ends are known."""
    if not start or not end:
        return "-"
    seconds = (_parse(end) - _parse(start)).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def run_state(run: dict[str, Any]) -> str:
    """``pending``, ``running``, or how an ended run ended."""
    return str(run.get("end_reason") or run.get("status", "?"))
