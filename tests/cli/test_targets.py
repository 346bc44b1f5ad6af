"""Several dialer targets in one config: `[[targets]]`, routing rows by the spec's `targets`,
one section per target, and a target that is down not stopping the others."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.adapters.state.lease import Lease
from reconciler.app.bootstrap import lease_name
from reconciler.cli.main import main
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer
from reconciler.sandbox.server import BackgroundServer, start_background
from tests.helpers import EXAMPLE_SPEC, agent, make_crm
from tests.proof.support import assert_no_canary, dump_database, sqlite_files

PASSWORDS = {"north": "Canary-North-7f3a", "south": "Canary-South-9c1e"}
LISTS = [
    {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1},
    {"id": "1102", "name": "Win-back 2026", "campaign": "SALES", "is_active": 1},
    {"id": "1103", "name": "Support Callbacks", "campaign": "SUPPORT", "is_active": 1},
]
LEADS = [
    {"id": f"L{n}", "list_id": list_id, "phone": f"555010{n:04d}", "first_name": "A",
     "last_name": "B", "city": "C", "email": None, "postal_code": None}
    for n, list_id in enumerate(["1101", "1101", "1102", "1103"])
]
ROUTING = {
    "users": "'north, south'",
    "lists": "CASE id WHEN '1101' THEN 'north' WHEN '1102' THEN 'south' "
             "WHEN '1103' THEN 'north,south' ELSE campaign END",
    "leads": "CASE list_id WHEN '1101' THEN 'north' WHEN '1102' THEN 'south' "
             "ELSE 'north,south' END",
}


def routed_spec(tmp_path: Path, routing: dict[str, str]) -> Path:
    """The example spec with a `targets` line in each resource given."""
    text = EXAMPLE_SPEC.read_text(encoding="utf-8")
    for resource, expression in routing.items():
        text = text.replace(f"[{resource}]\n", f"[{resource}]\ntargets = \"{expression}\"\n", 1)
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Sites:
    config: Path
    state_url: str
    sandboxes: dict[str, SandboxDialer]
    servers: dict[str, BackgroundServer]

    def run(self, *args: str) -> int:
        return main(["--config", str(self.config), "--log-format", "json", *args])

    def calls(self, name: str, function: str) -> list[dict[str, object]]:
        return [c for c in self.sandboxes[name].snapshot()["calls"]
                if c["function"] == function]

    def leads(self, name: str) -> list[str]:
        return sorted(str(lead["vendor_lead_code"])
                      for lead in self.sandboxes[name].snapshot()["leads"])

    def lists(self, name: str) -> list[str]:
        return sorted(c["params"]["list_id"] for c in self.calls(name, "add_list"))


def _sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, routing: dict[str, str],
           lists: list[dict[str, object]] = LISTS) -> Iterator[Sites]:
    crm = make_crm(tmp_path, [agent("1000"), agent("1001")], lists=lists, leads=LEADS)
    sandboxes = {name: SandboxDialer(SandboxData(api_users=(ApiUser("api", password),)),
                                     mode="vicidial" if name == "south" else "elision")
                 for name, password in PASSWORDS.items()}
    with start_background(sandboxes["north"]) as north, \
            start_background(sandboxes["south"]) as south:
        servers = {"north": north, "south": south}
        targets = "".join(f"""
[[targets]]
name = "{name}"
url = "{servers[name].url}"
user = "api"
dialect = "{'vicidial' if name == 'south' else 'elision'}"
password_env = "RECONCILER_{name.upper()}_PASSWORD"
backoff_base = 0
max_retries = 0
""" for name in PASSWORDS)
        state_url = f"sqlite:///{tmp_path / 'state.db'}"
        config = tmp_path / "reconciler.toml"
        config.write_text(f"""
