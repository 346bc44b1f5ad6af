"""Secrets: a canary API password and canary agent passwords, found nowhere reconciler writes.

One story through every command that talks, over loopback HTTP (GET, which puts `pass=` in
every URL, and POST): plan (text, JSON, saved file), apply, a password change, resync, lead
batches left in doubt, status, history, show, `leads in-doubt`, the daemon's /metrics and
/healthz, and the failures where the dialer itself echoes a password (a bad login, add_list's
permission error, add_user's success line). Everything is collected: stdout and stderr of
each command (JSON log lines included), every standard-library log record at DEBUG (httpx's
request lines carry the URL), exception texts with their tracebacks, the plan file, every row
of every table of the state database and the database file's raw bytes. No canary may be in
any of it.

The other proof tests hold canaries too (agent passwords in test_crashes.py and
test_faults.py, the API password in test_faults.py) and check their own outputs.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.adapters.dialer.client import ElisionClient
from reconciler.adapters.state import db
from reconciler.app.bootstrap import open_context
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.app.logs import configure_logging
from reconciler.cli.commands import common
from reconciler.cli.main import main
from reconciler.config.load import load_settings
from reconciler.config.settings import DaemonSettings, DialerSettings
from reconciler.daemon.endpoint import Endpoint
from reconciler.daemon.scheduler import Daemon
from reconciler.demo import crm as democrm
from reconciler.errors import DialerError, DialerRefused, ReconcilerError
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer, SandboxList
from reconciler.sandbox.server import start_background
from tests.helpers import EXAMPLE_SPEC, agent, crm_execute, make_crm
from tests.proof.support import (
    CANARY_API,
    agent_canary,
    assert_no_canary,
    dump_database,
    sqlite_files,
)

AGENTS = [agent(f"10{n:02d}", password=agent_canary(n)) for n in range(6)]
NEW_PASSWORDS = {a["username"]: agent_canary(50 + n) for n, a in enumerate(AGENTS)}
CANARIES = [CANARY_API, *(a["password"] for a in AGENTS), *NEW_PASSWORDS.values()]
LISTS = [{"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}]


@dataclass
class Story:
    dir: Path
    crm: str
    state_url: str
    capsys: pytest.CaptureFixture[str]
    collected: list[tuple[str, str]] = field(default_factory=list)   # (where, text)
    out: str = ""                                                     # the last stdout
    last: str = "start"                                               # the last command
    log: io.StringIO = field(default_factory=io.StringIO)   # logs of calls made in process

    def config(self, url: str, method: str, name: str = "reconciler.toml") -> Path:
        path = self.dir / name
        path.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
[dialer]
url = "{url}"
user = "api"
source = "secrets"
method = "{method}"
backoff_base = 0
max_retries = 1
[crm]
url = "{self.crm}"
[state]
url = "{self.state_url}"
digest_key_file = "{self.dir / 'digest.key'}"
""", encoding="utf-8")
        return path

    def run(self, config: Path, *args: str) -> int:
        self.keep_output("before")
        code = main(["--config", str(config), "--log-format", "json", "--log-level", "DEBUG",
                     *args])
        captured = self.capsys.readouterr()
        self.last = " ".join(args)
        self.out = captured.out
        self.keep(f"`{' '.join(args)}` stdout", captured.out)
        self.keep(f"`{' '.join(args)}` stderr", captured.err)
        return code

    def keep_output(self, when: str) -> None:
        """What was printed or logged outside any command (engine calls, daemon threads)."""
        captured = self.capsys.readouterr()
        self.keep(f"stdout {when} `{self.last}`", captured.out)
        self.keep(f"stderr {when} `{self.last}`", captured.err)

    def keep(self, where: str, text: str) -> None:
        self.collected.append((where, text))

    def keep_exception(self, where: str, exc: BaseException) -> None:
        self.keep(f"{where}: str", str(exc))
        self.keep(f"{where}: repr", repr(exc))
        self.keep(f"{where}: args", repr(exc.args))
        self.keep(f"{where}: traceback", "".join(traceback.format_exception(exc)))

    def log_to_buffer(self) -> None:
        """For calls made in process: JSON log lines into a buffer, at DEBUG, with no secret
        handed to the scrubber (so that what is masked, is masked at the source)."""
        configure_logging(json=True, level="DEBUG", stream=self.log)

    def check(self, caplog: pytest.LogCaptureFixture) -> None:
        self.keep_output("after")
        self.keep("in-process log lines", self.log.getvalue())
        for record in caplog.records:
            self.keep(f"log record {record.name}", record.getMessage() + (
                "\n" + record.exc_text if record.exc_text else ""))
        engine = db.open_engine(self.state_url)
        try:
            self.keep("state database rows", dump_database(engine))
        finally:
            engine.dispose()
        self.keep("state database file", sqlite_files(self.state_url).decode("latin-1"))
        for where, text in self.collected:
            assert_no_canary(where, text, CANARIES)


