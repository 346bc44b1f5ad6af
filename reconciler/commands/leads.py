"""`reconciler leads`: see and settle lead batches whose answer never came."""

from __future__ import annotations

import argparse
import json
from typing import Any

from reconciler.commands.common import EXIT_OK, load
from reconciler.runtime import open_state, write_lease
from reconciler.state.leads import LeadBook


def register(sub: Any) -> None:
    leads = sub.add_parser("leads", help="lead batches in doubt")
    lsub = leads.add_subparsers(dest="leads_command", required=True, metavar="ACTION")
    doubt = lsub.add_parser("in-doubt", help="list lead batches whose outcome is unknown")
    doubt.add_argument("--json", action="store_true")
    doubt.set_defaults(func=cmd_in_doubt)
    resolve = lsub.add_parser(
        "resolve", help="settle an in-doubt batch after checking the dialer")
    resolve.add_argument("batch_id")
    verdict = resolve.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--sent", action="store_true",
                         help="the dialer has these leads: record them as sent")
    verdict.add_argument("--not-sent", action="store_true",
                         help="the dialer does not have them: the next run sends them")
    resolve.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS")
    resolve.set_defaults(func=cmd_resolve)


def cmd_in_doubt(args: argparse.Namespace) -> int:
    with open_state(load(args)) as store:
        batches = LeadBook(store).in_doubt_batches()
    if args.json:
        print(json.dumps(batches, default=str, indent=2))
        return EXIT_OK
    if not batches:
        print("No lead batch is in doubt.")
    for b in batches:
        print(f"{b['batch_id']}  list {b['list_id']}  {b['lead_count']} leads  "
              f"since {b['created_at']:%Y-%m-%d %H:%M}  {b['message'] or b['state']}")
    return EXIT_OK


def cmd_resolve(args: argparse.Namespace) -> int:
    with open_state(load(args)) as store, write_lease(store, args.lock_wait):
        changed = LeadBook(store).resolve(args.batch_id, sent=args.sent)
    if args.sent:
        print(f"{changed} lead(s) recorded as sent; they will not be sent again.")
    else:
        print(f"{changed} lead(s) forgotten; the next apply sends them.")
    return EXIT_OK
