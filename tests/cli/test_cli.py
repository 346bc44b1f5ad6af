"""The CLI end to end: a config file, the sandbox over loopback HTTP, exit codes and messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.adapters.state import db
from reconciler.adapters.state.lease import Lease
from reconciler.app.bootstrap import lease_name
from reconciler.cli.main import main
from reconciler.sandbox import SandboxData, SandboxDialer
from reconciler.sandbox.server import BackgroundServer, start_background
from reconciler.sandbox.store import ApiUser
from tests.helpers import EXAMPLE_SPEC, agent, crm_execute, make_crm


@dataclass
class Setup:
    dir: Path
    config: Path
    crm: str
    sandbox: SandboxDialer
    server: BackgroundServer

    def run(self, *args: str) -> int:
        return main(["--config", str(self.config), "--log-format", "json", *args])

    def functions(self) -> list[str]:
        return [c["function"] for c in self.sandbox.snapshot()["calls"]]


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: SandboxDialer,
           agents: list[dict[str, object]] | None = None, extra: str = "",
           leads: list[dict[str, object]] | None = None) -> Iterator[Setup]:
    crm = make_crm(tmp_path, agents or [agent("1000"), agent("1001")], lists=[
        {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}],
        leads=leads or [])
    with start_background(sandbox) as server:
        config = tmp_path / "reconciler.toml"
        config.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
[dialer]
url = "{server.url}"
user = "api"
source = "clitest"
backoff_base = 0
[crm]
url = "{crm}"
[state]
url = "sqlite:///{tmp_path / 'state.db'}"
digest_key_file = "{tmp_path / 'digest.key'}"
{extra}
""")
        monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
        monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
        setup = Setup(tmp_path, config, crm, sandbox, server)
        assert setup.run("db", "upgrade") == 0
        yield setup


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    yield from _start(tmp_path, monkeypatch, SandboxDialer())


