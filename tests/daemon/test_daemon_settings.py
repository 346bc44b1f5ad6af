"""The [daemon] settings: defaults, per-resource schedules, overrides, one error per bad key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.config.load import check_schedules, load_settings, read_trigger_token
from reconciler.config.settings import DaemonSettings, ResourceSchedule, Schedule
from reconciler.errors import ConfigError

BASE = """
[dialer]
url = "https://dialer.example.com/dialer/elision_api.php"
user = "api"
[crm]
url = "sqlite:///crm.db"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECONCILER_"):
            monkeypatch.delenv(name)


def load(tmp_path: Path, daemon: str, environ: dict[str, str] | None = None) -> DaemonSettings:
    path = tmp_path / "reconciler.toml"
    path.write_text(BASE + daemon, encoding="utf-8")
    return load_settings(path, environ or {}).daemon


def error(tmp_path: Path, daemon: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, daemon, environ)
    return str(caught.value)


def test_defaults_without_a_daemon_section(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings == DaemonSettings()
    assert settings.schedule == Schedule(300.0, "", 0.0)
    assert settings.http_port == 0 and settings.http_host == "127.0.0.1"


def test_whole_spec_and_per_resource_schedules(tmp_path: Path) -> None:
    settings = load(tmp_path, """
[daemon]
cron = "*/5 * * * mon-fri"
jitter = 3
misfire_grace_time = 30
http_port = 9464
trigger_token_file = "/run/secrets/token"
[daemon.schedules.leads]
interval = 60
jitter = 2
[daemon.schedules.users]
cron = "0 * * * *"
""")
    assert settings.schedule == Schedule(300.0, "*/5 * * * mon-fri", 3.0)
    assert settings.schedules == (
        ResourceSchedule("users", Schedule(cron="0 * * * *")),
        ResourceSchedule("leads", Schedule(interval=60.0, jitter=2.0)),
    )
    assert settings.http_port == 9464
    assert settings.trigger_token_file == Path("/run/secrets/token")
    assert settings.schedules[1].schedule.describe() == "every 60s, jitter 2s"


def test_environment_overrides_reach_the_daemon_section(tmp_path: Path) -> None:
    settings = load(tmp_path, "[daemon]\ninterval = 60\n",
                    {"RECONCILER_DAEMON_INTERVAL": "2.5", "RECONCILER_DAEMON_HTTP_PORT": "9000"})
    assert settings.interval == 2.5 and settings.http_port == 9000


@pytest.mark.parametrize(("daemon", "message"), [
    ("[daemon]\nintervall = 5\n", "unknown key daemon.intervall"),
    ("[daemon]\ninterval = 0\n", "daemon.interval must be greater than 0, not 0"),
    ("[daemon]\ninterval = 'soon'\n", "daemon.interval must be a number, not 'soon'"),
    ("[daemon]\njitter = -1\n", "daemon.jitter must be at least 0, not -1"),
    ("[daemon]\nbackoff_max = true\n", "daemon.backoff_max must be a number, not True"),
    ("[daemon]\nhttp_port = 70000\n", "daemon.http_port must be at most 65535, not 70000"),
    ("[daemon]\nhttp_port = 80.5\n", "daemon.http_port must be a whole number, not 80.5"),
    ("[daemon]\ncron = 5\n", "daemon.cron must be a string, not 5"),
    ("[daemon]\ncron = '* * *'\n", "daemon.cron is not a valid crontab line: Wrong number"),
    ("[daemon]\ncron = '0 3 * * 1-5'\n", "daemon.cron: give weekdays by name"),
    ("[daemon]\ninterval = 60\ncron = '* * * * *'\n", "daemon: give interval or cron, not both"),
    ("[daemon]\ntrigger_token = 'abc'\n", "daemon.trigger_token must not be written in the config"),
    ("[daemon.schedules.agents]\ninterval = 5\n", "[daemon.schedules.agents]: unknown resource"),
    ("[daemon.schedules.users]\nevery = 5\n", "unknown key daemon.schedules.users.every"),
    ("[daemon.schedules.users]\ninterval = -5\n",
     "daemon.schedules.users.interval must be greater than 0, not -5"),
    ("[daemon]\nschedules = 5\n", "[daemon.schedules] must hold tables"),
])
def test_each_bad_setting_is_one_error_naming_the_key(
    tmp_path: Path, daemon: str, message: str
) -> None:
    assert message in error(tmp_path, daemon)


def test_per_resource_schedules_must_name_declared_resources() -> None:
    settings = DaemonSettings(schedules=(ResourceSchedule("leads", Schedule(interval=5)),))
    check_schedules(settings, frozenset({"users", "lists", "leads"}))
    with pytest.raises(ConfigError, match=r"\[daemon.schedules.leads\]: the spec declares no"):
        check_schedules(settings, frozenset({"users", "lists"}))


def test_trigger_token_from_environment_or_file(tmp_path: Path) -> None:
    token = "t" * 32
    assert read_trigger_token(DaemonSettings(), {}) is None
    assert read_trigger_token(DaemonSettings(), {"RECONCILER_DAEMON_TOKEN": token}) == token
    named = DaemonSettings(trigger_token_env="CRM_HOOK_TOKEN")
    assert read_trigger_token(named, {"CRM_HOOK_TOKEN": f" {token}\n"}) == token
    file = tmp_path / "token"
    file.write_text(token + "\n")
    assert read_trigger_token(DaemonSettings(trigger_token_file=file), {}) == token
    with pytest.raises(ConfigError, match="too short"):
        read_trigger_token(DaemonSettings(), {"RECONCILER_DAEMON_TOKEN": "short"})
    with pytest.raises(ConfigError, match="trigger_token_file"):
        read_trigger_token(DaemonSettings(trigger_token_file=tmp_path / "missing"), {})
