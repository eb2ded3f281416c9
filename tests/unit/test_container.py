"""The container files: the Dockerfile passes hadolint and has what the image must have;
compose.yaml is valid against the compose-spec schema and runs two replicas on one
PostgreSQL 15. (No Docker engine here: these are static checks.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_hadolint_passes_the_dockerfile() -> None:
    done = hadolint(ROOT / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install runwarden\nCMD runwarden serve\n")
    done = hadolint(bad)
    assert done.returncode != 0
    assert "DL3006" in done.stdout  # untagged base image


def test_the_image_is_multi_stage_slim_and_runs_as_no_root() -> None:
    steps = instructions((ROOT / "Dockerfile").read_text())
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2
    assert stages[-1].endswith("AS runtime")
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim", (ROOT / "Dockerfile").read_text())
    users = [args for word, args in steps if word == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "9477") in steps
    assert ("VOLUME", '["/data"]') in steps
    assert any(word == "HEALTHCHECK" and "/health" in args for word, args in steps)
    command = [args for word, args in steps if word == "CMD"][-1]
    assert yaml.safe_load(command) == ["runwarden", "serve", "--host", "0.0.0.0"]


def test_the_dependency_layer_installs_exactly_the_projects_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    found = re.search(r'RUN (python -c "[^\n]*") > requirements\.txt', text)
    assert found, "the dependencies are no longer installed in their own layer"
    done = subprocess.run(
        [sys.executable, *shlex.split(found.group(1))[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert done.stdout.split("\n")[:-1] == project["dependencies"]
    # That layer sees pyproject.toml only; the code is copied after it.
    copies = [args for word, args in instructions(text) if word in ("COPY", "RUN")]
    assert copies.index("pyproject.toml ./") < copies.index("app ./app")


def test_the_build_context_leaves_out_the_virtualenv_and_data() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".git", ".venv", ".runwarden", "tests"):
        assert name in ignored


def test_compose_is_valid_against_the_compose_spec_schema() -> None:
    done = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_schema_check_catches_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  web:\n    image: x\n    ports: 9477\n")
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0


@pytest.fixture(scope="module")
def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_two_replicas_of_the_built_image_on_one_postgres(compose: dict) -> None:  # type: ignore[type-arg]
    services = compose["services"]
    replicas = {name: s for name, s in services.items() if s.get("build") == "."}
    assert len(replicas) == 2
    assert services["postgres"]["image"] == "postgres:15"
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "pgdata" in compose["volumes"]
    host_ports = set()
    for replica in replicas.values():
        env = replica["environment"]
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["RUNWARDEN_API_TOKENS"].startswith("${RUNWARDEN_API_TOKENS")
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        (port,) = replica["ports"]
        host_ports.add(port.rsplit(":", 1)[0])
    assert len(host_ports) == 2  # each replica its own port
