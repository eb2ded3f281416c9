"""runwarden.toml: what loads, what each mistake reports, and durations and sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import app.config
from app.config import ConfigError, host_timezone, load_config, validate_text
from domain.durations import parse_duration, parse_size
from domain.tasks import Backoff, OverlapPolicy, TaskKind

EXAMPLE = Path(__file__).parents[2] / "examples" / "runwarden.toml"


@pytest.fixture(autouse=True)
def host_in_berlin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.config, "host_timezone", lambda: "Europe/Berlin")


def problems_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_text(text, "runwarden.toml")
    return str(caught.value)


def test_the_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.timezone == "UTC"
    assert config.tasks["disk-report"].cron == "@every 30s"
    assert config.tasks["too-slow"].timeout == 10.0
    assert config.tasks["nightly-uptime"].api_trigger is False
    assert config.tasks["nightly-uptime"].timezone == "Europe/Berlin"
    assert config.tasks["greet"].env == {"RUNWARDEN_EXAMPLE": "1", "GREETING": "Hello"}
    assert all(task.kind is TaskKind.TASK for task in config.tasks.values())


def test_a_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "runwarden.toml")
    text = str(caught.value)
    assert "runwarden.toml: file not found; create it" in text
    assert '[tasks.hello]\ncron = "* * * * *"' in text


def test_a_toml_syntax_error_names_the_line() -> None:
    text = problems_of('[tasks.a]\nrun = "date"\ncron = \n')
    assert text.startswith("runwarden.toml: line 3: invalid TOML:")


def test_the_report_names_file_table_key_and_hint() -> None:
    text = problems_of('[tasks.backup-db]\nrun = "pg_dump"\ntimout = "5m"\n')
    assert text == 'runwarden.toml: tasks.backup-db: unknown key "timout"; did you mean "timeout"?'


def test_problems_of_every_table_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_text(
            '[tasks.a]\nrun = "x"\nkeep_runs = 0\n[tasks.b]\nrun = "y"\non_overlap = "no"\n',
            "runwarden.toml",
        )
    assert [(p.table, p.key) for p in caught.value.problems] == [
        ("tasks.a", "keep_runs"),
        ("tasks.b", "on_overlap"),
    ]


def test_an_unknown_key_with_no_close_match_lists_the_valid_keys() -> None:
    text = problems_of('[tasks.a]\nrun = "x"\nzzz = 1\n')
    assert 'unknown key "zzz"; valid keys: run, description' in text


def test_an_unknown_table_suggests_the_known_one() -> None:
    text = problems_of('[task.a]\nrun = "x"\n')
    assert 'runwarden.toml: unknown table "task"; did you mean "tasks"?' in text


def test_a_bad_enum_value_lists_the_allowed_ones() -> None:
    text = problems_of('[tasks.a]\nrun = "x"\nlog_on_full = "explode"\n')
    assert (
        "\"log_on_full\": 'explode' is not allowed; use one of drop_old, drop_new, kill_task"
        in text
    )


def test_a_bad_duration_shows_an_example() -> None:
    text = problems_of('[tasks.a]\nrun = "x"\ntimeout = "ten minutes"\n')
    assert '"timeout": invalid duration \'ten minutes\'; write it like "300ms"' in text


def test_a_bad_size_names_the_units() -> None:
    text = problems_of('[tasks.a]\nrun = "x"\nlog_max_size = "10 parsecs"\n')
    assert "unknown unit 'parsecs' (use b, kb, mb" in text


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("max_concurrent = 0", '"max_concurrent": expected `int` >= 1, got 0'),
        ("queue_max = -1", '"queue_max": expected `int` >= 0'),
        ("retry_attempts = 101", '"retry_attempts": expected `int` <= 100'),
        ("keep_runs = 0", '"keep_runs": expected `int` >= 1'),
        ("exit_codes = [0, 256]", '"exit_codes": expected `int` <= 255 (at exit_codes[1])'),
        ("exit_codes = []", '"exit_codes": expected `array` of length >= 1'),
        ("timeout = 0", '"timeout": must be longer than 0s'),
        ("api_trigger = 1", '"api_trigger": expected `bool`, got `int`'),
        ('stop_signal = "SIGFOO"', "unknown signal 'SIGFOO'; use one of SIGTERM, SIGINT"),
        ('env = { "A-B" = "1" }', "invalid variable name 'A-B'"),
    ],
)
def test_out_of_range_values_are_reported(line: str, complaint: str) -> None:
    text = problems_of(f'[tasks.a]\nrun = "x"\n{line}\n')
    assert complaint in text


def test_an_instance_count_outside_1_to_64_is_reported() -> None:
    text = problems_of('[services.w]\nrun = "x"\ninstances = 65\n')
    assert '"instances": expected `int` <= 64, got 65' in text


def test_a_missing_or_blank_run_is_reported() -> None:
    text = problems_of('[tasks.a]\ncron = "@daily"\n[tasks.b]\nrun = "  "\n')
    assert 'tasks.a: missing required key "run"' in text
    assert 'tasks.b: "run": is empty' in text


def test_a_bad_cron_names_the_field() -> None:
    text = problems_of('[tasks.a]\nrun = "x"\ncron = "0 25 * * *"\n')
    assert "tasks.a: \"cron\": the hour field '25' is invalid (allowed: 0-23)" in text


def test_an_unknown_time_zone_suggests_the_real_one() -> None:
    text = problems_of('[tasks.a]\nrun = "x"\ncron = "@daily"\ntimezone = "Europe/Berlinn"\n')
    assert "unknown time zone 'Europe/Berlinn'; did you mean \"Europe/Berlin\"?" in text
    assert "scheduler: \"timezone\": unknown time zone 'Nowhere'" in problems_of(
        '[scheduler]\ntimezone = "Nowhere"\n'
    )


@pytest.mark.parametrize("name", ["has space", "x" * 101, "slash/name"])
def test_task_names_must_be_short_and_plain(name: str) -> None:
    text = problems_of(f'[tasks."{name}"]\nrun = "x"\n')
    assert f"invalid name {name!r}" in text


def test_a_name_used_by_a_task_and_a_service_is_reported() -> None:
    text = problems_of('[tasks.w]\nrun = "x"\n[services.w]\nrun = "y"\n')
    assert 'services.w: the name "w" is already used by [tasks.w]' in text


def test_keys_in_the_wrong_kind_of_table_say_where_they_belong() -> None:
    task = problems_of('[tasks.a]\nrun = "x"\ninstances = 2\n')
    assert 'unknown key "instances"; only services have it' in task
    service = problems_of('[services.a]\nrun = "x"\ncron = "@daily"\nretry_attempts = 1\n')
    assert 'unknown key "cron"; services run all the time' in service
    assert 'unknown key "retry_attempts"; services are restarted, not retried' in service
    defaults = problems_of('[defaults]\nrun = "x"\n')
    assert 'defaults: unknown key "run"; set "run" in each task' in defaults


def test_parallelism_is_read_as_max_concurrent() -> None:
    config = validate_text('[tasks.a]\nrun = "x"\nparallelism = 3\n', "runwarden.toml")
    assert config.tasks["a"].max_concurrent == 3


def test_parallelism_and_max_concurrent_together_are_refused() -> None:
    text = problems_of('[tasks.a]\nrun = "x"\nparallelism = 3\nmax_concurrent = 2\n')
    assert 'both "parallelism" and "max_concurrent" are set' in text


def test_defaults_are_inherited_and_a_tasks_own_keys_win() -> None:
    config = validate_text(
        """
