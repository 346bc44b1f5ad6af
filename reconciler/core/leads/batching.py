"""Size add_multi_lead batches by lead count and by encoded request size. Pure.

The request carries `multi_leads` form- or URL-encoded; both encode character by character
(quote_plus), so a batch costs the empty request, plus each lead's encoded JSON, plus one
encoded comma between leads. The client's own check (dialer/client.py) stays the last word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus

COMMA_BYTES = len(quote_plus(","))


def lead_json(lead: Mapping[str, str]) -> str:
    return json.dumps(dict(lead), separators=(",", ":"))


# quote_plus leaves these bytes as they are (space becomes '+'); every other byte becomes %XX.
_ESCAPED = re.compile(rb"[^A-Za-z0-9_.~ -]")


def lead_cost(lead: Mapping[str, str]) -> int:
    """len(quote_plus(lead_json(lead))), counted without building the quoted string."""
    data = lead_json(lead).encode()
    return len(data) + 2 * len(_ESCAPED.findall(data))


@dataclass(frozen=True)
class BatchLimits:
    max_leads: int
    max_bytes: int
    empty_bytes: int              # the whole request with `multi_leads=[]`

    def fits_alone(self, cost: int) -> bool:
        return self.empty_bytes + cost <= self.max_bytes


@dataclass
class OpenBatch:
    """Leads gathered for one list; `add` says whether the lead still fits."""

    limits: BatchLimits
    items: list[tuple[str, Mapping[str, str], str]] = field(default_factory=list)
    size: int = 0

    def __post_init__(self) -> None:
        self.size = self.limits.empty_bytes

    def fits(self, cost: int) -> bool:
        if not self.items:
            return True
        return (len(self.items) < self.limits.max_leads
                and self.size + COMMA_BYTES + cost <= self.limits.max_bytes)

    def add(self, key: str, lead: Mapping[str, str], digest: str, cost: int) -> None:
        self.size += cost + (COMMA_BYTES if self.items else 0)
        self.items.append((key, lead, digest))
