"""``runwarden import crontab|supervisord``: every cron form and several supervisord
programs become a runwarden.toml that ``runwarden validate`` accepts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import app.config
from app.config import validate_text
from app.importers import crontab, supervisord
from domain.tasks import TaskKind
from tests.support.cli import runwarden

CRONTAB = r"""# m h dom mon dow command

SHELL=/bin/bash
MAILTO="ops@example.com"
PATH = /usr/local/bin:/usr/bin:/bin

# Nightly backup
0 2 * * * /usr/local/bin/backup.sh --full > /var/log/backup.log 2>&1
*/15 9-17 * * mon-fri curl -fsS http://127.0.0.1:8080/ping
5 0,12 1-7 jan,jul sun echo "${HOME} is 50\% done" | logger
0 */6 * * 1-5/2 date
@daily find /tmp -mtime +7 -delete
@weekly date
@monthly date
@yearly date
@annually date
@midnight date
@hourly date
@reboot /usr/local/bin/warmup
CRON_TZ=Europe/Berlin
30 4 1 * * backup.sh monthly % some input
0 0 31 2 * impossible
"""

SUPERVISORD = """
[supervisord]
logfile=/var/log/supervisord.log

[program:web]
command=/usr/bin/gunicorn app:wsgi --bind 0.0.0.0:%(ENV_PORT)s
directory=/srv/web
environment=PYTHONPATH="/srv/web",DEBUG="0",GREETING='hello, world'
numprocs=3
process_name=%(program_name)s_%(process_num)02d
autorestart=true
startsecs=10
startretries=5
stopsignal=QUIT
stopwaitsecs=20
user=www-data
stdout_logfile=/var/log/web.log

[program:worker]
command=python worker.py --queue ${QUEUE}
autorestart=false
stopsignal=INT

[program:cleaner]
command=sh -c 'while true; do rm -f /tmp/x; sleep 60; done'
autostart=false

[group:app]
programs=web,worker

[eventlistener:memmon]
command=memmon -a 200MB
"""


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.config, "host_timezone", lambda: "UTC")


def test_a_crontab_with_every_field_form_imports() -> None:
    text = crontab.convert(CRONTAB, "crontab")
    tasks = tomllib.loads(text)["tasks"]
    schedules = [task["cron"] for task in tasks.values()]
    assert schedules == [
        "0 2 * * *",
        "*/15 9-17 * * mon-fri",
        "5 0,12 1-7 jan,jul sun",
        "0 */6 * * 1-5/2",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@midnight",
        "@hourly",
        "30 4 1 * *",
    ]
    backup = tasks["backup"]
    assert backup["run"] == "/usr/local/bin/backup.sh --full > /var/log/backup.log 2>&1"
    assert backup["shell"] == "/bin/bash"
    assert backup["env"] == {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    assert "timezone" not in backup
    # Names are unique; CRON_TZ applies to the jobs after it.
    assert tasks["backup-2"]["timezone"] == "Europe/Berlin"
    assert tasks["backup-2"]["run"] == "backup.sh monthly"
    # cron's \% is a plain %, and the shell's ${HOME} stays the shell's.
    assert tasks["echo"]["run"] == 'echo "$${HOME} is 50% done" | logger'
    # What runwarden cannot express is kept as comments.
    assert "# Nightly backup" in text
    assert "MAILTO=ops@example.com: runwarden sends no mail" in text
    assert "@reboot /usr/local/bin/warmup: runwarden has no start-up trigger" in text
    assert "input after %: ' some input'" in text
    assert "line 22 skipped: it never fires" in text


def test_the_imported_crontab_validates_with_the_same_meaning() -> None:
    config = validate_text(crontab.convert(CRONTAB, "crontab"), "runwarden.toml")
    assert len(config.tasks) == 12
    assert config.tasks["echo"].run == 'echo "${HOME} is 50% done" | logger'
    assert config.tasks["curl"].cron == "*/15 9-17 * * mon-fri"
    assert config.tasks["backup-2"].timezone == "Europe/Berlin"


def test_a_supervisord_file_with_several_programs_imports() -> None:
    text = supervisord.convert(SUPERVISORD, "supervisord.conf")
    services = tomllib.loads(text)["services"]
    assert list(services) == ["web", "worker", "cleaner"]
    web = services["web"]
    assert web == {
        "run": "/usr/bin/gunicorn app:wsgi --bind 0.0.0.0:${PORT}",
        "group": "app",
        "working_dir": "/srv/web",
        "instances": 3,
        "start_retries": 5,
        "stop_signal": "SIGQUIT",
        "graceful_stop": "20s",
        "healthy_after": "10s",
        "env": {"PYTHONPATH": "/srv/web", "DEBUG": "0", "GREETING": "hello, world"},
    }
    assert services["worker"]["run"] == "python worker.py --queue $${QUEUE}"
    assert services["worker"]["stop_signal"] == "SIGINT"
    assert "group" not in services["cleaner"]
    for kept in (
        "user = www-data",
        "stdout_logfile = /var/log/web.log",
        "autorestart = false",
        "autostart = false",
        "[eventlistener:memmon] is not imported",
    ):
        assert kept in text


def test_the_imported_supervisord_file_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8000")
    text = supervisord.convert(SUPERVISORD, "supervisord.conf")
    config = validate_text(text, "runwarden.toml")
    assert {task.kind for task in config.tasks.values()} == {TaskKind.SERVICE}
    assert config.tasks["web"].instances == 3
    assert config.tasks["web"].run.endswith("0.0.0.0:8000")
    assert config.tasks["web"].graceful_stop == 20.0
    assert config.tasks["worker"].run == "python worker.py --queue ${QUEUE}"


def test_a_file_with_no_program_is_an_error() -> None:
    with pytest.raises(supervisord.SupervisordError, match=r"no \[program:NAME\]"):
        supervisord.convert("[supervisord]\nlogfile=x\n", "s.conf")


def test_import_then_validate_from_the_command_line(tmp_path: Path) -> None:
    source = tmp_path / "crontab"
    source.write_text(CRONTAB)

    imported = runwarden("import", "crontab", str(source))
    assert imported.returncode == 0, imported.stderr
    target = tmp_path / "runwarden.toml"
    target.write_text(imported.stdout)
    checked = runwarden("validate", str(target))
    assert checked.returncode == 0, checked.stderr
    assert "12 tasks and services" in checked.stdout
    missing = runwarden("import", "supervisord", str(tmp_path / "nope.conf"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("runwarden: cannot read")
    assert "Traceback" not in missing.stderr
