"""`reconciler demo`: the whole loop against the built-in sandbox dialer, in a few seconds.

A sample CRM and two dialer targets, each a sandbox on a free loopback port: `elision`
(Elision's dialer, with an agent and a list made by hand before) and `vicidial` (stock
VICIdial 2.14). Each round plans and applies each target in turn: a first plan and apply; a
round of CRM edits (a rename, a password change, an agent leaving, a new list, a fixed row),
the second plan and apply; and a final plan that shows "No changes." for both. The agent the
dialers refused in the first round is not sent again: its CRM row never changes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.app.bootstrap import open_context
from reconciler.app.engine import Context, apply_plan, gather_and_plan
from reconciler.app.render import render_plan
from reconciler.apply.executor import RunReport
from reconciler.cli.commands.common import EXIT_OK, setup_logging
from reconciler.config.settings import CrmSettings, DialerSettings, Settings, StateSettings
from reconciler.demo import crm as democrm
from reconciler.errors import ReconcilerError
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer, SandboxList, SandboxUser
from reconciler.sandbox.server import start_background

# Installed: inside the package (pyproject maps specs/ to reconciler.specs); else the checkout's.
_PACKAGE = Path(__file__).resolve().parents[2]     # the reconciler package
EXAMPLE_SPEC = next((p for p in (_PACKAGE / "specs" / "example.toml",
                                 _PACKAGE.parent / "specs" / "example.toml") if p.is_file()),
                    _PACKAGE.parent / "specs" / "example.toml")
DEMO_API_USER, DEMO_API_PASSWORD = "api", "1234"   # the API document's own example values


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the whole loop against the built-in sandbox dialer")
    p.add_argument("--dir", metavar="PATH",
                   help="keep the demo's CRM and state databases here (default: a temp dir)")
    p.set_defaults(func=cmd_demo, log_level="WARNING")


# What the demo writes into its directory; MARK says the others were made by it.
MARK = ".reconciler-demo"
DEMO_FILES = ("crm.db", "state.db", "digest.key")


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging(args, secrets=(DEMO_API_PASSWORD,))
    if args.dir:
        workdir = Path(args.dir)
        _start_over(workdir)
        return run_demo(workdir)
    with tempfile.TemporaryDirectory(prefix="reconciler-demo-") as tmp:
        return run_demo(Path(tmp))


def _start_over(workdir: Path) -> None:
    """Make `workdir` ready for a fresh demo: the sandbox dialer starts empty every time, so
    a previous demo's CRM and state must go too. Files the demo did not make are never
    touched: a directory holding them without the demo's mark is refused."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        found = [name for name in DEMO_FILES if (workdir / name).exists()]
        if found and not (workdir / MARK).exists():
            raise ReconcilerError(f"demo: {workdir} already holds {', '.join(found)}, not made "
                                  f"by the demo; give an empty or new --dir")
        if found:
            print(f"Starting over in {workdir}: the previous demo's files are replaced.")
        for name in DEMO_FILES:
            for leftover in (name, f"{name}-wal", f"{name}-shm", f"{name}-journal"):
                (workdir / leftover).unlink(missing_ok=True)
        (workdir / MARK).write_text("Made by `reconciler demo`, which replaces its own files "
                                    "here when run again.\n", encoding="utf-8")
    except OSError as exc:
        raise ReconcilerError(f"demo: cannot use {workdir}: {exc.strerror or exc}") from None


def sandbox_with_history() -> SandboxDialer:
    """A dialer that is not empty: one agent made by hand, one list nobody told us about."""
    return SandboxDialer(SandboxData(
        users=(SandboxUser("1002", full_name="Ben Okafor (by hand)",
                           agent_pass="old-pass"),),  # noqa: S106 - sandbox data
        lists=(SandboxList("900", "Legacy imports", "TESTCAMP", active="Y"),),
    ))


