"""Do-not-call benchmark, run by hand, not in CI: `python bench/dnc.py [--leads N]
[--new M] [--dnc K] [--repeat R]`.

What the DNC costs a plan, each plan in a fresh child process, with and without `[dnc]`,
interleaved (A B A B ...) and the median of R taken:

1. A no-change plan over N leads (default 200,000) already sent, with a DNC table of K phones
   (default 10,000; 1% of them phones of sent leads, so drift is found too). Target: <= 1.1 x
   the same plan without `[dnc]`.
2. A plan of M new leads (default 20,000) beside the N sent: the check of leads about to be sent,
   one indexed query per chunk of 500.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lead_runs as runs

REPO = Path(__file__).resolve().parents[1]
LISTS, SPEC = runs.LISTS, runs.FULL_SPEC
DNC = """
[dnc]
table = "crm_dnc"
phone = "phone"
list_id = "list_id"
"""


def build(workdir: Path, sent: int, new: int, dnc: int) -> None:
    """A CRM of `sent` + `new` leads and a DNC of `dnc` phones; a state with `sent` recorded."""
    import sqlalchemy as sa

    from reconciler.adapters.crm.leads import LeadMapper, stream_leads
    from reconciler.adapters.state import db
    from reconciler.config.spec import load_spec

    conn = sqlite3.connect(workdir / "crm.db")
    conn.execute("CREATE TABLE crm_leads (id INTEGER PRIMARY KEY, list_id TEXT, phone TEXT, "
                 "first_name TEXT, last_name TEXT, city TEXT, postal_code TEXT)")
    conn.executemany("INSERT INTO crm_leads VALUES (?, ?, ?, ?, ?, ?, ?)", (
        (n, LISTS[n % len(LISTS)], f"555{n:07d}", "Lee", f"Lead {n}", "Leeds", "LS1 4AP")
        for n in range(1, sent + 1)))
    conn.execute("CREATE TABLE crm_dnc (phone TEXT, list_id TEXT)")
    conn.execute("CREATE INDEX ix_crm_dnc_phone ON crm_dnc (phone)")
    matching = max(dnc // 100, 1)            # phones of sent leads: found as drift
    conn.executemany("INSERT INTO crm_dnc VALUES (?, NULL)", (
        (f"555{(n + 1) * (sent // matching):07d}" if n < matching else f"777{n:07d}",)
        for n in range(dnc)))
    conn.commit()
    (workdir / "spec.toml").write_text(SPEC)
    (workdir / "spec-dnc.toml").write_text(SPEC + DNC)
    state_url = f"sqlite:///{workdir / 'state.db'}"
    engine = db.open_engine(state_url)
    db.upgrade(engine)
    engine.dispose()
    resource = load_spec(workdir / "spec.toml").leads
    assert resource is not None
    crm = sa.create_engine(f"sqlite:///{workdir / 'crm.db'}")
    mapper = LeadMapper(resource)
    state = sqlite3.connect(workdir / "state.db")
    state.executemany(
        "INSERT INTO shadow_leads (target, lead_key, list_id, fields_digest, status, phone, "
        "dialer_lead_id, updated_at) VALUES ('default', ?, ?, ?, 'sent', ?, ?, '2026-01-01')",
        ((x.key, x.list_id, x.digest, mapper.phone(x.row), x.key)
         for x in stream_leads(crm, resource, mapper)))
    state.executemany("INSERT INTO shadow_lists (target, list_id, fields, origin, updated_at) "
                      "VALUES ('default', ?, '{}', 'created', '2026-01-01')",
                      [(x,) for x in LISTS])
    state.commit()
    crm.dispose()
    conn.executemany("INSERT INTO crm_leads VALUES (?, ?, ?, ?, ?, ?, ?)", (
        (n, LISTS[n % len(LISTS)], f"555{n:07d}", "Lee", f"Lead {n}", "Leeds", "LS1 4AP")
        for n in range(sent + 1, sent + new + 1)))
    conn.commit()
    conn.close()


def child_plan(workdir: Path, spec: str) -> dict[str, Any]:
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
        spec_path=workdir / spec,
    )
    with open_context(settings, transport=sandbox.transport()) as ctx:
        started = time.perf_counter()
        gathered = gather_and_plan(ctx)
        seconds = time.perf_counter() - started
        plan = gathered.plan
        dnc_seconds = time_dnc(ctx, gathered)
    counts: dict[str, int] = {}
    for _, state, n in plan.lead_counts:
        counts[state] = counts.get(state, 0) + n
    drift = sum(len(n.keys) for n in plan.notes if n.topic == "dnc_drift")
    return {"seconds": seconds, "counts": counts, "drift": drift, "dnc_seconds": dnc_seconds}


def time_dnc(ctx: Any, gathered: Any) -> float:
    """The DNC's own part of the plan, timed alone (steadier than a difference of two plans on
    a busy machine): drift, and the check of every lead the plan sends or held back for it."""
    from reconciler.adapters.crm.dnc import DncSource
    from reconciler.adapters.state.dnc import DncBook
    from reconciler.app import dnc

    if ctx.spec.dnc is None or gathered.leads is None:
        return 0.0
    started = time.perf_counter()
    source = DncSource(ctx.crm, ctx.spec.dnc)
    campaigns = dnc.campaigns_of(gathered.desired, ctx.store.load_recorded(), _no_lists())
    dnc.find_drift(source, DncBook(ctx.store), campaigns, ctx.spec.leads)
    check = dnc.dnc_check(source, campaigns)
    keys = [k for op in gathered.plan.ops if op.kind == "add_leads" for k in op.keys]
    for start in range(0, len(keys), 500):     # as the merge asks: a chunk of 500 at a time
        check({("1101", f"555{int(k):07d}") for k in keys[start:start + 500]})
    return time.perf_counter() - started


def _no_lists() -> Any:
    from reconciler.core.model import Observed
    return Observed({})


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                          capture_output=True, text=True, cwd=REPO)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare(workdir: Path, repeat: int) -> tuple[float, float, dict[str, Any]]:
    """Median seconds without and with [dnc], measured interleaved; the last result with."""
    without: list[float] = []
    with_dnc: list[float] = []
    alone: list[float] = []
    last: dict[str, Any] = {}
    for _ in range(repeat):
        without.append(run_child(str(workdir), "spec.toml")["seconds"])
        last = run_child(str(workdir), "spec-dnc.toml")
        with_dnc.append(last["seconds"])
        alone.append(last["dnc_seconds"])
    last["dnc_seconds"] = statistics.median(alone)
    return statistics.median(without), statistics.median(with_dnc), last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--new", type=int, default=20_000)
    parser.add_argument("--dnc", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("WORKDIR", "SPEC"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_plan(Path(args.child[0]), args.child[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, new in (("no-change", 0), ("new leads", args.new)):
            workdir = Path(tmp) / name.replace(" ", "-")
            workdir.mkdir()
            build(workdir, args.leads, new, args.dnc)
            without, with_dnc, last = compare(workdir, args.repeat)
            what = (f"no-change plan over {args.leads:,} leads" if not new else
                    f"plan of {new:,} new leads beside {args.leads:,} sent")
            print(f"{what} with DNC of {args.dnc:,} phones / without: {with_dnc:.2f} s / "
                  f"{without:.2f} s = {with_dnc / without:.3f} "
                  f"(median of {args.repeat}; with: {last['counts']}, drift {last['drift']})")
            print(f"  the DNC's part alone: {last['dnc_seconds']:.3f} s = "
                  f"{last['dnc_seconds'] / without:.1%} of the plan without it")


if __name__ == "__main__":
    main()
