"""Crashes: `reconciler apply` killed with SIGKILL at random instants loses nothing and sends
nothing twice.

Each trial serves a sandbox dialer from its own process (so the dialer outlives the crash),
runs `reconciler apply` in a subprocess over a workload of users, lists and thousands of leads,
kills it (once or twice) after a seeded random delay spread over the length of a full apply,
breaks the dead process's lease as an operator would (`reconciler unlock --force`), then applies
again until `plan --detailed-exitcode` says there is nothing left to do. Then the dialer's state
(`/_sandbox/state`) and the state database must agree with the CRM: every user, list and lead
on the dialer exactly once, or recorded as rejected or in doubt; in-doubt batches only where a
kill could have caused them; no agent password anywhere in what reconciler wrote.

A failing trial names its seed in the test id: `pytest 'tests/proof/test_crashes.py::
test_sigkill_at_a_random_instant_loses_and_repeats_nothing[seed=7]'` replays it (the delays
are seeded; where they land depends on the machine's speed, which the calibration follows).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.adapters.state.keyfile import load_or_create_key
from reconciler.adapters.state.leads import LeadBook
from reconciler.adapters.state.schema import lead_batches, runs, shadow_leads
from reconciler.adapters.state.store import StateStore
from reconciler.cli.main import main
from reconciler.demo import crm as democrm
from reconciler.errors import ConfigError
from reconciler.sandbox import SandboxDialer, start_background
from tests.helpers import EXAMPLE_SPEC
from tests.proof.support import (
    REPO,
    SandboxProcess,
    agent_canary,
    assert_no_canary,
    cli_command,
    cli_env,
    dump_database,
)

TRIALS = int(os.environ.get("RECONCILER_CRASH_TRIALS", "20"))
API_PASSWORD = "1234"              # the sandbox process serves its default API account
LEADS_PER_BATCH = 50
LIST_IDS = ("1101", "1102", "1103", "1104")
LEAD_COUNT = 2000
BATCHES = LEAD_COUNT // LEADS_PER_BATCH     # 500 leads per list, 10 batches each
AGENTS = [{**a, "password": agent_canary(n)} for n, a in enumerate(democrm.sample_agents(30))]
# Rows our checks reject: level 12, a name too long, a key on two rows (1003), a key too short.
# (A row the dialer itself refuses would be planned again on every run: it never converges.)
BAD_AGENTS = [{**a, "password": agent_canary(100 + n)}
              for n, a in enumerate(democrm.BAD_AGENTS) if a["team"] != "NIGHTS"]
CANARIES = [a["password"] for a in AGENTS + BAD_AGENTS]
LEADS = [*democrm.sample_leads(LEAD_COUNT, LIST_IDS), *democrm.BAD_LEADS]

VALID_USERS = {a["username"]: a for a in AGENTS if a["username"] != "1003"}
VALID_LISTS = {x["id"]: x for x in democrm.LISTS if x["id"] in LIST_IDS}
VALID_LEADS = {str(x["id"]): x for x in LEADS[:LEAD_COUNT]}
REJECTED = {("users", "2001"), ("users", "2002"), ("users", "1003"), ("users", ""),
            ("lists", "1105"), ("leads", "90001"), ("leads", "90002"), ("leads", "90003"),
            ("leads", "90004")}


@dataclass
class Trial:
    dir: Path
    sandbox: SandboxProcess
    config: Path
    state_url: str
    phases: list[str] = field(default_factory=list)     # where each kill landed

    @classmethod
    def start(cls, directory: Path, sandbox: SandboxProcess) -> Trial:
        try:
            crm = democrm.sqlite_url(directory / "crm.db")
            democrm.create_crm(crm, AGENTS + BAD_AGENTS, democrm.LISTS, LEADS).dispose()
            state_url = f"sqlite:///{directory / 'state.db'}"
            engine = db.open_engine(state_url)
            db.upgrade(engine)
            engine.dispose()
            url = sandbox.wait_ready()
        except BaseException:
            sandbox.stop()
            raise
        config = directory / "reconciler.toml"
        config.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
[dialer]
url = "{url}"
user = "api"
source = "crashproof"
backoff_base = 0
connect_timeout = 5
read_timeout = 30
leads_per_batch = {LEADS_PER_BATCH}
[crm]
url = "{crm}"
[state]
url = "{state_url}"
digest_key_file = "{directory / 'digest.key'}"
""", encoding="utf-8")
        return cls(directory, sandbox, config, state_url)

    def apply_process(self, name: str) -> subprocess.Popen[bytes]:
        with (self.dir / f"{name}.out").open("wb") as out, \
                (self.dir / f"{name}.err").open("wb") as err:
            return subprocess.Popen(
                cli_command("--config", str(self.config), "--log-format", "json", "apply",
                            "--yes"),
                cwd=REPO, env=cli_env(API_PASSWORD), stdin=subprocess.DEVNULL, stdout=out,
                stderr=err)

    def outputs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("*.out"))
                         + sorted(self.dir.glob("*.err")))

    def engine(self) -> sa.Engine:
        return db.open_engine(self.state_url)

    def phase_now(self) -> str:
        functions = Counter(c["function"] for c in self.sandbox.state()["calls"])
        batches = functions["add_multi_lead"]
        if not functions - Counter({"active_lists": functions["active_lists"]}):
            return "before any change"
        if not batches:
            return "users and lists"
        return "leads" if batches < BATCHES else "after the last batch"


