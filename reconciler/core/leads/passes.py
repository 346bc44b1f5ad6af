"""Which CRM lead rows a plan reads: all of them (a full pass) or those changed since the mark
(an incremental pass). Pure: the time is given, never read (docs/incremental.md).

A full pass is the only one that sees a lead gone from the CRM, a row whose change column is
NULL, or a row committed late with a value below the mark; incremental passes are the cheap
ones between full passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.core.plan import FULL, INCREMENTAL, LeadPass


@dataclass(frozen=True)
class SyncMark:
    """What the state database keeps between passes for one resource."""

    mark: str | None                   # the change-column value read up to, as text
    mark_type: str | None              # how to read it back (integer, timestamp, text, ...)
    full_pass_at: datetime | None      # when the last full pass that finished applying began
    full_pass_due_at: datetime | None = None   # leads were forgotten then: a full pass is due


def choose_pass(mark: SyncMark | None, full_pass_every: int, now: datetime, *,
                resync: bool = False, full: bool = False, settled: bool = False) -> LeadPass:
    """The kind of pass, and why: full unless everything allows an incremental one."""
    if resync:
        return LeadPass(FULL, reason="resync reads every row")
    if full:
        return LeadPass(FULL, reason="--full was asked for")
    if mark is None or mark.mark is None:
        return LeadPass(FULL, reason="no mark yet")
    if settled:
        return LeadPass(FULL, reason="in-doubt leads were looked up on the dialer")
    if mark.full_pass_at is None:
        return LeadPass(FULL, reason="no full pass yet")
    if mark.full_pass_due_at is not None and mark.full_pass_due_at >= mark.full_pass_at:
        return LeadPass(FULL, reason="leads were forgotten by the state since the last full "
                                     "pass (to be sent again)")
    age = (now - mark.full_pass_at).total_seconds()
    if age >= full_pass_every:
        return LeadPass(FULL, reason=f"the last full pass was {_ago(age)} ago "
                                     f"(full_pass_every = {full_pass_every})")
    return LeadPass(INCREMENTAL, since=mark.mark,
                    reason=f"the last full pass was {_ago(age)} ago")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
