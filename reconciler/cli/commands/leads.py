"""`reconciler leads`: see and settle lead batches whose answer never came.

`in-doubt` lists the batches `status` counts; `in-doubt BATCH` lists that batch's doubtful
leads as the dialer would hold them (phone number and vendor_lead_code, mapped from the CRM by
the spec), for an operator to look for. `resolve` records what the operator found; "not sent" is
refused until a request still on its way could no longer land (`leads_settle.landing_window`).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.adapters.crm.source import open_crm
from reconciler.adapters.state.leads import DoubtfulLead, LeadBook, ResolvedTooEarly
from reconciler.app.bootstrap import open_state, write_lease
from reconciler.apply import leads_settle
from reconciler.apply.leads_settle import LeadAsSent
from reconciler.cli.commands.common import EXIT_OK, load
from reconciler.cli.commands.targets import add_target_option, chosen, for_each_target
from reconciler.config.settings import Settings
from reconciler.config.spec import load_spec
from reconciler.errors import SpecError, StateError

BATCH_HELP = "a batch id, or a unique prefix of one (as `status` shows it)"
CRM_NOTES = {
    "changed": "changed in the CRM since it was sent: the values shown are today's",
    "gone": "no longer in the CRM: its phone and vendor_lead_code are unknown",
}


def register(sub: Any) -> None:
    leads = sub.add_parser("leads", help="lead batches in doubt")
    lsub = leads.add_subparsers(dest="leads_command", required=True, metavar="ACTION")
    doubt = lsub.add_parser(
        "in-doubt", help="list lead batches whose outcome is unknown; with BATCH, its leads")
    doubt.add_argument("batch_id", nargs="?", metavar="BATCH",
                       help=f"{BATCH_HELP}: list its doubtful leads (phone, list, "
                            f"vendor_lead_code, read from the CRM)")
    doubt.add_argument("--json", action="store_true")
    add_target_option(doubt)
    doubt.set_defaults(func=cmd_in_doubt)
    resolve = lsub.add_parser(
        "resolve", help="settle an in-doubt batch after checking the dialer")
    resolve.add_argument("batch_id", metavar="BATCH", help=BATCH_HELP)
    verdict = resolve.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--sent", action="store_true",
                         help="the dialer has these leads: record them as sent")
    verdict.add_argument("--not-sent", action="store_true",
                         help="the dialer does not have them: the next run sends them (refused "
                              "until a request still on its way could no longer land)")
    resolve.add_argument("--force", action="store_true",
                         help="accept --not-sent at once, without waiting for late requests")
    resolve.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS")
    add_target_option(resolve)
    resolve.set_defaults(func=cmd_resolve)


def cmd_in_doubt(args: argparse.Namespace) -> int:
    settings = load(args)
    if args.batch_id and settings.several_targets and not args.targets:
        args.targets = [_target_of_batch(settings, args.batch_id)]
    return for_each_target(settings, args, lambda one: _in_doubt(args, one))


def _in_doubt(args: argparse.Namespace, settings: Settings) -> int:
    window = leads_settle.landing_window(settings.dialer)
    if args.batch_id:
        return _show_batch(args, settings, window)
    with open_state(settings) as store:
        batches = [{**b, "not_sent_from": b["last_sent_at"] + window}
                   for b in LeadBook(store).in_doubt_batches()]
    if args.json:
        print(json.dumps(batches, default=_jsonable, indent=2))
        return EXIT_OK
    if not batches:
        print("No lead batch is in doubt.")
    for b in batches:
        print(f"{b['batch_id']}  list {b['list_id']}  {b['doubtful_leads']} of "
              f"{b['lead_count']} leads  since {b['created_at']:%Y-%m-%d %H:%M}  "
              f"{b['message'] or b['state']}")
    if batches:
        print("`reconciler leads in-doubt BATCH` lists a batch's leads, to look for them on "
              "the dialer.")
    return EXIT_OK


def _target_of_batch(settings: Settings, batch_ref: str) -> str:
    """The target whose lead batch `batch_ref` names (a batch id is unique to one target)."""
    problems = []
    for one in chosen(settings, None):
        with open_state(one) as store:
            try:
                LeadBook(store).find_batch(batch_ref)
            except StateError as exc:
                problems.append(str(exc))
                continue
        return one.dialer.target
    raise StateError(f"no target has lead batch {batch_ref!r}: " + "; ".join(problems))


def cmd_resolve(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings.several_targets and not args.targets:
        args.targets = [_target_of_batch(settings, args.batch_id)]
    return for_each_target(settings, args, lambda one: _resolve(args, one))


def _resolve(args: argparse.Namespace, settings: Settings) -> int:
    window = None if args.force else leads_settle.landing_window(settings.dialer)
    with open_state(settings) as store, write_lease(store, args.lock_wait):
        book = LeadBook(store)
        batch_id = book.find_batch(args.batch_id)["batch_id"]
        try:
            changed = book.resolve(batch_id, sent=args.sent, landing_window=window)
        except ResolvedTooEarly as early:
            raise StateError(_too_early(early)) from None
    if args.sent:
        print(f"Batch {batch_id}: {changed} lead(s) recorded as sent; they will not be sent "
              f"again.")
    else:
        print(f"Batch {batch_id}: {changed} lead(s) forgotten; the next apply sends them.")
    return EXIT_OK


def _too_early(early: ResolvedTooEarly) -> str:
    left = math.ceil((early.earliest - datetime.now(UTC)).total_seconds())
    return (f"lead batch {early.batch_id} was last sent at {_when(early.last_sent)}; a request "
            f"still on its way could land on the dialer until {_when(early.earliest)} ({left} s "
            f"from now). Check the dialer after that: --not-sent is accepted not before "
            f"{_when(early.earliest)} (--force settles it now, at the risk of a lead sent twice)")


def _show_batch(args: argparse.Namespace, settings: Settings, window: timedelta) -> int:
    with open_state(settings) as store:
        book = LeadBook(store)
        batch = book.find_batch(args.batch_id)
        doubtful = book.batch_leads(batch["batch_id"])
        last_sent = book.last_sent_at(batch["batch_id"])
    shown = _as_sent(settings, doubtful) if doubtful else []
    summary = {**batch, "doubtful_leads": len(doubtful), "last_sent_at": last_sent,
               "not_sent_from": last_sent + window}
    if args.json:
        print(json.dumps({"batch": summary, "leads": [asdict(x) for x in shown]},
                         default=_jsonable, indent=2))
        return EXIT_OK
    short = batch["batch_id"][:8]
    print(f"Lead batch {batch['batch_id']}: {batch['state']}, list {batch['list_id']}, "
          f"{batch['lead_count']} leads, last sent {_when(last_sent)}")
    if batch["message"]:
        print(f"  {batch['message']}")
    if not doubtful:
        print("  No lead of this batch is in doubt.")
        return EXIT_OK
    print(f"  Leads in doubt: {len(doubtful)}. From {_when(summary['not_sent_from'])} (a "
          f"request still on its way could land until then),\n  look for each on the dialer by "
          f"its list, phone and vendor_lead_code, then record what you found:\n"
          f"    reconciler leads resolve {short} --sent       (they are there)\n"
          f"    reconciler leads resolve {short} --not-sent   (they are not: the next apply "
          f"sends them)\n")
    print(_table(shown))
    return EXIT_OK


def _as_sent(settings: Settings, doubtful: list[DoubtfulLead]) -> list[LeadAsSent]:
    spec = load_spec(settings.spec_path)
    if spec.leads is None:
        raise SpecError(f"{settings.spec_path}: no [leads] section, so the leads' phone numbers "
                        f"cannot be read from the CRM")
    crm = open_crm(settings.crm.url)
    try:
        return leads_settle.as_sent(crm, spec.leads, doubtful)
    finally:
        crm.dispose()


def _table(leads: list[LeadAsSent]) -> str:
    rows = [("KEY", "PHONE", "LIST", "VENDOR_LEAD_CODE", "STATUS", "")]
    rows += [(x.key, x.phone_number or "-", x.list_id, x.vendor_lead_code or "-", x.status,
              CRM_NOTES.get(x.crm, "")) for x in leads]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
        lines.append(f"  {cells}  {row[5]}".rstrip())
    return "\n".join(lines)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _jsonable(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
