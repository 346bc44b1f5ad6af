"""The Elision API functions: field rules, permissions and the exact answers of the document.

The source of truth is the Elision document (tests/fixtures/dialer-crm-integration-api.txt). Where
it is silent, the sandbox does what a VICIdial fork would do, as follows.

Login and dispatch
- Credentials are checked before the function, as in VICIdial, and a failure answers in
  VICIdial's plain-text form whatever the function:
  `ERROR: Login incorrect, please try again: |<user>|<pass>|BAD|` — echoing the password like
  the real server, so that clients prove they redact it.
- A missing or unknown function answers `ERROR: NO FUNCTION SPECIFIED`.
- `source` is kept in the call log but not validated (VICIdial only logs it).
- Values are stored as sent (no trimming, no character filtering); lengths count characters.

add_user / update_user (plain text, `ERROR: <function> <reason> - <data>` plus a newline)
- Rights: level 8+ and "modify users". A required field missing or breaking its rule (including
  a level that is not one digit 1-9) answers the required-fields error, data `<api>|<agent_user>|`.
- An optional field present in the request is validated even when empty (all have a minimum of
  1), so an empty field cannot clear a value: omit it instead. add_user answers the same
  optional-field errors as update_user, with its own function name.
- A level above the API user's own: add_user answers `... IN THIS USER LEVEL - <api>|<api level>`,
  update_user the user-level error with data `<api>|<value>|<api level>|<current level>`.
- Data of the other optional-field errors, as the document shows them: full name
  `<api>|<value>`, group `<api>|<value>|0`, phone login `<api>|<value>|0|0`, phone password
  `<api>|<length>` (never the value), voicemail / email / active `<api>`.
- update_user with an invalid agent_pass (not in the document) answers
  `ERROR: update_user YOU MUST USE A VALID PASSWORD, THIS IS AN OPTIONAL FIELD - <api>`.
- phone_login must name a known phone when SandboxData.phones is set; otherwise 1-20 characters.
- API accounts share the users' namespace: add_user of an API account answers ALREADY EXISTS;
  update_user of one, or of a user above the API user's level, answers PERMISSION TO UPDATE THIS
  USER.
- update_user with no optional field changes nothing and answers SUCCESS. New users are active Y.

add_list / active_lists (JSON)
- Rights: level 8+ and "modify lists". Invalid values answer success:false with the three-field
  data echo and "list id must be 2-14 digits", "list name must be 6-30 characters" or
  "active must be Y or N"; a campaign_id outside 2-8 characters cannot exist and answers
  "<id> campaign does not exist". An empty `active` means the default, N.
- active_lists needs only a valid login; it lists active (Y) lists ordered by list_id, and an
  empty data array when there are none. Names are not escaped: a "-" in a name stays.

add_multi_lead (JSON)
- Rights: level 8+ and "add leads"; otherwise
  `["ERROR","add_multi_lead USER DOES NOT HAVE PERMISSION TO ADD LEADS","<api>","0"]`.
- multi_leads must be a non-empty JSON array of objects, else the required-fields array.
- Per lead, in order: the phone number is reduced to its digits (as VICIdial does) and must then
  have 6-18 → "Invalid phone number" with the digits as data; list_id must be 2-14 digits →
  "Invalid list id"; the list must exist (inactive lists take leads) → "<id> list does not exist".
  Leads get increasing lead_ids from SandboxData.first_lead_id and status NEW. Fields other than
  VICIdial's lead columns are ignored. There is no duplicate check: a resent batch adds its leads
  again, which is why the client must never resend one silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler.sandbox.shared import (
    ERROR,
    LEAD_COLUMNS,
    PARTIAL,
    SUCCESS,
    UPDATABLE,
    Handler,
    Result,
    digits,
    dispatch,
)
from reconciler.sandbox.store import ApiUser, SandboxList, SandboxUser, Store
from reconciler.sandbox.wire import php_json


def call(store: Store, params: Mapping[str, str]) -> Result:
    """Answer one API request. The caller holds the store's lock."""
    return dispatch(store, params, HANDLERS)


# --- field rules --------------------------------------------------------------------------


def _chars(value: str, low: int, high: int) -> bool:
    return low <= len(value) <= high


def _level(value: str) -> bool:
    return re.fullmatch("[1-9]", value) is not None


def _line(outcome: str, function: str, reason: str, data: str) -> Result:
    return Result(outcome, f"{outcome}: {function} {reason} - {data}\n")


def _optional_error(function: str, reason: str, data: str) -> Result:
    return _line(ERROR, function, f"{reason}, THIS IS AN OPTIONAL FIELD", data)


def _may_modify_users(api: ApiUser) -> bool:
    return api.level >= 8 and api.can_modify_users