class Sandboxes:
    """One sandbox process per trial. The next trial's starts while this one converges, so
    that no trial waits for a Python interpreter to start (nor is slowed by one while the
    apply it kills is running)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.spare: SandboxProcess | None = None

    def take(self) -> SandboxProcess:
        sandbox, self.spare = self.spare or self.new(), None
        return sandbox

    def prepare_next(self) -> None:
        if self.spare is None:
            self.spare = self.new()

    def new(self, *, keep_state: bool = False) -> SandboxProcess:
        return SandboxProcess.start(self.factory.mktemp("sandbox"), keep_state=keep_state)

    def close(self) -> None:
        if self.spare is not None:
            self.spare.stop()


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    pool = Sandboxes(tmp_path_factory)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI in this process (the runs after a crash need not be subprocesses)."""
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", API_PASSWORD)
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)

    def run(config: Path, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--config", str(config), "--log-format", "json", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="module")
def apply_seconds(tmp_path_factory: pytest.TempPathFactory, sandboxes: Sandboxes
                  ) -> list[float]:
    """How long one whole apply of the workload takes here, start to exit: the window that
    the kills are spread over. The uninterrupted run must itself leave everything right.

    A list holding one estimate: a trial whose apply finishes before its kill lowers it, so
    the kills follow the machine when it turns out faster than the calibration saw."""
    trial = Trial.start(tmp_path_factory.mktemp("calibration"), sandboxes.take())
    try:
        # Warm up (first imports, disk cache), so that the measured run is a typical one.
        subprocess.run(cli_command("--config", str(trial.config), "plan"), cwd=REPO,
                       env=cli_env(API_PASSWORD), capture_output=True, timeout=120, check=True)
        started = time.monotonic()
        process = trial.apply_process("full")
        code = process.wait(timeout=120)
        elapsed = time.monotonic() - started
        sandboxes.prepare_next()
        assert code == 0, trial.outputs()[-3000:]       # applied; CRM rejects alone give 0
        check_invariants(trial, kills=0)
    finally:
        trial.sandbox.stop()
    print(f"\ncalibration: one whole apply takes {elapsed:.2f}s")
    return [elapsed]


@dataclass
class Summary:
    kills: list[str] = field(default_factory=list)
    in_doubt: int = 0
    trials: int = 0


SUMMARY = Summary()


@pytest.mark.parametrize("seed", range(TRIALS), ids=lambda s: f"seed={s}")
def test_sigkill_at_a_random_instant_loses_and_repeats_nothing(
    seed: int, apply_seconds: list[float], sandboxes: Sandboxes, tmp_path: Path, cli: Any
) -> None:
    trial = Trial.start(tmp_path, sandboxes.take())
    found = crash_trial(seed, trial, apply_seconds, cli, sandboxes.prepare_next)
    SUMMARY.trials += 1
    SUMMARY.kills += trial.phases
    SUMMARY.in_doubt += found["in_doubt_batches"]


def test_sigkill_while_the_dialer_keeps_its_state_on_disk(
    apply_seconds: list[float], sandboxes: Sandboxes, tmp_path: Path, cli: Any
) -> None:
    """One more trial, the sandbox writing its database file after every call (as a real
    dialer's database would hold what it committed), which also lets the agents' passwords
    be checked byte for byte."""
    trial = Trial.start(tmp_path, sandboxes.new(keep_state=True))
    crash_trial(1000, trial, apply_seconds, cli, lambda: None)


def crash_trial(seed: int, trial: Trial, apply_seconds: list[float], cli: Any,
                meanwhile: Callable[[], None]) -> dict[str, int]:
    rng = random.Random(seed)
    kills_wanted = 2 if rng.random() < 1 / 3 else 1   # the second kill hits the recovery run
    try:
        kills = 0
        for attempt in range(kills_wanted):
            fraction = rng.uniform(0.25, 1.0)
            process = trial.apply_process(f"killed-{attempt}")
            started = time.monotonic()
            try:
                process.wait(timeout=fraction * apply_seconds[0])
                if attempt == 0:     # it finished first: a whole apply is quicker than thought
                    apply_seconds[0] = min(apply_seconds[0], time.monotonic() - started)
            except subprocess.TimeoutExpired:
                process.kill()                      # SIGKILL: no handler, no cleanup
                kills += 1
                trial.phases.append(trial.phase_now())
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(10)
            # The operator's move after a crash: the dead process's lease would block 5 minutes.
            assert cli(trial.config, "unlock", "--force")[0] == 0
        meanwhile()
        converge(trial, cli, seed)
        return check_invariants(trial, kills)
    except AssertionError as exc:
        raise AssertionError(f"seed={seed}, kills landed at {trial.phases}: {exc}") from exc
    finally:
        trial.sandbox.stop()


def converge(trial: Trial, cli: Any, seed: int) -> None:
    """Apply until the plan is empty; in-doubt leads are accounted for, not resent."""
    for _ in range(5):
        code, out, err = cli(trial.config, "apply", "--yes")
        assert_no_canary(f"apply (seed {seed})", out + err, CANARIES)
        assert code == 0, out + err                 # done; the CRM's rejected rows are named
        code, out, err = cli(trial.config, "plan", "--json", "--detailed-exitcode")
        assert_no_canary(f"plan --json (seed {seed})", out + err, CANARIES)
        if code == 0:
            rejected = {(r["resource"], r["key"]) for r in json.loads(out)["rejects"]}
            assert rejected == REJECTED
            return
        assert code == 2, err
    raise AssertionError("apply did not converge in 5 runs")


def check_invariants(trial: Trial, kills: int) -> dict[str, int]:
    dialer = trial.sandbox.state()
    engine = trial.engine()
    try:
        with engine.connect() as conn:
            recorded = {r.lead_key: r for r in conn.execute(sa.select(shadow_leads))}
            batches = list(conn.execute(sa.select(lead_batches)).mappings())
            unfinished = {r.run_id for r in conn.execute(
                sa.select(runs.c.run_id).where(runs.c.finished_at.is_(None)))}
        dump = dump_database(engine)
    finally:
        engine.dispose()

    # Users and lists: every valid CRM row is on the dialer as the CRM says, and nothing else.
    users = {u["agent_user"]: u for u in dialer["users"]}
    assert set(users) == set(VALID_USERS)
    stored = trial.sandbox.passwords() if trial.sandbox.state_file else {}
    for key, row in VALID_USERS.items():
        assert (users[key]["full_name"], users[key]["user_level"], users[key]["active"]) == (
            row["full_name"], row["level"], "Y"), key
        if stored:
            assert stored[key] == row["password"], f"agent {key}: password not as sent"
    lists = {x["list_id"]: x for x in dialer["lists"]}
    assert set(lists) == set(VALID_LISTS)
    for key, row in VALID_LISTS.items():
        assert (lists[key]["list_name"], lists[key]["campaign_id"]) == (row["name"],
                                                                        row["campaign"])

    # Leads: never twice, never one the CRM does not have, each where the CRM puts it.
    held = Counter(x["vendor_lead_code"] for x in dialer["leads"])
    twice = {k: n for k, n in held.items() if n > 1}
    assert not twice, f"leads on the dialer more than once: {sorted(twice)[:20]}"
    assert set(held) <= set(VALID_LEADS)
    on_dialer = {x["vendor_lead_code"]: x for x in dialer["leads"]}
    for key, lead in on_dialer.items():
        assert lead["list_id"] == VALID_LEADS[key]["list_id"], key
    # Every valid lead: on the dialer and recorded sent (with the dialer's own lead id), or in
    # doubt (on the dialer once, or not at all). Nothing is left pending.
    statuses = Counter(r.status for r in recorded.values())
    assert set(statuses) <= {"sent", "in_doubt"}, statuses
    for key in VALID_LEADS:
        record = recorded.get(key)
        assert record is not None, f"lead {key} is neither sent nor in doubt"
        if record.status == "sent":
            assert key in on_dialer, f"lead {key} recorded sent, not on the dialer"
            assert record.dialer_lead_id == str(on_dialer[key]["lead_id"]), key

    # In doubt only where a kill could have caused it: one batch at most per killed run, and
    # only in a run that never finished.
    doubtful = [b for b in batches if b["state"] == "in_doubt"]
    assert len(doubtful) <= kills
    assert {b["run_id"] for b in doubtful} <= unfinished
    assert len({b["run_id"] for b in doubtful}) == len(doubtful)
    in_doubt_keys = {k for k, r in recorded.items() if r.status == "in_doubt"}
    assert len(in_doubt_keys) <= kills * LEADS_PER_BATCH
    assert not [b for b in batches if b["state"] == "intent"]
    # A batch reached the dialer at most once: calls <= batches that may have been sent.
    calls = sum(c["function"] == "add_multi_lead" for c in dialer["calls"])
    answered = sum(b["state"] == "answered" for b in batches)
    assert answered <= calls <= answered + len(doubtful)

    # Nothing reconciler wrote holds an agent password.
    assert_no_canary("the state database", dump, CANARIES)
    assert_no_canary("the apply processes' output", trial.outputs(), CANARIES)
    return {"in_doubt_batches": len(doubtful), "in_doubt_leads": len(in_doubt_keys)}


def test_a_batch_cut_short_is_in_doubt_after_the_next_apply_even_with_nothing_to_do(
    tmp_path: Path, cli: Any
) -> None:
    """A process died between recording a batch's intent and its answer, and the CRM has
    nothing new since: the next `apply` must still mark the batch in doubt, so that `status`
    (and the daemon's /metrics) show it to an operator. It used to stay at `intent`, which
    `status` does not list, when the plan had no changes."""
    crm = democrm.sqlite_url(tmp_path / "crm.db")
    leads = democrm.sample_leads(3, ("1101",))
    democrm.create_crm(crm, [], democrm.LISTS[:1], leads).dispose()
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with start_background(SandboxDialer()) as server:
        config = tmp_path / "reconciler.toml"
        config.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
[dialer]
url = "{server.url}"
user = "api"
[crm]
url = "{crm}"
[state]
url = "{state_url}"
digest_key_file = "{tmp_path / 'digest.key'}"
""", encoding="utf-8")
        assert cli(config, "db", "upgrade")[0] == 0
        assert cli(config, "apply", "--yes")[0] == 0
        engine = db.open_engine(state_url)
        try:
            # What a process killed after recording its intent leaves behind.
            democrm_lead = {**leads[0], "id": 4, "phone": "5550104444"}
            with sa.create_engine(crm).begin() as conn:
                democrm.insert_leads(conn, [democrm_lead])
            store = StateStore(engine, "default")
            batch_id = LeadBook(store).record_intent("killed-run", "1101",
                                                     [("4", {}, "digest-of-lead-4")])
            code, out, _ = cli(config, "apply", "--yes")
            assert code == 0 and "are now in doubt" in out
            code, out, _ = cli(config, "status", "--json")
        finally:
            engine.dispose()
    assert code == 0
    assert [b["batch_id"] for b in json.loads(out)["in_doubt_batches"]] == [batch_id]


def test_a_kill_while_the_digest_key_is_written_leaves_no_broken_key(tmp_path: Path) -> None:
    """The worst instant of the first run on a new machine, hit exactly: the process is killed
    after the key file is opened, before the key is written. (The key used to be written into
    the file in place, so this left an empty file that stopped every later run.)"""
    path = tmp_path / "digest.key"
    killed = subprocess.run([
        sys.executable, "-c",
        "import os, signal, sys; from pathlib import Path; "
        "import reconciler.adapters.state.keyfile as d; "
        "d.os.fdopen = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
        "d.load_or_create_key(Path(sys.argv[1]))", str(path)],
        cwd=REPO, capture_output=True, timeout=60, check=False)
    assert killed.returncode == -9
    assert not path.exists()
    key = load_or_create_key(path)                    # the next run makes a usable key
    assert len(key) == 32 and load_or_create_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    """Two daemons started at once on a new machine: both get the one key on disk, and neither
    reads a key file that is not written yet (which stopped one of them before)."""
    for round_no in range(20):
        path = tmp_path / f"digest-{round_no}.key"
        keys, errors = race_for_key(path, contenders=6)
        assert errors == [] and len(keys) == 6
        assert set(keys) == {load_or_create_key(path)}


def race_for_key(path: Path, contenders: int) -> tuple[list[bytes], list[Exception]]:
    start = threading.Barrier(contenders)
    keys: list[bytes] = []
    errors: list[Exception] = []

    def create() -> None:
        start.wait()
        try:
            keys.append(load_or_create_key(path))
        except ConfigError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return keys, errors


def test_the_kills_landed_all_over_the_run() -> None:
    """Not a guarantee, a check on the test itself: the seeded delays hit every phase."""
    if SUMMARY.trials < TRIALS:
        pytest.skip("runs only after every trial of this module")
    print(f"\n{len(SUMMARY.kills)} kills over {SUMMARY.trials} trials: "
          f"{dict(Counter(SUMMARY.kills))}; {SUMMARY.in_doubt} batch(es) left in doubt")
    landed = Counter(SUMMARY.kills)
    assert len(SUMMARY.kills) >= TRIALS
    assert landed["leads"] >= TRIALS // 4, landed
