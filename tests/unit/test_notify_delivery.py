"""Signing against the Standard Webhooks reference vectors, request shapes, redaction,
``${...}`` references and the notifier config's errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.notify.apprise import MISSING, load_apprise
from adapters.notify.http import body_for, headers_for, retry_after
from adapters.notify.signing import sign
from app.config import ConfigError, validate_text
from domain.channels import ChannelSpec, ChannelType
from domain.messages import Message

# From standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
# (test_sign_function) and the spec's examples.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_reference_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY.encode()) == VECTOR_SIGNATURE


def test_signature_changes_with_every_signed_part() -> None:
    for args in [
        (VECTOR_ID + "x", VECTOR_TS, VECTOR_BODY),
        (VECTOR_ID, VECTOR_TS + 1, VECTOR_BODY),
        (VECTOR_ID, VECTOR_TS, VECTOR_BODY + " "),
    ]:
        assert sign(VECTOR_SECRET, *args) != VECTOR_SIGNATURE
    # Without the prefix the secret is the key's text, not base64.
    assert sign(VECTOR_SECRET.removeprefix("whsec_"), VECTOR_ID, VECTOR_TS, VECTOR_BODY) != (
        VECTOR_SIGNATURE
    )


AT = datetime.fromtimestamp(VECTOR_TS, UTC)
MESSAGE = Message("d-1", "run.failed", AT, "job: failed", {"task": "job", "count": 1})


def test_webhook_request_shape() -> None:
    channel = ChannelSpec(
        "ops",
        ChannelType.WEBHOOK,
        url="https://h/x",
        headers={"X-Key": "k"},
        secret=VECTOR_SECRET,
    )
    body = body_for(channel, MESSAGE)
    assert json.loads(body) == {
        "type": "run.failed",
        "timestamp": "2021-02-25T15:02:10.000Z",
        "data": {"task": "job", "count": 1},
    }
    headers = headers_for(channel, MESSAGE, body)
    assert headers["webhook-id"] == "d-1"
    assert headers["webhook-timestamp"] == str(VECTOR_TS)
    assert headers["webhook-signature"] == sign(VECTOR_SECRET, "d-1", VECTOR_TS, body)
    assert headers["X-Key"] == "k"
    retried = dataclasses.replace(MESSAGE, sent_at=AT + timedelta(hours=2))
    later = headers_for(channel, retried, body)
    assert later["webhook-id"] == "d-1"
    assert later["webhook-timestamp"] == str(VECTOR_TS + 7200)  # the try's own time
    assert json.loads(body_for(channel, retried))["timestamp"] == "2021-02-25T15:02:10.000Z"
    unsigned = headers_for(ChannelSpec("o", ChannelType.WEBHOOK, url="https://h"), MESSAGE, body)
    assert "webhook-signature" not in unsigned


def test_chat_bodies_carry_the_title() -> None:
    slack = json.loads(body_for(ChannelSpec("s", ChannelType.SLACK, url="https://h"), MESSAGE))
    assert slack["text"].startswith("job: failed\n")
    discord = json.loads(body_for(ChannelSpec("d", ChannelType.DISCORD, url="https://h"), MESSAGE))
    assert discord["content"].startswith("job: failed\n")


def test_retry_after_header() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after("7") == 7.0
    assert retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
    assert retry_after("Thu, 01 Jan 2026 00:00:00 GMT", now + timedelta(hours=1)) == 0.0


def test_redaction_hides_every_secret() -> None:
    channel = ChannelSpec(
        "s",
        ChannelType.SLACK,
        url="https://hooks.slack.com/services/T0/B0/SECRETPART?token=abcd1234",
        headers={"Authorization": "Bearer tok-999"},
    )
    text = channel.redact(
        "ConnectError for https://hooks.slack.com/services/T0/B0/SECRETPART?token=abcd1234 "
        "with Bearer tok-999 at /services/T0/B0/SECRETPART"
    )
    assert "SECRETPART" not in text
    assert "tok-999" not in text
    assert "abcd1234" not in text
    assert channel.public_url == "https://hooks.slack.com/…"


def test_notifier_values_take_references_like_every_config_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("HOOK", "https://h/x")
    text = f"""
[notifiers.hook]
type = "webhook"
url = "${{HOOK}}"
secret = "${{file:{secret}}}"
headers = {{ Authorization = "Bearer ${{HOOK}}", X-Literal = "$${{HOOK}}" }}
"""
    hook = validate_text(text, str(tmp_path / "runwarden.toml")).notify.notifiers["hook"]
    assert (hook.url, hook.secret) == ("https://h/x", "s3cret")
    assert hook.headers == {"Authorization": "Bearer https://h/x", "X-Literal": "${HOOK}"}
    monkeypatch.delenv("HOOK")
    with pytest.raises(ConfigError) as raised:
        validate_text(text, str(tmp_path / "runwarden.toml"))
    assert "notifiers.hook" in str(raised.value)
    assert "HOOK" in str(raised.value)


GOOD = """
[notify]
coalesce_window = "10m"
base_url = "https://cron.example.com/"

