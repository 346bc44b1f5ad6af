"""Lead benchmark, run by hand, not in CI:

    python bench/leads.py [--plan-leads N] [--apply-leads M] [--repeat R] [--rows ROW,...]
                          [--apply-state URL]

One run prints every row below. Each figure comes from a fresh child process; the two sides of a
row are measured side by side, in turn forwards and backwards (A B B A ...: a load that comes
and goes hits both), and a row shows the median of R runs of each side (default 5) and the
median of the R ratios. The sandbox dialer runs
in its own process, reached over loopback HTTP.

  plan         no-change plan over N leads already sent / stdlib sqlite3 scan of both tables in
               key order (<= 1.5 x) and in no order (<= 2 x); peak RSS of the plan (<= 150 MB)
  apply        apply of M new leads, plan and send / a bare httpx loop posting the same prepared
               batches to a fresh sandbox (<= 1.3 x); add_multi_lead calls = the minimum
  start        `reconciler --version`, wall time (<= 0.25 s)
  changed      plan with 1 % of the leads changed in the CRM since export / no-change plan
               (<= 1.05 x)
  new          plan with 100 new leads beside the N sent, a full pass (keep_first groups the
               CRM's phones for them) / the no-change plan (shown, no goal)
  dnc          no-change plan with a do-not-call table of 10,000 phones (1 % of them phones of
               sent leads, found as drift) / the no-change plan without one (<= 1.1 x)
  incremental  no-change plan of a spec with an indexed change column (an incremental pass)
               / the full no-change plan (<= 0.1 x); shown as not available when this build
               does not take `[leads] change_column`
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lead_runs as runs

ROWS = ("plan", "apply", "start", "changed", "new", "incremental", "dnc")
TABLE_ORDER = ("ordered", "plain", "apply", "start", "changed", "new", "incremental", "dnc",
               "rss", "calls")
DNC_PHONES = 10_000
NEW_LEADS = 100
NOTES: list[str] = []            # printed under the table


@dataclass(frozen=True)
class Row:
    measurement: str
    result: str
    against: str
    value: float | None          # the ratio, or the figure itself; None: not measured
    goal: float | None           # None: shown, not compared
    unit: str = "x"
    note: str = ""

    def cells(self) -> list[str]:
        if self.goal is None:
            shown = "-" if self.value is None else f"{self.value:.2f}{self.unit}"
            return [self.measurement, self.result, self.against, shown, "-", "shown"]
        if self.value is None:
            return [self.measurement, self.result, self.against, "-",
                    f"<= {self.goal:g}{self.unit}", self.note]
        met = "met" if self.value <= self.goal else "NOT MET"
        shown = f"{self.value:.2f}{self.unit}" if self.unit == "x" else f"{self.value:g}"
        return [self.measurement, self.result, self.against, shown,
                f"<= {self.goal:g}{self.unit}", met + (f" ({self.note})" if self.note else "")]


def run_child(kind: str, workdir: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(workdir), *extra],
                          check=True, capture_output=True, text=True, cwd=runs.REPO)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def side_by_side(repeat: int, measures: dict[str, Callable[[], dict[str, Any]]]
                 ) -> list[dict[str, dict[str, Any]]]:
    """`repeat` rounds, each measuring every entry once, in turn: forwards in one round and
    backwards in the next (A B B A ...), so that a load that grows or fades during a round
    weighs on both sides of a ratio alike."""
    rounds = []
    for number in range(repeat):
        order = list(measures) if number % 2 == 0 else list(reversed(measures))
        print(f"  round {number + 1}/{repeat}: {', '.join(order)}", file=sys.stderr)
        rounds.append({name: measures[name]() for name in order})
    return rounds


def median(rounds: list[dict[str, dict[str, Any]]], name: str, key: str = "seconds") -> float:
    return statistics.median(r[name][key] for r in rounds)


def ratio(rounds: list[dict[str, dict[str, Any]]], ours: str, floor: str) -> float:
    return statistics.median(r[ours]["seconds"] / r[floor]["seconds"] for r in rounds)


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"


# --- the rows ---------------------------------------------------------------------------------


def plan_rows(tmp: Path, args: argparse.Namespace, wanted: set[str]) -> dict[str, Row]:
    n = args.plan_leads
    base = tmp / "plan"
    base.mkdir()
    print(f"preparing {n:,} leads, all recorded as sent", file=sys.stderr)
    runs.build_crm(base / "crm.db", n)
    runs.build_state(base)
    changed_dir = incremental_dir = dnc_dir = new_dir = None
    changed = 0
    if "changed" in wanted:
        changed_dir = runs.copy_workdir(base, tmp / "changed")
        changed = runs.change_some(changed_dir, 100)
    if "new" in wanted:
        new_dir = runs.copy_workdir(base, tmp / "new")
        runs.build_crm(new_dir / "crm.db", NEW_LEADS, first_id=n + 1)
    if "dnc" in wanted:
        dnc_dir = runs.copy_workdir(base, tmp / "dnc")
        runs.add_dnc(dnc_dir, DNC_PHONES)
    missing = runs.incremental_accepted(tmp) if "incremental" in wanted else None
    with runs.SandboxProcess() as sandbox:
        url = sandbox.url
        if "incremental" in wanted and missing is None:
            incremental_dir = runs.copy_workdir(base, tmp / "incremental")
            runs.add_change_column(incremental_dir)
            settled = run_child("settle", incremental_dir, url)
            assert settled["outcome"] == "ok", settled
            if settled["changes"]:
                print(f"warning: the apply that keeps the first mark sent {settled['counts']}: "
                      f"this build does not see the recorded leads as sent under the "
                      f"incremental spec", file=sys.stderr)
        measures: dict[str, Callable[[], dict[str, Any]]] = {
            "plan": lambda: run_child("plan", base, url)}
        if "plan" in wanted:
            measures["scan"] = lambda: run_child("scan", base)
            measures["plain_scan"] = lambda: run_child("plain_scan", base)
        if changed_dir is not None:
            measures["changed"] = lambda: run_child("plan", changed_dir, url)
        if incremental_dir is not None:
            measures["incremental"] = lambda: run_child("plan", incremental_dir, url)
        if dnc_dir is not None:
            measures["dnc"] = lambda: run_child("plan", dnc_dir, url)
        if new_dir is not None:
            measures["new"] = lambda: run_child("plan", new_dir, url)
        rounds = side_by_side(args.repeat, measures)
    for r in rounds:    # every plan measured sees the leads as sent: nothing to send
        for name in ("plan", "changed", "dnc"):
            if name in r:
                assert not r[name]["changes"] and r[name]["states"].get("sent") == n, r[name]
        if "new" in r:
            assert r["new"]["states"] == {"sent": n, "to_send": NEW_LEADS}, r["new"]
    plan = f"{seconds(median(rounds, 'plan'))}"
    rows = {}
    if "plan" in wanted:
        rss = max(r["plan"]["rss_mb"] for r in rounds)
        rows.update(
            ordered=Row(f"no-change plan, {n:,} leads sent / sqlite3 scan of both tables in "
                        f"key order", plan, seconds(median(rounds, "scan")),
                        ratio(rounds, "plan", "scan"), 1.5),
            plain=Row("the same / plain (unordered) scan of both tables", plan,
                      seconds(median(rounds, "plain_scan")),
                      ratio(rounds, "plan", "plain_scan"), 2),
            rss=Row("peak RSS of the no-change plan", f"{rss:.0f} MB", "-", round(rss), 150,
                    " MB"))
    if "changed" in wanted:
        rows["changed"] = Row(f"plan with 1% of leads ({changed:,}) changed since export / "
                              f"no-change plan", seconds(median(rounds, "changed")), plan,
                              ratio(rounds, "changed", "plan"), 1.05)
    if "new" in wanted:
        rows["new"] = Row(f"plan with {NEW_LEADS} new leads beside them (a full pass; keep_first "
                          f"groups the CRM's phones) / no-change plan",
                          seconds(median(rounds, "new")), plan, ratio(rounds, "new", "plan"),
                          None)
    if "dnc" in wanted:
        rows["dnc"] = Row(f"no-change plan with a do-not-call table of {DNC_PHONES:,} phones / "
                          f"without", seconds(median(rounds, "dnc")), plan,
                          ratio(rounds, "dnc", "plan"), 1.1)
    if "incremental" in wanted:
        label = "no-change plan, indexed change column (incremental pass) / full no-change plan"
        if incremental_dir is None:
            print(f"incremental row: this build refuses the spec: {missing}", file=sys.stderr)
            rows["incremental"] = Row(label, "not available in this build", plan, None, 0.1,
                                      note="no [leads] change_column")
        else:
            passes = {r["incremental"]["pass"] for r in rounds}
            changes = any(r["incremental"]["changes"] for r in rounds)
            rows["incremental"] = Row(
                label, seconds(median(rounds, "incremental")), plan,
                ratio(rounds, "incremental", "plan"), 0.1,
                note=", ".join(([] if passes == {"incremental"} else [f"pass {sorted(passes)}"])
                               + (["the plan has changes"] if changes else [])))
    return rows


def apply_rows(tmp: Path, args: argparse.Namespace) -> dict[str, Row]:
    m = args.apply_leads
    template = tmp / "apply-template"
    template.mkdir()
    print(f"preparing {m:,} new leads", file=sys.stderr)
    runs.build_crm(template / "crm.db", m)
    runs.new_state(template)
    if args.apply_state:            # each run empties it first (bench/lead_runs.empty_state)
        (template / runs.STATE_URL).write_text(args.apply_state)
    batch = 500                    # DialerSettings.leads_per_batch, the default
    minimum = sum(math.ceil(len(range(i, m + 1, len(runs.LISTS))) / batch)
                  for i in range(1, len(runs.LISTS) + 1))
    used: list[int] = []

    def measure(kind: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            workdir = runs.copy_workdir(template, tmp / f"{kind}-{len(used)}")
            with runs.SandboxProcess() as sandbox:     # a fresh, empty dialer each time
                cpu = sandbox.cpu_seconds()
                result = run_child(kind, workdir, sandbox.url)
                after = sandbox.cpu_seconds()
                result["calls"] = sandbox.add_multi_lead_calls()
            result["cpu_dialer"] = None if cpu is None or after is None else after - cpu
            used.append(result["calls"])
            return result
        return run

    rounds = side_by_side(args.repeat, {"apply": measure("apply"), "bare": measure("bare")})
    if all(r[side]["cpu_dialer"] is not None for r in rounds for side in ("apply", "bare")):
        def cpu(side: str, key: str) -> str:
            return f"{median(rounds, side, key):.2f} s"
        NOTES.append(f"CPU time, median: the apply's own {cpu('apply', 'cpu_plan')} planning + "
                     f"{cpu('apply', 'cpu_send')} sending, the dialer's "
                     f"{cpu('apply', 'cpu_dialer')}; the bare loop's own "
                     f"{cpu('bare', 'cpu_send')}, the dialer's {cpu('bare', 'cpu_dialer')}")
    outcomes = {r["apply"]["outcome"] for r in rounds}
    calls = {r["apply"]["calls"] for r in rounds}
    return {
        "apply": Row(f"apply {m:,} new leads (plan + send) / bare httpx loop, same batches"
                     + (f", state on {args.apply_state.split(':', 1)[0]}"
                        if args.apply_state else ""),
                     seconds(median(rounds, "apply")), seconds(median(rounds, "bare")),
                     ratio(rounds, "apply", "bare"), 1.3,
                     note="" if outcomes == {"ok"} else f"outcome {sorted(outcomes)}"),
        "calls": Row("add_multi_lead calls of the apply / the minimum",
                     ", ".join(map(str, sorted(calls))), f"minimum {minimum}",
                     max(calls) / minimum, 1,
                     note=f"sum over {len(runs.LISTS)} lists of ceil(leads / {batch})"),
    }


def start_rows(args: argparse.Namespace) -> dict[str, Row]:
    program = Path(sys.executable).with_name("reconciler")
    command = [str(program)] if program.exists() else [sys.executable, "-m", "reconciler.cli"]
    count = max(args.repeat, 5)
    bare, ours = [], []
    for _ in range(count):             # side by side with the interpreter's own start
        bare.append(runs.start_seconds([sys.executable, "-c", "pass"]))
        ours.append(runs.start_seconds([*command, "--version"]))
    took = statistics.median(ours)
    return {"start": Row("process start: `reconciler --version`, wall", seconds(took),
                         f"python -c pass {seconds(statistics.median(bare))}", round(took, 3),
                         0.25, " s", note=f"median of {count}")}


# --- the parent -------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    head = ["measurement", "result", "against", "ratio / value", "goal", "met"]
    table = [head, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    for number, line in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if number == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def selected(text: str) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(ROWS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown row(s) {sorted(unknown)}; rows: "
                                         f"{', '.join(ROWS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan-leads", type=int, default=1_000_000, metavar="N")
    parser.add_argument("--apply-leads", type=int, default=100_000, metavar="M")
    parser.add_argument("--repeat", type=int, default=5, metavar="R",
                        help="runs of each side of a row (default 5); the median is shown")
    parser.add_argument("--rows", type=selected, default=set(ROWS),
                        help=f"comma-separated, of: {', '.join(ROWS)} (default: all)")
    parser.add_argument("--apply-state", metavar="URL",
                        help="keep the state of each apply (and bare loop) in this database "
                             "instead of a SQLite file: reconciler's tables in it are dropped "
                             "and made anew before each run (default: SQLite)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, workdir, *rest = args.child
        print(json.dumps(getattr(runs, f"child_{kind}")(Path(workdir), *rest)))
        return

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {args.plan_leads:,} leads to plan, "
          f"{args.apply_leads:,} to apply, median of {args.repeat}")
    rows: dict[str, Row] = {}
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        if args.rows & {"plan", "changed", "incremental", "dnc"}:
            rows.update(plan_rows(Path(tmp), args, args.rows))
        if "apply" in args.rows:
            rows.update(apply_rows(Path(tmp), args))
        if "start" in args.rows:
            rows.update(start_rows(args))
    print_table([rows[name] for name in TABLE_ORDER if name in rows])
    for note in NOTES:
        print(note)


if __name__ == "__main__":
    main()
