"""What a ``runwarden.toml`` value may refer to, resolved before the tables are checked.

- ``${VAR}`` (the daemon's environment) and ``${file:/path}`` (a file's text, without its
  trailing newline; relative paths are relative to the config file) in any string value;
  ``$${`` is a literal ``${``. Any other ``${...}`` (``${X:-y}``, ``${#X}``) is left alone
  for the shell.
- ``env_file = "path"`` in ``[defaults]`` and each task or service: a dotenv file whose
  variables go under the table's ``env`` (the table's own ``env`` keys win).
- RunWisp's newer names: ``manual_trigger``, ``max_queued``, ``restart_attempts``, and
  ``"kill"`` for ``on_overlap`` and ``log_on_full``; a file using both a key and its alias
  is an error.

Values read from the environment or from files are kept in :attr:`Prepared.secrets` so
that no error message can carry one.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from dotenv.parser import parse_stream

KEY_ALIASES = {
    "manual_trigger": "api_trigger",
    "max_queued": "queue_max",
    "restart_attempts": "start_retries",
}
"""RunWisp's newer key names -> ours."""
VALUE_ALIASES = {"on_overlap": {"kill": "terminate"}, "log_on_full": {"kill": "kill_task"}}
"""RunWisp's newer values -> ours, by key."""

_REFERENCE = re.compile(r"\$\$\{|\$\{(?:file:([^}]*)|([A-Za-z_][A-Za-z0-9_]*))\}")
_SHOWN = ("run", "description", "group", "working_dir")
# Shorter resolved values are not redacted from messages: "1" or "on" would mangle them.
_MIN_SECRET = 4


@dataclass(frozen=True, slots=True)
class ValueProblem:
    """A reference that cannot be resolved, an unreadable env_file, a key and its alias."""

    table: str | None
    key: str
    message: str
    hint: str | None = None


@dataclass
class Prepared:
    """The document with references resolved, and what went wrong doing it."""

    document: dict[str, Any]
    problems: list[ValueProblem] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    """Values taken from the environment or files, to keep out of messages."""
    written: dict[str, dict[str, str]] = field(default_factory=dict)
    """Table -> shown keys (``run``, ...) whose value had references, as written."""

    @property
    def failed(self) -> set[tuple[str | None, str]]:
        """(table, key) pairs already reported, whose later problems would only repeat it."""
        return {(problem.table, problem.key) for problem in self.problems}

    def redact(self, text: str) -> str:
        """``text`` with every resolved value replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= _MIN_SECRET:
                text = text.replace(secret, "***")
        return text


def prepare(
    document: dict[str, Any], base_dir: Path, environ: Mapping[str, str] | None = None
) -> Prepared:
    """Resolve references, env files and aliases in a parsed ``runwarden.toml``."""
    resolver = _Resolver(base_dir, os.environ if environ is None else environ)
    prepared = Prepared({})
    for name, value in document.items():
        if name in _NESTED and isinstance(value, dict):
            prepared.document[name] = {
                task: resolver.table(table, f"{name}.{task}", prepared)
                if isinstance(table, dict)
                else table  # not a table: the loader reports it
                for task, table in value.items()
            }
        elif isinstance(value, dict):
            prepared.document[name] = resolver.table(value, name, prepared)
        else:
            prepared.document[name] = value
    _apply_aliases(prepared)
    _apply_env_files(prepared, base_dir)
    return prepared


_NESTED = ("tasks", "services")


class _Resolver:
    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.environ = environ

    def table(self, table: dict[str, Any], where: str, prepared: Prepared) -> dict[str, Any]:
        """One table's values resolved; the shown ones that changed are kept as written."""
        out: dict[str, Any] = {}
        for key, value in table.items():
            out[key] = self.value(value, where, key, prepared)
            if key in _SHOWN and isinstance(value, str) and out[key] != value:
                prepared.written.setdefault(where, {})[key] = value
        return out

    def value(self, value: Any, table: str, key: str, prepared: Prepared) -> Any:
        """``value`` with references resolved in it and in any list or table inside it."""
        if isinstance(value, str):
            return self.text(value, table, key, prepared)
        if isinstance(value, list):
            return [self.value(item, table, key, prepared) for item in value]
        if isinstance(value, dict):
            return {name: self.value(item, table, key, prepared) for name, item in value.items()}
        return value

    def text(self, value: str, table: str, key: str, prepared: Prepared) -> str:
        problems: list[ValueProblem] = []

        def replace(found: re.Match[str]) -> str:
            path, variable = found.group(1), found.group(2)
            if path is None and variable is None:
                return "${"
            if variable is not None:
                if variable not in self.environ:
                    problems.append(
                        ValueProblem(
                            table,
                            key,
                            f'"{key}": environment variable {variable} is not set',
                            f"set it in the daemon's environment, or write $${{{variable}}} "
                            "for a literal ${ (e.g. for the shell)",
                        )
                    )
                    return found.group(0)
                resolved = self.environ[variable]
            else:
                resolved_or_none = self.read(path, table, key, problems)
                if resolved_or_none is None:
                    return found.group(0)
                resolved = resolved_or_none
            prepared.secrets.add(resolved)
            return resolved

        result = _REFERENCE.sub(replace, value)
        if problems:
            prepared.problems.extend(problems[:1])  # one per key: the first is enough
            return value
        return result

    def read(self, path: str, table: str, key: str, problems: list[ValueProblem]) -> str | None:
        target = self.base_dir / Path(path.strip()).expanduser()
        try:
            return target.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            problems.append(
                ValueProblem(
                    table,
                    key,
                    f'"{key}": cannot read ${{file:{path}}}: {reason}',
                    "give a readable file (relative paths start at the config file's folder)",
                )
            )
            return None


