"""One delivery as a message: the Standard Webhooks body, the chat text, the e-mail.

Pure: the relay gathers the facts (the delivery, the run's last output lines, the link)
and these functions shape them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.notifications import title
from domain.outbox import Delivery

TAIL_LINES = 20
TAIL_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Message:
    """What a channel sends for one delivery (the same on every try of it)."""

    id: str
    """The ``webhook-id``: the delivery's id, stable across retries."""
    type: str
    timestamp: datetime
    """When the event happened (the delivery's creation)."""
    title: str
    data: Mapping[str, Any] = field(default_factory=dict)
    sent_at: datetime | None = None
    """When this try is sent: the ``webhook-timestamp`` (receivers reject old ones, so a
    retry carries its own time; the id stays)."""

    def body(self) -> dict[str, Any]:
        """The Standard Webhooks payload ``{"type", "timestamp", "data"}``."""
        return {"type": self.type, "timestamp": iso(self.timestamp), "data": dict(self.data)}

    def text(self) -> str:
        """The title, then the facts as readable lines (chat, e-mail)."""
        lines = [self.title, ""]
        lines += [f"{key}: {self.data[key]}" for key in _FACTS if key in self.data]
        tail = self.data.get("output_tail")
        if tail:
            lines += ["", "last output:", *tail]
        return "\n".join(lines)


_FACTS = (
    "task",
    "run_id",
    "end_reason",
    "exit_code",
    "attempt",
    "triggered_by",
    "started_at",
    "ended_at",
    "duration_seconds",
    "count",
    "url",
)


def iso(at: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, milliseconds."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _from_micros(value: Any) -> str | None:
    if not isinstance(value, int):
        return None
    return iso(datetime.fromtimestamp(value / 1_000_000, UTC))


def output_tail(lines: Sequence[str]) -> list[str]:
    """The last ``TAIL_LINES`` lines, dropping the oldest until they weigh at most
    ``TAIL_BYTES`` (a single longer line is cut to its last bytes)."""
    tail = list(lines[-TAIL_LINES:])
    while tail and sum(len(t.encode()) + 1 for t in tail) > TAIL_BYTES:
        if len(tail) == 1:
            raw = tail[0].encode()[-(TAIL_BYTES - 1) :]
            tail = [raw.decode("utf-8", "ignore")]
            break
        tail.pop(0)
    return tail


def message_for(
    delivery: Delivery,
    run_url: str | None,
    tail: Sequence[str] | None = None,
    sent_at: datetime | None = None,
) -> Message:
    """The message of ``delivery``: its stored facts with timestamps as RFC 3339, the
    duration, how many events it stands for, the output tail and the link to the run."""
    stored = dict(delivery.data)
    data: dict[str, Any] = {}
    for key, value in stored.items():
        if key in ("started_at", "ended_at"):
            data[key] = _from_micros(value)
        elif key != "summary":
            data[key] = value
    started, ended = stored.get("started_at"), stored.get("ended_at")
    if isinstance(started, int) and isinstance(ended, int):
        data["duration_seconds"] = round((ended - started) / 1_000_000, 3)
    data["count"] = delivery.count
    if tail is not None:
        data["output_tail"] = output_tail(tail)
    if run_url is not None:
        data["url"] = run_url
    data = {key: value for key, value in data.items() if value is not None}
    return Message(
        delivery.id,
        delivery.type,
        delivery.created_at,
        title(delivery.type, delivery.task_name, data),
        data,
        sent_at,
    )
