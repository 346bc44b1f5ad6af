"""`[[targets]]`: several dialer targets in one config, each checked with errors naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config.load import load_settings
from reconciler.config.settings import Settings
from reconciler.errors import ConfigError

TWO = """
[[targets]]
name = "north"
url = "http://north/api"
user = "api"
password_env = "RECONCILER_NORTH_PASSWORD"
leads_per_batch = 100

[[targets]]
name = "south"
url = "http://south/api"
user = "api"
dialect = "vicidial"
password_file = "{secret}"

[crm]
url = "sqlite://"
"""


def _load(tmp_path: Path, text: str, **environ: str) -> Settings:
    (tmp_path / "pw").write_text("south-secret\n")
    path = tmp_path / "reconciler.toml"
    path.write_text(text.replace("{secret}", str(tmp_path / "pw")))
    return load_settings(path, environ)


def test_each_target_has_its_own_settings_and_password(tmp_path: Path) -> None:
    settings = _load(tmp_path, TWO, RECONCILER_NORTH_PASSWORD="north-secret")
    north, south = settings.all_targets
    assert (north.target, north.leads_per_batch, north.password) == ("north", 100, "north-secret")
    assert (south.target, south.dialect, south.password) == ("south", "vicidial", "south-secret")
    assert settings.dialer == north and settings.several_targets
    assert "secret" not in repr(settings)


def test_a_dialer_section_is_one_target_named_as_before(tmp_path: Path) -> None:
    settings = _load(tmp_path, '[dialer]\nurl = "u"\nuser = "a"\ntarget = "site1"\n'
                               '[crm]\nurl = "sqlite://"\n')
    assert settings.target_names == ("site1",)
    assert not settings.several_targets


@pytest.mark.parametrize(("change", "message"), [
    (('name = "south"', 'name = "north"'),
     "targets.north.name: the name is given twice ([[targets]] #1 and #2)"),
    (('name = "south"\n', ''), "[[targets]] #2: missing setting name"),
    (('name = "south"', 'name = "so uth"'), "[[targets]] #2.name must be 1-40 letters"),
    (('leads_per_batch = 100', 'leads_per_batch = 0'),
     "targets.north.leads_per_batch must be at least 1, not 0"),
    (('dialect = "vicidial"', 'dialect = "asterisk"'), "targets.south.dialect must be one of"),
    (('dialect = "vicidial"', 'colour = "red"'), "unknown key targets.south.colour"),
    (('dialect = "vicidial"', 'password = "x"'), "targets.south.password must not be written"),
    (('[crm]', '[dialer]\nurl = "u"\nuser = "a"\n[crm]'), "give [dialer] (one target) or"),
])
def test_target_errors_name_the_key(tmp_path: Path, change: tuple[str, str],
                                    message: str) -> None:
    with pytest.raises(ConfigError, match=None) as raised:
        _load(tmp_path, TWO.replace(*change))
    assert message in str(raised.value)


def test_an_unknown_target_name_is_refused(tmp_path: Path) -> None:
    settings = _load(tmp_path, TWO)
    with pytest.raises(ConfigError, match="unknown target 'west': the config names north, south"):
        settings.for_target("west")
