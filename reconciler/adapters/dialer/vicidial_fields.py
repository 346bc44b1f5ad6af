"""What VICIdial silently does to the values it is sent, so we can refuse or warn first. Pure.

VICIdial's non_agent_api.php filters its input before using it (with the system setting
use_non_latin off, the default): every character outside a per-field set is dropped without a
word, `+` becomes a space in most lead fields, and the database cuts agent_user at 20
characters. A value the dialer rewrites is a value we would record wrongly, so each rewrite is
judged once, here:

- reject (the row is not sent): credentials, and values that name or key something —
  agent_pass, phone_pass, agent_user, agent_user_group, phone_login, campaign_id, list_id,
  phone_number, phone_code, vendor_lead_code (it is how an in-doubt lead is found again).
  A rewritten password locks the agent out; a rewritten key names something else.
- warn (sent; the dialer's value is what we record): text for people — agent_full_name,
  list_name, email, and the lead's names, address, comments and the like. `InputRewrite.stored`
  is the value the dialer will hold, so the planner can compare it with what the dialer shows.
  A warned field whose stored value would break the field's own rule (empty name) is rejected.

A `|` is never rewritten, but in vendor_lead_code or source_id it would shift the columns of
lead_all_info's pipe-delimited answer: rejected too.

What the filters keep then goes into VICIdial's SQL unescaped: users and lists inside `'...'`,
a lead's columns inside `"..."` (the INSERT into vicidial_list), but first_name and last_name
inside `'...'` in the DUPNAMEPHONE look-ups, title and alt_phone in the DUPTITLEALTPHONE ones. A
value still holding that quote, or a backslash (MySQL's escape), breaks the statement: PHP dies
and the API answers an empty HTTP 500 (an apostrophe in a user's email, `O'Brien` checked with
DUPNAMEPHONELIST, a `"` in a lead's comments). Such a value is rejected.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from reconciler.core import fields

Action = Literal["reject", "warn"]


@dataclass(frozen=True)
class _Filter:
    """One of non_agent_api.php's `preg_replace` filters, as a regex character class."""

    chars: str                   # body of the class of characters that are dropped
    said: str                    # what the filter does, as the user reads it
    plus_to_space: bool = False  # then `+` becomes a space
    action: Action = "warn"

    def apply(self, text: str) -> str:
        kept = re.sub(f"[{self.chars}]", "", text)
        return kept.replace("+", " ") if self.plus_to_space else kept

    def describe(self) -> str:
        return self.said + (" and turns + into a space" if self.plus_to_space else "")


def _keep(chars: str, shown: str, *, plus_to_space: bool = False,
          action: Action = "warn") -> _Filter:
    return _Filter(f"^{chars}", f"keeps only {shown}", plus_to_space, action)


_WORD = _keep(r"\-_0-9a-zA-Z", "A-Z a-z 0-9 - _", action="reject")
_DIGITS = _keep("0-9", "0-9", action="reject")
_LETTERS = _keep("A-Z", "A-Z")
_LEAD_NAME = _keep(r"\- '+_.0-9a-zA-Z", "A-Z a-z 0-9 space - ' _ .", plus_to_space=True)
_ADDRESS = _keep(r"\- '+.:/@_0-9a-zA-Z", "A-Z a-z 0-9 space - ' . : / @ _",
                 plus_to_space=True)
_FREE = _Filter(";#", "drops ; and #", plus_to_space=True)

# Per field, as non_agent_api.php filters the variable of that name (one variable serves every
# function, so `email` is filtered alike for users and leads).
_FILTERS: Mapping[str, _Filter] = MappingProxyType({
    "agent_pass": _WORD, "phone_pass": _WORD, "agent_user_group": _WORD, "phone_login": _WORD,
    "campaign_id": _WORD,
    "voicemail_id": _DIGITS, "agent_user_level": _DIGITS, "list_id": _DIGITS,
    "phone_code": _DIGITS, "phone_number": _keep(",0-9", "0-9 ,", action="reject"),
    "agent_full_name": _keep(r"\- +.:/@_0-9a-zA-Z", "A-Z a-z 0-9 space - + . : / @ _"),
    "list_name": _keep(r"\- +.:/@?&_0-9a-zA-Z", "A-Z a-z 0-9 space - + . : / @ ? & _"),
    "email": _keep(r"\- '+.:/@%_0-9a-zA-Z", "A-Z a-z 0-9 space - ' . : / @ % _",
                   plus_to_space=True),
    "active": _LETTERS, "country_code": _LETTERS, "gender": _LETTERS,
    "vendor_lead_code": _Filter(";#", "drops ; and #", plus_to_space=True, action="reject"),
    "source_id": _FREE, "comments": _FREE,
    "title": _keep(r"\- '_.0-9a-zA-Z", "A-Z a-z 0-9 space - ' _ ."),
    "first_name": _LEAD_NAME, "last_name": _LEAD_NAME, "alt_phone": _LEAD_NAME,
    "middle_initial": _keep("0-9a-zA-Z", "A-Z a-z 0-9"),
    "address1": _ADDRESS, "address2": _ADDRESS, "address3": _ADDRESS, "city": _ADDRESS,
    "security_phrase": _ADDRESS, "owner": _ADDRESS,
    "state": _keep(r"\- 0-9a-zA-Z", "A-Z a-z 0-9 space -"),
    "province": _keep(r"\- '+._0-9a-zA-Z", "A-Z a-z 0-9 space - ' . _", plus_to_space=True),
    "postal_code": _keep(r"\- '+0-9a-zA-Z", "A-Z a-z 0-9 space - '", plus_to_space=True),
    "date_of_birth": _keep(r"\-0-9", "0-9 -"),
})
# The functions whose input the filters above apply to, with the field rules they obey.
_FUNCTIONS = frozenset({"add_user", "update_user", "add_list", "update_list", "add_lead"})
_PIPE_KEYS = frozenset({"vendor_lead_code", "source_id"})
_SECRET_FIELDS = frozenset({"agent_pass", "phone_pass"})
AGENT_USER_MAX = 20
# The quote around a field's value in the SQL of each function (see the module's docstring),
# and the duplicate_check options whose look-ups put fields of add_lead inside '...' instead.
_SQL_QUOTE = MappingProxyType({"add_user": "'", "update_user": "'", "add_list": "'",
                               "update_list": "'", "add_lead": '"'})
