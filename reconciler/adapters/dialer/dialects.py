"""Dialer dialects: what each kind of dialer can do, and the one place that knows their names.

The planner and the engine never ask which dialer they talk to, only what it can do
(`Capabilities`). The client a dialect builds is a reconciler.core.ports.DialerPort whose
optional facets are exactly those its capabilities claim (a test in
tests/adapters/dialer/test_capabilities.py holds each client to it).

Besides the capabilities, a dialect judges CRM values before anything is sent (`check`: the API's
field rules, plus what VICIdial would silently rewrite and we refuse) and says what the dialer
keeps of a value it accepts (`stored`), so that what we record is what the dialer holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from reconciler.adapters.dialer.client import ElisionClient
from reconciler.adapters.dialer.vicidial_client import VicidialClient
from reconciler.adapters.dialer.vicidial_fields import (
    vicidial_input_problems,
    vicidial_rewrite,
    vicidial_stored,
)
from reconciler.config.settings import DialerSettings
from reconciler.core.fields import check_field, lead_problems
from reconciler.core.model import Capabilities
from reconciler.core.ports import DialerPort

# function, field, value -> the rule it breaks, or None
Check = Callable[[str, str, object], str | None]


class InputCheck(Protocol):
    """A dialect's own judgement of one value; add_lead's duplicate_check options may matter."""

    def __call__(self, function: str, field: str, value: object, /, *,
                 duplicate_check: Sequence[str] = ()) -> str | None: ...


# function, field, value -> what the dialer stores
Stored = Callable[[str, str, str], str]
ClientFactory = Callable[[DialerSettings, httpx.BaseTransport | None], DialerPort]


# --- dialects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    name: str
    capabilities: Capabilities
    make_client: ClientFactory
    input_problems: InputCheck | None = None     # beyond the API's field rules
    stored_as: Stored | None = None          # None: the dialer keeps what it is sent
    rewrite_warning: Check | None = None     # how a value it accepts is altered, or None

    def client(self, settings: DialerSettings,
               transport: httpx.BaseTransport | None = None) -> DialerPort:
        return self.make_client(settings, transport)

    def check(self, function: str, field: str, value: object) -> str | None:
        """The rule `value` breaks for this dialer, or None when it may be sent."""
        rule = check_field(function, field, value)
        if rule is None and self.input_problems is not None:
            rule = self.input_problems(function, field, value)
        return rule

    def stored(self, function: str, field: str, value: str) -> str:
        """What the dialer keeps of a value it accepts."""
        return value if self.stored_as is None else self.stored_as(function, field, value)

    def rewrite_rule(self, function: str, field: str, value: str) -> str | None:
        """How the dialer alters a sendable value, for a warning; None when it keeps it."""
        return None if self.rewrite_warning is None else self.rewrite_warning(function, field,
                                                                              value)

    @property
    def lead_function(self) -> str:
        return "add_lead" if self.capabilities.sends_leads_one_by_one else "add_multi_lead"

    def lead_problems(self, lead: Mapping[str, str], *,
                      duplicate_check: Sequence[str] = ()) -> list[tuple[str, str]]:
        """Every (field, rule) one lead breaks before it is sent (with these duplicate_check
        options, where the dialect takes them)."""
        problems = lead_problems(lead, self.lead_function)
        if self.input_problems is not None:
            bad = {name for name, _ in problems}
            problems += [(name, rule) for name, value in lead.items() if name not in bad
                         for rule in [self.input_problems(self.lead_function, name, value,
                                                          duplicate_check=duplicate_check)]
                         if rule is not None]
        return problems


def _vicidial_warning(function: str, field: str, value: object) -> str | None:
    rewrite = vicidial_rewrite(function, field, value)
    return rewrite.rule if rewrite is not None and rewrite.action == "warn" else None


ELISION = Dialect(
    name="elision",
    capabilities=Capabilities(),
    make_client=lambda settings, transport: ElisionClient(settings, transport=transport),
)
VICIDIAL = Dialect(
    name="vicidial",
    capabilities=Capabilities(reads_users=True, reads_lists_individually=True,
                              has_update_list=True, sends_leads_one_by_one=True,
                              can_look_up_leads=True, updates_leads=True),
    make_client=lambda settings, transport: VicidialClient(settings, transport=transport),
    input_problems=vicidial_input_problems,
    stored_as=vicidial_stored,
    rewrite_warning=_vicidial_warning,
)
DIALECTS: Mapping[str, Dialect] = {d.name: d for d in (ELISION, VICIDIAL)}


def dialect_of(settings: DialerSettings) -> Dialect:
    return DIALECTS[settings.dialect]
