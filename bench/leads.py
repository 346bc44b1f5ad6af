"""Lead benchmark, run by hand, not in CI: `python bench/leads.py [--plan-leads N]
[--apply-leads M]`.

1. A no-change plan over N leads (default 1,000,000) already recorded as sent, beside a bare
   scan of the same two tables with the stdlib sqlite3 module. Target: plan <= 1.5 x scan,
   peak RSS <= 150 MB. Each is measured in a fresh child process, so peaks do not mix.
2. An apply of M new leads (default 100,000) to the sandbox over loopback HTTP, beside a bare
   httpx loop posting the same prepared batches to a fresh sandbox. Target: <= 1.3 x; the API
   calls made must be the minimum, sum over lists of ceil(leads / batch size).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LISTS = ("1101", "1102", "1103", "1104")
SPEC = """
version = 1
[leads]
table = "crm_leads"
key = "id"
[leads.fields]
list_id = "list_id"
phone_number = "phone"
first_name = "first_name"
last_name = "last_name"
city = "city"
postal_code = "postal_code"
"""


def build_crm(path: Path, count: int, first_id: int = 1) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS crm_leads (id INTEGER PRIMARY KEY, list_id TEXT, "
                 "phone TEXT, first_name TEXT, last_name TEXT, city TEXT, postal_code TEXT)")
    rows = ((n, LISTS[n % len(LISTS)], f"555{n:07d}", "Lee", f"Lead {n}", "Leeds", "LS1 4AP")
            for n in range(first_id, first_id + count))
    conn.executemany("INSERT INTO crm_leads VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def build_state(workdir: Path, target: str) -> None:
    """Record every CRM lead as sent, with the digest a plan computes: a no-change plan."""
    import sqlalchemy as sa

    from reconciler.adapters.crm.leads import LeadMapper, stream_leads
    from reconciler.adapters.state import db
    from reconciler.config.spec import load_spec

    state_url = f"sqlite:///{workdir / 'state.db'}"
    engine = db.open_engine(state_url)
    db.upgrade(engine)
    engine.dispose()
    (workdir / "spec.toml").write_text(SPEC)
    resource = load_spec(workdir / "spec.toml").leads
    assert resource is not None
    crm = sa.create_engine(f"sqlite:///{workdir / 'crm.db'}")
    mapper = LeadMapper(resource)
    shadow = ((target, lead.key, lead.list_id, lead.digest, "sent", mapper.phone(lead.row),
               "2026-01-01") for lead in stream_leads(crm, resource, mapper))
    state = sqlite3.connect(workdir / "state.db")
    state.executemany("INSERT INTO shadow_leads (target, lead_key, list_id, fields_digest, status, "
                      "phone, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", shadow)
    state.executemany("INSERT INTO shadow_lists (target, list_id, fields, origin, updated_at) "
                      "VALUES (?, ?, '{}', 'created', '2026-01-01')",
                      [(target, x) for x in LISTS])
    state.commit()
    crm.dispose()


def settings_for(workdir: Path, dialer_url: str) -> Any:
    from reconciler.config.settings import CrmSettings, DialerSettings, Settings, StateSettings

    (workdir / "spec.toml").write_text(SPEC)
    return Settings(
        dialer=DialerSettings(url=dialer_url, user="api", password="1234", source="bench"),
        crm=CrmSettings(f"sqlite:///{workdir / 'crm.db'}"),
        state=StateSettings(url=f"sqlite:///{workdir / 'state.db'}",
                            digest_key_file=workdir / "digest.key"),
        spec_path=workdir / "spec.toml",
    )


# --- child processes: each prints one JSON line ------------------------------------------------


def child_scan(workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    rows = 0
    for path, sql in ((workdir / "crm.db", "SELECT * FROM crm_leads ORDER BY CAST(id AS TEXT)"),
                      (workdir / "state.db", "SELECT lead_key, list_id, fields_digest, status "
                                             "FROM shadow_leads ORDER BY lead_key")):
        conn = sqlite3.connect(path)
        for _ in conn.execute(sql):
            rows += 1
        conn.close()
    return {"seconds": time.perf_counter() - started, "rows": rows, "rss_mb": peak_rss_mb()}


def child_plan(workdir: Path) -> dict[str, Any]:
    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import gather_and_plan
    from reconciler.app.logs import configure_logging
    from reconciler.sandbox import SandboxData, SandboxDialer, SandboxList

    configure_logging(level="WARNING")
    sandbox = SandboxDialer(SandboxData(
        lists=tuple(SandboxList(x, f"Bench list {x}", "TESTCAMP", "Y") for x in LISTS)))
    settings = settings_for(workdir, "http://sandbox/dialer/elision_api.php")
    with open_context(settings, transport=sandbox.transport()) as ctx:
        started = time.perf_counter()
        plan = gather_and_plan(ctx).plan
        seconds = time.perf_counter() - started
    sent = sum(n for _, state, n in plan.lead_counts if state == "sent")
    return {"seconds": seconds, "changes": plan.has_changes, "sent": sent,
            "rss_mb": peak_rss_mb()}


def child_apply(workdir: Path, dialer_url: str) -> dict[str, Any]:
    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import apply_plan, gather_and_plan
    from reconciler.app.logs import configure_logging

    configure_logging(level="WARNING")
    settings = settings_for(workdir, dialer_url)
    with open_context(settings) as ctx:
        started = time.perf_counter()
        gathered = gather_and_plan(ctx)
        report = apply_plan(ctx, gathered)
        seconds = time.perf_counter() - started
    batches = sum(op.kind == "add_leads" for op in gathered.plan.ops)
    return {"seconds": seconds, "outcome": report.outcome, "batches": batches}


def child_bare(workdir: Path, dialer_url: str) -> dict[str, Any]:
    """The floor: the same batches, prepared in advance, posted in a plain httpx loop."""
    import httpx

    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import gather_and_plan, merged_leads
    from reconciler.app.logs import configure_logging
    from reconciler.core.leads.batching import lead_json
    from reconciler.core.leads.merge import LeadBatch

    configure_logging(level="WARNING")
    settings = settings_for(workdir, dialer_url)
    with open_context(settings) as ctx:
        gathered = gather_and_plan(ctx)
        assert ctx.spec.leads is not None and gathered.leads is not None
        from reconciler.adapters.state.leads import LeadBook
        bodies = [
            {"source": "bench", "user": "api", "pass": "1234", "function": "add_multi_lead",
             "multi_leads": "[" + ",".join(lead_json(f) for _, f, _ in e.items) + "]"}
            for e in merged_leads(ctx.crm, ctx.spec.leads, LeadBook(ctx.store), gathered.leads)
            if isinstance(e, LeadBatch)]
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            client.post(dialer_url, data=body).raise_for_status()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "batches": len(bodies)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the parent -------------------------------------------------------------------------------


def run_child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True, cwd=REPO)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess:
    """`reconciler sandbox` in its own process, so the dialer does not share our CPU time."""

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
                                       "campaign_id": "TESTCAMP", "active": "Y"})

    def add_multi_lead_calls(self) -> int:
        import httpx

        calls = httpx.get(f"http://127.0.0.1:{self.port}/_sandbox/state", timeout=60).json()
        return sum(c["function"] == "add_multi_lead" for c in calls["calls"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plan-leads", type=int, default=1_000_000)
    parser.add_argument("--apply-leads", type=int, default=100_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, workdir, *rest = args.child
        result = globals()[f"child_{kind}"](Path(workdir), *rest)
        print(json.dumps(result))
        return

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        work = Path(tmp) / "plan"
        work.mkdir()
        build_crm(work / "crm.db", args.plan_leads)
        build_state(work, "default")
        scan, plan = run_child("scan", str(work)), run_child("plan", str(work))
        assert not plan["changes"] and plan["sent"] == args.plan_leads, plan
        print(f"no-change plan over {args.plan_leads:,} leads: {plan['seconds']:.2f} s, "
              f"peak RSS {plan['rss_mb']:.0f} MB")
        print(f"raw sqlite3 scan of both tables ({scan['rows']:,} rows): {scan['seconds']:.2f} s"
              f" -> ratio {plan['seconds'] / scan['seconds']:.2f} (target <= 1.5; RSS <= 150 MB)")

        for name in ("bare", "apply"):
            work = Path(tmp) / name
            work.mkdir()
            build_crm(work / "crm.db", args.apply_leads)
            from reconciler.adapters.state import db
            engine = db.open_engine(f"sqlite:///{work / 'state.db'}")
            db.upgrade(engine)
            engine.dispose()
        batch = 500
        minimum = sum(math.ceil(len(range(i, args.apply_leads + 1, len(LISTS))) / batch)
                      for i in range(1, len(LISTS) + 1))
        results = {}
        for name in ("bare", "apply"):
            sandbox = SandboxProcess()
            try:
                results[name] = run_child(name, str(Path(tmp) / name), sandbox.url)
                results[name]["calls"] = sandbox.add_multi_lead_calls()
            finally:
                sandbox.stop()
        ours, bare = results["apply"], results["bare"]
        print(f"apply of {args.apply_leads:,} new leads: {ours['seconds']:.2f} s, "
              f"{ours['calls']} add_multi_lead calls (minimum {minimum}), "
              f"outcome {ours['outcome']}")
        print(f"bare httpx loop, same {bare['calls']} batches: {bare['seconds']:.2f} s "
              f"-> ratio {ours['seconds'] / bare['seconds']:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
