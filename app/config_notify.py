"""``[notify]`` and ``[notifiers.NAME]`` of ``runwarden.toml``: checked key by key.

Problems are reported through the loader's ``add`` (file, table, key, hint), like every
other table's; values may be ``${VAR}`` or ``${file:/path}``, resolved for the whole file by
``app/config_values.py`` before these tables are read.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from domain.channels import DEFAULT_TIMEOUT, ChannelSpec, ChannelType, SmtpTls
from domain.durations import parse_duration
from domain.notifications import DEFAULT_BUDGET, DEFAULT_COALESCE_WINDOW, DEFAULT_ON, ON_NAMES

Add = Callable[..., None]
"""The loader's ``add(table, message, key=None, hint=None)``."""

_COMMON = ("type", "on", "tasks", "timeout")
_KEYS: dict[ChannelType, tuple[str, ...]] = {
    ChannelType.WEBHOOK: (*_COMMON, "url", "headers", "secret"),
    ChannelType.SLACK: (*_COMMON, "url", "headers"),
    ChannelType.DISCORD: (*_COMMON, "url", "headers"),
    ChannelType.SMTP: (*_COMMON, "host", "port", "tls", "username", "password", "from", "to"),
    ChannelType.APPRISE: (*_COMMON, "url"),
}
_ALL_KEYS = sorted({key for keys in _KEYS.values() for key in keys})
_NOTIFY_KEYS = ("coalesce_window", "base_url", "retry_budget", "keep_for")
DEFAULT_KEEP_FOR = 30 * 86400.0
_SMTP_PORTS = {SmtpTls.NONE: 25, SmtpTls.STARTTLS: 587, SmtpTls.TLS: 465}


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """``[notify]``: daemon-wide notification settings."""

    coalesce_window: float = DEFAULT_COALESCE_WINDOW
    base_url: str | None = None
    """Links to runs start here; None: the daemon's own URL."""
    retry_budget: float = DEFAULT_BUDGET
    keep_for: float = DEFAULT_KEEP_FOR
    """Settled notifications older than this are deleted."""
    notifiers: dict[str, ChannelSpec] = field(default_factory=dict)


def _closest(word: str, choices: Any) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'did you mean "{found[0]}"?' if found else None


def _http_url(value: Any) -> str | None:
    """Why ``value`` is not an http(s) URL with a host, or None if it is."""
    if not isinstance(value, str):
        return "must be a string"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    try:
        _ = parts.port
    except ValueError:
        return "has an invalid port"
    return None


def load_notify(raw: Any, add: Add) -> NotifySettings:
    """``[notify]``; problems reported through ``add``."""
    if not isinstance(raw, dict):
        add(None, '"notify" must be a table: [notify]', "notify")
        return NotifySettings()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _NOTIFY_KEYS:
            hint = _closest(key, _NOTIFY_KEYS) or f"valid keys: {', '.join(_NOTIFY_KEYS)}"
            if key == "type" or key in _ALL_KEYS:
                hint = "channels go in [notifiers.NAME] tables"
            add("notify", f'unknown key "{key}"', key, hint)
        elif key == "base_url":
            problem = _http_url(value)
            if problem:
                add("notify", f'"base_url": {problem}', key, 'e.g. "https://cron.example.com"')
            else:
                values[key] = value.rstrip("/")
        else:
            try:
                seconds = parse_duration(value)
            except (ValueError, TypeError) as error:
                add("notify", f'"{key}": {error}', key, 'e.g. "1h" or "30m"')
                continue
            if key in ("retry_budget", "keep_for") and seconds <= 0:
                add("notify", f'"{key}": must be longer than 0s', key, 'e.g. "24h"')
                continue
            values[key] = seconds
    return NotifySettings(**values)


def load_notifiers(raw: Any, add: Add) -> dict[str, ChannelSpec]:
    """Every ``[notifiers.NAME]`` that has no problem; problems reported through ``add``."""
    if not isinstance(raw, dict):
        add(None, '"notifiers" must hold tables like [notifiers.NAME]', "notifiers")
        return {}
    found: dict[str, ChannelSpec] = {}
    for name, table in raw.items():
        spec = _channel(name, table, add)
        if spec is not None:
            found[name] = spec
    return found


