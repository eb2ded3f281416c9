"""supervisord's ``[program:x]`` sections -> runwarden services.

``command`` -> ``run``, ``directory`` -> ``working_dir``, ``environment`` -> ``env``,
``numprocs`` -> ``instances``, ``stopsignal``, ``stopwaitsecs`` -> ``graceful_stop``,
``startretries`` -> ``start_retries``, ``startsecs`` -> ``healthy_after``, ``[group:g]``
-> ``group``; ``%(ENV_X)s`` becomes ``${X}``. Everything else (``user``, log files,
``autostart``, ``autorestart = false`` ...) is kept as a comment in the service's table.
"""

from __future__ import annotations

import configparser
import re
from typing import Any

from app.importers.output import Entry, literal, render, unique_name

_ENV_PAIR = re.compile(
    r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^,]*)\s*,?"""
)
_EXPANSION = re.compile(r"%\((\w+)\)[sd]")
_SIGNALS = {"TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2"}
_DIRECT = {
    "numprocs": "instances",
    "startretries": "start_retries",
}
_SAME = (
    "runwarden already does this: it signals the whole process group and keeps every run's output"
)
_COMMENTED = {
    "stopasgroup": _SAME,
    "killasgroup": _SAME,
    "redirect_stderr": _SAME,
    "process_name": "each instance is one run with its replica_index",
    "priority": "services start together",
    "user": "services run as the daemon's user",
    "umask": "services inherit the daemon's umask",
    "exitcodes": "every exit of a service is restarted",
}


class SupervisordError(ValueError):
    """The file is not a supervisord config that can be read."""


def convert(text: str, source: str) -> str:
    """The runwarden.toml for supervisord config ``text``."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        parser.read_string(text, source)
    except configparser.Error as error:
        raise SupervisordError(f"{source}: not a supervisord file: {error}") from None
    groups = _groups(parser)
    entries: list[Entry] = []
    footer: list[str] = []
    taken: set[str] = set()
    for section in parser.sections():
        kind, _, program = section.partition(":")
        if kind == "program" and program:
            entries.append(_service(program, dict(parser.items(section)), groups, taken))
        elif kind not in ("group", "supervisord", "supervisorctl", "unix_http_server",
                          "inet_http_server", "rpcinterface"):  # fmt: skip
            footer.append(f"[{section}] is not imported: runwarden has no equivalent")
    if not entries:
        raise SupervisordError(f"{source}: no [program:NAME] section to import")
    return render(f"the supervisord config {source}", "supervisord", entries, footer)


def _groups(parser: configparser.RawConfigParser) -> dict[str, str]:
    """Program name -> the ``[group:g]`` it is in."""
    found: dict[str, str] = {}
    for section in parser.sections():
        kind, _, group = section.partition(":")
        if kind == "group" and parser.has_option(section, "programs"):
            for program in parser.get(section, "programs").split(","):
                found[program.strip()] = group
    return found


def _service(
    program: str, options: dict[str, Any], groups: dict[str, str], taken: set[str]
) -> Entry:
    entry = Entry("services", unique_name(program, taken, "program"))
    entry.comments = [f"[program:{program}]"]
    keys: dict[str, Any] = {}
    if "command" in options:
        keys["run"] = _expand(options.pop("command"), program, entry)
    if program in groups:
        keys["group"] = groups[program]
    if "directory" in options:
        keys["working_dir"] = _expand(options.pop("directory"), program, entry)
    for theirs, ours in _DIRECT.items():
        if theirs in options:
            keys[ours] = _number(options.pop(theirs), theirs, entry)
    if "stopsignal" in options:
        signal = options.pop("stopsignal").upper().removeprefix("SIG")
        if signal in _SIGNALS:
            keys["stop_signal"] = f"SIG{signal}"
        else:
            entry.notes.append(f"stopsignal = {signal}: not a signal runwarden knows")
    for theirs, ours in (("stopwaitsecs", "graceful_stop"), ("startsecs", "healthy_after")):
        if theirs in options:
            seconds = _number(options.pop(theirs), theirs, entry)
            if seconds is not None:
                keys[ours] = f"{seconds}s"
    if "environment" in options:
        keys["env"] = _environment(options.pop("environment"), program, entry)
    _restart_notes(options, entry)
    for key, value in options.items():
        reason = _COMMENTED.get(key) or _log_reason(key)
        entry.notes.append(f"{key} = {value}: {reason}")
    entry.keys = {key: value for key, value in keys.items() if value is not None}
    if "run" not in entry.keys:
        entry.keys["run"] = "true"
        entry.notes.append("no command in the supervisord file: write the one to run")
    return entry


def _restart_notes(options: dict[str, Any], entry: Entry) -> None:
    autostart = options.pop("autostart", "true").lower()
    if autostart in ("false", "no", "0"):
        entry.notes.append("autostart = false: a service starts with the daemon")
    autorestart = str(options.pop("autorestart", "")).lower()
    if autorestart in ("false", "no", "0"):
        entry.notes.append(
            "autorestart = false: a service is always restarted; for a process started by "
            "hand, use a [tasks.NAME] and `runwarden trigger`"
        )
    elif autorestart == "unexpected":
        entry.notes.append("autorestart = unexpected: runwarden restarts a service on any exit")


def _log_reason(key: str) -> str:
    if "log" in key or key.startswith(("stdout_", "stderr_")):
        return "runwarden keeps each run's output in its database (log_max_size caps it)"
    return "no runwarden equivalent"


def _expand(value: str, program: str, entry: Entry) -> str:
    """supervisord's ``%(name)s`` expansions: ENV_X -> ``${X}``, program_name -> its name."""
    text = literal(value)

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name.startswith("ENV_"):
            return "${" + name.removeprefix("ENV_") + "}"
        if name == "program_name":
            return program
        if name == "here":
            return "."
        entry.notes.append(f"%({name}) in {value!r} has no equivalent: edit it")
        return found.group(0)

    return _EXPANSION.sub(replace, text)


def _environment(value: str, program: str, entry: Entry) -> dict[str, str]:
    env: dict[str, str] = {}
    for found in _ENV_PAIR.finditer(value):
        name, raw = found.group(1), found.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
        env[name] = _expand(raw, program, entry)
    return env


def _number(value: str, key: str, entry: Entry) -> int | None:
    try:
        return int(value)
    except ValueError:
        entry.notes.append(f"{key} = {value}: not a number, left out")
        return None