def _check_contact_fields(function: str, store: Store, api: ApiUser,
                          params: Mapping[str, str]) -> Result | None:
    """phone_login, phone_pass, voicemail_id and email: optional in both user functions."""
    if "phone_login" in params:
        login = params["phone_login"]
        if not (_chars(login, 1, 20) and store.phone_known(login)):
            return _optional_error(function, "YOU MUST USE A VALID PHONE LOGIN",
                                   f"{api.user}|{login}|0|0")
    if "phone_pass" in params and not _chars(params["phone_pass"], 1, 20):
        return _optional_error(function, "YOU MUST USE A VALID PHONE PASSWORD",
                               f"{api.user}|{len(params['phone_pass'])}")
    if "voicemail_id" in params and not digits(params["voicemail_id"], 1, 10):
        return _optional_error(function, "YOU MUST USE A VALID VOICEMAIL ID", api.user)
    if "email" in params and not _chars(params["email"], 1, 100):
        return _optional_error(function, "YOU MUST USE A VALID EMAIL", api.user)
    return None


# --- users --------------------------------------------------------------------------------


def add_user(store: Store, api: ApiUser, params: Mapping[str, str]) -> Result:
    fn = "add_user"
    if not _may_modify_users(api):
        return _line(ERROR, fn, "USER DOES NOT HAVE PERMISSION TO ADD USERS", f"{api.user}|0")
    agent_user = params.get("agent_user", "")
    agent_pass = params.get("agent_pass", "")
    level = params.get("agent_user_level", "")
    full_name = params.get("agent_full_name", "")
    group = params.get("agent_user_group", "")
    if not (_chars(agent_user, 2, 20) and _chars(agent_pass, 1, 20) and _level(level)
            and _chars(full_name, 1, 50) and _chars(group, 1, 20)):
        return _line(ERROR, fn, "YOU MUST USE ALL REQUIRED FIELDS", f"{api.user}|{agent_user}|")
    problem = _check_contact_fields(fn, store, api, params)
    if problem is not None:
        return problem
    if int(level) > api.level:
        return _line(ERROR, fn, "USER DOES NOT HAVE PERMISSION TO ADD USERS IN THIS USER LEVEL",
                     f"{api.user}|{api.level}")
    if not store.group_exists(group):
        return _line(ERROR, fn, "USER GROUP DOES NOT EXIST", f"{api.user}|{group}")
    if store.user(agent_user) is not None or store.is_api_account(agent_user):
        return _line(ERROR, fn, "USER ALREADY EXISTS", f"{api.user}|{agent_user}")
    store.insert_user(SandboxUser(
        agent_user=agent_user, agent_pass=agent_pass, full_name=full_name,
        user_level=int(level), user_group=group,
        phone_login=params.get("phone_login", ""), phone_pass=params.get("phone_pass", ""),
        voicemail_id=params.get("voicemail_id", ""), email=params.get("email", ""), active="Y",
    ))
    # Like the real server, the answer echoes the agent's password.
    return _line(SUCCESS, fn, "USER HAS BEEN ADDED",
                 f"{api.user}|{agent_user}|{agent_pass}|{level}|{full_name}|{group}")


def update_user(store: Store, api: ApiUser, params: Mapping[str, str]) -> Result:
    fn = "update_user"
    if not _may_modify_users(api):
        return _line(ERROR, fn, "USER DOES NOT HAVE PERMISSION TO UPDATE USERS", f"{api.user}|0")
    agent_user = params.get("agent_user", "")
    if not _chars(agent_user, 2, 20):
        return _line(ERROR, fn, "YOU MUST USE ALL REQUIRED FIELDS", f"{api.user}|{agent_user}|")
    target = store.user(agent_user)
    if target is None and not store.is_api_account(agent_user):
        return _line(ERROR, fn, "USER DOES NOT EXIST", f"{api.user}|{agent_user}")
    if target is None or target.user_level > api.level:
        return _line(ERROR, fn, "USER DOES NOT HAVE PERMISSION TO UPDATE THIS USER",
                     f"{api.user}|{agent_user}")
    problem = _check_update_fields(store, api, target, params)
    if problem is not None:
        return problem
    for name, attribute in UPDATABLE.items():
        if name in params:
            value: Any = int(params[name]) if attribute == "user_level" else params[name]
            setattr(target, attribute, value)
    return _line(SUCCESS, fn, "USER HAS BEEN UPDATED", f"{api.user}|{agent_user}")


def _check_update_fields(store: Store, api: ApiUser, target: SandboxUser,
                         params: Mapping[str, str]) -> Result | None:
    fn = "update_user"
    if "agent_pass" in params and not _chars(params["agent_pass"], 1, 20):
        return _optional_error(fn, "YOU MUST USE A VALID PASSWORD", api.user)
    if "agent_full_name" in params and not _chars(params["agent_full_name"], 1, 50):
        return _optional_error(fn, "YOU MUST USE A VALID FULL NAME",
                               f"{api.user}|{params['agent_full_name']}")
    if "agent_user_level" in params:
        level = params["agent_user_level"]
        if not (_level(level) and int(level) <= api.level):
            return _optional_error(fn, "YOU MUST USE A VALID USER LEVEL",
                                   f"{api.user}|{level}|{api.level}|{target.user_level}")
    if "agent_user_group" in params:
        group = params["agent_user_group"]
        if not (_chars(group, 1, 20) and store.group_exists(group)):
            return _optional_error(fn, "YOU MUST USE A VALID USER GROUP", f"{api.user}|{group}|0")
    problem = _check_contact_fields(fn, store, api, params)
    if problem is not None:
        return problem
    if "active" in params and params["active"] not in ("Y", "N"):
        return _line(ERROR, fn, "ACTIVE MUST BE Y OR N, THIS IS AN OPTIONAL FIELD", api.user)
    return None


