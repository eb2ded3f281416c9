"""``runwarden.toml`` -> :class:`Config`: typed, defaults applied, every problem reported.

TOML is read with ``tomllib``; each table is checked key by key against msgspec types (so
one bad key does not hide the next), then converted into a msgspec Struct with
``forbid_unknown_fields=True``; durations, sizes, signals, zones and cron expressions get
their own checks. Every problem of every table is collected into one :class:`ConfigError`
whose text names the file, the table, the key, what is wrong and a hint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec

from app.config_notify import NotifySettings, load_notifiers, load_notify
from app.config_values import KEY_ALIASES, Prepared, prepare
from domain.cluster import DEFAULT_HEARTBEAT, DEFAULT_LEASE
from domain.durations import parse_duration, parse_size
from domain.schedule import InvalidSchedule, Schedule
from domain.tasks import Backoff, CatchUp, LogOnFull, OverlapPolicy, TaskKind, TaskSpec

_N = TypeVar("_N", int, float)

TASK_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,100}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIGNALS = ("SIGTERM", "SIGINT", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGABRT")
"""Signal names ``stop_signal`` accepts (also without ``SIG``, any case)."""
_MINIMAL = '[tasks.hello]\ncron = "* * * * *"\nrun = "date"'

# Bare numbers for durations are seconds; for sizes, bytes.
_Duration = str | float
_Size = str | int
_Text = Annotated[str, msgspec.Meta(min_length=1)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_ExitCodes = Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=255)]], msgspec.Meta(min_length=1)]

_IDENTITY: dict[str, Any] = {"run": str, "description": str}
_SCHEDULING: dict[str, Any] = {
    "cron": str,
    "timezone": str,
    "catch_up": CatchUp,
    "max_catch_up_runs": _Positive,
}
_CONCURRENCY: dict[str, Any] = {
    "max_concurrent": _Positive,
    "parallelism": _Positive,
    "on_overlap": OverlapPolicy,
    "queue_max": _Count,
}
_RETRIES: dict[str, Any] = {
    "retry_attempts": Annotated[int, msgspec.Meta(ge=0, le=100)],
    "retry_delay": _Duration,
    "retry_backoff": Backoff,
}
_SUPERVISION: dict[str, Any] = {
    "instances": Annotated[int, msgspec.Meta(ge=1, le=64)],
    "restart_delay": _Duration,
    "restart_backoff": Backoff,
    "healthy_after": _Duration,
    "start_retries": _Count,
}
_SHARED: dict[str, Any] = {
    "group": str,
    "timeout": _Duration,
    "graceful_stop": _Duration,
    "stop_signal": str,
    "exit_codes": _ExitCodes,
    "log_max_size": _Size,
    "log_on_full": LogOnFull,
    "keep_runs": _Positive,
    "keep_for": _Duration,
    "env": dict[str, str | int | float],
    "working_dir": _Text,
    "shell": _Text,
    "api_trigger": bool,
    "notify": list[str],
}
_WATCH: dict[str, Any] = {"warn_after": _Duration}
TASK_KEYS = {**_IDENTITY, **_SCHEDULING, **_CONCURRENCY, **_RETRIES, **_WATCH, **_SHARED}
SERVICE_KEYS = {**_IDENTITY, **_SHARED, **_SUPERVISION}
_PER_TASK_ONLY = ("run", "description", "cron", "instances")
DEFAULT_KEYS = {k: t for k, t in {**TASK_KEYS, **SERVICE_KEYS}.items() if k not in _PER_TASK_ONLY}
_TOP_LEVEL = (
    "scheduler",
    "defaults",
    "tasks",
    "services",
    "api",
    "cluster",
    "notify",
    "notifiers",
)


_KEYS: dict[type[msgspec.Struct], dict[str, Any]] = {}
"""Each table Struct's keys and their plain types (without the ``UnsetType`` default)."""


def _struct(name: str, keys: dict[str, Any]) -> type[msgspec.Struct]:
    fields = [(key, kind | msgspec.UnsetType, msgspec.UNSET) for key, kind in keys.items()]
    struct = msgspec.defstruct(name, fields, forbid_unknown_fields=True, frozen=True)
    _KEYS[struct] = keys
    return struct