[notifiers.ops]
type = "webhook"
url = "https://hooks.example.com/rw"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
on = ["failed", "run.recovered", "long_running"]
tasks = ["backup-*"]
timeout = "15s"

[notifiers.mail]
type = "smtp"
host = "127.0.0.1"
tls = "starttls"
from = "rw@example.com"
to = "ops@example.com"

[defaults]
notify = ["ops"]

[tasks.backup-db]
run = "true"
warn_after = "45m"
notify = ["mail"]

[tasks.other]
run = "true"
"""


def test_a_good_notify_config() -> None:
    config = validate_text(GOOD, "rw.toml")
    notify = config.notify
    assert (notify.coalesce_window, notify.base_url) == (600.0, "https://cron.example.com")
    ops, mail = notify.notifiers["ops"], notify.notifiers["mail"]
    assert ops.on == frozenset({"failed", "recovered", "long_running"})
    assert (ops.timeout, ops.tasks) == (15.0, ("backup-*",))
    assert (mail.port, mail.to, mail.sender) == (587, ("ops@example.com",), "rw@example.com")
    assert config.tasks["backup-db"].notify == ("mail",)
    assert config.tasks["backup-db"].warn_after == 2700.0
    assert config.tasks["other"].notify == ("ops",)
    assert ChannelSpec("x", ChannelType.WEBHOOK, url="https://h").on == frozenset(
        {"failed", "timeout", "crashed", "log_overflow", "recovered"}
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[notifiers.a]\ntype = "webhok"\nurl = "https://h"', 'did you mean "webhook"?'),
        ('[notifiers.a]\nurl = "https://h"', 'missing required key "type"'),
        ('[notifiers.a]\ntype = "webhook"', 'missing required key "url"'),
        ('[notifiers.a]\ntype = "webhook"\nurl = "ftp://h"', "must be an http:// or https://"),
        (
            '[notifiers.a]\ntype = "webhook"\nurl = "https://h"\ntimout = 3',
            'did you mean "timeout"?',
        ),
        (
            '[notifiers.a]\ntype = "webhook"\nurl = "https://h"\non = ["faild"]',
            'did you mean "failed"?',
        ),
        (
            '[notifiers.a]\ntype = "slack"\nurl = "https://h"\nsecret = "x"',
            "only type webhook has it",
        ),
        (
            '[notifiers.a]\ntype = "smtp"\nhost = "h"\nfrom = "a@b"\nto = ["c@d"]\ntls = "ssl"',
            "use one of",
        ),
        ('[notifiers.a]\ntype = "smtp"\nhost = "h"\nto = ["c@d"]', 'missing required key "from"'),
        (
            '[notifiers.a]\ntype = "webhook"\nurl = "${RW_TEST_UNSET_VAR}"',
            "RW_TEST_UNSET_VAR is not set",
        ),
        ('[notifiers.a]\ntype = "webhook"\nurl = "https://h"\nsecret = "whsec_!!"', "not base64"),
        ('[notify]\ncoalesce_windo = "1h"', 'did you mean "coalesce_window"?'),
        ('[notify]\nbase_url = "cron.example.com"', '"base_url": must be an http'),
        ('[tasks.t]\nrun = "true"\nnotify = ["nope"]', "no notifier named 'nope'"),
        ('[tasks.t]\nrun = "true"\nwarn_after = "0s"', '"warn_after": must be longer than 0s'),
        ('[services.s]\nrun = "true"\nwarn_after = "1m"', "only tasks have it"),
        ('[notifier.a]\ntype = "webhook"', 'did you mean "notifiers"?'),
    ],
)
def test_notify_config_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_text(text, "rw.toml")
    assert expected in str(raised.value)


def test_a_secret_never_appears_in_a_config_error() -> None:
    text = '[notifiers.a]\ntype = "webhook"\nurl = "https://h/SECRETPATH"\nsecret = 5'
    with pytest.raises(ConfigError) as raised:
        validate_text(text, "rw.toml")
    assert "SECRETPATH" not in str(raised.value)


def test_apprise_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whether or not it is installed: a missing package is reported, naming the extra.
    monkeypatch.setitem(sys.modules, "apprise", None)
    with pytest.raises(ImportError) as raised:
        load_apprise()
    assert str(raised.value) == MISSING