def test_plan_detailed_exitcode_then_apply_then_no_changes(
    cli: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run("plan", "--detailed-exitcode") == 2
    out = capsys.readouterr().out
    assert "+ list 1101 'Spring Renewals'" in out
    assert "+ user 1000 'Agent 1000'" in out
    assert "Plan: 3 to add, 0 to change, 0 to deactivate." in out
    assert cli.functions() == ["active_lists"]           # planning only reads

    assert cli.run("apply", "--yes") == 0
    assert ": ok (3 created)." in capsys.readouterr().out
    assert cli.run("plan", "--detailed-exitcode") == 0
    assert "No changes." in capsys.readouterr().out


def test_plan_json_is_versioned_and_free_of_secrets(
    cli: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run("plan", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["format"] == "reconciler.plan" and document["version"] == 2
    assert [op["op"] for op in document["ops"]] == ["add_list", "add_user", "add_user"]
    assert len(document["digest"]) == 64
    text = json.dumps(document)
    assert "pw-1000" not in text and "1234" not in text


def test_saved_plan_applies_and_is_refused_when_stale_or_altered(
    cli: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    planfile = cli.dir / "plan.json"
    assert cli.run("plan", "--out", str(planfile)) == 0
    crm_execute(cli.crm, "UPDATE agents SET full_name = 'Changed' WHERE username = '1000'")
    capsys.readouterr()
    assert cli.run("apply", "--yes", str(planfile)) == 1
    assert "saved plan is stale: the CRM data changed" in capsys.readouterr().err
    assert cli.functions() == ["active_lists", "active_lists"]

    assert cli.run("plan", "--out", str(planfile)) == 0
    document = json.loads(planfile.read_text())
    document["ops"][1]["fields"][0][1] = "Tampered"
    altered = cli.dir / "altered.json"
    altered.write_text(json.dumps(document))
    assert cli.run("apply", "--yes", str(altered)) == 1
    assert "altered" in capsys.readouterr().err

    assert cli.run("apply", "--yes", str(planfile)) == 0
    assert cli.run("apply", "--yes", str(planfile)) == 1     # now stale: state moved on
    assert "the state database changed" in capsys.readouterr().err


def test_guard_refusal_and_force(cli: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run("apply", "--yes") == 0
    crm_execute(cli.crm, "DELETE FROM agents")
    capsys.readouterr()
    assert cli.run("apply", "--yes") == 1
    err = capsys.readouterr().err
    assert "refused by safety guards" in err and "--force" in err
    assert all(u["active"] == "Y" for u in cli.sandbox.snapshot()["users"])
    assert cli.run("apply", "--yes", "--force") == 0
    assert all(u["active"] == "N" for u in cli.sandbox.snapshot()["users"])


def test_rejected_rows_exit_3_and_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = [agent("1000"), agent("1001", level=12), agent("1002", team="NIGHTS")]
    for setup in _start(tmp_path, monkeypatch, SandboxDialer(), agents):
        assert setup.run("apply", "--yes") == 3
        out = capsys.readouterr().out
        assert "! users row 2 '1001': agent_user_level must be 1 digit from 1 to 9" in out
        assert "! add_user 1002:" in out and "USER GROUP DOES NOT EXIST" in out


def test_permission_stop_names_the_permission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = SandboxDialer(SandboxData(api_users=(ApiUser("api", "1234", level=7),)))
    for setup in _start(tmp_path, monkeypatch, sandbox):
        assert setup.run("apply", "--yes") == 1
        out = capsys.readouterr().out
        assert "refused" in out and "permission" in out.lower()
        assert "add list" in out.lower()


def test_unreachable_dialer_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for setup in _start(tmp_path, monkeypatch, SandboxDialer(), extra=""):
        setup.server.stop()
        capsys.readouterr()
        assert setup.run("plan", "--detailed-exitcode") == 1
        out = capsys.readouterr().out
        assert out.startswith("No plan: active_lists: cannot talk to the dialer")
        assert len(out.splitlines()) == 1


def test_resync_dry_run_then_resync(cli: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run("apply", "--yes") == 0
    assert cli.run("resync", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "resync plan" in out and "[resync]" in out
    calls_before = len(cli.functions())
    assert cli.run("resync", "--yes") == 0
    assert "converged" in capsys.readouterr().out
    assert cli.functions()[calls_before:].count("update_user") == 2
    assert cli.run("plan", "--detailed-exitcode") == 0


def test_schema_must_be_current(cli: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run("db", "downgrade", "base") == 0
    capsys.readouterr()
    assert cli.run("plan") == 1
    assert "run `reconciler db upgrade`" in capsys.readouterr().err


def test_missing_password_and_bad_config_are_one_line(
    cli: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RECONCILER_DIALER_PASSWORD")
    assert cli.run("plan") == 1
    assert capsys.readouterr().err == (
        "error: dialer password is not set: export RECONCILER_DIALER_PASSWORD or set "
        "dialer.password_file\n")
    good = cli.config.read_text()
    cli.config.write_text(good + "\n[dialer.extra]\n")
    assert cli.run("plan") == 1
    assert capsys.readouterr().err.endswith("reconciler.toml: unknown key dialer.extra\n")
    cli.config.write_text(good.replace('user = "api"', 'user = "api'))
    assert cli.run("plan") == 1
    err = capsys.readouterr().err
    assert "not valid TOML" in err and len(err.splitlines()) == 1


def test_demo_ends_with_no_changes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("No changes.") == 2                  # one target per dialect
    assert out.rstrip().splitlines()[-1].startswith("=== The sandboxes now hold: elision ")
    assert "Reconciler plan for target 'vicidial'" in out
    assert "~ user 1004\n      agent_pass: (changed)" in out
    assert "new-secret-42" not in out


def test_the_demo_does_not_send_the_refused_agent_again(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["demo", "--dir", str(tmp_path)]) == 0
    first, second, final = capsys.readouterr().out.split("\n=== ")[2:5]
    assert "+ user 2005 'Night Owl'" in first
    assert "! add_user 2005: add_user: dialer rejected the request: USER GROUP DOES NOT EXIST" \
        in first
    for later in (second, final):
        assert "user 2005 'Night Owl'" not in later
        assert "! user 2005: rejected by the dialer earlier: add_user: dialer rejected the " \
               "request: USER GROUP DOES NOT EXIST" in later
    applied = [line for line in second.splitlines() if line.startswith("Applied:")]
    assert len(applied) == 2 and all(line.startswith("Applied: ok (") and " rejected" not in
                                     line for line in applied)
    assert [line for line in final.splitlines() if line.startswith("No changes.")] == [
        "No changes. (9 rejected, 1 rejected by the dialer earlier, 2 notes)",   # elision
        "No changes. (9 rejected, 1 rejected by the dialer earlier, 1 note)"]    # vicidial


def test_a_row_held_back_is_no_new_rejection_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = [agent("1000"), agent("1002", team="NIGHTS")]
    for setup in _start(tmp_path, monkeypatch, SandboxDialer(), agents=agents):
        assert setup.run("apply", "--yes") == 3            # the dialer refused 1002 now
        sent = setup.functions().count("add_user")
        capsys.readouterr()
        assert setup.run("apply", "--yes") == 0            # held back: no call, no rejection
        out = capsys.readouterr().out
        assert "! user 1002: rejected by the dialer earlier: add_user:" in out
        assert setup.functions().count("add_user") == sent


def test_a_held_lease_makes_apply_wait_then_exit_1_naming_the_holder(
    cli: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = db.open_engine(f"sqlite:///{cli.dir / 'state.db'}")
    Lease(engine, lease_name("default"), owner="host-b:4242:deadbeef").acquire()
    capsys.readouterr()
    assert cli.run("apply", "--yes", "--lock-wait", "0.3") == 1
    assert "another process holds the write lease 'apply:default': host-b:4242:deadbeef" \
        in capsys.readouterr().err
    assert cli.functions() == []                          # nothing read, nothing sent
    assert cli.run("unlock", "--force") == 0
    assert "was held by host-b:4242:deadbeef" in capsys.readouterr().out
    assert cli.run("apply", "--yes") == 0
    engine.dispose()


def test_an_in_doubt_batch_is_listed_and_resolved_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    leads = [{"id": n, "list_id": "1101", "phone": f"555000{n:04d}", "first_name": None,
              "last_name": None, "city": None, "email": None, "postal_code": None}
             for n in range(1, 4)]
    sandbox = SandboxDialer()
    # A 503 once the request has left: the batch's outcome is unknown.
    sandbox.inject("status", function="add_multi_lead", status=503)
    for setup in _start(tmp_path, monkeypatch, sandbox, leads=leads):
        assert setup.run("apply", "--yes") == 1
        capsys.readouterr()
        assert setup.run("leads", "in-doubt", "--json") == 0
        (batch,) = json.loads(capsys.readouterr().out)
        assert (batch["list_id"], batch["lead_count"]) == ("1101", 3)
        assert setup.run("apply", "--yes") == 0             # never resent on its own
        assert setup.functions().count("add_multi_lead") == 1
        assert setup.run("leads", "resolve", batch["batch_id"], "--not-sent", "--force") == 0
        assert "3 lead(s) forgotten" in capsys.readouterr().out
        assert setup.run("leads", "in-doubt") == 0
        assert "No lead batch is in doubt." in capsys.readouterr().out
        assert setup.run("apply", "--yes") == 0
        assert len(sandbox.snapshot()["leads"]) == 3
        assert setup.run("leads", "resolve", batch["batch_id"], "--sent") == 1
        assert "not in doubt" in capsys.readouterr().err