# --- lists --------------------------------------------------------------------------------


def _json_result(success: bool, message: str, data: Any) -> Result:
    body = php_json({"success": success, "message": message, "data": data})
    return Result(SUCCESS if success else ERROR, body, is_json=True)


def add_list(store: Store, api: ApiUser, params: Mapping[str, str]) -> Result:
    list_id = params.get("list_id", "")
    list_name = params.get("list_name", "")
    campaign_id = params.get("campaign_id", "")
    echo = {"list_id": list_id, "list_name": list_name, "campaign_id": campaign_id}
    if not (api.level >= 8 and api.can_modify_lists):
        # The Elision dialer echoes the API credentials here; so does the sandbox.
        return _json_result(False, f"{api.user} User does not have permission to add list in the "
                            "system", {"user": api.user, "password": params.get("pass", "")})
    if not (list_id and list_name and campaign_id):
        return _json_result(False, "Please send list id , campaign id and list name", echo)
    if not digits(list_id, 2, 14):
        return _json_result(False, "list id must be 2-14 digits", echo)
    if not _chars(list_name, 6, 30):
        return _json_result(False, "list name must be 6-30 characters", echo)
    active = params.get("active", "") or "N"
    if active not in ("Y", "N"):
        return _json_result(False, "active must be Y or N", echo)
    if not (_chars(campaign_id, 2, 8) and store.campaign_exists(campaign_id)):
        return _json_result(False, f"{campaign_id} campaign does not exist", echo)
    if store.get_list(list_id) is not None:
        return _json_result(False, f"{list_id} list already exist", echo)
    store.insert_list(SandboxList(list_id, list_name, campaign_id, active))
    return _json_result(True, f"{list_id} list created", echo)


def active_lists(store: Store, api: ApiUser, params: Mapping[str, str]) -> Result:
    names = [f"{x.campaign_id}-{x.list_id}-{x.list_name}" for x in store.active_lists()]
    return _json_result(True, "lists are listed successfully", names)


# --- leads --------------------------------------------------------------------------------


def add_multi_lead(store: Store, api: ApiUser, params: Mapping[str, str]) -> Result:
    if not (api.level >= 8 and api.can_add_leads):
        body = php_json([ERROR, "add_multi_lead USER DOES NOT HAVE PERMISSION TO ADD LEADS",
                         api.user, "0"])
        return Result(ERROR, body, is_json=True)
    leads = _decode_leads(params.get("multi_leads", ""))
    if leads is None:
        body = php_json([ERROR, "add_multi_lead YOU MUST USE ALL REQUIRED FIELDS", api.user, ""])
        return Result(ERROR, body, is_json=True)
    answers = {f"lead {n}": _add_one_lead(store, lead) for n, lead in enumerate(leads, start=1)}
    created = sum(1 for answer in answers.values() if answer["success"])
    outcome = SUCCESS if created == len(answers) else ERROR if created == 0 else PARTIAL
    return Result(outcome, php_json(answers), is_json=True)


def _decode_leads(raw: str) -> list[dict[str, Any]] | None:
    try:
        leads = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(leads, list) or not leads:
        return None
    if not all(isinstance(lead, dict) for lead in leads):
        return None
    return leads


def _add_one_lead(store: Store, lead: dict[str, Any]) -> dict[str, Any]:
    phone = re.sub("[^0-9]", "", _as_text(lead.get("phone_number")))
    if not _chars(phone, 6, 18):
        return {"success": False, "message": "Invalid phone number", "data": phone}
    list_id = _as_text(lead.get("list_id"))
    if not digits(list_id, 2, 14):
        return {"success": False, "message": "Invalid list id", "data": list_id}
    if store.get_list(list_id) is None:
        return {"success": False, "message": f"{list_id} list does not exist", "data": list_id}
    lead_fields = {k: _as_text(v) for k, v in lead.items() if k in LEAD_COLUMNS}
    lead_id = store.insert_lead(list_id, phone, lead_fields)
    return {"success": True, "message": "Record(s) Created",
            "data": f"{phone}|{list_id}|{lead_id}||NEW|"}


def _as_text(value: Any) -> str:
    """A JSON value as PHP would turn it into a string for SQL."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))        # PHP prints 1234567893.0 as "1234567893"
    if isinstance(value, (str, int, float)):
        return str(value)
    return ""


HANDLERS: dict[str, Handler] = {
    "add_user": add_user,
    "update_user": update_user,
    "add_list": add_list,
    "active_lists": active_lists,
    "add_multi_lead": add_multi_lead,
}