[reconciler]
spec = "{routed_spec(tmp_path, routing)}"
{targets}
[crm]
url = "{crm}"
[state]
url = "{state_url}"
digest_key_file = "{tmp_path / 'digest.key'}"
""")
        for name, password in PASSWORDS.items():
            monkeypatch.setenv(f"RECONCILER_{name.upper()}_PASSWORD", password)
        monkeypatch.delenv("RECONCILER_DIALER_PASSWORD", raising=False)
        monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
        sites = Sites(config, state_url, sandboxes, servers)
        assert sites.run("db", "upgrade") == 0
        yield sites


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sites]:
    yield from _sites(tmp_path, monkeypatch, ROUTING)


def test_plan_has_one_section_per_target_with_its_routed_rows(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sites.run("plan", "--detailed-exitcode") == 2
    out = capsys.readouterr().out
    north, south = out.split("=== target south ===")
    assert north.startswith("=== target north ===")
    assert "+ list 1101" in north and "+ list 1103" in north and "1102" not in north
    assert "+ list 1102" in south and "+ list 1103" in south and "1101" not in south
    assert "+ user 1000" in north and "+ user 1000" in south


def test_apply_sends_each_row_to_its_targets_exactly_once(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sites.run("apply", "--yes") == 0
    assert sites.lists("north") == ["1101", "1103"]
    assert sites.lists("south") == ["1102", "1103"]
    assert sites.leads("north") == ["L0", "L1", "L3"]       # each once: no duplicate
    assert sites.leads("south") == ["L2", "L3"]
    capsys.readouterr()
    assert sites.run("plan", "--detailed-exitcode") == 0
    assert capsys.readouterr().out.count("No changes.") == 2


def test_json_output_has_one_entry_per_target(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sites.run("plan", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert [t["target"] for t in document["targets"]] == ["north", "south"]
    assert all(t["exit_code"] == 0 for t in document["targets"])
    assert document["targets"][1]["result"]["basis"]["target"] == "south"
    assert sites.run("apply", "--yes", "--target", "south") == 0
    capsys.readouterr()
    assert sites.run("history", "--json") == 0
    history = json.loads(capsys.readouterr().out)["targets"]
    assert [run["kind"] for run in history[0]["result"]] == ["plan"]
    assert [run["kind"] for run in history[1]["result"]] == ["apply", "plan"]
    assert sites.run("status", "--json", "--target", "north") == 0
    status = json.loads(capsys.readouterr().out)["targets"]
    assert [(t["target"], t["result"]["target"]) for t in status] == [("north", "north")]


def test_a_target_that_is_down_does_not_stop_the_others(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    sites.servers["north"].stop()
    assert sites.run("apply", "--yes") == 1
    captured = capsys.readouterr()
    assert "Target north unavailable" in captured.out or "dialer unavailable" in captured.out
    assert sites.lists("south") == ["1102", "1103"]
    assert "error" not in captured.out.split("=== target south ===")[1].lower()


def test_a_lease_held_elsewhere_stops_only_its_target(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = db.open_engine(sites.state_url)
    try:
        Lease(engine, lease_name("south"), owner="elsewhere:1", ttl_seconds=600).try_acquire()
    finally:
        engine.dispose()
    assert sites.run("apply", "--yes") == 1
    out = capsys.readouterr().out
    assert "Target south unavailable: another process holds the write lease" in out
    assert sites.lists("north") == ["1101", "1103"]
    assert sites.calls("south", "add_list") == []


def test_target_option_chooses_and_unknown_names_are_refused(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sites.run("apply", "--yes", "--target", "north") == 0
    assert sites.lists("north") == ["1101", "1103"] and sites.lists("south") == []
    capsys.readouterr()
    assert sites.run("plan", "--target", "west") == 1
    assert "unknown target 'west': the config names north, south" in capsys.readouterr().err
    assert sites.run("plan", "--out", str(sites.config.parent / "p.json")) == 1
    assert "add --target NAME" in capsys.readouterr().err


def test_a_saved_plan_is_applied_to_its_own_target(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = sites.config.parent / "south.json"
    assert sites.run("plan", "--target", "south", "--out", str(saved)) == 0
    assert sites.run("apply", str(saved), "--yes") == 0
    assert sites.lists("south") == ["1102", "1103"] and sites.lists("north") == []


def test_rows_routed_to_no_known_target_are_rejected_with_key_field_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = [*LISTS, {"id": "1104", "name": "Lost Leads", "campaign": "WEST", "is_active": 1},
             {"id": "1105", "name": "Nowhere", "campaign": "", "is_active": 1}]
    for sites in _sites(tmp_path, monkeypatch, ROUTING, lists):
        capsys.readouterr()
        assert sites.run("plan", "--json") == 0
        plans = json.loads(capsys.readouterr().out)["targets"]
        for plan in plans:
            rejects = {(r["resource"], r["key"], r["field"]): r["reason"]
                       for r in plan["result"]["rejects"]}
            assert rejects[("lists", "1104", "targets")] == (
                "names unknown target 'WEST' (the config's targets: north, south)")
            assert rejects[("lists", "1105", "targets")] == (
                "names no target (the config's targets: north, south)")
        assert sites.run("apply", "--yes") == 0
        assert "1104" not in sites.lists("north") + sites.lists("south")


def test_passwords_of_both_targets_are_never_logged_or_stored(
    sites: Sites, capsys: pytest.CaptureFixture[str]
) -> None:
    sites.servers["north"].stop()          # the failure path prints and logs too
    outputs = []
    for args in (("plan",), ("plan", "--json"), ("apply", "--yes"), ("status",), ("history",),
                 ("--log-level", "DEBUG", "resync", "--yes")):
        sites.run(*args)
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    canaries = list(PASSWORDS.values())
    assert_no_canary("command output", "\n".join(outputs), canaries)
    engine = sa.create_engine(sites.state_url)
    try:
        assert_no_canary("state database", dump_database(engine), canaries)
    finally:
        engine.dispose()
    assert_no_canary("state file", sqlite_files(sites.state_url).decode("latin-1"), canaries)
