"""`plan --full`, `apply --full` and saved plans of either kind of lead pass, from the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.server import start_background
from tests.app.incremental_crm import (
    change_value,
    crm_with_change_column,
    incremental_spec,
    write_leads,
)
from tests.app.test_leads import lead
from tests.cli.test_cli import Setup
from tests.helpers import write_config


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    crm = crm_with_change_column(f"sqlite:///{tmp_path / 'crm.db'}", "integer")
    write_leads(crm, [{**lead(n), "updated_at": change_value("integer", n)} for n in (1, 2, 3)])
    sandbox = SandboxDialer()
    with start_background(sandbox) as server:
        config = write_config(tmp_path / "reconciler.toml", dialer_url=server.url, crm_url=crm,
                              state_url=f"sqlite:///{tmp_path / 'state.db'}",
                              spec=incremental_spec(tmp_path),
                              dialer_extra='source = "clitest"\nbackoff_base = 0')
        monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
        monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
        setup = Setup(tmp_path, config, crm, sandbox, server)
        assert setup.run("db", "upgrade") == 0
        yield setup


def test_the_pass_kind_is_shown_and_a_saved_plan_keeps_its_kind(
    cli: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run("plan", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["lead_pass"] == {"kind": "full", "since": "", "reason": "no mark yet"}
    assert document["basis"]["lead_pass"] == "full"

    assert cli.run("apply", "--yes") == 0
    capsys.readouterr()
    assert cli.run("status") == 0
    assert "Incremental lead passes: read past '3' (integer); last full pass 20" in \
        capsys.readouterr().out
    assert cli.run("status", "--json") == 0
    shown = json.loads(capsys.readouterr().out)["lead_pass"]
    assert (shown["mark"], shown["mark_type"], shown["full_pass_due"]) == ("3", "integer", False)
    assert cli.run("plan") == 0
    out = capsys.readouterr().out
    assert "Leads: incremental pass, the CRM rows changed since 3 only" in out
    assert cli.run("plan", "--full") == 0
    assert "Leads: full pass, every CRM row read (--full was asked for)." in \
        capsys.readouterr().out

    full = cli.dir / "full.json"
    assert cli.run("plan", "--full", "--out", str(full)) == 0
    assert cli.run("apply", "--yes", str(full)) == 0       # gathered as a full pass again
    incremental = cli.dir / "incremental.json"
    assert cli.run("plan", "--out", str(incremental)) == 0
    capsys.readouterr()
    assert cli.run("apply", "--yes", "--full", str(incremental)) == 1
    assert "it read other lead rows (a full pass vs an incremental one" in \
        capsys.readouterr().err
    assert cli.run("apply", "--yes", str(incremental)) == 0
