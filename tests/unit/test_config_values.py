"""``${VAR}``, ``${file:...}``, ``env_file`` and RunWisp's key names in runwarden.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import app.config
from app.config import ConfigError, load_config
from app.presenters import task_body
from domain.tasks import LogOnFull, OverlapPolicy

SECRET = "s3cr3t-value-9f2"


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.config, "host_timezone", lambda: "UTC")


def load(tmp_path: Path, text: str) -> app.config.Config:
    path = tmp_path / "runwarden.toml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_variables_and_files_resolve_in_any_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_HOST", "db.internal")
    monkeypatch.setenv("RW_ZONE", "Europe/Berlin")
    (tmp_path / "password").write_text(SECRET + "\n")
    config = load(
        tmp_path,
        '[scheduler]\ntimezone = "${RW_ZONE}"\n'
        "[tasks.dump]\n"
        'run = "pg_dump -h ${RW_HOST} --password=${file:password} $${PGDATA} $HOME"\n'
        'env = { PGPASSWORD = "${file:' + str(tmp_path / "password") + '}" }\n',
    )
    task = config.tasks["dump"]
    assert config.timezone == "Europe/Berlin"
    assert task.run == f"pg_dump -h db.internal --password={SECRET} ${{PGDATA}} $HOME"
    assert task.env == {"PGPASSWORD": SECRET}
    # The API shows the command as written, never the resolved secret.
    shown = task_body(task, "schema", None)
    assert shown.run == "pg_dump -h ${RW_HOST} --password=${file:password} $${PGDATA} $HOME"


def test_shell_expansions_that_are_not_references_stay(tmp_path: Path) -> None:
    config = load(tmp_path, '[tasks.t]\nrun = "echo ${X:-none} ${#X} $$"\n')
    assert config.tasks["t"].run == "echo ${X:-none} ${#X} $$"


def test_an_unset_variable_and_an_unreadable_file_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RW_UNSET", raising=False)
    text = problems(
        tmp_path,
        '[tasks.a]\nrun = "echo ${RW_UNSET}"\ncron = "${RW_UNSET}"\n'
        '[tasks.b]\nrun = "date"\nenv = { P = "${file:/nonexistent/secret}" }\n',
    )
    assert 'tasks.a: "run": environment variable RW_UNSET is not set' in text
    assert "$${RW_UNSET}" in text  # the escape is the hint
    assert 'tasks.a: "cron": environment variable RW_UNSET is not set' in text
    assert "invalid" not in text  # the unresolved cron is not parsed as one as well
    assert 'tasks.b: "env": cannot read ${file:/nonexistent/secret}: No such file' in text


def test_a_resolved_secret_never_appears_in_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_SIGNAL", SECRET)
    text = problems(tmp_path, '[tasks.a]\nrun = "date"\nstop_signal = "${RW_SIGNAL}"\n')
    assert "unknown signal" in text
    assert SECRET not in text
    assert "***" in text


def test_env_files_merge_under_env(tmp_path: Path) -> None:
    (tmp_path / "common.env").write_text("# shared\nA=1\nB='two words'\nC=from-file\n")
    (tmp_path / "job.env").write_text('J=1\nexport D="${J}-x"\nE\n')
    config = load(
        tmp_path,
        '[defaults]\nenv_file = "common.env"\n'
        '[tasks.t]\nrun = "env"\nenv_file = "job.env"\nenv = { C = "inline" }\n',
    )
    # defaults' file, then the task's file (${J} from the lines above), then the task's
    # own env; E has no value, so it sets nothing.
    expected = {"A": "1", "B": "two words", "C": "inline", "J": "1", "D": "1-x"}
    assert config.tasks["t"].env == expected


def test_an_env_file_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "t.env").write_text("X=1\n")
    (folder / "runwarden.toml").write_text('[tasks.t]\nrun = "env"\nenv_file = "t.env"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc/runwarden.toml")).tasks["t"].env == {"X": "1"}


def test_a_missing_or_broken_env_file_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("GOOD=1\nthis is not = dotenv\n")
    text = problems(
        tmp_path,
        '[defaults]\nenv_file = "missing.env"\n'
        '[tasks.t]\nrun = "env"\nenv_file = "bad.env"\n'
        '[tasks.u]\nrun = "env"\nenv_file = 3\n',
    )
    assert "defaults: \"env_file\": cannot read 'missing.env'" in text
    assert "No such file" in text
    assert "tasks.t: \"env_file\": 'bad.env' line 2 is not KEY=value" in text
    assert 'tasks.u: "env_file": must be a path' in text


@pytest.mark.parametrize(
    ("ours", "alias", "value", "field", "expected"),
    [
        ("api_trigger", "manual_trigger", "false", "api_trigger", False),
        ("queue_max", "max_queued", "7", "queue_max", 7),
    ],
)
def test_task_key_aliases(
    tmp_path: Path, ours: str, alias: str, value: str, field: str, expected: object
) -> None:
    config = load(tmp_path, f'[tasks.t]\nrun = "date"\n{alias} = {value}\n')
    assert getattr(config.tasks["t"], field) == expected
    text = problems(
        tmp_path,
        f'[defaults]\n{ours} = {value}\n[tasks.t]\nrun = "date"\n{alias} = {value}\n',
    )
    assert f'tasks.t: "{alias}" and "{ours}" are both used in this file' in text


def test_service_alias_and_value_aliases(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[tasks.t]\nrun = "date"\non_overlap = "kill"\nlog_on_full = "kill"\n'
        '[services.s]\nrun = "sleep 1000"\nrestart_attempts = 9\n',
    )
    assert config.tasks["t"].on_overlap is OverlapPolicy.TERMINATE
    assert config.tasks["t"].log_on_full is LogOnFull.KILL_TASK
    assert config.tasks["s"].start_retries == 9
    text = problems(
        tmp_path,
        '[services.s]\nrun = "a"\nrestart_attempts = 1\nstart_retries = 2\n',
    )
    assert '"restart_attempts" and "start_retries" are both used in this file' in text


def test_a_misspelt_alias_gets_a_did_you_mean(tmp_path: Path) -> None:
    text = problems(tmp_path, '[tasks.t]\nrun = "date"\nmanual_triger = true\n')
    assert 'unknown key "manual_triger"; did you mean "manual_trigger"?' in text


def test_validate_reports_every_problem_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "runwarden.toml"
    config.write_text(
        '[tasks.t]\nrun = "${RW_MISSING}"\nenv_file = "nope.env"\n'
        'max_queued = 1\nqueue_max = 2\nstop_signal = "${RW_SIG}"\n'
    )
    env = {"PATH": "/usr/bin:/bin", "RW_SIG": SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "validate", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert done.returncode == 1
    for expected in ("RW_MISSING is not set", "env_file", '"max_queued" and "queue_max"'):
        assert expected in done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