_LOOKUPS_QUOTED = (("DUPNAMEPHONE", frozenset({"first_name", "last_name"})),
                   ("DUPTITLEALTPHONE", frozenset({"title", "alt_phone"})))


@dataclass(frozen=True)
class InputRewrite:
    """A value VICIdial would not store as sent. `rule` never contains the value."""

    function: str
    field: str
    action: Action
    rule: str
    # What the dialer would store; "" for the passwords, which we never hold on to here.
    stored: str = dataclasses.field(repr=False)


def vicidial_rewrite(function: str, field_name: str, value: object, *,
                     duplicate_check: Sequence[str] = ()) -> InputRewrite | None:
    """How VICIdial would rewrite `value` of `field_name` in `function`; None if it keeps it.

    `duplicate_check` is add_lead's option list: some options put more fields into its SQL."""
    if function not in _FUNCTIONS or isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    if field_name == "agent_user":
        if len(text) > AGENT_USER_MAX:
            return InputRewrite(function, field_name, "reject",
                                f"must be at most {AGENT_USER_MAX} characters (VICIdial cuts "
                                "the rest off)", text[:AGENT_USER_MAX])
        return _breaking_sql(function, field_name, text, duplicate_check)
    rule = _FILTERS.get(field_name)
    stored = rule.apply(text) if rule is not None else text
    # First what fails the whole call, whatever else is wrong with the value.
    breaking = _breaking_sql(function, field_name, stored, duplicate_check)
    if breaking is not None:
        return breaking
    if field_name in _PIPE_KEYS and "|" in text:
        return InputRewrite(function, field_name, "reject",
                            "must not contain | (it would break VICIdial's lead look-ups)",
                            stored)
    if rule is None or stored == text:
        return None
    action: Action = rule.action
    broken = fields.check_field(function, field_name, stored)
    if action == "warn" and broken is not None and not broken.startswith("is not"):
        action = "reject"   # what would be stored breaks the field's own rule
    tense = "would be altered" if action == "reject" else "is altered"
    return InputRewrite(function, field_name, action,
                        f"{tense} by VICIdial, which {rule.describe()}",
                        "" if field_name in _SECRET_FIELDS else stored)


def _breaking_sql(function: str, field_name: str, stored: str,
                  duplicate_check: Sequence[str]) -> InputRewrite | None:
    """A reject when `stored` would break the SQL it goes into (an empty HTTP 500), else None."""
    breakers = [_SQL_QUOTE[function], "\\"]
    if function == "add_lead" and any(
            field_name in fields_ and any(o.startswith(prefix) for o in duplicate_check)
            for prefix, fields_ in _LOOKUPS_QUOTED):
        breakers.append("'")
    found = [char for char in breakers if char in stored]
    if not found:
        return None
    return InputRewrite(function, field_name, "reject",
                        f"must not contain {' or '.join(found)} (VICIdial writes it into its "
                        "SQL unescaped: the call fails with an empty HTTP 500)",
                        "" if field_name in _SECRET_FIELDS else stored)


def vicidial_input_problems(function: str, field_name: str, value: object, *,
                            duplicate_check: Sequence[str] = ()) -> str | None:
    """The rule `value` breaks because VICIdial would rewrite it and we refuse that, or None.

    Same contract as `fields.check_field`, so a CRM-row checker can ask both: None when the value
    may be sent (perhaps with a warning, see `vicidial_rewrite`), else the rule to report.
    """
    rewrite = vicidial_rewrite(function, field_name, value, duplicate_check=duplicate_check)
    return rewrite.rule if rewrite is not None and rewrite.action == "reject" else None


def vicidial_stored(function: str, field_name: str, value: str) -> str:
    """The value VICIdial would store for a sendable `value`: what the planner compares with."""
    rewrite = vicidial_rewrite(function, field_name, value)
    return value if rewrite is None or rewrite.field in _SECRET_FIELDS else rewrite.stored


def vicidial_login_problems(user: str, password: str) -> tuple[str, str] | None:
    """The API login field VICIdial would alter (so every call fails to log in), and the rule."""
    for name, value in (("user", user), ("pass", password)):
        if _WORD.apply(value) != value:
            return name, f"would be altered by VICIdial, which {_WORD.describe()}"
    return None
