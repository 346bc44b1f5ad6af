"""Request builders for VICIdial's NON-AGENT API functions. Pure: no I/O.

add_user, update_user and add_list are built by `adapters.dialer.requests` (the two APIs take
the same fields for them). The functions here exist only in VICIdial; their fields, as
NON-AGENT_API.txt gives them:

- version: no field, and no login: `non_agent_api.php?function=version`.
- user_details: agent_user "2-20 characters" (settings stage/header left at pipe, no header).
- list_info: list_id "must be all numbers, 2-14 digits"; leads_counts Y/N.
- update_list: list_id, and the editable list_name "6-30 characters", campaign_id "2-8
  characters", active Y/N.
- add_lead: phone_number, phone_code, list_id, the lead columns, and the settings
  duplicate_check (e.g. `DUPLIST-DUPTITLEALTPHONELIST`) and list_exists_check ("Returns ERROR if
  the list_id is not defined in the system": without it a lead for a missing list is added to it).
- lead_search: phone_number "6-19 digits (multiple separated by a comma)"; records.
- lead_all_info: lead_id "1-10 digits", or phone_number "can be used in place of a lead_id".
- update_lead: lead_id "1-9 digits", or vendor_lead_code with search_method VENDOR_LEAD_CODE
  (searched in the whole system); the editable status "1-6 characters".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.adapters.dialer.requests import ApiLogin, DialerRequest, api_request
from reconciler.core import fields
from reconciler.core.fields import FieldValue, Lead, duplicate_check_value
from reconciler.errors import FieldInvalid

# add_lead's first three parameters, in NON-AGENT_API's order.
_LEAD_HEAD = ("phone_number", "phone_code", "list_id")


def build_version() -> DialerRequest:
    """version answers without a login, so none is sent."""
    return DialerRequest("version", (("function", "version"),), frozenset())


def build_user_details(login: ApiLogin, agent_user: FieldValue) -> DialerRequest:
    _check("user_details", "agent_user", agent_user)
    return api_request(login, "user_details", {"agent_user": agent_user})


def build_list_info(
    login: ApiLogin, list_id: FieldValue, *, leads_counts: bool = False
) -> DialerRequest:
    _check("list_info", "list_id", list_id)
    params: dict[str, FieldValue] = {"list_id": list_id}
    if leads_counts:
        params["leads_counts"] = "Y"
    return api_request(login, "list_info", params)


def build_update_list(
    login: ApiLogin, list_id: FieldValue, changes: Mapping[str, FieldValue]
) -> DialerRequest:
    """update_list for `list_id`, changing list_name, campaign_id and/or active (at least one)."""
    if not changes:
        raise FieldInvalid("update_list", "changes", "must name at least one field to change")
    for name, value in changes.items():
        if name not in fields.UPDATE_LIST_OPTIONAL:
            raise FieldInvalid("update_list", name, "is not a field update_list can change")
        _check("update_list", name, value)
    _check("update_list", "list_id", list_id)
    ordered = {name: changes[name] for name in fields.UPDATE_LIST_OPTIONAL if name in changes}
    return api_request(login, "update_list", {"list_id": list_id, **ordered})


def build_add_lead(
    login: ApiLogin,
    lead: Lead,
    *,
    duplicate_check: Sequence[str] = (),
    list_exists_check: bool = True,
) -> DialerRequest:
    """add_lead for one lead: phone_number, phone_code, list_id first, the other columns in the
    order given (empty ones left out: the dialer's default is the same), then the settings."""
    problems = fields.lead_problems(lead, "add_lead")
    if problems:
        raise FieldInvalid("add_lead", *problems[0])
    params: dict[str, FieldValue] = {name: lead[name] for name in _LEAD_HEAD if name in lead}
    params.update((name, value) for name, value in lead.items()
                  if name not in _LEAD_HEAD and value != "")
    if params.get("phone_code") == "":
        del params["phone_code"]   # the dialer's default, 1
    if duplicate_check:
        params["duplicate_check"] = duplicate_check_value(duplicate_check)
    if list_exists_check:
        params["list_exists_check"] = "Y"
    return api_request(login, "add_lead", params)


def build_lead_search(
    login: ApiLogin, phone_numbers: Sequence[FieldValue], *, records: int | None = None
) -> DialerRequest:
    """lead_search for one or more phone numbers; `records` caps the lead ids per number."""
    if not phone_numbers:
        raise FieldInvalid("lead_search", "phone_number", "must name at least one number")
    for phone in phone_numbers:
        _check("lead_search", "phone_number", phone)
    params: dict[str, FieldValue] = {"phone_number": ",".join(str(p) for p in phone_numbers)}
    if records is not None:
        if isinstance(records, bool) or not 1 <= records <= 1000:
            raise FieldInvalid("lead_search", "records", "must be a number from 1 to 1000")
        params["records"] = records
    return api_request(login, "lead_search", params)


def build_lead_all_info(
    login: ApiLogin, *, lead_id: FieldValue | None = None, phone_number: FieldValue | None = None
) -> DialerRequest:
    """lead_all_info for one lead_id, or for every lead with one phone number (newest first)."""
    if lead_id is not None and phone_number is None:
        name, value = "lead_id", lead_id
    elif phone_number is not None and lead_id is None:
        name, value = "phone_number", phone_number
    else:
        raise FieldInvalid("lead_all_info", "lead_id", "or phone_number must be given, not both")
    _check("lead_all_info", name, value)
    return api_request(login, "lead_all_info", {name: value})


def build_update_lead(
    login: ApiLogin, *, status: str, lead_id: FieldValue | None = None,
    vendor_lead_code: FieldValue | None = None,
) -> DialerRequest:
    """update_lead setting one lead's status: found by lead_id, or else by vendor_lead_code."""
    params: dict[str, FieldValue]
    if lead_id is not None and vendor_lead_code is None:
        _check("update_lead", "lead_id", lead_id)
        params = {"lead_id": lead_id}
    elif vendor_lead_code is not None and lead_id is None:
        _check("update_lead", "vendor_lead_code", vendor_lead_code)
        params = {"search_method": "VENDOR_LEAD_CODE", "vendor_lead_code": vendor_lead_code}
    else:
        raise FieldInvalid("update_lead", "lead_id", "or vendor_lead_code must be given, not both")
    _check("update_lead", "status", status)
    if not status.isalnum():
        raise FieldInvalid("update_lead", "status", "must be letters and digits only")
    return api_request(login, "update_lead", {**params, "status": status})


def _check(function: str, name: str, value: object) -> None:
    problem = fields.check_field(function, name, value)
    if problem is not None:
        raise FieldInvalid(function, name, problem)