def _task_tables(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name for messages, table) of ``[defaults]`` and every task and service table."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(document.get("defaults"), dict):
        found.append(("defaults", document["defaults"]))
    for section in _NESTED:
        tables = document.get(section)
        if isinstance(tables, dict):
            found.extend(
                (f"{section}.{name}", table)
                for name, table in tables.items()
                if isinstance(table, dict)
            )
    return found


def _apply_aliases(prepared: Prepared) -> None:
    """Rename aliases to our keys; report a file that uses both names of one key."""
    tables = _task_tables(prepared.document)
    used_ours = {key for _, table in tables for key in table if key in KEY_ALIASES.values()}
    for where, table in tables:
        for alias, ours in KEY_ALIASES.items():
            if alias not in table:
                continue
            if ours in used_ours:
                prepared.problems.append(
                    ValueProblem(
                        where,
                        alias,
                        f'"{alias}" and "{ours}" are both used in this file',
                        f'"{alias}" is RunWisp\'s newer name for "{ours}"; use one name '
                        "throughout the file",
                    )
                )
                del table[alias]
            else:
                table[ours] = table.pop(alias)
        for key, values in VALUE_ALIASES.items():
            value = table.get(key)
            if isinstance(value, str) and value in values:
                table[key] = values[value]


def _apply_env_files(prepared: Prepared, base_dir: Path) -> None:
    """Replace each ``env_file`` by its variables under ``env``."""
    for where, table in _task_tables(prepared.document):
        if "env_file" not in table:
            continue
        path = table.pop("env_file")
        if not isinstance(path, str) or not path.strip():
            prepared.problems.append(
                ValueProblem(where, "env_file", '"env_file": must be a path', 'e.g. ".env"')
            )
            continue
        variables = _read_env_file(base_dir / Path(path).expanduser(), path, where, prepared)
        if variables is not None and isinstance(table.get("env", {}), dict):
            table["env"] = {**variables, **table.get("env", {})}


def _read_env_file(
    target: Path, path: str, where: str, prepared: Prepared
) -> dict[str, str] | None:
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        prepared.problems.append(
            ValueProblem(
                where,
                "env_file",
                f'"env_file": cannot read {path!r} ({target}): {reason}',
                "create it, or fix the path (relative paths start at the config file's folder)",
            )
        )
        return None
    bad = [binding for binding in parse_stream(io.StringIO(text)) if binding.error]
    if bad:
        line = bad[0].original.line
        prepared.problems.append(
            ValueProblem(
                where,
                "env_file",
                f'"env_file": {path!r} line {line} is not KEY=value',
                "use dotenv syntax: NAME=value, # comments, quotes for spaces",
            )
        )
        return None
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    # "NAME" alone (no "=") has no value: it sets nothing, as in docker's --env-file.
    return {name: value for name, value in values.items() if value is not None}
