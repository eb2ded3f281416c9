"""Imported tasks and services -> the text of a ``runwarden.toml`` (tomlkit: comments kept)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.items import Table

_NAME_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")


@dataclass
class Entry:
    """One task or service to write: its keys in order, comments above its table."""

    section: str  # "tasks" or "services"
    name: str
    keys: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Kept as comments after the keys: what the source said that runwarden cannot."""


def literal(text: str) -> str:
    """``text`` as a config string that means the same text: runwarden would resolve
    ``${NAME}`` itself, so a shell's ``${...}`` is written ``$${...}``."""
    return text.replace("${", "$${")


def unique_name(wanted: str, taken: set[str], fallback: str) -> str:
    """A valid task name like ``wanted``, not in ``taken`` (which it is added to)."""
    base = _NAME_CHARS.sub("-", wanted).strip("-.")[:60] or fallback
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    taken.add(name)
    return name


def _inline(values: dict[str, Any]) -> Any:
    """``env = { A = "1" }`` on one line, so the notes after it stay in the task's table."""
    inline = tomlkit.inline_table()
    inline.update(values)
    return inline


def render(source: str, kind: str, entries: list[Entry], footer: list[str]) -> str:
    """The config text: where it came from (``source``, read by ``runwarden import kind``),
    every entry's table, then the ``footer`` comments."""
    document = tomlkit.document()
    document.add(tomlkit.comment(f"Imported from {source} by `runwarden import {kind}`."))
    document.add(
        tomlkit.comment(
            "Check it with `runwarden validate`; comments keep what runwarden cannot express."
        )
    )
    sections: dict[str, Table] = {}
    for entry in entries:
        if entry.section not in sections:
            sections[entry.section] = tomlkit.table(is_super_table=True)
        table = tomlkit.table()
        for line in entry.comments:
            table.add(tomlkit.comment(line))
        for key, value in entry.keys.items():
            table.add(key, _inline(value) if isinstance(value, dict) else value)
        for line in entry.notes:
            table.add(tomlkit.comment(line))
        sections[entry.section].add(entry.name, table)
    for name, section in sections.items():
        document.add(tomlkit.nl())
        document.add(name, section)
    if footer:
        document.add(tomlkit.nl())
        for line in footer:
            document.add(tomlkit.comment(line))
    text = tomlkit.dumps(document)
    return text if text.endswith("\n") else text + "\n"