TaskTable = _struct("TaskTable", TASK_KEYS)
ServiceTable = _struct("ServiceTable", SERVICE_KEYS)
DefaultsTable = _struct("DefaultsTable", DEFAULT_KEYS)
SchedulerTable = _struct("SchedulerTable", {"timezone": str})
ApiTable = _struct("ApiTable", {"tokens": list[_Text], "metrics_public": bool})
ClusterTable = _struct("ClusterTable", {"lease": _Duration, "heartbeat": _Duration})
_HASHED_TOKEN = re.compile(r"^sha256:[0-9a-fA-F]{64}$")

# Why a key that is valid in the other kind of table is refused in this one.
_MISPLACED: dict[str, str] = {
    **dict.fromkeys(_SCHEDULING, "services run all the time; scheduled work goes in [tasks.NAME]"),
    **dict.fromkeys(_CONCURRENCY, 'a service runs "instances" processes; set that instead'),
    **dict.fromkeys(
        _RETRIES,
        "services are restarted, not retried: see restart_delay, restart_backoff, start_retries",
    ),
    **dict.fromkeys(_SUPERVISION, "only services have it; move it to a [services.NAME] table"),
    "warn_after": "a service runs all the time; only tasks have it",
}


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file, and how to fix it."""

    file: str
    message: str
    table: str | None = None
    key: str | None = None
    hint: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.table:
            parts.append(self.table)
        text = ": ".join([*parts, self.message])
        return f"{text}; {self.hint}" if self.hint else text


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists everything found, table by table."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, valid ``runwarden.toml``."""

    path: Path
    timezone: str
    """The scheduler's zone: ``[scheduler] timezone`` or the host's."""
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    """Tasks and services by name, in file order; ``TaskSpec.kind`` tells them apart."""
    api_tokens: tuple[str, ...] = ()
    """``[api] tokens``: SHA-256 hashes as ``runwarden hash-token`` prints them."""
    metrics_public: bool = False
    """``[api] metrics_public``: serve ``/metrics`` without a token."""
    lease: float = DEFAULT_LEASE
    """``[cluster] lease``: seconds without a heartbeat after which a node is dead."""
    heartbeat: float = DEFAULT_HEARTBEAT
    """``[cluster] heartbeat``: seconds between a node's heartbeats."""
    config_hash: str = ""
    """A hash of the file's text: nodes of a cluster compare theirs (config drift)."""
    notify: NotifySettings = field(default_factory=NotifySettings)
    """``[notify]`` and the channels of ``[notifiers.NAME]`` (``notify.notifiers``)."""


