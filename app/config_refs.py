"""``${VAR}`` and ``${file:/path}`` in config values, resolved once at load.

Used for the notifier tables. Kept apart (one public function) so it can be unified with
a generic resolver for every config value: the contract is "a string value, or the strings
inside a list or table, may hold references; an unset variable or an unreadable file is a
load error naming the key".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnresolvedReference(ValueError):
    """A reference that cannot be resolved; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def resolve_references(value: Any, key: str, environ: Mapping[str, str] | None = None) -> Any:
    """``value`` with every ``${VAR}`` / ``${file:/path}`` replaced (inside strings, lists
    and tables too); ``$${`` stays a literal ``${``. A file's content loses one trailing
    newline. Raises :class:`UnresolvedReference` naming what is missing, never its value.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, list):
        return [resolve_references(item, key, env) for item in value]
    if isinstance(value, dict):
        return {k: resolve_references(item, key, env) for k, item in value.items()}
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(found: re.Match[str]) -> str:
        if found.start() > 0 and found.string[found.start() - 1] == "$":
            return found.group(0)  # escaped: "$${" becomes "${" below
        ref = found.group(1)
        if ref.startswith("file:"):
            path = Path(ref.removeprefix("file:")).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or type(error).__name__
                raise UnresolvedReference(
                    f"cannot read the file {str(path)!r} ({reason})",
                    "make it readable by the daemon, or give the value directly",
                ) from None
            return text.removesuffix("\n")
        if not _VAR.match(ref):
            raise UnresolvedReference(
                f"invalid reference ${{{ref}}}", 'use ${NAME} or ${file:/path}; "$${" for "${"'
            )
        if ref not in env:
            raise UnresolvedReference(
                f"the environment variable {ref} is not set",
                f"export {ref} before starting runwarden",
            )
        return env[ref]

    return _REFERENCE.sub(one, value).replace("$${", "${")