def run_demo(workdir: Path) -> int:
    crm_url = democrm.sqlite_url(workdir / "crm.db")
    crm = democrm.create_crm(crm_url, democrm.sample_agents() + list(democrm.BAD_AGENTS),
                             leads=democrm.sample_leads(300) + list(democrm.BAD_LEADS))
    # One target per dialect, named after it: every CRM row goes to both (the spec has no
    # `targets` to route them).
    dialers = {"elision": sandbox_with_history(),
               "vicidial": SandboxDialer(SandboxData(api_users=(
                   ApiUser(DEMO_API_USER, DEMO_API_PASSWORD),)), mode="vicidial")}
    with ExitStack() as stack:
        servers = {name: stack.enter_context(start_background(dialer))
                   for name, dialer in dialers.items()}
        targets = tuple(DialerSettings(url=server.url, user=DEMO_API_USER,
                                       password=DEMO_API_PASSWORD, source="demo", target=name,
                                       dialect=name)
                        for name, server in servers.items())
        settings = Settings(
            dialer=targets[0],
            crm=CrmSettings(crm_url),
            state=StateSettings(url=democrm.sqlite_url(workdir / "state.db"),
                                digest_key_file=workdir / "digest.key"),
            spec_path=EXAMPLE_SPEC,
            targets=targets,
        )
        state = db.open_engine(settings.state.url)
        db.upgrade(state)
        state.dispose()
        _say("Sandbox dialers: " + "; ".join(f"{name} at {server.url}"
                                             for name, server in servers.items())
             + f"; CRM at {crm_url}")
        contexts = [stack.enter_context(open_context(settings.for_target(name)))
                    for name in settings.target_names]
        _round(contexts, "1. First plan: the CRM has 29 agent rows, 5 lists and 304 leads")
        _edit_crm(crm)
        _round(contexts, "2. The CRM changes: a rename, a new password, a leaver, a fixed level, "
                         "a new list with 120 leads, an edited lead")
        _say("3. Final plan")
        finals = [gather_and_plan(ctx).plan for ctx in contexts]
        sys.stdout.write("\n".join(render_plan(final) for final in finals))
    crm.dispose()
    held = []
    for name, dialer in dialers.items():
        snapshot = dialer.snapshot()
        held.append(f"{name} {len(snapshot['users'])} users, {len(snapshot['lists'])} lists "
                    f"and {len(snapshot['leads'])} leads ({len(snapshot['calls'])} API calls)")
    _say("The sandboxes now hold: " + "; ".join(held) + ".")
    return EXIT_OK if not any(final.has_changes for final in finals) else 1


def _round(contexts: list[Context], title: str) -> list[RunReport]:
    """One round: each target planned and applied in turn (its plan names it)."""
    _say(title)
    reports = []
    for n, ctx in enumerate(contexts):
        gathered = gather_and_plan(ctx)
        if n:
            print()
        sys.stdout.write(render_plan(gathered.plan))
        report = apply_plan(ctx, gathered)
        print(f"\nApplied: {report.outcome} "
              f"({', '.join(f'{k} {c}' for c, k in sorted(report.counts.items()))})")
        for op, key, message in report.failures:
            print(f"  ! {op} {key}: {message}")
        reports.append(report)
    return reports


def _edit_crm(crm: sa.Engine) -> None:
    with crm.begin() as conn:
        conn.exec_driver_sql("UPDATE agents SET full_name = 'Asha Patel-Rao' "
                             "WHERE username = '1001'")
        conn.exec_driver_sql("UPDATE agents SET password = 'new-secret-42' "
                             "WHERE username = '1004'")
        conn.exec_driver_sql("UPDATE agents SET is_active = 0 WHERE username = '1005'")
        conn.exec_driver_sql("UPDATE agents SET level = 1 WHERE username = '2001'")
        conn.exec_driver_sql("INSERT INTO calling_lists VALUES "
                             "('1106', 'Black Friday Leads', 'SALES', 1)")
        democrm.insert_leads(conn, democrm.sample_leads(120, lists=("1106",), first_id=5001))
        # Exported already: the dialer cannot update a lead, so the plan reports it as drift.
        conn.exec_driver_sql("UPDATE crm_leads SET city = 'Surat' WHERE id = 7")


def _say(text: str) -> None:
    print(f"\n=== {text}\n", flush=True)
