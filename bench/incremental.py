"""Incremental lead passes, run by hand, not in CI: `python bench/incremental.py [--leads N]
[--changed M] [--rounds R]`.

A CRM of N leads (default 200,000) with an indexed `updated_at`, every lead recorded as sent
and a mark kept at the newest value: the no-change plan as a full pass (`--full`) beside the
same plan as an incremental pass (target: <= 0.1 x), then an incremental plan after M rows
(default 1,000) were touched. Each plan runs in a fresh child process; the kinds alternate
(full, incremental, full, ...) R times (default 3) and the median of each is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LISTS = ("1101", "1102", "1103", "1104")
SPEC = """
version = 1
[leads]
table = "crm_leads"
key = "id"
change_column = "updated_at"
[leads.fields]
list_id = "list_id"
phone_number = "phone"
first_name = "first_name"
last_name = "last_name"
city = "city"
postal_code = "postal_code"
"""


def stamp(n: int) -> str:
    return f"2026-01-01 00:00:00.{n:06d}" if n < 1_000_000 else f"2026-01-02 {n}"


def build(workdir: Path, count: int) -> None:
    conn = sqlite3.connect(workdir / "crm.db")
    conn.execute("CREATE TABLE crm_leads (id INTEGER PRIMARY KEY, list_id TEXT, phone TEXT, "
                 "first_name TEXT, last_name TEXT, city TEXT, postal_code TEXT, "
                 "updated_at TEXT)")
    conn.executemany("INSERT INTO crm_leads VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
        (n, LISTS[n % len(LISTS)], f"555{n:07d}", "Lee", f"Lead {n}", "Leeds", "LS1 4AP",
         stamp(n)) for n in range(1, count + 1)))
    conn.execute("CREATE INDEX ix_crm_leads_updated_at ON crm_leads (updated_at)")
    conn.commit()
    conn.close()

    import sqlalchemy as sa

    from reconciler.adapters.crm.leads import LeadMapper, stream_leads
    from reconciler.adapters.state import db
    from reconciler.config.spec import load_spec

    engine = db.open_engine(f"sqlite:///{workdir / 'state.db'}")
    db.upgrade(engine)
    engine.dispose()
    (workdir / "spec.toml").write_text(SPEC)
    resource = load_spec(workdir / "spec.toml").leads
    assert resource is not None
    crm = sa.create_engine(f"sqlite:///{workdir / 'crm.db'}")
    mapper = LeadMapper(resource)
    state = sqlite3.connect(workdir / "state.db")
    state.executemany(
        "INSERT INTO shadow_leads (target, lead_key, list_id, fields_digest, status, phone, "
        "updated_at) VALUES ('default', ?, ?, ?, 'sent', ?, '2026-01-01')",
        ((lead.key, lead.list_id, lead.digest, mapper.phone(lead.row))
         for lead in stream_leads(crm, resource, mapper)))
    state.executemany("INSERT INTO shadow_lists (target, list_id, fields, origin, updated_at) "
                      "VALUES ('default', ?, '{}', 'created', '2026-01-01')",
                      [(x,) for x in LISTS])
    now = datetime.now(UTC).isoformat(sep=" ")
    state.execute("INSERT INTO sync_marks (target, resource, mark, mark_type, full_pass_at, "
                  "updated_at) VALUES ('default', 'leads', ?, 'text', ?, ?)",
                  (stamp(count), now, now))
    state.commit()
    state.close()
    crm.dispose()


def touch(workdir: Path, changed: int, count: int) -> None:
    conn = sqlite3.connect(workdir / "crm.db")
    step = max(1, count // changed)
    conn.execute("UPDATE crm_leads SET updated_at = ? WHERE id % ? = 0 AND id <= ?",
                 ("2026-06-01 00:00:00", step, step * changed))
    conn.commit()
    conn.close()


def child_plan(workdir: Path, kind: str) -> dict[str, Any]:
    from reconciler.app.bootstrap import open_context
    from reconciler.app.engine import gather_and_plan
    from reconciler.app.logs import configure_logging
    from reconciler.config.settings import CrmSettings, DialerSettings, Settings, StateSettings
    from reconciler.sandbox import SandboxData, SandboxDialer, SandboxList

    configure_logging(level="WARNING")
    sandbox = SandboxDialer(SandboxData(
        lists=tuple(SandboxList(x, f"Bench list {x}", "TESTCAMP", "Y") for x in LISTS)))
    settings = Settings(
        dialer=DialerSettings(url="http://sandbox/dialer/elision_api.php", user="api",
                              password="1234", source="bench"),
        crm=CrmSettings(f"sqlite:///{workdir / 'crm.db'}"),
        state=StateSettings(url=f"sqlite:///{workdir / 'state.db'}",
                            digest_key_file=workdir / "digest.key"),
        spec_path=workdir / "spec.toml",
    )
    with open_context(settings, transport=sandbox.transport()) as ctx:
        started = time.perf_counter()
        plan = gather_and_plan(ctx, full=kind == "full").plan
        seconds = time.perf_counter() - started
    assert plan.lead_pass is not None and plan.lead_pass.kind == kind, plan.lead_pass
    read = sum(n for _, _, n in plan.lead_counts)
    return {"seconds": seconds, "changes": plan.has_changes, "read": read}


def run_child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_plan(Path(args.child[0]), args.child[1])))
        return
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        work = Path(tmp)
        build(work, args.leads)
        times: dict[str, list[float]] = {"full": [], "incremental": []}
        for _ in range(args.rounds):
            for kind in times:
                result = run_child(str(work), kind)
                assert not result["changes"], result
                times[kind].append(result["seconds"])
        full, quiet = (statistics.median(times[k]) for k in ("full", "incremental"))
        print(f"no-change plan over {args.leads:,} leads, full pass: {full:.3f} s "
              f"(runs {', '.join(f'{t:.3f}' for t in times['full'])})")
        print(f"no-change plan, incremental pass: {quiet:.3f} s "
              f"(runs {', '.join(f'{t:.3f}' for t in times['incremental'])}) "
              f"-> ratio {quiet / full:.3f} (target <= 0.1)")
        touch(work, args.changed, args.leads)
        changed = [run_child(str(work), "incremental") for _ in range(args.rounds)]
        print(f"incremental plan after {args.changed:,} rows touched: "
              f"{statistics.median(r['seconds'] for r in changed):.3f} s, "
              f"{changed[0]['read']:,} rows read")


if __name__ == "__main__":
    main()