[defaults]
timeout = "1h"
retry_attempts = 2
restart_delay = "3s"
env = { A = "1", B = "2" }
[tasks.own]
run = "x"
timeout = "90s"
env = { B = "3", PORT = 8080 }
[tasks.inherits]
run = "y"
[services.svc]
run = "z"
""",
        "runwarden.toml",
    )
    own, inherits, svc = config.tasks["own"], config.tasks["inherits"], config.tasks["svc"]
    assert (own.timeout, inherits.timeout, svc.timeout) == (90.0, 3600.0, 3600.0)
    assert own.env == {"A": "1", "B": "3", "PORT": "8080"}
    assert inherits.env == {"A": "1", "B": "2"}
    assert (inherits.retry_attempts, svc.retry_attempts) == (2, 0)  # retries: tasks only
    assert (inherits.restart_delay, svc.restart_delay) == (1.0, 3.0)  # services only
    assert svc.kind is TaskKind.SERVICE


def test_unset_keys_take_the_contract_defaults() -> None:
    task = validate_text('[tasks.a]\nrun = "x"\n', "runwarden.toml").tasks["a"]
    assert task.on_overlap is OverlapPolicy.QUEUE
    assert (task.max_concurrent, task.queue_max, task.retry_delay) == (1, 100, 5.0)
    assert (task.stop_signal, task.exit_codes, task.log_max_size) == ("SIGTERM", {0}, 10**8)
    assert task.retry_backoff is Backoff.CONSTANT


def test_values_are_converted_to_seconds_bytes_and_signal_names() -> None:
    task = validate_text(
        '[tasks.a]\nrun = "x"\ngraceful_stop = "1m30s"\nlog_max_size = "1.5gb"\n'
        'stop_signal = "int"\nexit_codes = [0, 3]\nkeep_for = "7d"\n',
        "runwarden.toml",
    ).tasks["a"]
    assert (task.graceful_stop, task.log_max_size, task.stop_signal) == (
        90.0,
        1_500_000_000,
        "SIGINT",
    )
    assert task.exit_codes == frozenset({0, 3})
    assert task.keep_for == 7 * 86400.0


def test_the_zone_defaults_to_the_hosts_and_tasks_follow_the_scheduler() -> None:
    assert validate_text('[tasks.a]\nrun = "x"\n', "r.toml").timezone == "Europe/Berlin"
    config = validate_text(
        '[scheduler]\ntimezone = "Asia/Tokyo"\n[tasks.a]\nrun = "x"\ncron = "@daily"\n'
        '[tasks.b]\nrun = "y"\ntimezone = "UTC"\n',
        "runwarden.toml",
    )
    assert (config.timezone, config.tasks["a"].timezone, config.tasks["b"].timezone) == (
        "Asia/Tokyo",
        "Asia/Tokyo",
        "UTC",
    )


def test_a_relative_working_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "runwarden.toml"
    path.write_text('[tasks.a]\nrun = "x"\nworking_dir = "jobs"\n')
    assert load_config(path).tasks["a"].working_dir == str(tmp_path / "jobs")


def test_api_tokens_are_read_as_hashes() -> None:
    hashed = "sha256:" + "ab" * 32
    config = validate_text(f'[api]\ntokens = ["{hashed}"]\n', "runwarden.toml")
    assert config.api_tokens == (hashed,)
    assert "tokens" in problems_of('[api]\ntokens = [""]\n')
    assert "runwarden hash-token" in problems_of('[api]\ntokens = ["abc"]\n')


def test_host_timezone_prefers_tz_then_etc_timezone_then_localtime(tmp_path: Path) -> None:
    assert host_timezone({"TZ": ":America/New_York"}, tmp_path) == "America/New_York"
    os.symlink("/usr/share/zoneinfo/Asia/Tokyo", tmp_path / "localtime")
    assert host_timezone({}, tmp_path) == "Asia/Tokyo"
    (tmp_path / "timezone").write_text("Europe/Paris\n")
    assert host_timezone({"TZ": "Not/AZone"}, tmp_path) == "Europe/Paris"
    assert host_timezone({}, tmp_path / "missing") == "UTC"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300ms", 0.3), ("5s", 5.0), ("1h30m", 5400.0), ("7d", 604800.0), ("2w", 1209600.0),
     ("45", 45.0), ("1.5h", 5400.0), ("1H 30M", 5400.0), (12, 12.0)],
)  # fmt: skip
def test_durations_parse_to_seconds(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5 minutes", "-5s", "1h1h", "s", True, -1, "5300w", 1e400])
def test_bad_durations_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512kb", 512_000), ("100MB", 100_000_000), ("1.5gb", 1_500_000_000), ("10b", 10),
     ("64MiB", 64 * 1024**2), ("1kib", 1024), ("2048", 2048), (4096, 4096)],
)  # fmt: skip
def test_sizes_parse_to_bytes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "10 parsecs", "-1kb", -1])
def test_bad_sizes_are_refused(text: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)
