"""The client commands' arguments (argparse only: cheap to import for ``serve`` too)."""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9477"
CLIENT_COMMANDS = frozenset(
    {"tasks", "runs", "run", "trigger", "logs", "stop", "nodes", "notify", "reload"}
)
SORT_FIELDS = ("task_name", "status", "start_at", "exit_code", "duration", "created_at")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is outside 1-1000")
    return value


def _sort(text: str) -> tuple[str, str]:
    field, _, direction = text.partition(":")
    if field not in SORT_FIELDS:
        raise argparse.ArgumentTypeError(f"{field!r}: sort by one of {', '.join(SORT_FIELDS)}")
    if direction not in ("", "asc", "desc"):
        raise argparse.ArgumentTypeError(f"{direction!r}: the direction is asc or desc")
    return field, direction or "desc"


def _connection() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("RUNWARDEN_URL") or DEFAULT_URL,
        help="the daemon's address (env RUNWARDEN_URL; default %(default)s)",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("RUNWARDEN_TOKEN") or None,
        help="API token (env RUNWARDEN_TOKEN)",
    )
    common.add_argument("--json", action="store_true", help="print JSON, for scripts")
    return common


def add_client_commands(commands: Any) -> None:
    """Add the client subcommands to ``runwarden``'s subparsers."""
    common = _connection()

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        description = help_text[0].upper() + help_text[1:] + "."
        parser: argparse.ArgumentParser = commands.add_parser(
            name, parents=[common], help=help_text, description=description
        )
        return parser

    add("tasks", "list the daemon's tasks and services")
    runs = add("runs", "list runs, newest first")
    runs.add_argument("task", nargs="?", help="only this task's runs")
    runs.add_argument("--status", help="a status or end reason, or a comma list: failed,timeout")
    runs.add_argument("--search", help="substring of the run id or task name")
    runs.add_argument(
        "--sort",
        type=_sort,
        metavar="FIELD[:asc|desc]",
        help=f"one of {', '.join(SORT_FIELDS)}; default created_at:desc",
    )
    runs.add_argument("--limit", type=_limit, default=20, help="1-1000 (default %(default)s)")
    run = add("run", "show one run")
    run.add_argument("run_id", metavar="ID")
    trigger = add("trigger", "start a run of a task now")
    trigger.add_argument("task", metavar="TASK")
    trigger.add_argument(
        "--wait", action="store_true", help="wait for the end; exit with the run's exit code"
    )
    logs = add("logs", "print a run's output")
    logs.add_argument("run_id", metavar="RUN")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="follow the live output until the run ends"
    )
    stop = add("stop", "stop a pending or running run")
    stop.add_argument("run_id", metavar="RUN")
    add("nodes", "list the daemons sharing the database")
    add("reload", "make the daemon re-read its config file (as SIGHUP does)")
    notify = commands.add_parser(
        "notify", help="notifiers", description="Work with the daemon's notifiers."
    )
    actions = notify.add_subparsers(dest="notify_action", required=True, metavar="ACTION")
    test = actions.add_parser(
        "test",
        parents=[common],
        help="send a test notification",
        description="Send a test notification through a configured notifier.",
    )
    test.add_argument("name", metavar="NAME")
    test.add_argument(
        "--wait", type=int, default=60, help="seconds to wait for the outcome (default 60)"
    )
