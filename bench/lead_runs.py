"""What bench/leads.py measures: the data it prepares, and each child process it runs.

A child measures one thing in a fresh interpreter and prints one JSON line; `bench/leads.py
--child KIND WORKDIR [DIALER_URL]` runs `child_KIND`.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LISTS = ("1101", "1102", "1103", "1104")
CHANGE_COLUMN = "updated_at"
SPEC = """
version = 1
[leads]
table = "crm_leads"
key = "id"
{extra}
[leads.fields]
list_id = "list_id"
phone_number = "phone"
first_name = "first_name"
last_name = "last_name"
city = "city"
postal_code = "postal_code"
"""
# An incremental spec (docs/incremental.md) and a plain one read the same CRM.
INCREMENTAL_SPEC = SPEC.format(extra=f'change_column = "{CHANGE_COLUMN}"')
FULL_SPEC = SPEC.format(extra="")


# --- data -------------------------------------------------------------------------------------


def build_crm(path: Path, count: int, first_id: int = 1) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS crm_leads (id INTEGER PRIMARY KEY, list_id TEXT, "
                 "phone TEXT, first_name TEXT, last_name TEXT, city TEXT, postal_code TEXT)")
    rows = ((n, LISTS[n % len(LISTS)], f"555{n:07d}", "Lee", f"Lead {n}", "Leeds", "LS1 4AP")
            for n in range(first_id, first_id + count))
    conn.executemany("INSERT INTO crm_leads VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def new_state(workdir: Path) -> None:
    """An empty state database at the head revision, and the plain spec."""
    from reconciler.adapters.state import db

    engine = db.open_engine(f"sqlite:///{workdir / 'state.db'}")
    db.upgrade(engine)
    engine.dispose()
    (workdir / "spec.toml").write_text(FULL_SPEC)


def build_state(workdir: Path, target: str = "default") -> None:
    """Record every CRM lead as sent, with the digest a plan computes: a no-change plan."""
    import sqlalchemy as sa

    from reconciler.adapters.crm.leads import LeadMapper, stream_leads
    from reconciler.config.spec import load_spec

    new_state(workdir)
    leads = load_spec(workdir / "spec.toml").leads
    assert leads is not None
    crm = sa.create_engine(f"sqlite:///{workdir / 'crm.db'}")
    mapper = LeadMapper(leads)
    shadow = ((target, lead.key, lead.list_id, lead.digest, "sent", mapper.phone(lead.row),
               "2026-01-01") for lead in stream_leads(crm, leads, mapper))
    state = sqlite3.connect(workdir / "state.db")
    state.executemany("INSERT INTO shadow_leads (target, lead_key, list_id, fields_digest, status, "
                      "phone, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", shadow)
    state.executemany("INSERT INTO shadow_lists (target, list_id, fields, origin, updated_at) "
                      "VALUES (?, ?, '{}', 'created', '2026-01-01')",
                      [(target, x) for x in LISTS])
    state.commit()
    state.close()       # folds the write-ahead log into the file, which copy_workdir copies
    crm.dispose()


def copy_workdir(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("crm.db", "state.db", "spec.toml", STATE_URL):
        if name != STATE_URL or (source / name).exists():
            shutil.copy(source / name, target / name)
    return target


# A workdir holding this file keeps its state in the database it names (`--apply-state`).
STATE_URL = "state_url"


def state_url(workdir: Path) -> str:
    named = workdir / STATE_URL
    return named.read_text().strip() if named.exists() else f"sqlite:///{workdir / 'state.db'}"


def empty_state(workdir: Path) -> None:
    """A state database named by the workdir made empty again, at the head revision: every
    table reconciler made is dropped and made anew (Alembic, down to base and up)."""
    from reconciler.adapters.state import db

    if not (workdir / STATE_URL).exists():
        return
    engine = db.open_engine(state_url(workdir))
    try:
        if db.current_revision(engine) is not None:
            db.downgrade(engine, "base")
        db.upgrade(engine)
    finally:
        engine.dispose()


def change_some(workdir: Path, every: int) -> int:
    """Change one lead in `every` in the CRM after its export (the plan notes it as drift)."""
    conn = sqlite3.connect(workdir / "crm.db")
    changed = conn.execute("UPDATE crm_leads SET city = 'Changed' WHERE id % ? = 0",
                           (every,)).rowcount
    conn.commit()
    conn.close()
    return changed


def add_change_column(workdir: Path) -> None:
    """Give the CRM an indexed `updated_at`, set on every row, and use the incremental spec."""
    conn = sqlite3.connect(workdir / "crm.db")
    conn.execute(f"ALTER TABLE crm_leads ADD COLUMN {CHANGE_COLUMN} TEXT")
    conn.execute(f"UPDATE crm_leads SET {CHANGE_COLUMN} = '2026-01-01 00:00:00'")
    conn.execute(f"CREATE INDEX crm_leads_{CHANGE_COLUMN} ON crm_leads ({CHANGE_COLUMN})")
    conn.commit()
    conn.close()
    (workdir / "spec.toml").write_text(INCREMENTAL_SPEC)


DNC_SECTION = """
[dnc]
table = "crm_dnc"
phone = "phone"
"""


def add_dnc(workdir: Path, phones: int) -> int:
    """Give the CRM an indexed do-not-call table of `phones` phones, 1% of them phones of sent
    leads (found as drift), and name it in the spec. Returns how many are phones of leads."""
    matching = max(phones // 100, 1)
    conn = sqlite3.connect(workdir / "crm.db")
    conn.execute("CREATE TABLE crm_dnc (phone TEXT)")
    conn.execute("CREATE INDEX crm_dnc_phone ON crm_dnc (phone)")
    conn.executemany("INSERT INTO crm_dnc VALUES (?)", (
        (f"555{n * 97 + 1:07d}" if n < matching else f"444{n:07d}",) for n in range(phones)))
    conn.commit()
    conn.close()
    spec = workdir / "spec.toml"
    spec.write_text(spec.read_text() + DNC_SECTION)
    return matching


def incremental_accepted(workdir: Path) -> str | None:
    """None when this build takes `change_column`, else why not."""
    from reconciler.config.spec import load_spec
    from reconciler.errors import SpecError

    path = workdir / "incremental-check.toml"
    path.write_text(INCREMENTAL_SPEC)
    try:
        leads = load_spec(path).leads
    except SpecError as exc:
        return str(exc)
    if getattr(leads, "change_column", None) != CHANGE_COLUMN:
        return "the spec loads, but its [leads] has no change_column"
    return None


def settings_for(workdir: Path, dialer_url: str) -> Any:
    from reconciler.config.settings import CrmSettings, DialerSettings, Settings, StateSettings

    return Settings(
        dialer=DialerSettings(url=dialer_url, user="api", password="1234", source="bench"),
        crm=CrmSettings(f"sqlite:///{workdir / 'crm.db'}"),
        state=StateSettings(url=state_url(workdir), digest_key_file=workdir / "digest.key"),
        spec_path=workdir / "spec.toml",
    )


# --- child processes: each returns what it measured -------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scan(workdir: Path, crm_sql: str, state_sql: str) -> dict[str, Any]:
    started = time.perf_counter()
    rows = 0
    for path, sql in ((workdir / "crm.db", crm_sql), (workdir / "state.db", state_sql)):
        conn = sqlite3.connect(path)
        for _ in conn.execute(sql):
            rows += 1
        conn.close()
    return {"seconds": time.perf_counter() - started, "rows": rows, "rss_mb": peak_rss_mb()}


def child_scan(workdir: Path) -> dict[str, Any]:
    """The floor of a plan: both tables read in the order the merge needs (text keys), the
    state's through its primary key (target, key), as the plan reads it, not sorted: 0.1 s
    less at 1,000,000 leads than `ORDER BY lead_key` alone, which sorts the table."""
    return _scan(workdir, "SELECT * FROM crm_leads ORDER BY CAST(id AS TEXT)",
                 "SELECT lead_key, list_id, fields_digest, status FROM shadow_leads "
                 "WHERE target = 'default' ORDER BY lead_key")


def child_plain_scan(workdir: Path) -> dict[str, Any]:
    """Both tables read in whatever order SQLite likes: no sorting at all."""
    return _scan(workdir, "SELECT * FROM crm_leads",
                 "SELECT lead_key, list_id, fields_digest, status FROM shadow_leads")


def child_plan(workdir: Path, dialer_url: str) -> dict[str, Any]:
    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import gather_and_plan
    from reconciler.app.logs import configure_logging

    configure_logging(level="WARNING")
    with open_context(settings_for(workdir, dialer_url)) as ctx:
        started = time.perf_counter()
        plan = gather_and_plan(ctx).plan
        seconds = time.perf_counter() - started
    states: dict[str, int] = {}
    for _list, state, n in plan.lead_counts:
        states[state] = states.get(state, 0) + n
    lead_pass = getattr(plan, "lead_pass", None)
    return {"seconds": seconds, "changes": plan.has_changes, "states": states,
            "notes": len(plan.notes), "pass": getattr(lead_pass, "kind", "full"),
            "rss_mb": peak_rss_mb()}


def child_settle(workdir: Path, dialer_url: str) -> dict[str, Any]:
    """Bring the state to "no change" as a real apply does: it plans (a full pass, the first
    time) and applies, which keeps the high-water mark an incremental pass starts from."""
    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import apply_plan, gather_and_plan
    from reconciler.app.logs import configure_logging

    configure_logging(level="WARNING")
    with open_context(settings_for(workdir, dialer_url)) as ctx:
        gathered = gather_and_plan(ctx)
        report = apply_plan(ctx, gathered)
    return {"changes": gathered.plan.has_changes, "outcome": report.outcome,
            "counts": report.counts}


def child_apply(workdir: Path, dialer_url: str) -> dict[str, Any]:
    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import apply_plan, gather_and_plan
    from reconciler.app.logs import configure_logging

    configure_logging(level="WARNING")
    empty_state(workdir)
    with open_context(settings_for(workdir, dialer_url)) as ctx:
        started, cpu = time.perf_counter(), time.process_time()
        gathered = gather_and_plan(ctx)
        planned = time.process_time()
        report = apply_plan(ctx, gathered)
        seconds = time.perf_counter() - started
    batches = sum(op.kind == "add_leads" for op in gathered.plan.ops)
    return {"seconds": seconds, "outcome": report.outcome, "batches": batches,
            "cpu_plan": planned - cpu, "cpu_send": time.process_time() - planned}


def child_bare(workdir: Path, dialer_url: str) -> dict[str, Any]:
    """The floor of an apply: the same batches, prepared in advance, posted in a plain httpx
    loop."""
    import httpx

    from reconciler.adapters.state.leads import LeadBook
    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import gather_and_plan
    from reconciler.app.lead_plan import merged_leads
    from reconciler.app.logs import configure_logging
    from reconciler.core.leads.batching import lead_json
    from reconciler.core.leads.merge import LeadBatch

    configure_logging(level="WARNING")
    empty_state(workdir)
    with open_context(settings_for(workdir, dialer_url)) as ctx:
        gathered = gather_and_plan(ctx)
        assert ctx.spec.leads is not None and gathered.leads is not None
        bodies = [
            {"source": "bench", "user": "api", "pass": "1234", "function": "add_multi_lead",
             "multi_leads": "[" + ",".join(lead_json(f) for _, f, _ in e.items) + "]"}
            for e in merged_leads(ctx.crm, ctx.spec.leads, LeadBook(ctx.store), gathered.leads)
            if isinstance(e, LeadBatch)]
    with httpx.Client(timeout=60) as client:
        started, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            client.post(dialer_url, data=body).raise_for_status()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "batches": len(bodies), "cpu_send": time.process_time() - cpu}


def start_seconds(command: list[str]) -> float:
    """The wall time of one process, from fork to exit."""
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


# --- the sandbox dialer, in a process of its own ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess:
    """`reconciler sandbox` in its own process, so the dialer does not share our CPU time;
    it holds the bench's lists."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "--log-level", "ERROR", "sandbox",
             "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/dialer/elision_api.php"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        self.setup_lists()

    def setup_lists(self) -> None:
        import httpx

        for list_id in LISTS:
            httpx.post(self.url, data={"source": "bench", "user": "api", "pass": "1234",
                                       "function": "add_list", "list_id": list_id,
                                       "list_name": f"Bench list {list_id}",
                                       "campaign_id": "TESTCAMP", "active": "Y"}
                       ).raise_for_status()

    def cpu_seconds(self) -> float | None:
        """CPU time the sandbox process has used so far (Linux's /proc); None elsewhere."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def add_multi_lead_calls(self) -> int:
        import httpx

        calls = httpx.get(f"http://127.0.0.1:{self.port}/_sandbox/state", timeout=60).json()
        return sum(c["function"] == "add_multi_lead" for c in calls["calls"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
