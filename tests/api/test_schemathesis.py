"""Property-based API tests: Schemathesis against a real daemon, over ``/openapi.json``.

It generates valid and invalid requests for every operation (boundary values first, then
random ones, then chains that feed one response's ids into the next request) and checks
that no response is a 5xx, every status code and content type is documented, and every
body matches its documented schema. The configured tasks finish in well under a second,
so ``wait=true`` triggers stay short; SSE streams, which never end, are left out.

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
from tests.support.daemon import DaemonProcess, start_daemon

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

[services.worker]
run = "sleep 600"
"""

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
EXAMPLES = int(os.environ.get("RUNWARDEN_SCHEMATHESIS_EXAMPLES", "25"))
SEED = int(os.environ.get("RUNWARDEN_SCHEMATHESIS_SEED", "1"))
# The token goes in a header of every request; generating the security header as a
# parameter would also send requests without it, and ten of those lock the client out
# (429) for a minute, which would hide every later answer.
SCHEMATHESIS_TOML = """
[generation]
with-security-parameters = false
"""


@pytest.fixture(scope="module")
def daemon(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    process = start_daemon(write_config(workdir, CONFIG), module_database_url, workdir)
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
def test_schemathesis_finds_no_failure(daemon: DaemonProcess, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_TOML)
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
        f"--checks={','.join(CHECKS)}",
        "--exclude-path-regex=/stream$",
        f"--max-examples={EXAMPLES}",
        f"--seed={SEED}",
        "--request-timeout=60",
        # One worker: Hypothesis parses lambda sources with ``ast`` to name strategies, and
        # CPython 3.11's ``ast.parse`` in several threads at once can fail with "AST
        # constructor recursion depth mismatch" (a schemathesis runtime error, not ours).
        "--workers=1",
        "--warnings=off",
        "--report=json",
        f"--report-json-path={report}",
    ]

    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )

    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    print(
        f"schemathesis: {cases['generated']} cases over {summary['operations']['tested']} "
        f"operations, seed {SEED}, {EXAMPLES} examples per operation"
    )
    output = done.stdout[-20000:]
    assert done.returncode == 0, f"{output}\n{daemon.log()[-5000:]}"
    assert summary["failures"] == [], output
    assert summary["errors"] == [], output
    assert summary["operations"]["tested"] >= 15
    assert cases["generated"] >= 10 * summary["operations"]["tested"]
    assert "missing bearer token" not in daemon.log()
