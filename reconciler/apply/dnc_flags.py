"""Apply a flag_dnc op: set each sent lead's status to DNC on the dialer, once.

update_lead sets a value, so sending it twice is harmless; still each lead is recorded as soon
as the dialer answered (dnc_flags), and a recorded lead is never planned again. A lead the
dialer no longer has cannot be called: it is recorded too (`absent`). One lead the dialer
refuses does not stop the others; an unreachable dialer stops the run.
"""

from __future__ import annotations

import structlog

from reconciler.adapters.state.dnc import ABSENT, FLAGGED, DncBook
from reconciler.core.plan import FlagDnc
from reconciler.core.ports import DialerPort, lacking
from reconciler.errors import DialerRejected, DoesNotExist

log = structlog.get_logger()
DNC_STATUS = "DNC"


def flag_dnc(api: DialerPort, book: DncBook, run_id: str, op: FlagDnc) -> tuple[str, str]:
    """Returns the step's (outcome, message); raises DialerRejected when a lead was refused,
    after recording the others."""
    updater = api.lead_updater       # planned only for a dialect that has update_lead
    if updater is None:
        raise lacking("update_lead")
    done: dict[str, int] = {FLAGGED: 0, ABSENT: 0}
    refused: list[str] = []
    for key, lead_id, vendor_code in op.leads:
        if not lead_id and not vendor_code:
            refused.append(f"lead {key}: no dialer lead id or vendor_lead_code to find it by")
            continue
        try:
            if lead_id:
                updater.update_lead(status=DNC_STATUS, lead_id=lead_id)
            else:
                updater.update_lead(status=DNC_STATUS, vendor_lead_code=vendor_code)
            outcome = FLAGGED
        except DoesNotExist:
            outcome = ABSENT
        except DialerRejected as exc:
            refused.append(f"lead {key}: {exc}")
            continue
        book.record_flag(key, op.list_id, outcome, run_id)
        done[outcome] += 1
        log.info("lead_flagged_dnc", key=key, list_id=op.list_id, outcome=outcome,
                 run_id=run_id)
    message = (f"{done[FLAGGED]} lead(s) set to DNC"
               + (f", {done[ABSENT]} no longer on the dialer" if done[ABSENT] else ""))
    if refused:
        raise DialerRejected(f"{message}; refused: {'; '.join(refused[:10])}",
                             function="update_lead")
    return "flagged", message
