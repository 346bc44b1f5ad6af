"""Settings: where the file is found, environment overrides, the dialer password, bad settings."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.config.load import load_settings, require_dialer_password
from reconciler.config.settings import Settings
from reconciler.errors import ConfigError

CANARY = "Canary-pw-7f3e!"

MINIMAL = """
[dialer]
url = "https://dialer.example.com/dialer/elision_api.php"
user = "api"
[crm]
url = "sqlite:///crm.db"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RECONCILER_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_with(tmp_path: Path, dialer_extra: str = "", rest: str = "") -> Path:
    """A valid file with extra lines in [dialer], and extra sections after it."""
    return write(tmp_path / "reconciler.toml", f"""
[dialer]
url = "https://dialer.example.com/dialer/elision_api.php"
user = "api"
{dialer_extra}
[crm]
url = "sqlite:///crm.db"
{rest}
""")


# --- loading a file -------------------------------------------------------------------------


def test_every_setting_is_read_from_the_file_with_its_type(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "reconciler.toml", """
[reconciler]
spec = "specs/agents.toml"

[dialer]
url = "https://dialer.example.com/dialer/elision_api.php"
user = "apiuser"
source = "crmsync"
target = "site-b"
method = "get"
connect_timeout = 2
read_timeout = 12.5
max_retries = 0
backoff_base = 0.25
backoff_max = 4
leads_per_batch = 100
max_request_bytes = 4000

[crm]
url = "postgresql+psycopg://reader@crm-db/crm"

[state]
url = "postgresql+psycopg://rec@state-db/state"
digest_key_file = "/var/lib/reconciler/key"

[guards]
max_deactivations = 3
max_changed_share = 0.2
min_users_for_share = 50
""")
    settings = load_settings(path, {})

    d = settings.dialer
    assert (d.url, d.user, d.source, d.target) == (
        "https://dialer.example.com/dialer/elision_api.php", "apiuser", "crmsync", "site-b")
    assert d.method == "GET"                      # upper-cased
    assert d.connect_timeout == 2.0 and isinstance(d.connect_timeout, float)
    assert d.read_timeout == 12.5
    assert d.max_retries == 0 and isinstance(d.max_retries, int)
    assert (d.backoff_base, d.backoff_max) == (0.25, 4.0)
    assert (d.leads_per_batch, d.max_request_bytes) == (100, 4000)
    assert settings.crm.url == "postgresql+psycopg://reader@crm-db/crm"
    assert settings.state.url == "postgresql+psycopg://rec@state-db/state"
    assert settings.state.digest_key_file == Path("/var/lib/reconciler/key")
    g = settings.guards
    assert (g.max_deactivations, g.max_changed_share, g.min_users_for_share) == (3, 0.2, 50)
    # The spec is found relative to the config file, not the working directory.
    assert settings.spec_path == tmp_path / "conf" / "specs" / "agents.toml"
    assert settings.source_file == path


def test_omitted_settings_take_their_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "r.toml", MINIMAL), {})
    d = settings.dialer
    assert (d.source, d.target, d.method) == ("reconciler", "default", "POST")
    assert (d.connect_timeout, d.read_timeout, d.max_retries) == (5.0, 30.0, 3)
    assert (d.backoff_base, d.backoff_max) == (0.5, 10.0)
    assert (d.leads_per_batch, d.max_request_bytes) == (500, None)
    assert d.request_byte_limit == 8_000_000      # POST: PHP's post_max_size
    assert replace(d, method="GET").request_byte_limit == 8000     # a URL must stay short
    assert d.password == ""                       # checked only when the dialer is used
    assert settings.state.url == "sqlite:///reconciler-state.db"
    assert settings.state.digest_key_file == Path(".reconciler-key")
    g = settings.guards
    assert (g.max_deactivations, g.max_changed_share, g.min_users_for_share) == (10, 0.5, 10)
    assert settings.spec_path == tmp_path / "specs" / "example.toml"


# --- which file -----------------------------------------------------------------------------


