"""Settings are taken as written or refused: a value of the wrong TOML type and a misspelt
`RECONCILER_*` variable are each one error naming the key, never a silent default."""

from __future__ import annotations

import os
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.config.load import load_settings
from reconciler.config.settings import (
    CrmSettings,
    DaemonSettings,
    DialerSettings,
    GuardSettings,
    StateSettings,
)
from reconciler.errors import ConfigError

CANARY = "Canary-pw-7f3e!"
SECTIONS = {"dialer": DialerSettings, "crm": CrmSettings, "state": StateSettings,
            "guards": GuardSettings, "daemon": DaemonSettings}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECONCILER_"):
            monkeypatch.delenv(name)


def typed_keys() -> list[tuple[str, str, str]]:
    """(section, key, expected) for every setting with a type, read off the settings classes
    so that a setting added later is covered too."""
    found = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            text = str(hints[f.name])
            if f.name in ("password", "password_hint", "schedules"):
                continue
            if "float" in text:
                found.append((section, f.name, "a number"))
            elif "int" in text:
                found.append((section, f.name, "a whole number"))
            elif "Path" in text:
                found.append((section, f.name, "a string (a path)"))
            else:
                found.append((section, f.name, "a string"))
    return [*found, ("dialer", "password_env", "a string"),
            ("dialer", "password_file", "a string"), ("reconciler", "spec", "a string")]


def file_with(tmp_path: Path, section: str, line: str) -> Path:
    """A minimal valid file with `line` in `section` (replacing the line of the same key)."""
    tables: dict[str, list[str]] = {"dialer": ['url = "https://dialer.example.com/x.php"',
                                               'user = "api"'],
                                    "crm": ['url = "sqlite:///crm.db"']}
    key = line.split(" ")[0]
    lines = [x for x in tables.get(section, []) if not (key and x.startswith(f"{key} "))]
    tables[section] = [*lines, line]
    path = tmp_path / "reconciler.toml"
    path.write_text("".join(f"[{name}]\n" + "".join(f"{x}\n" for x in body)
                            for name, body in tables.items()), encoding="utf-8")
    return path


@pytest.mark.parametrize(("section", "key", "expected"), typed_keys(),
                         ids=[f"{s}.{k}" for s, k, _ in typed_keys()])
def test_a_value_of_the_wrong_type_names_the_key_and_the_type(
    tmp_path: Path, section: str, key: str, expected: str
) -> None:
    if "number" in expected:
        line, shown = f'{key} = "3"', "the string '3' (write it without quotes)"
    else:
        line, shown = f"{key} = 3", "3"
    with pytest.raises(ConfigError) as caught:
        load_settings(file_with(tmp_path, section, line), {})
    assert str(caught.value) == f"{section}.{key} must be {expected}, not {shown}"


@pytest.mark.parametrize(("line", "message"), [
    ("max_retries = true", "dialer.max_retries must be a whole number, not True"),
    ("read_timeout = false", "dialer.read_timeout must be a number, not False"),
    ("max_retries = 3.0", "dialer.max_retries must be a whole number, not 3.0"),
    ('read_timeout = "soon"', "dialer.read_timeout must be a number, not 'soon'"),
    ("user = true", "dialer.user must be a string, not True"),
    ("url = [1]", "dialer.url must be a string, not [1]"),
])
def test_booleans_arrays_and_words_are_not_numbers_or_text(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(file_with(tmp_path, "dialer", line), {})
    assert str(caught.value) == message


def test_an_integer_is_a_number_and_text_from_the_environment_is_converted(
    tmp_path: Path
) -> None:
    path = file_with(tmp_path, "dialer", "read_timeout = 7")
    settings = load_settings(path, {"RECONCILER_DIALER_MAX_RETRIES": " 5 ",
                                    "RECONCILER_DAEMON_HTTP_PORT": "9000"})
    assert settings.dialer.read_timeout == 7.0 and isinstance(settings.dialer.read_timeout, float)
    assert settings.dialer.max_retries == 5 and settings.daemon.http_port == 9000


# --- RECONCILER_* variables -------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "suggestion"), [
    ("RECONCILER_DIALER_READTIMEOUT", "RECONCILER_DIALER_READ_TIMEOUT"),
    ("RECONCILER_STATE_URI", "RECONCILER_STATE_URL"),
    ("RECONCILER_DIALER_PASSWROD", "RECONCILER_DIALER_PASSWORD"),
    ("RECONCILER_DEAMON_INTERVAL", "RECONCILER_DAEMON_INTERVAL"),
    ("RECONCILER_CONFIG_FILE", "RECONCILER_CONFIG"),
    ("RECONCILER_DAEMON_TRIGGER_TOKEN", "RECONCILER_DAEMON_TRIGGER_TOKEN_ENV"),
])
def test_a_misspelt_variable_is_an_error_naming_it_not_its_value(
    tmp_path: Path, variable: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(file_with(tmp_path, "dialer", ""), {variable: CANARY})
    assert str(caught.value) == (
        f"unknown environment variable {variable} (settings are RECONCILER_<SECTION>_<KEY>, "
        f"see docs/configuration.md); did you mean {suggestion}?")
    assert CANARY not in str(caught.value)


def test_every_documented_variable_is_allowed(tmp_path: Path) -> None:
    path = file_with(tmp_path, "dialer", 'password_env = "RECONCILER_SECRET"')
    path.write_text(path.read_text() + '[daemon]\ntrigger_token_env = "RECONCILER_TRIGGER"\n')
    settings_variables = {
        f"RECONCILER_{section.upper()}_{key.upper()}": value
        for section, key, expected in typed_keys()
        for value in ["1" if "number" in expected else "x"]
        if key not in ("password_env", "password_file", "trigger_token_file", "url", "spec",
                       "dialect", "method", "cron", "trigger_token_env")
    }
    environ = {
        **settings_variables,
        "RECONCILER_CONFIG": str(path),
        "RECONCILER_DIALER_PASSWORD": CANARY,           # the default password variable
        "RECONCILER_SECRET": CANARY,                    # the one password_env names
        "RECONCILER_DAEMON_TOKEN": "t" * 32,            # the default trigger token variable
        "RECONCILER_TRIGGER": "t" * 32,                 # the one trigger_token_env names
        "RECONCILER_REQUIRE_POSTGRES": "1",             # the test suite's switches
        "RECONCILER_REQUIRE_BROWSER": "1",
        "RECONCILER_PROOF_EXAMPLES": "100",
        "RECONCILER_CRASH_TRIALS": "20",
        "RECONCILER_DIALER_PASSWORD_FILE": "",
        "RECONCILER_DAEMON_TRIGGER_TOKEN_FILE": "",
    }
    settings = load_settings(None, environ)
    assert settings.dialer.password == CANARY and settings.dialer.max_retries == 1


def test_a_misspelt_variable_stops_the_command_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECONCILER_GUARDS_MAX_DEACTIVATION", "0")
    assert main(["--config", str(file_with(tmp_path, "dialer", "")), "db", "current"]) == 1
    assert capsys.readouterr().err == (
        "error: unknown environment variable RECONCILER_GUARDS_MAX_DEACTIVATION (settings are "
        "RECONCILER_<SECTION>_<KEY>, see docs/configuration.md); did you mean "
        "RECONCILER_GUARDS_MAX_DEACTIVATIONS?\n")
