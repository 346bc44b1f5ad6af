"""Request builders: validated, immutable API requests. Pure: no I/O.

A request is the function name, its parameters in the order the API document writes them, and the
set of secret values it carries (the API `pass`, `agent_pass`, `phone_pass`) so that every answer,
log line and error about it can be redacted by value as well as by shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from urllib.parse import quote_plus

from reconciler.core import fields
from reconciler.core.fields import FieldValue, Lead
from reconciler.core.leads.batching import QUOTE_PLUS_KEPT
from reconciler.errors import FieldInvalid
from reconciler.redact import MASK

# Parameters whose values are credentials.
SECRET_PARAMS = frozenset({"pass", "agent_pass", "phone_pass"})



@dataclass(frozen=True)
class ApiLogin:
    """The API user's credentials and the `source` tag sent with every call."""

    user: str
    password: str = field(repr=False)
    source: str


@dataclass(frozen=True, repr=False)
class DialerRequest:
    function: str
    params: tuple[tuple[str, str], ...]
    secrets: frozenset[str]
    lead_count: int = 0   # add_multi_lead only: how many leads the batch holds

    def redacted_params(self) -> tuple[tuple[str, str], ...]:
        return tuple((name, MASK if name in SECRET_PARAMS else value)
                     for name, value in self.params)

    def __repr__(self) -> str:
        # The default repr would print the passwords.
        return f"DialerRequest(function={self.function!r}, params={self.redacted_params()!r})"

    @cached_property
    def form_body(self) -> bytes:
        """The parameters form-encoded, as a POST carries them; made once per request (its
        size is checked against the limit, then it is sent)."""
        return form_encode(self.params)


def build_add_user(
    login: ApiLogin,
    *,
    agent_user: FieldValue,
    agent_pass: str,
    agent_user_level: FieldValue,
    agent_full_name: str,
    agent_user_group: str,
    phone_login: FieldValue | None = None,
    phone_pass: str | None = None,
    voicemail_id: FieldValue | None = None,
    email: str | None = None,
) -> DialerRequest:
    given = {
        "agent_user": agent_user, "agent_pass": agent_pass, "agent_user_level": agent_user_level,
        "agent_full_name": agent_full_name, "agent_user_group": agent_user_group,
        "phone_login": phone_login, "phone_pass": phone_pass, "voicemail_id": voicemail_id,
        "email": email,
    }
    for name in fields.ADD_USER_REQUIRED:
        if given[name] is None:
            raise FieldInvalid("add_user", name, fields.RULE_REQUIRED)
    present = {name: value for name, value in given.items() if value is not None}
    return _user_request(login, "add_user", present)


def build_update_user(
    login: ApiLogin, agent_user: FieldValue, changes: Mapping[str, FieldValue]
) -> DialerRequest:
    """update_user for `agent_user`, changing the fields in `changes` (at least one)."""
    if not changes:
        raise FieldInvalid("update_user", "changes", "must name at least one field to change")
    for name in changes:
        if name not in fields.UPDATE_USER_OPTIONAL:
            raise FieldInvalid("update_user", name, "is not a field update_user can change")
    return _user_request(login, "update_user", {"agent_user": agent_user, **changes})


def build_add_list(
    login: ApiLogin,
    list_id: FieldValue,
    list_name: str,
    campaign_id: str,
    active: str | None = None,
) -> DialerRequest:
    given: dict[str, FieldValue] = {
        "list_id": list_id, "list_name": list_name, "campaign_id": campaign_id,
    }
    if active is not None:   # the dialer defaults to N
        given["active"] = active
    for name, value in given.items():
        _check("add_list", fields.LIST_RULES, name, value)
    return api_request(login, "add_list", given)


def build_active_lists(login: ApiLogin) -> DialerRequest:
    return api_request(login, "active_lists", {})


def build_add_multi_lead(login: ApiLogin, leads: Sequence[Lead]) -> DialerRequest:
    """add_multi_lead for one batch. Lead values keep their JSON type (numbers stay numbers).

    A broken lead raises FieldInvalid whose field is `lead N.<field>`, N counted from 1 as the
    dialer counts them in its answer.
    """
    if not leads:
        raise FieldInvalid("add_multi_lead", "multi_leads", "must hold at least 1 lead")
    for number, lead in enumerate(leads, start=1):
        problems = fields.lead_problems(lead)
        if problems:
            name, rule = problems[0]
            raise FieldInvalid("add_multi_lead", f"lead {number}.{name}", rule)
    request = api_request(login, "add_multi_lead", {"multi_leads": encode_leads(leads)})
    return replace(request, lead_count=len(leads))


def encode_leads(leads: Sequence[Lead]) -> str:
    """The `multi_leads` value: the JSON list of leads, compact, as PHP's json_encode writes it."""
    return json.dumps([dict(lead) for lead in leads], separators=(",", ":"))


def build_add_multi_lead_encoded(login: ApiLogin, multi_leads: str,
                                 lead_count: int) -> DialerRequest:
    """add_multi_lead for a batch whose leads were checked and JSON-encoded when planned
    (core/leads/batching.py): `multi_leads` is the value encode_leads would give them."""
    if lead_count < 1:
        raise FieldInvalid("add_multi_lead", "multi_leads", "must hold at least 1 lead")
    request = api_request(login, "add_multi_lead", {"multi_leads": multi_leads})
    return replace(request, lead_count=lead_count)


def form_encode(params: Iterable[tuple[str, str]]) -> bytes:
    """application/x-www-form-urlencoded, byte for byte as urllib's urlencode (and httpx) give
    it, faster for long ASCII values such as a batch's JSON."""
    return "&".join(f"{_quote_plus(name)}={_quote_plus(value)}"
                    for name, value in params).encode()


# quote_plus keeps QUOTE_PLUS_KEPT, writes a space as `+` and every other byte as %XX.
_ESCAPES = tuple((char, f"%{ord(char):02X}") for char in map(chr, range(128))
                 if char not in QUOTE_PLUS_KEPT and char not in "% ")


def _quote_plus(value: str) -> str:
    """quote_plus(value): for ASCII text, a few str.replace passes instead of a Python-level
    step per character (a batch's JSON is ASCII: json.dumps escapes the rest)."""
    if len(value) < 256 or not value.isascii():
        return quote_plus(value)
    value = value.replace("%", "%25")
    for char, escape in _ESCAPES:
        if char in value:
            value = value.replace(char, escape)
    return value.replace(" ", "+")


def api_request(login: ApiLogin, function: str, params: Mapping[str, FieldValue]) -> DialerRequest:
    """Assemble a request: the login, the function, then `params` as given.

    Only the login is checked here; the builders above check their fields first.
    """
    broken = fields.check_login(login.user, login.password, login.source)
    if broken is not None:
        raise FieldInvalid(function, *broken)
    pairs = (
        ("source", login.source), ("user", login.user), ("pass", login.password),
        ("function", function),
        *((name, str(value)) for name, value in params.items()),
    )
    secrets = frozenset(value for name, value in pairs if name in SECRET_PARAMS and value)
    return DialerRequest(function, pairs, secrets)


def _user_request(login: ApiLogin, function: str, given: Mapping[str, FieldValue]) -> DialerRequest:
    for name, value in given.items():
        _check(function, fields.USER_RULES, name, value)
    ordered = {name: given[name] for name in fields.USER_RULES if name in given}
    return api_request(login, function, ordered)


def _check(
    function: str, rules: Mapping[str, fields.FieldRule], name: str, value: object
) -> None:
    problem = rules[name].check(value)
    if problem is not None:
        raise FieldInvalid(function, name, problem)