@pytest.fixture
def story(tmp_path: Path, capsys: pytest.CaptureFixture[str],
          caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Story]:
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", CANARY_API)
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    configure = common.configure_logging

    def loudest(**kwargs: Any) -> None:
        # The CLI quiets httpx, whose INFO lines hold each request's URL; let them through,
        # so that the redacting filter on them is what keeps the password out.
        configure(**kwargs)
        logging.getLogger("httpx").setLevel(logging.DEBUG)
        logging.getLogger("httpcore").setLevel(logging.DEBUG)

    monkeypatch.setattr(common, "configure_logging", loudest)
    caplog.set_level(logging.DEBUG)
    crm = make_crm(tmp_path, AGENTS, LISTS,
                   democrm.sample_leads(40, ("1101",)))
    found = Story(tmp_path, crm, f"sqlite:///{tmp_path / 'state.db'}", capsys)
    yield found
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_canary_in_any_output_of_a_whole_story(
    method: str, story: Story, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = SandboxDialer(SandboxData(api_users=(ApiUser("api", CANARY_API),)))
    with start_background(sandbox) as server:
        config = story.config(server.url, method)
        assert story.run(config, "db", "upgrade") == 0
        plan_file = story.dir / "plan.json"
        assert story.run(config, "plan", "--detailed-exitcode") == 2
        assert story.run(config, "plan", "--json", "--out", str(plan_file)) == 0
        story.keep("saved plan", plan_file.read_text())
        # add_user's success line echoes each agent's password.
        sandbox.inject("drop", function="add_multi_lead")      # one batch left in doubt
        assert story.run(config, "apply", "--yes", str(plan_file)) == 1
        assert all(sandbox.store.check_password(a["username"], a["password"]) for a in AGENTS)

        for username, password in NEW_PASSWORDS.items():
            crm_execute(story.crm, "UPDATE agents SET password = :p WHERE username = :u",
                        p=password, u=username)
        assert story.run(config, "plan", "--out", str(plan_file)) == 0
        story.keep("saved plan after the password change", plan_file.read_text())
        assert "(changed)" in plan_file.read_text()
        assert story.run(config, "apply", "--yes", "--force", str(plan_file)) == 0
        assert story.run(config, "resync", "--dry-run", "--json") == 0
        assert story.run(config, "resync", "--yes", "--force") == 0
        assert all(sandbox.store.check_password(u, p) for u, p in NEW_PASSWORDS.items())

        for args in (("status",), ("history",), ("leads", "in-doubt")):
            assert story.run(config, *args) == 0
        assert story.run(config, "leads", "in-doubt", "--json") == 0
        assert len(json.loads(story.out)) == 1
        assert story.run(config, "status", "--json") == 0
        assert len(json.loads(story.out)["in_doubt_batches"]) == 1
        assert story.run(config, "history", "--json") == 0
        for run in json.loads(story.out):
            assert story.run(config, "show", run["run_id"]) == 0
            assert story.run(config, "show", run["run_id"], "--json") == 0

        metrics_and_health(story, config)
    story.check(caplog)


def metrics_and_health(story: Story, config: Path) -> None:
    """The daemon's endpoint, after a daemon run over the same state."""
    settings = load_settings(config)
    story.log_to_buffer()
    with open_context(settings) as ctx:
        daemon = Daemon(ctx, DaemonSettings(interval=3600))
        endpoint = Endpoint(daemon, "trigger-token-" + "9" * 20).start()
        try:
            assert daemon.runner.run() in ("ok", "partial")
            assert '"run_finished"' in story.log.getvalue()      # the buffer does get the log
            for path in ("/metrics", "/healthz"):
                answer = httpx.get(endpoint.url + path, timeout=10)
                assert answer.status_code == 200
                story.keep(path, answer.text)
                if path == "/metrics":
                    assert 'reconciler_lead_batches_in_doubt{target="default"} 1' in answer.text
        finally:
            endpoint.stop()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_canary_where_the_dialer_echoes_it(
    method: str, story: Story, caplog: pytest.LogCaptureFixture
) -> None:
    """The dialer's own echoes: a bad login (`|api|<password>|BAD|`) and add_list's permission
    error (`"password": "<password>"`), through the CLI, the engine and the client."""
    # The dialer knows another password: ours, sent, comes back in the login error.
    elsewhere = SandboxDialer(SandboxData(api_users=(ApiUser("api", "Other-Pw-1"),)))
    # The password is right, but the API user may not add lists.
    no_lists = SandboxDialer(SandboxData(api_users=(
        ApiUser("api", CANARY_API, can_modify_lists=False),)))
    with start_background(elsewhere) as bad_login, start_background(no_lists) as refusing:
        config = story.config(bad_login.url, method)
        assert story.run(config, "db", "upgrade") == 0
        assert story.run(config, "plan") == 1
        assert story.run(config, "apply", "--yes") == 1
        settings = DialerSettings(url=bad_login.url, user="api", password=CANARY_API,
                                  source="secrets", method=method)  # type: ignore[arg-type]
        story.log_to_buffer()
        with ElisionClient(settings) as client, pytest.raises(DialerRefused) as refused:
            client.active_lists()
        story.keep_exception("bad login", refused.value)
        assert "dialer_call" in story.log.getvalue()

        config = story.config(refusing.url, method, "refusing.toml")
        assert story.run(config, "apply", "--yes") == 1
        assert "add_list" in [c["function"] for c in no_lists.snapshot()["calls"]]
        story.log_to_buffer()
        with open_context(load_settings(config)) as ctx:
            gathered = gather_and_plan(ctx)
            report = apply_plan(ctx, gathered)
            story.keep("report of the refused run", repr(report))
            assert report.outcome == "refused" and "permission" in report.message.lower()
            try:
                ctx.dialer.add_list("1199", "Secret Echo List", "TESTCAMP")
            except DialerError as exc:
                story.keep_exception("add_list refused", exc)
            else:  # pragma: no cover
                raise AssertionError("add_list was not refused")
        # A password written in the settings file is refused without being repeated.
        leaky = story.dir / "leaky.toml"
        leaky.write_text(config.read_text().replace('user = "api"',
                                                    f'user = "api"\npassword = "{CANARY_API}"'))
        assert story.run(leaky, "plan") == 1
        try:
            load_settings(leaky)
        except ReconcilerError as exc:
            story.keep_exception("password in the settings file", exc)
    story.check(caplog)


def test_a_lead_id_equal_to_the_api_password_is_recorded_as_the_dialer_gave_it() -> None:
    sandbox = SandboxDialer(SandboxData(api_users=(ApiUser("api", "1234"),),
                                        first_lead_id=1234))
    sandbox.store.insert_list(SandboxList("1101", "Spring Renewals", "TESTCAMP", "Y"))
    settings = DialerSettings(url="http://sandbox/dialer/elision_api.php", user="api",
                              password="1234", source="secrets")
    with ElisionClient(settings, transport=sandbox.transport()) as client:
        (outcome,) = client.add_multi_lead([{"phone_number": "5550100001", "list_id": "1101"}])
    assert outcome.lead_id == "1234"
