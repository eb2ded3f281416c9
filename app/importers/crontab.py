"""A crontab (``crontab -l``'s format) -> runwarden tasks.

Every schedule form cron has passes through unchanged (fields with ranges, steps, lists,
names such as ``mon-fri``, and ``@daily`` and friends), checked by the same parser the
daemon uses. Variable lines apply to the jobs after them: ``SHELL`` -> ``shell``,
``CRON_TZ`` -> ``timezone``, the rest -> ``env``; ``MAILTO``/``MAILFROM``, ``@reboot``
and a job's ``%`` input are kept as comments.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from app.importers.output import Entry, literal, render, unique_name
from domain.schedule import InvalidSchedule, Schedule

_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_NICKNAME = re.compile(r"^(@[a-zA-Z]+)\s+(.+)$")
_FIELDS = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$")
_UNESCAPED_PERCENT = re.compile(r"(?<!\\)%")
_MAIL = ("MAILTO", "MAILFROM")


def convert(text: str, source: str) -> str:
    """The runwarden.toml for crontab ``text`` (``source`` names it in the header)."""
    env: dict[str, str] = {}
    shell: str | None = None
    zone: str | None = None
    comments: list[str] = []
    entries: list[Entry] = []
    footer: list[str] = []
    taken: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            comments = []  # a blank line ends a job's comment block
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:  # a job starts with a digit, "*" or "@": never a variable name
            name, value = assignment.group(1), _unquote(assignment.group(2))
            if name in _MAIL:
                footer.append(
                    f"crontab line {number}: {name}={value}: runwarden sends no mail; every "
                    "run's output is kept and `runwarden runs --status failed` lists failures"
                )
            elif name == "SHELL":
                shell = value
            elif name == "CRON_TZ":
                zone = value
            else:
                env[name] = value
            comments = []
            continue
        entry = _job(line, number, comments, taken, footer)
        comments = []
        if entry is None:
            continue
        if shell:
            entry.keys["shell"] = shell
        if zone:
            entry.keys["timezone"] = zone
        if env:
            entry.keys["env"] = {key: literal(value) for key, value in env.items()}
        entries.append(entry)
    return render(f"the crontab {source}", "crontab", entries, footer)


def _job(
    line: str, number: int, comments: list[str], taken: set[str], footer: list[str]
) -> Entry | None:
    nickname = _NICKNAME.match(line)
    if nickname:
        schedule, command = nickname.group(1).lower(), nickname.group(2)
    else:
        fields = _FIELDS.match(line)
        if not fields:
            footer.append(f"crontab line {number} is not a job, skipped: {line}")
            return None
        schedule, command = " ".join(fields.groups()[:5]), fields.group(6)
    if schedule == "@reboot":
        footer.append(
            f"crontab line {number}: @reboot {command}: runwarden has no start-up trigger; "
            "a [services.NAME] keeps a process running, or run it with `runwarden trigger`"
        )
        return None
    try:
        Schedule.parse(schedule, "UTC")
    except InvalidSchedule as error:
        footer.append(f"crontab line {number} skipped: {error.message}: {line}")
        return None
    notes: list[str] = []
    parts = _UNESCAPED_PERCENT.split(command, maxsplit=1)
    run = parts[0].replace("\\%", "%").rstrip()
    if len(parts) > 1:
        notes.append(
            f"cron gave this job input after %: {parts[1]!r}; pipe it in the command instead"
        )
    entry = Entry("tasks", unique_name(_name_for(run), taken, f"job-{number}"))
    entry.comments = [*comments, f"crontab line {number}: {line}"]
    entry.keys = {"cron": schedule, "run": literal(run)}
    entry.notes = notes
    return entry


def _name_for(command: str) -> str:
    """A task name from the program a command runs: ``/usr/bin/backup.sh --x`` -> ``backup``."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    program = next((w for w in words if "=" not in w and w not in ("cd", "&&", "nice")), "")
    return Path(program).stem if program else ""


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
