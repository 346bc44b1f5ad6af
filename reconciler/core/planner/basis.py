"""Digests of what a plan was computed from, so a saved plan can be refused when stale. Pure."""

from __future__ import annotations

import hashlib
import json

from reconciler.core.model import Desired, Observed


def digest_of(document: object) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def desired_digest(desired: Desired) -> str:
    """Covers secrets through their keyed digests only."""
    return digest_of({
        "users": {k: [dict(u.fields), dict(u.digests)] for k, u in desired.users.items()},
        "lists": {k: dict(v.fields) for k, v in desired.lists.items()},
        "rejections": [list(r.__dict__.values()) for r in desired.rejections],
    })


def observed_digest(observed: Observed) -> str:
    lists = sorted((o.list_id, o.list_name, o.campaign_id, *(() if o.active == "Y" else
                                                             (o.active,)))
                   for o in (observed.lists or {}).values())
    if observed.users is None:
        return digest_of(lists)
    users = {k: dict(u.fields) for k, u in observed.users.items()}
    return digest_of({"lists": lists, "users": users})