def _channel(name: str, raw: Any, add: Add) -> ChannelSpec | None:
    where = f"notifiers.{name}"
    if not isinstance(raw, dict):
        add(None, f'"{where}" must be a table: [{where}]', name)
        return None
    problems = 0

    def bad(message: str, key: str | None, hint: str | None = None) -> None:
        nonlocal problems
        problems += 1
        add(where, message, key, hint)

    types = [t.value for t in ChannelType]
    kind_text = raw.get("type")
    if kind_text is None:
        bad('missing required key "type"', "type", f"use one of {', '.join(types)}")
        return None
    if kind_text not in types:
        hint = _closest(str(kind_text), types) or f"use one of {', '.join(types)}"
        bad(f'"type": {kind_text!r} is not allowed', "type", hint)
        return None
    kind = ChannelType(kind_text)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _KEYS[kind]:
            other = [t for t, keys in _KEYS.items() if key in keys]
            hint = _closest(key, _KEYS[kind]) or (
                f"only type {' / '.join(other)} has it"
                if other
                else f"valid keys: {', '.join(_KEYS[kind])}"
            )
            bad(f'unknown key "{key}"', key, hint)
            continue
        if key == "type":
            continue
        problem = _check(kind, key, value, values)
        if problem:
            bad(f'"{key}": {problem[0]}', key, problem[1])
    required = {
        ChannelType.SMTP: ("host", "from", "to"),
    }.get(kind, ("url",))
    for key in required:
        if key not in raw:
            bad(f'missing required key "{key}"', key)
    if problems:
        return None
    tls = values.pop("tls", SmtpTls.NONE)
    if kind is ChannelType.SMTP:
        values.setdefault("port", _SMTP_PORTS[tls])
    return ChannelSpec(name=name, type=kind, tls=tls, **values)


def _check(
    kind: ChannelType, key: str, value: Any, values: dict[str, Any]
) -> tuple[str, str | None] | None:
    """Store one key's value in ``values``; or (what is wrong, a hint)."""
    match key:
        case "url":
            if kind is ChannelType.APPRISE:
                if not isinstance(value, str) or "://" not in value:
                    return "must be an Apprise URL", 'e.g. "tgram://bottoken/ChatID"'
            elif problem := _http_url(value):
                return problem, 'e.g. "https://hooks.example.com/runwarden"'
            values["url"] = value
        case "headers":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                return "must be a table of strings", 'e.g. { Authorization = "Bearer ${TOKEN}" }'
            values["headers"] = dict(value)
        case "timeout":
            try:
                seconds = parse_duration(value)
            except (ValueError, TypeError) as error:
                return str(error), 'e.g. "10s"'
            if seconds <= 0:
                return "must be longer than 0s", f'e.g. "{DEFAULT_TIMEOUT:g}s"'
            values["timeout"] = seconds
        case "on":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return "must be a list of events", f"e.g. {list(DEFAULT_ON)}"
            for event in value:
                if event.removeprefix("run.") not in ON_NAMES:
                    hint = _closest(event, ON_NAMES) or f"events: {', '.join(ON_NAMES)}"
                    return f"unknown event {event!r}", hint
            values["on"] = frozenset(v.removeprefix("run.") for v in value)
        case "tasks":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                return "must be a list of glob patterns", 'e.g. ["backup-*"]'
            values["tasks"] = tuple(value)
        case "secret":
            if not isinstance(value, str) or not value:
                return "must be a non-empty string", None
            if value.startswith("whsec_"):
                try:
                    base64.b64decode(value.removeprefix("whsec_"), validate=True)
                except (binascii.Error, ValueError):
                    return "the part after whsec_ is not base64", "copy the secret whole"
            values["secret"] = value
        case "port":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                return "must be a port number (1-65535)", None
            values["port"] = value
        case "tls":
            allowed = [t.value for t in SmtpTls]
            if value not in allowed:
                return f"{value!r} is not allowed", _closest(str(value), allowed) or (
                    f"use one of {', '.join(allowed)}"
                )
            values["tls"] = SmtpTls(value)
        case "to":
            items = [value] if isinstance(value, str) else value
            if (
                not isinstance(items, list)
                or not items
                or not all(isinstance(v, str) and "@" in v for v in items)
            ):
                return "must be an address or a list of addresses", 'e.g. ["ops@example.com"]'
            values["to"] = tuple(items)
        case _:  # host, username, password, from
            if not isinstance(value, str) or not value:
                return "must be a non-empty string", None
            if key == "from" and "@" not in value:
                return "must be an e-mail address", 'e.g. "runwarden@example.com"'
            values["sender" if key == "from" else key] = value
    return None