class _Invalid(ValueError):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def positive_from_env(name: str, default: _N) -> _N:
    """``name`` from the environment as a number of ``default``'s type if it is one above
    zero, else ``default``. For the few knobs tests turn (keep-alive periods, stream caps)."""
    try:
        value = type(default)(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def load_config(path: Path) -> Config:
    """Read and validate the config at ``path``; raise :class:`ConfigError` if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = (
            f"create it, for example with:\n{_MINIMAL}\n(see examples/runwarden.toml), "
            "or point --config / RUNWARDEN_CONFIG at another file"
        )
        raise ConfigError([ConfigProblem(str(path), "file not found", hint=hint)]) from None
    except (OSError, UnicodeDecodeError) as error:
        message = f"cannot read the file: {error}"
        raise ConfigError([ConfigProblem(str(path), message)]) from None
    return validate_text(text, str(path))


def config_hash(text: str) -> str:
    """The hash nodes publish to compare their configs: 16 hex digits of SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def validate_text(text: str, source: str) -> Config:
    """Validate config ``text``; ``source`` names it in messages and anchors relative paths."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"\(at line (\d+), column \d+\)$", str(error))
        message = "invalid TOML: " + re.sub(r"\s*\(at line.*\)$", "", str(error))
        line = int(found.group(1)) if found else None
        raise ConfigError([ConfigProblem(source, message, line=line)]) from None
    prepared = prepare(document, Path(source).parent)
    config = _Loader(source, prepared).load(prepared.document)
    return dataclasses.replace(config, config_hash=config_hash(text))


def host_timezone(environ: dict[str, str] | None = None, etc: Path = Path("/etc")) -> str:
    """The host's IANA zone name: ``$TZ``, ``/etc/timezone``, ``/etc/localtime``, or UTC."""
    candidates = [(os.environ if environ is None else environ).get("TZ", "").removeprefix(":")]
    with contextlib.suppress(OSError, UnicodeDecodeError):
        candidates.append((etc / "timezone").read_text(encoding="utf-8").strip())
    try:
        target = os.readlink(etc / "localtime")
        candidates.append(target.partition("zoneinfo/")[2])
    except OSError:
        pass
    return next((name for name in candidates if name and _zone_exists(name)), "UTC")


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _closest(word: str, choices: Any) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'did you mean "{found[0]}"?' if found else None


class _Loader:
    """Walks one parsed document, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, prepared: Prepared | None = None) -> None:
        self.source = source
        self.prepared = prepared or Prepared({})
        self.base_dir = Path(source).parent
        self.problems: list[ConfigProblem] = []
        self.task_names: set[str] = set()  # including tasks that had problems
        self.notifier_names: set[str] = set()

    def add(
        self, table: str | None, message: str, key: str | None = None, hint: str | None = None
    ) -> None:
        self.problems.append(ConfigProblem(self.source, message, table, key, hint))

    def load(self, document: dict[str, Any]) -> Config:
        for key in document:
            if key not in _TOP_LEVEL:
                hint = _closest(key, _TOP_LEVEL) or f"the tables are {', '.join(_TOP_LEVEL)}"
                self.add(None, f'unknown table "{key}"', key, hint)
        scheduler = self.table(document.get("scheduler", {}), "scheduler", SchedulerTable, "")
        zone = scheduler.get("timezone") or host_timezone()
        api = self.table(document.get("api", {}), "api", ApiTable, "")
        cluster = self.cluster(document.get("cluster", {}))
        notify = load_notify(document.get("notify", {}), self.add)
        notifiers = load_notifiers(document.get("notifiers", {}), self.add)
        raw_notifiers = document.get("notifiers", {})
        self.notifier_names = set(raw_notifiers) if isinstance(raw_notifiers, dict) else set()
        defaults = self.table(document.get("defaults", {}), "defaults", DefaultsTable, "defaults")
        tasks: dict[str, TaskSpec] = {}
        for kind, struct in ((TaskKind.TASK, TaskTable), (TaskKind.SERVICE, ServiceTable)):
            section = f"{kind}s"
            tables = document.get(section, {})
            if not isinstance(tables, dict):
                self.add(None, f'"{section}" must hold tables like [{section}.NAME]', section)
                continue
            for name, raw in tables.items():
                spec = self.task(name, kind, struct, raw, defaults, zone)
                if spec is not None:
                    tasks[name] = spec
        if self.problems or self.prepared.problems:
            raise ConfigError(self.all_problems())
        return Config(
            Path(self.source),
            zone,
            tasks,
            tuple(api.get("tokens", ())),
            api.get("metrics_public", False),
            cluster.get("lease", DEFAULT_LEASE),
            cluster.get("heartbeat", DEFAULT_HEARTBEAT),
            notify=dataclasses.replace(notify, notifiers=notifiers),
        )

    def cluster(self, raw: Any) -> dict[str, float]:
        """``[cluster]``: lease and heartbeat, the heartbeat well inside the lease."""
        values = self.table(raw, "cluster", ClusterTable, "")
        lease = values.get("lease", DEFAULT_LEASE)
        heartbeat = values.get("heartbeat", DEFAULT_HEARTBEAT)
        if heartbeat <= 0 or lease <= 0:
            self.add("cluster", "lease and heartbeat must be longer than 0s", "lease")
        elif lease < 2 * heartbeat or lease < 2.0:
            self.add(
                "cluster",
                f"lease ({lease:g}s) must be at least twice the heartbeat ({heartbeat:g}s) "
                "and at least 2s",
                "lease",
                'a node is dead after missing a few heartbeats: e.g. lease = "6s", '
                'heartbeat = "2s"',
            )
        return values

    def task(
        self,
        name: str,
        kind: TaskKind,
        struct: type[msgspec.Struct],
        raw: Any,
        defaults: dict[str, Any],
        zone: str,
    ) -> TaskSpec | None:
        """One [tasks.NAME] or [services.NAME] table, or None if it has problems."""
        where = f"{kind}s.{name}"
        if not isinstance(raw, dict):
            self.add(None, f'"{where}" must be a table: [{where}]', name)
            return None
        if not TASK_NAME.match(name):
            hint = 'use 1-100 letters, digits, ".", "_" or "-"'
            self.add(where, f"invalid name {name!r}", hint=hint)
        elif kind is TaskKind.SERVICE and name in self.task_names:
            hint = "tasks and services share one namespace; rename one"
            self.add(where, f'the name "{name}" is already used by [tasks.{name}]', hint=hint)
        if kind is TaskKind.TASK:
            self.task_names.add(name)
        own = self.table(raw, where, struct, kind)
        return self.spec(name, kind, own, defaults, zone, where)

    def all_problems(self) -> list[ConfigProblem]:
        """Problems of ``${…}``, env files and aliases first, then the tables' own; a key
        whose reference failed is reported once; no resolved value appears in any text."""
        failed = self.prepared.failed
        found = [
            ConfigProblem(self.source, value.message, value.table, value.key, value.hint)
            for value in self.prepared.problems
        ]
        found += [p for p in self.problems if (p.table, p.key) not in failed]
        redact = self.prepared.redact
        return [
            replace(p, message=redact(p.message), hint=p.hint and redact(p.hint)) for p in found
        ]

    def table(
        self, raw: Any, where: str, struct: type[msgspec.Struct], kind: str
    ) -> dict[str, Any]:
        """The given keys of one table, typed and normalised; bad keys are reported."""
        if not isinstance(raw, dict):
            self.add(None, f'"{where}" must be a table: [{where}]', where)
            return {}
        keys = _KEYS[struct]
        good: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in keys:
                self.unknown(where, key, keys, kind)
                continue
            try:
                msgspec.convert(value, keys[key])
                good[key] = value
            except msgspec.ValidationError as error:
                self.add(where, *_type_problem(key, value, keys[key], error))
        # The Struct is the last gate: anything that slipped past the loop fails here.
        typed = msgspec.structs.asdict(msgspec.convert(good, struct))
        values = {key: value for key, value in typed.items() if value is not msgspec.UNSET}
        if "parallelism" in values:
            if "max_concurrent" in values:
                self.add(
                    where,
                    'both "parallelism" and "max_concurrent" are set',
                    "parallelism",
                    '"parallelism" is the old name of "max_concurrent"; keep one',
                )
            values["max_concurrent"] = values.pop("parallelism")
        return self.normalise(values, where)

    def unknown(self, where: str, key: str, keys: dict[str, Any], kind: str) -> None:
        if kind == "defaults" and key in _PER_TASK_ONLY:
            hint = f'set "{key}" in each task, not in [defaults]'
        elif kind in (TaskKind.TASK, TaskKind.SERVICE) and key in _MISPLACED:
            hint = _MISPLACED[key]
        else:
            aliases = [alias for alias, ours in KEY_ALIASES.items() if ours in keys]
            hint = _closest(key, [*keys, *aliases]) or f"valid keys: {', '.join(keys)}"
        self.add(where, f'unknown key "{key}"', key, hint)

    def normalise(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        """Durations to seconds, sizes to bytes, names checked; problems reported."""
        out: dict[str, Any] = {}
        for key, value in values.items():
            try:
                out[key] = self.convert(key, value)
            except _Invalid as error:
                self.add(where, f'"{key}": {error}', key, error.hint)
            except ValueError as error:
                self.add(where, f'"{key}": {error}', key)
        return out

    def convert(self, key: str, value: Any) -> Any:
        if key in ("timeout", "keep_for", "warn_after"):
            seconds = parse_duration(value)
            if seconds <= 0:
                raise _Invalid(
                    "must be longer than 0s", 'e.g. "30s" or "1h"; leave it out for none'
                )
            return seconds
        if key in (
            "retry_delay",
            "graceful_stop",
            "restart_delay",
            "healthy_after",
            "lease",
            "heartbeat",
        ):
            return parse_duration(value)
        if key == "log_max_size":
            size = parse_size(value)
            if size <= 0:
                raise _Invalid("must be larger than 0 bytes", 'e.g. "100MB"')
            return size
        if key == "run" and not value.strip():
            raise _Invalid("is empty", 'give the shell command to run, e.g. run = "date"')
        if key == "stop_signal":
            name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
            if name not in SIGNALS:
                raise _Invalid(f"unknown signal {value!r}", f"use one of {', '.join(SIGNALS)}")
            return name
        if key == "timezone" and not _zone_exists(value):
            raise _Invalid(
                f"unknown time zone {value!r}",
                _closest(value, available_timezones())
                or 'use an IANA name such as "Europe/Berlin" or "UTC"',
            )
        if key == "env":
            bad = [name for name in value if not _ENV_NAME.match(name)]
            if bad:
                raise _Invalid(f"invalid variable name {bad[0]!r}", "use letters, digits and _")
            return {name: str(item) for name, item in value.items()}
        if key == "exit_codes":
            return frozenset(value)
        if key == "notify":
            for name in value:
                if name not in self.notifier_names:
                    known = sorted(self.notifier_names)
                    raise _Invalid(
                        f"no notifier named {name!r}",
                        _closest(name, known)
                        or (
                            f"notifiers: {', '.join(known)}"
                            if known
                            else "add [notifiers." + name + "]"
                        ),
                    )
            return tuple(value)
        if key == "tokens":
            # The file may be readable by more people than the API should be: hashes only.
            for number, token in enumerate(value, 1):
                if not _HASHED_TOKEN.match(token):
                    raise _Invalid(
                        f"entry {number} is not a hashed token",
                        'store "sha256:<hex>" lines made by `runwarden hash-token -- TOKEN`, '
                        "or pass plain tokens in RUNWARDEN_API_TOKENS",
                    )
            return tuple(token.lower() for token in value)
        if key == "working_dir":
            try:
                return str(self.base_dir / Path(value).expanduser())
            except RuntimeError:  # "~user" naming no user
                raise _Invalid(f"cannot expand {value!r}", "give an absolute path") from None
        return value

    def spec(
        self,
        name: str,
        kind: TaskKind,
        own: dict[str, Any],
        defaults: dict[str, Any],
        zone: str,
        where: str,
    ) -> TaskSpec | None:
        """The task's spec: its own keys over ``[defaults]`` (``env`` tables merge)."""
        keys = TASK_KEYS if kind is TaskKind.TASK else SERVICE_KEYS
        values = {key: value for key, value in defaults.items() if key in keys}
        values.update(own)
        if "env" in defaults or "env" in own:
            values["env"] = {**defaults.get("env", {}), **own.get("env", {})}
        values.setdefault("timezone", zone)
        if "run" not in own:
            self.add(where, 'missing required key "run"', "run", 'e.g. run = "date"')
        if "cron" in values and _zone_exists(values["timezone"]):
            try:
                Schedule.parse(values["cron"], values["timezone"])
            except InvalidSchedule as error:
                self.add(where, f'"cron": {error.message}', "cron")
        if any(problem.table == where for problem in self.problems):
            return None
        if where in self.prepared.written:
            values["written"] = self.prepared.written[where]
        return TaskSpec(name=name, kind=kind, **values)


def _type_problem(
    key: str, value: Any, kind: Any, error: msgspec.ValidationError
) -> tuple[str, str, str | None]:
    """(message, key, hint) for a value of the wrong type or out of range."""
    text = str(error)
    if text.startswith("Invalid enum value"):
        allowed = [member.value for member in kind]
        hint = _closest(str(value), allowed) or f"use one of {', '.join(allowed)}"
        return f'"{key}": {value!r} is not allowed', key, hint
    text, _, at = text.partition(" - at `$")
    where = f" (at {key}{at.rstrip('`')})" if at else ""
    got = "" if ", got `" in text else f", got {value!r}"
    return f'"{key}": {text[0].lower()}{text[1:]}{where}{got}', key, None