def _three_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A file for each way of naming one; `dialer.user` tells which was read."""
    files = {}
    for name in ("explicit", "envvar", "cwd"):
        text = MINIMAL.replace('user = "api"', f'user = "{name}"')
        files[name] = write(tmp_path / name / "reconciler.toml", text)
    monkeypatch.chdir(tmp_path / "cwd")
    return files


def test_config_option_beats_the_variable_and_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _three_files(tmp_path, monkeypatch)
    monkeypatch.setenv("RECONCILER_CONFIG", str(files["envvar"]))
    assert load_settings(files["explicit"]).dialer.user == "explicit"
    assert load_settings(str(files["explicit"])).dialer.user == "explicit"


def test_variable_beats_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _three_files(tmp_path, monkeypatch)
    monkeypatch.setenv("RECONCILER_CONFIG", str(files["envvar"]))
    settings = load_settings()
    assert settings.dialer.user == "envvar"
    assert settings.source_file == files["envvar"]


def test_reconciler_toml_in_the_working_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _three_files(tmp_path, monkeypatch)
    settings = load_settings()
    assert settings.dialer.user == "cwd"
    assert settings.source_file == Path("reconciler.toml")


def test_a_named_file_that_does_not_exist_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"config file .*nope\.toml does not exist"):
        load_settings(missing)
    monkeypatch.setenv("RECONCILER_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=r"nope\.toml does not exist"):
        load_settings()


def test_without_any_file_everything_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)                   # no reconciler.toml here: not an error
    settings = load_settings(None, {
        "RECONCILER_DIALER_URL": "http://dialer/dialer/elision_api.php",
        "RECONCILER_DIALER_USER": "api",
        "RECONCILER_CRM_URL": "sqlite:///crm.db",
    })
    assert settings.dialer.url == "http://dialer/dialer/elision_api.php"
    assert settings.source_file is None
    assert settings.spec_path == Path("specs/example.toml")


# --- environment overrides ------------------------------------------------------------------


def test_environment_overrides_the_file_and_is_coerced_to_the_setting_type(
    tmp_path: Path
) -> None:
    path = config_with(tmp_path, "read_timeout = 30.0\nmax_retries = 3")
    settings = load_settings(path, {
        "RECONCILER_DIALER_READ_TIMEOUT": "2.5",
        "RECONCILER_DIALER_MAX_RETRIES": "7",
        "RECONCILER_DIALER_METHOD": "get",
        "RECONCILER_STATE_URL": "sqlite:////srv/state.db",
        "RECONCILER_STATE_DIGEST_KEY_FILE": "/srv/key",
        "RECONCILER_GUARDS_MAX_CHANGED_SHARE": "0.25",
        "RECONCILER_RECONCILER_SPEC": "specs/other.toml",
    })
    assert settings.dialer.read_timeout == 2.5
    assert settings.dialer.max_retries == 7 and isinstance(settings.dialer.max_retries, int)
    assert settings.dialer.method == "GET"
    assert settings.state.url == "sqlite:////srv/state.db"
    assert settings.state.digest_key_file == Path("/srv/key")
    assert settings.guards.max_changed_share == 0.25
    assert settings.spec_path == tmp_path / "specs" / "other.toml"


@pytest.mark.parametrize(("variable", "value", "key"), [
    ("RECONCILER_DIALER_READ_TIMEOUT", "soon", "dialer.read_timeout"),
    ("RECONCILER_DIALER_MAX_RETRIES", "2.5", "dialer.max_retries"),
    ("RECONCILER_GUARDS_MAX_DEACTIVATIONS", "ten", "guards.max_deactivations"),
])
def test_a_non_numeric_override_names_the_key(
    tmp_path: Path, variable: str, value: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config_with(tmp_path), {variable: value})
    assert key in str(caught.value) and repr(value) in str(caught.value)


# --- the dialer password ----------------------------------------------------------------------


def test_password_comes_from_reconciler_dialer_password(tmp_path: Path) -> None:
    settings = load_settings(config_with(tmp_path), {"RECONCILER_DIALER_PASSWORD": CANARY})
    assert settings.dialer.password == CANARY
    require_dialer_password(settings)             # does not raise


def test_password_comes_from_the_variable_named_by_password_env(tmp_path: Path) -> None:
    path = config_with(tmp_path, 'password_env = "DIALER_SECRET"')
    settings = load_settings(path, {"DIALER_SECRET": CANARY,
                                    "RECONCILER_DIALER_PASSWORD": "not-this-one"})
    assert settings.dialer.password == CANARY


def test_password_env_itself_can_be_overridden(tmp_path: Path) -> None:
    settings = load_settings(config_with(tmp_path), {
        "RECONCILER_DIALER_PASSWORD_ENV": "OTHER_SECRET", "OTHER_SECRET": CANARY})
    assert settings.dialer.password == CANARY


def test_password_comes_from_password_file_stripped(tmp_path: Path) -> None:
    secret = write(tmp_path / "dialer.pass", f"{CANARY}\n")
    path = config_with(tmp_path, f'password_file = "{secret}"')
    settings = load_settings(path, {"RECONCILER_DIALER_PASSWORD": "not-this-one"})
    assert settings.dialer.password == CANARY


def test_a_missing_password_file_names_the_key(tmp_path: Path) -> None:
    path = config_with(tmp_path, f'password_file = "{tmp_path / "absent.pass"}"')
    with pytest.raises(ConfigError, match=r"^dialer\.password_file .*absent\.pass: "):
        load_settings(path, {})


def test_a_password_written_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = config_with(tmp_path, f'password = "{CANARY}"')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert "dialer.password must not be written in the config file" in message
    assert "password_env" in message and "password_file" in message
    assert CANARY not in message


@pytest.mark.parametrize(("dialer_extra", "environ", "hint"), [
    ("", {}, "export RECONCILER_DIALER_PASSWORD or set dialer.password_file"),
    ('password_env = "DIALER_SECRET"', {}, "export DIALER_SECRET or set dialer.password_file"),
    ("", {"RECONCILER_DIALER_PASSWORD": ""},
     "export RECONCILER_DIALER_PASSWORD or set dialer.password_file"),
    ('password_file = "{empty}"', {}, "dialer.password_file {empty} is empty"),
])
def test_require_dialer_password_says_how_to_set_it(
    tmp_path: Path, dialer_extra: str, environ: dict[str, str], hint: str
) -> None:
    empty = write(tmp_path / "empty.pass", "\n")
    path = config_with(tmp_path, dialer_extra.format(empty=empty))
    settings = load_settings(path, environ)       # loading alone does not need the password
    with pytest.raises(ConfigError) as caught:
        require_dialer_password(settings)
    assert str(caught.value) == f"dialer password is not set: {hint.format(empty=empty)}"


# --- bad settings: one error, naming the key --------------------------------------------------

# (name, file text, the key or phrase the message must name)
BAD_FILES = [
    ("unknown section", MINIMAL + "[dailer]\nurl = 'x'\n", "unknown section [dailer]"),
    ("unknown key", MINIMAL.replace("[crm]", "timeout = 5\n[crm]"), "unknown key dialer.timeout"),
    ("unknown key in [reconciler]", MINIMAL + "[reconciler]\nspce = 'x.toml'\n",
     "unknown key reconciler.spce"),
    ("unknown key in [guards]", MINIMAL + "[guards]\nmax_deactivation = 3\n",
     "unknown key guards.max_deactivation"),
    ("non-numeric timeout", MINIMAL.replace("[crm]", "read_timeout = 'soon'\n[crm]"),
     "dialer.read_timeout must be a number"),
    ("boolean timeout", MINIMAL.replace("[crm]", "read_timeout = true\n[crm]"),
     "dialer.read_timeout must be a number"),
    ("fractional count", MINIMAL.replace("[crm]", "leads_per_batch = 2.5\n[crm]"),
     "dialer.leads_per_batch must be a whole number, not 2.5"),
    ("number for a string", MINIMAL.replace('user = "api"', "user = 1234"),
     "dialer.user must be a string"),
    ("bad method", MINIMAL.replace("[crm]", "method = 'PUT'\n[crm]"),
     "dialer.method must be GET or POST, not 'PUT'"),
    ("missing dialer.url", "[dialer]\nuser = 'api'\n[crm]\nurl = 'sqlite://'\n",
     "missing setting dialer.url"),
    ("missing dialer.user", "[dialer]\nurl = 'http://d'\n[crm]\nurl = 'sqlite://'\n",
     "missing setting dialer.user"),
    ("missing crm.url", "[dialer]\nurl = 'http://d'\nuser = 'api'\n", "missing setting crm.url"),
    ("negative batch size", MINIMAL.replace("[crm]", "leads_per_batch = -5\n[crm]"),
     "dialer.leads_per_batch must be at least 1"),
    ("zero batch size", MINIMAL.replace("[crm]", "leads_per_batch = 0\n[crm]"),
     "dialer.leads_per_batch must be at least 1"),
    ("negative retries", MINIMAL.replace("[crm]", "max_retries = -1\n[crm]"),
     "dialer.max_retries must be at least 0"),
    ("zero timeout", MINIMAL.replace("[crm]", "connect_timeout = 0\n[crm]"),
     "dialer.connect_timeout must be greater than 0"),
    ("share over 1", MINIMAL + "[guards]\nmax_changed_share = 1.5\n",
     "guards.max_changed_share must be between 0 and 1"),
    ("section not a table", "dialer = 5\n", "[dialer] must be a table"),
    ("spec not a string", MINIMAL + "[reconciler]\nspec = 5\n", "reconciler.spec must be a string"),
    ("invalid TOML", MINIMAL + "[state\nurl = 1\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD_FILES],
                         ids=[name for name, _, _ in BAD_FILES])
def test_each_bad_setting_is_one_error_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "reconciler.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"RECONCILER_DIALER_PASSWORD": CANARY})
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert CANARY not in message


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_bytes(b'[dialer]\nurl = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not valid TOML: the file is not UTF-8"):
        load_settings(path, {})


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.mkdir()                                   # exists, but cannot be read as a file
    with pytest.raises(ConfigError, match=r"reconciler\.toml: cannot be read: "):
        load_settings(path, {})


def test_a_bad_setting_exits_1_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_with(tmp_path, "method = 'PATCH'")
    assert main(["--config", str(path), "db", "current"]) == 1
    err = capsys.readouterr().err
    assert err == "error: dialer.method must be GET or POST, not 'PATCH'\n"


# --- the password never shows ---------------------------------------------------------------


def test_the_password_is_not_in_the_repr_of_the_settings(tmp_path: Path) -> None:
    settings = load_settings(config_with(tmp_path), {"RECONCILER_DIALER_PASSWORD": CANARY})
    assert settings.dialer.password == CANARY
    for shown in (repr(settings), str(settings), repr(settings.dialer), f"{settings}"):
        assert CANARY not in shown
    assert isinstance(settings, Settings)


@pytest.mark.parametrize("source", ["env", "custom_env", "file"])
def test_the_password_is_in_no_config_error(tmp_path: Path, source: str) -> None:
    """Every bad setting again, with the password set each way it can be."""
    secret = write(tmp_path / "secret" / "dialer.pass", CANARY)
    extra, environ = {
        "env": ("", {"RECONCILER_DIALER_PASSWORD": CANARY}),
        "custom_env": ("password_env = 'SECRET'\n", {"SECRET": CANARY}),
        "file": (f"password_file = '{secret}'\n", {}),
    }[source]
    for _, text, _ in BAD_FILES:
        if "[dialer]" in text:
            text = text.replace("[dialer]", f"[dialer]\n{extra}", 1)
        path = write(tmp_path / "reconciler.toml", text)
        with pytest.raises(ConfigError) as caught:
            load_settings(path, environ)
        assert CANARY not in str(caught.value)
        assert CANARY not in repr(caught.value)
    # And a password written in the file, in a file that is not even valid TOML.
    path = write(tmp_path / "reconciler.toml", f"[dialer]\npassword = '{CANARY}' !!\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ)
    assert CANARY not in str(caught.value)
