"""What the log endpoint tests share: the daemon's tasks and small HTTP helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import DaemonProcess, running_daemon, wait_for

CONFIG = """
[tasks.seq]
run = "seq 1 2500"

[tasks.other]
run = "true"

[tasks.chatty]
run = '''
i=0
while [ $i -lt 3000 ]; do i=$((i+1)); echo line $i; [ $((i % 100)) = 0 ] && sleep 0.1; done
'''

[tasks.flood]
run = "seq 1 100000"

[tasks.waiting]
run = "echo started; sleep 60"
graceful_stop = "1s"

[tasks.trimmed]
run = "seq 1 20000"
log_max_size = "10kb"
log_on_full = "drop_old"
"""


def log_daemon(database_url: str, workdir: Path) -> AbstractContextManager[DaemonProcess]:
    """A daemon with :data:`CONFIG`'s tasks and a short keep-alive, so tests see one."""
    return running_daemon(CONFIG, database_url, workdir, {"RUNWARDEN_LOG_KEEPALIVE": "0.3"})


@pytest.fixture(scope="module", name="daemon")
def daemon_fixture(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """The module's :func:`log_daemon` (a module uses it by naming it at top level)."""
    with log_daemon(module_database_url, tmp_path_factory.mktemp("logs")) as process:
        yield process


@pytest.fixture(scope="module", name="seq_run")
def seq_run_fixture(daemon: DaemonProcess) -> str:
    """A finished run of the ``seq`` task."""
    return finished_seq_run(daemon)


def trigger(client: httpx.Client, task: str) -> str:
    """Trigger ``task``; the new run's id."""
    response = client.post(f"/api/tasks/{task}/run")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_ended(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run once it has ended."""

    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] == "ended" else None

    return wait_for(ended, timeout=timeout)  # type: ignore[no-any-return]


def finished_seq_run(daemon: DaemonProcess) -> str:
    """A ``seq`` run (lines ``1``..``2500``, n 0..2499) that ended successfully."""
    with daemon.client() as client:
        run_id = trigger(client, "seq")
        assert wait_ended(client, run_id)["end_reason"] == "success"
    return run_id


def log_url(task: str, run_id: str, tail: str = "") -> str:
    return f"/api/tasks/{task}/runs/{run_id}/log{tail}"


def sse_events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Events as dicts of their fields; a comment line comes as ``{"comment": text}``."""
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
