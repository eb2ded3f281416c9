"""Property-based API tests: Schemathesis against a real daemon, over ``/openapi.json``.

Every check (``--checks all``) over every operation, in every phase: boundary values and
invalid inputs (coverage), random ones (fuzzing), then chains that follow the document's
``links`` from a run to what can be done with it (stateful). It fails on any failure and on
any warning (rate limited, missing test data, ...): an operation the fuzzer could not reach
would otherwise pass untested. The configured tasks finish in well under a second, so
``wait=true`` triggers stay short; SSE streams are read for half a second each.

``RUNWARDEN_SCHEMATHESIS_SEED`` reruns with another seed, ``..._EXAMPLES`` with more cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from tests.api.conftest import write_config
from tests.support.daemon import DaemonProcess, start_daemon, wait_for
from tests.support.receiver import Answer, receiver

CONFIG = """
[tasks.quick]
run = "echo hello"

[tasks.fails]
run = "echo bad >&2; exit 3"

[tasks.scheduled]
run = "true"
cron = "0 3 * * *"
api_trigger = false

[tasks.skipper]
run = "true"
on_overlap = "skip"

[tasks.held]
run = "sleep 600"
cron = "@every 1s"
on_overlap = "skip"
api_trigger = false

[services.worker]
run = "sleep 600"

[notifiers.hook]
type = "webhook"
url = "{hook_url}"

[notifiers.gone]
type = "webhook"
url = "{gone_url}"
"""

EXAMPLES = int(os.environ.get("RUNWARDEN_SCHEMATHESIS_EXAMPLES", "25"))
SEED = int(os.environ.get("RUNWARDEN_SCHEMATHESIS_SEED", "1"))
# - The token goes in a header of every request. The ignored_auth check also sends each
#   operation without it and with a wrong one; the daemon allows more failures than the
#   default 10 a minute, or those probes would get 429 instead of the 401 they check for.
# - Streams never end while their run runs (or at all, for /api/runs/stream): read each
#   for half a second.
# - Which names are services, and which run ids are live, the schema cannot say (nor should
#   it: the document is public). Stopping and restarting a service use the configured one;
#   stopping a run may use the run of `held` that is running, so the fuzzer reaches a 200
#   there and not only 404s and 409s ("missing test data"). `held` starts by cron (its
#   runs last, and a `wait=true` trigger of one would wait out the request timeout).
# - Likewise for notifications: `hook` (its receiver, on 127.0.0.1, answers 200) is the
#   notifier to test, one of its deliveries the one to read, and a delivery of `gone` (410:
#   given up at once) the dead one to retry.
SCHEMATHESIS_TOML = """
request-timeout = 60
warnings = {{ fail-on = true }}

[generation]
with-security-parameters = false

[dictionaries.live_run]
values = ["{live_run}"]

[[operations]]
include-path-regex = "/stream$"
request-timeout = 0.5

[[operations]]
include-operation-id = ["stop-service", "restart-service"]
parameters = {{ "path.taskName" = "worker" }}

[[operations]]
include-operation-id = "stop-run"
[operations.parameters]
"path.taskName" = "held"
"path.runId" = {{ dictionary = "live_run", probability = 0.5 }}

[dictionaries.notification]
values = ["{notification}"]

[[operations]]
include-operation-id = "test-notifier"
parameters = {{ "path.name" = "hook" }}

[dictionaries.dead_notification]
values = ["{dead}"]

[[operations]]
include-operation-id = "get-notification"
[operations.parameters]
"path.notificationId" = {{ dictionary = "notification", probability = 0.5 }}

[[operations]]
include-operation-id = "retry-notification"
[operations.parameters]
"path.notificationId" = {{ dictionary = "dead_notification", probability = 0.5 }}
"""
MAX_AUTH_FAILURES = "100000"


@pytest.fixture(scope="module")
def daemon(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    # A notifier whose receiver (on 127.0.0.1) takes everything: its test and its
    # deliveries are reachable, not only 404s.
    with receiver() as hook:
        url = hook.script("/hook", Answer(200))
        gone = hook.script("/gone", Answer(410))
        process = start_daemon(
            write_config(workdir, CONFIG.format(hook_url=url, gone_url=gone)),
            module_database_url,
            workdir,
            {"RUNWARDEN_AUTH_MAX_FAILURES": MAX_AUTH_FAILURES},
        )
        try:
            yield process
        finally:
            process.terminate()


def test_the_openapi_document_is_valid_openapi_3_1(daemon: DaemonProcess) -> None:
    document = httpx.get(f"{daemon.url}/openapi.json", timeout=30).json()

    errors = [
        f"{'/'.join(map(str, e.instance_path))}: {e.message[:200]}"
        for e in jsonschema_rs.validator_for(OPENAPI_31).iter_errors(document)
    ]

    assert errors == []


@pytest.mark.slow
def test_schemathesis_finds_no_failure_and_reaches_every_operation(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    with daemon.client() as client:
        live_run = wait_for(
            lambda: client.get("/api/tasks/held/runs", params={"status": "running"}).json()["runs"]
        )[0]["id"]
        notification = client.post("/api/notifiers/hook/test").json()["id"]
        # Given up at once (410): a delivery that can be retried.
        dead = client.post("/api/notifiers/gone/test", params={"wait": "true"}).json()
        assert dead["status"] == "dead", dead
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        SCHEMATHESIS_TOML.format(live_run=live_run, notification=notification, dead=dead["id"])
    )
    report = tmp_path / "report.json"
    headers = [f"--header={name}: {value}" for name, value in daemon.headers.items()]
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{daemon.url}/openapi.json",
        *headers,
        "--checks=all",
        f"--max-examples={EXAMPLES}",
        f"--seed={SEED}",
        # One worker: Hypothesis parses lambda sources with ``ast`` to name strategies, and
        # CPython 3.11's ``ast.parse`` in several threads at once can fail with "AST
        # constructor recursion depth mismatch" (a schemathesis runtime error, not ours).
        "--workers=1",
        "--report=json",
        f"--report-json-path={report}",
    ]

    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False
    )

    summary = json.loads(report.read_text())
    cases, operations = summary["test_cases"], summary["operations"]
    print(
        f"schemathesis: {cases['generated']} cases over {operations['tested']} operations "
        f"in {summary['running_time']:.0f} s, seed {SEED}, {EXAMPLES} examples per operation"
    )
    output = done.stdout[-20000:]
    assert done.returncode == 0, f"{output}\n{daemon.log()[-5000:]}"
    assert summary["failures"] == [], output
    assert summary["errors"] == [], output
    assert {name: found for name, found in summary["warnings"].items() if found} == {}, output
    assert operations["tested"] == operations["total"] >= 21
    assert {name: phase["status"] for name, phase in summary["phases"].items()} == {
        "examples": "skip",  # the document has no examples to replay
        "coverage": "success",
        "fuzzing": "success",
        "stateful": "success",
    }
    assert cases["generated"] >= 10 * operations["tested"]
