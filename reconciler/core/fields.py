"""The dialer API's field rules, as data, and one validator for a single value.

The rules come from the Elision API document (users, lists) and from the VICIdial `vicidial_list`
column sizes (lead fields the document does not bound). The CRM-row checker and the request
builders use the same `check_field`, so a row is rejected with exactly the rule the builder would
have raised. Rule strings never contain the value: values can be passwords. Pure data with no
I/O, so the spec loader and the CRM reader check values by the same rules as the clients.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.errors import FieldInvalid

# What callers may pass as a field value. Integers are accepted because CRM columns and the
# document's own lead example (`"phone_number":1234567893`) carry numbers.
FieldValue = str | int
Lead = Mapping[str, FieldValue]          # one lead's fields, as sent

RULE_REQUIRED = "is required"
RULE_TYPE = "must be text or a whole number"
RULE_CONTROL = "must not contain control characters"

# Unicode categories that break a one-line field: C0/C1 controls (newline, tab, NUL, DEL) and the
# Unicode line and paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


@dataclass(frozen=True)
class FieldRule:
    """Length bounds, and optionally digits-only or a fixed set of choices."""

    min_len: int
    max_len: int
    digits: bool = False
    choices: tuple[str, ...] = ()
    text: str = ""   # the rule as the user reads it; derived from the bounds when empty

    @property
    def rule(self) -> str:
        if self.text:
            return self.text
        if self.choices:
            return "must be " + " or ".join(self.choices)
        unit = "digits" if self.digits else "characters"
        if self.min_len == 0:
            return f"must be at most {self.max_len} {unit}"
        if self.min_len == self.max_len:
            return f"must be exactly {self.max_len} {unit}"
        return f"must be {self.min_len}-{self.max_len} {unit}"

    def check(self, value: object) -> str | None:
        """None when `value` obeys the rule, else the rule it breaks."""
        if type(value) is str:      # most values: skip the other type checks
            text = value
        # bool is an int subclass; True is not a field value.
        elif isinstance(value, bool) or not isinstance(value, (str, int)):
            return RULE_TYPE
        else:
            text = str(value)
        # Printable ASCII (most values) has no control character: skip the per-character look.
        if not (text.isascii() and text.isprintable()) and any(
                unicodedata.category(char) in _CONTROL_CATEGORIES for char in text):
            return RULE_CONTROL
        if self.choices:
            return None if text in self.choices else self.rule
        if not self.min_len <= len(text) <= self.max_len:
            return self.rule
        if self.digits and text and not (text.isascii() and text.isdigit()):
            return self.rule
        return None


def _text(min_len: int, max_len: int) -> FieldRule:
    return FieldRule(min_len, max_len)


def _digits(min_len: int, max_len: int) -> FieldRule:
    return FieldRule(min_len, max_len, digits=True)


_YES_NO = FieldRule(1, 1, choices=("Y", "N"))
_USER_LEVEL = FieldRule(1, 1, choices=tuple("123456789"), text="must be 1 digit from 1 to 9")

# The API login, sent with every function. The document bounds only `source`; `user` and `pass`
# are bounded by VICIdial's vicidial_users columns.
LOGIN_RULES: Mapping[str, FieldRule] = MappingProxyType({
    "source": _text(2, 20),
    "user": _text(1, 20),
    "pass": _text(1, 100),
})

# add_user / update_user, in the document's order (requests list them in this order).
USER_RULES: Mapping[str, FieldRule] = MappingProxyType({
    "agent_user": _text(2, 20),
    "agent_pass": _text(1, 20),
    "agent_user_level": _USER_LEVEL,
    "agent_full_name": _text(1, 50),
    "agent_user_group": _text(1, 20),
    "phone_login": _text(1, 20),
    "phone_pass": _text(1, 20),
    "voicemail_id": _digits(1, 10),
    "email": _text(1, 100),
    "active": _YES_NO,
})
ADD_USER_REQUIRED = ("agent_user", "agent_pass", "agent_user_level", "agent_full_name",
                     "agent_user_group")
ADD_USER_OPTIONAL = ("phone_login", "phone_pass", "voicemail_id", "email")
UPDATE_USER_OPTIONAL = ("agent_pass", "agent_user_level", "agent_full_name", "agent_user_group",
                        "phone_login", "phone_pass", "voicemail_id", "email", "active")

LIST_RULES: Mapping[str, FieldRule] = MappingProxyType({
    "list_id": _digits(2, 14),
    "list_name": _text(6, 30),
    "campaign_id": _text(2, 8),
    "active": _YES_NO,
})

# One lead of add_multi_lead. The document requires phone_number and list_id and bounds nothing
# else; the other bounds are VICIdial's vicidial_list column sizes, so a value is never truncated
# silently by the database. phone_number is 6-18 digits: VICIdial refuses shorter numbers
# ("INVALID PHONE NUMBER LENGTH" for 5 digits) and the column holds 18. Empty optional values
# are allowed (the document's example sends `"email":""`).
LEAD_RULES: Mapping[str, FieldRule] = MappingProxyType({
    "phone_number": _digits(6, 18),
    "list_id": _digits(2, 14),
    "phone_code": _digits(0, 10),
    "vendor_lead_code": _text(0, 20),
    "source_id": _text(0, 50),
    "title": _text(0, 4),
    "first_name": _text(0, 30),
    "middle_initial": _text(0, 1),
    "last_name": _text(0, 30),
    "address1": _text(0, 100),
    "address2": _text(0, 100),
    "address3": _text(0, 100),
    "city": _text(0, 50),
    "state": _text(0, 2),
    "province": _text(0, 50),
    "postal_code": _text(0, 10),
    "country_code": _text(0, 3),
    "gender": FieldRule(0, 1, choices=("", "M", "F", "U"), text="must be M, F, U or empty"),
    "date_of_birth": _text(0, 10),
    "alt_phone": _digits(0, 12),
    "email": _text(0, 70),
    "security_phrase": _text(0, 100),
    "comments": _text(0, 255),
    "owner": _text(0, 20),
})
LEAD_REQUIRED = ("phone_number", "list_id")

# VICIdial's add_lead (NON-AGENT_API): one lead per call, with VICIdial's own bounds where they
# are narrower than the lead columns: "phone_number - must be all numbers, 6-16 digits",
# "phone_code - ... 1-4 digits (defaults to 1 if not set)", "list_id - ... 3-12 digits (defaults
# to 999 if not set)". A list_id the dialer would replace by 999 must never be sent.
VICIDIAL_LEAD_RULES: Mapping[str, FieldRule] = MappingProxyType({
    **LEAD_RULES,
    "phone_number": _digits(6, 16),
    "list_id": _digits(3, 12),
    "phone_code": _digits(0, 4),
})
# update_list changes these list fields (list_id names the list); same bounds as add_list.
UPDATE_LIST_OPTIONAL = ("list_name", "campaign_id", "active")
# VICIdial's lead reads: lead_search and lead_all_info look phone numbers of 6-19 digits up,
# lead_all_info also a lead_id of 1-10 digits.
SEARCH_PHONE_RULE = _digits(6, 19)
LEAD_ID_RULE = _digits(1, 10)
# update_lead: "lead_id - must be all numbers, 1-9 digits"; vendor_lead_code "1-20 characters";
# status "1-6 characters, not punctuation or spaces".
UPDATE_LEAD_RULES: Mapping[str, FieldRule] = MappingProxyType({
    "lead_id": _digits(1, 9),
    "vendor_lead_code": _text(1, 20),
    "status": _text(1, 6),
})

# Field rules per API function, as the CRM-row checker looks them up.
RULES: Mapping[str, Mapping[str, FieldRule]] = MappingProxyType({
    "add_user": MappingProxyType({k: USER_RULES[k] for k in ADD_USER_REQUIRED + ADD_USER_OPTIONAL}),
    "update_user": USER_RULES,
    "add_list": LIST_RULES,
    "active_lists": MappingProxyType({}),
    "add_multi_lead": LEAD_RULES,
    # The vicidial dialect's functions.
    "add_lead": VICIDIAL_LEAD_RULES,
    "update_list": LIST_RULES,
    "list_info": MappingProxyType({"list_id": LIST_RULES["list_id"]}),
    "user_details": MappingProxyType({"agent_user": USER_RULES["agent_user"]}),
    "lead_search": MappingProxyType({"phone_number": SEARCH_PHONE_RULE}),
    "lead_all_info": MappingProxyType({"lead_id": LEAD_ID_RULE,
                                       "phone_number": SEARCH_PHONE_RULE}),
    "update_lead": UPDATE_LEAD_RULES,
    "version": MappingProxyType({}),
})


def check_field(function: str, field: str, value: object) -> str | None:
    """Check one value against the rule of `field` in `function`.

    Returns None when the value is acceptable, else the rule it breaks ("must be 2-20
    characters"). For add_multi_lead the fields are those of one lead.
    """
    rules = RULES.get(function)
    if rules is None:
        return f"is not checked: unknown function {function!r}"
    rule = rules.get(field)
    if rule is None:
        return f"is not a field of {function}"
    return rule.check(value)


def check_login(user: object, password: object, source: object) -> tuple[str, str] | None:
    """The first (field, rule) the API login breaks, or None."""
    for name, value in (("source", source), ("user", user), ("pass", password)):
        problem = LOGIN_RULES[name].check(value)
        if problem is not None:
            return name, problem
    return None


def lead_problems(
    lead: Mapping[str, object], function: str = "add_multi_lead"
) -> list[tuple[str, str]]:
    """Every (field, rule) one lead breaks: missing required fields, unknown fields, bad values.

    `function` is add_multi_lead (Elision) or add_lead (VICIdial, one lead per call).
    """
    problems = [(name, RULE_REQUIRED) for name in LEAD_REQUIRED if name not in lead]
    rules = RULES.get(function)
    # It runs for every lead sent: the rules are looked up once, not field by field.
    for name, value in lead.items():
        rule = rules.get(name) if rules is not None else None
        problem = rule.check(value) if rule is not None else check_field(function, name, value)
        if problem is not None:
            problems.append((name, problem))
    return problems


# --- VICIdial's add_lead duplicate_check ------------------------------------------------------

# add_lead's duplicate_check options; each may end in a day range ("DUPSYS90DAY") and several
# are joined with "-".
DUPLICATE_CHECKS = frozenset({
    "DUPLIST", "DUPCAMP", "DUPSYS",
    "DUPPHONEALTLIST", "DUPPHONEALTCAMP", "DUPPHONEALTSYS",
    "DUPTITLEALTPHONELIST", "DUPTITLEALTPHONECAMP", "DUPTITLEALTPHONESYS",
    "DUPNAMEPHONELIST", "DUPNAMEPHONECAMP", "DUPNAMEPHONESYS",
})
DUPLICATE_CHECK_DAYS = (1, 2, 3, 7, 14, 15, 21, 28, 30, 60, 90, 180, 360)
_DAYS = re.compile(r"^(?P<option>[A-Z]+?)(?P<days>\d+)DAY$")


def duplicate_check_value(options: Sequence[str]) -> str:
    """The duplicate_check value for `options` ("DUPLIST", "DUPSYS90DAY"...), or FieldInvalid."""
    for option in options:
        match = _DAYS.match(option)
        base, days = (match.group("option"), int(match.group("days"))) if match else (option, 0)
        if base not in DUPLICATE_CHECKS or (match and days not in DUPLICATE_CHECK_DAYS):
            raise FieldInvalid("add_lead", "duplicate_check",
                               "must be DUPLIST, DUPCAMP, DUPSYS or another NON-AGENT_API "
                               "option, optionally ending in a day range such as 90DAY")
    if len(set(options)) != len(options):
        raise FieldInvalid("add_lead", "duplicate_check", "must not repeat an option")
    return "-".join(options)
