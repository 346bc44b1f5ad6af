"""The sandbox's vicidial mode: VICIdial 2.14's non_agent_api.php, on the same store.

Ground truth is tests/fixtures/vicidial-2.14-responses.txt (answered byte for byte, but for the
clock and the lead ids); NON-AGENT_API.txt fills in what was not recorded. Where both are
silent, as follows.

Dispatch and input
- `version` answers before the login check. Then the login (echoing the password, as recorded),
  then `ERROR: NO FUNCTION SPECIFIED` for any function not below (active_lists, add_multi_lead).
- Input is filtered first, as non_agent_api.php does with use_non_latin off: characters outside
  each variable's set are dropped and `+` becomes a space in most lead fields (`_FILTERS`, a
  transcription of the PHP, kept apart from the client's rules so each checks the other).
  The database cuts agent_user at 20 characters and full names at 50.
- Plain text everywhere. ERROR data follows `: |` (`ERROR: list_info LIST DOES NOT EXIST:
  |apiuser|5555`), except add_lead's, which keep ` - ` as recorded; SUCCESS data follows ` - `.

Functions
- add_user/update_user: as the Elision sandbox, with the recorded data forms; a level-9 API user
  may add any level (a level-10 user was added in the recording). update_user with nothing to
  change answers NO UPDATES DEFINED.
- add_list/update_list/list_info: list_name 2-30 characters on add_list, 6-30 on update_list;
  an active other than Y means N on add_list. list_info rows end in `|`, as recorded.
- user_details, lead_search, lead_all_info: pipe-delimited rows, a header with `header=YES`.
  An API account is a user too: user_details shows it in group ADMIN.
- add_lead: phone 6-16 digits, phone_code defaults to 1 and list_id to 999; the list must exist
  only with list_exists_check=Y (else, as VICIdial, the lead goes to a list nobody made).
  duplicate_check honours DUPLIST, DUPCAMP and DUPSYS (a day range is ignored: every sandbox lead
  is recent); the other options are accepted and not checked. The GMT offset is always -5.00.
- update_lead: sets the status of the lead found by lead_id (search_method LEAD_ID, the
  default) or by vendor_lead_code (VENDOR_LEAD_CODE), the newest one; the other editable fields
  are not kept. Answers `LEAD HAS BEEN UPDATED - api user|lead_id`, or NO MATCHES FOUND.
- Reads need level 7 and "view reports" (lead reads also "add leads"), writes level 8.

SQL
- Values go into non_agent_api.php's SQL unescaped, as there: users and lists inside '...',
  a lead's columns inside "..." (the INSERT into vicidial_list), first_name and last_name inside
  '...' for a DUPNAMEPHONE check, title and alt_phone for a DUPTITLEALTPHONE one. A value that
  still holds its quote, or a backslash, after the filter breaks the statement: PHP dies and the
  answer is an empty HTTP 500 (`SQL_ERROR`), nothing written. As there, agent_user breaks the
  first look-up of the user; the other fields break the write, after every check passed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from reconciler.sandbox.shared import (
    ERROR,
    LEAD_COLUMNS,
    SUCCESS,
    UPDATABLE,
    Handler,
    Result,
    digits,
    dispatch,
)
from reconciler.sandbox.store import ApiUser, SandboxLead, SandboxList, SandboxUser, Store
from reconciler.sandbox.wire import Answer

VERSION, BUILD, GMT = "2.14-202", "250720-1841", "-5.00"
TEXT_TYPE = "text/html; charset=utf-8"   # as recorded (the Elision sandbox writes UTF-8)
_ZONE = timezone(timedelta(hours=-5))

# A statement the request's values broke: PHP dies, the web server answers an empty HTTP 500.
SQL_ERROR = "SQL_ERROR"
_DIED = Result(SQL_ERROR, "")

_WORD, _DIGITS, _UPPER = r"[^-_0-9a-zA-Z]", r"[^0-9]", r"[^A-Z]"
_LEAD_NAME, _ADDRESS = r"[^- '+_.0-9a-zA-Z]", r"[^- '+.:/@_0-9a-zA-Z]"
# non_agent_api.php's input filters: variable → characters removed; then `+` → space for
# the names in _PLUS.
_FILTERS = {
    "user": _WORD, "pass": _WORD, "source": r"[^0-9a-zA-Z]", "function": _WORD,
    "agent_pass": _WORD, "phone_pass": _WORD, "agent_user_group": _WORD, "phone_login": _WORD,
    "campaign_id": _WORD, "duplicate_check": _WORD,
    "agent_full_name": r"[^- +.:/@_0-9a-zA-Z]", "list_name": r"[^- +.:/@?&_0-9a-zA-Z]",
    "agent_user_level": _DIGITS, "voicemail_id": _DIGITS, "list_id": _DIGITS,
    "phone_code": _DIGITS, "lead_id": _DIGITS, "records": _DIGITS, "phone_number": r"[^,0-9]",
    "active": _UPPER, "country_code": _UPPER, "gender": _UPPER, "list_exists_check": _UPPER,
    "leads_counts": _UPPER, "header": _UPPER, "search_method": r"[^_A-Z]",
    "status": r"[^0-9a-zA-Z]",
    "vendor_lead_code": r"[;#]", "source_id": r"[;#]", "comments": r"[;#]",
    "title": r"[^- '_.0-9a-zA-Z]", "first_name": _LEAD_NAME, "last_name": _LEAD_NAME,
    "alt_phone": _LEAD_NAME, "middle_initial": r"[^0-9a-zA-Z]",
    "address1": _ADDRESS, "address2": _ADDRESS, "address3": _ADDRESS, "city": _ADDRESS,
    "security_phrase": _ADDRESS, "owner": _ADDRESS, "state": r"[^- 0-9a-zA-Z]",
    "province": r"[^- '+._0-9a-zA-Z]", "postal_code": r"[^- '+0-9a-zA-Z]",
    "email": r"[^- '+.:/@%_0-9a-zA-Z]", "date_of_birth": r"[^-0-9]",
}
_PLUS = frozenset({
    "vendor_lead_code", "source_id", "comments", "first_name", "last_name", "alt_phone",
    "address1", "address2", "address3", "city", "security_phrase", "owner", "province",
    "postal_code", "email"})
LEAD_ALL_INFO_HEADER = (
    "status|user|vendor_lead_code|source_id|list_id|gmt_offset_now|phone_code|phone_number|"
    "title|first_name|middle_initial|last_name|address1|address2|address3|city|state|province|"
    "postal_code|country_code|gender|date_of_birth|alt_phone|email|security_phrase|comments|"
    "called_count|last_local_call_time|rank|owner|entry_list_id|lead_id")
_LEAD_DEFAULTS = {"gender": "U", "date_of_birth": "0000-00-00", "called_count": "0",
                  "last_local_call_time": "2008-01-01 00:00:00", "rank": "0",
                  "entry_list_id": "0"}


def call(store: Store, raw: Mapping[str, str]) -> Result:
    """Answer one request. The caller holds the store's lock."""
    params = {name: _filtered(name, value) for name, value in raw.items()}
    function = params.get("function", "")
    if function == "version":
        now = _now()
        return Result(SUCCESS, f"VERSION: {VERSION}|BUILD: {BUILD}|DATE: {_stamp(now)}|"
                               f"EPOCH: {int(now.timestamp())}|DST: 0|TZ: {GMT}|TZNOW: {GMT}|\n")
    return dispatch(store, params, HANDLERS)


def answer(result: Result) -> Answer:
    status = 500 if result.outcome == SQL_ERROR else 200
    return Answer(status, (("Content-Type", TEXT_TYPE),), result.body.encode("utf-8"))


def _breaks_sql(quote: str, *values: str | None) -> bool:
    """Whether one of `values`, written inside `quote` unescaped, breaks the SQL statement."""
    return any(value and (quote in value or "\\" in value) for value in values)


def _filtered(name: str, value: str) -> str:
    pattern = _FILTERS.get(name)
    if pattern is not None:
        value = re.sub(pattern, "", value)
    return value.replace("+", " ") if name in _PLUS else value


def _now() -> datetime:
    return datetime.now(_ZONE)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _error(function: str, reason: str, data: str) -> Result:
    return Result(ERROR, f"ERROR: {function} {reason}: |{data}\n")


def _success(function: str, reason: str, data: str) -> Result:
    return Result(SUCCESS, f"SUCCESS: {function} {reason} - {data}\n")


def _rows(params: Mapping[str, str], header: str, rows: list[str]) -> Result:
    lines = [header, *rows] if params.get("header") == "YES" else rows
    return Result(SUCCESS, "".join(f"{line}\n" for line in lines))


# --- users --------------------------------------------------------------------------------


def add_user(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "add_user"
    if not (api.level >= 8 and api.can_modify_users):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO ADD USERS", f"{api.user}|0")
    agent_user, agent_pass = p.get("agent_user", ""), p.get("agent_pass", "")
    level, name = p.get("agent_user_level", ""), p.get("agent_full_name", "")
    group = p.get("agent_user_group", "")
    if len(agent_user) < 2 or not (agent_pass and level and name and group):
        return _error(fn, "YOU MUST USE ALL REQUIRED FIELDS",
                      f"{api.user}|{agent_user}|{agent_pass}|{level}|{name}|{group}")
    if int(level) > api.level and api.level < 9:
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO ADD USERS IN THIS USER LEVEL",
                      f"{api.user}|{api.level}")
    if not store.group_exists(group):
        return _error(fn, "USER GROUP DOES NOT EXIST", f"{api.user}|{group}")
    if _breaks_sql("'", agent_user):
        return _DIED
    if store.user(agent_user[:20]) is not None or store.is_api_account(agent_user[:20]):
        return _error(fn, "USER ALREADY EXISTS", f"{api.user}|{agent_user}")
    if _breaks_sql("'", *(p.get(name) for name in UPDATABLE)):
        return _DIED
    store.insert_user(SandboxUser(
        agent_user=agent_user[:20], agent_pass=agent_pass, full_name=name[:50],
        user_level=int(level), user_group=group, phone_login=p.get("phone_login", ""),
        phone_pass=p.get("phone_pass", ""), voicemail_id=p.get("voicemail_id", ""),
        email=p.get("email", ""), active="Y"))
    return _success(fn, "USER HAS BEEN ADDED",
                    f"{api.user}|{agent_user}|{agent_pass}|{level}|{name}|{group}")


def update_user(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "update_user"
    if not (api.level >= 8 and api.can_modify_users):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO UPDATE USERS", f"{api.user}|0")
    agent_user = p.get("agent_user", "")
    if len(agent_user) < 2:
        return _error(fn, "YOU MUST USE ALL REQUIRED FIELDS", f"{api.user}|{agent_user}|")
    if _breaks_sql("'", agent_user):
        return _DIED
    target = store.user(agent_user)
    if target is None and not store.is_api_account(agent_user):
        return _error(fn, "USER DOES NOT EXIST", f"{api.user}|")
    if target is None or target.user_level > api.level:
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO UPDATE THIS USER",
                      f"{api.user}|{agent_user}")
    # As in VICIdial, an empty optional field is no change.
    changes = {name: p[name] for name in UPDATABLE if p.get(name)}
    problem = _user_change_problem(store, api, target, changes)
    if problem is not None:
        return _error(fn, f"{problem[0]}, THIS IS AN OPTIONAL FIELD", problem[1])
    if not changes:
        return _error(fn, "NO UPDATES DEFINED", f"{api.user}|0")
    if _breaks_sql("'", *changes.values()):
        return _DIED
    for name, value in changes.items():
        setattr(target, UPDATABLE[name], int(value) if name == "agent_user_level" else value)
    return _success(fn, "USER HAS BEEN UPDATED", f"{api.user}|{agent_user}|")


def _user_change_problem(store: Store, api: ApiUser, target: SandboxUser,
                         changes: Mapping[str, str]) -> tuple[str, str] | None:
    name, level = changes.get("agent_full_name"), changes.get("agent_user_level")
    group, active = changes.get("agent_user_group"), changes.get("active")
    if name is not None and len(name) > 50:
        return "YOU MUST USE A VALID FULL NAME", f"{api.user}|{name}"
    if level is not None and not (1 <= int(level) <= 9 and int(level) <= api.level):
        return ("YOU MUST USE A VALID USER LEVEL",
                f"{api.user}|{level}|{api.level}|{target.user_level}")
    if group is not None and not store.group_exists(group):
        return "YOU MUST USE A VALID USER GROUP", f"{api.user}|{group}|0"
    login = changes.get("phone_login")
    if login is not None and not (len(login) <= 20 and store.phone_known(login)):
        return "YOU MUST USE A VALID PHONE LOGIN", f"{api.user}|{login}|0|0"
    if active is not None and active not in ("Y", "N"):
        return "ACTIVE MUST BE Y OR N", api.user
    return None


def user_details(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "user_details"
    if not (api.level >= 7 and api.can_view_reports):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO GET USER DETAILS", f"{api.user}|0")
    agent_user = p.get("agent_user", "")
    if not 2 <= len(agent_user) <= 20:
        return _error(fn, "INVALID SEARCH PARAMETERS", f"{api.user}|{agent_user}|")
    u = store.user(agent_user)
    if u is not None:
        row = f"{u.agent_user}|{u.full_name}|{u.user_group}|{u.user_level}|{u.active}"
    elif store.is_api_account(agent_user):
        account = next(a for a in store.data.api_users if a.user == agent_user)
        row = f"{account.user}|{account.user}|ADMIN|{account.level}|Y"
    else:
        return _error(fn, "USER NOT FOUND", f"{api.user}|{agent_user}|")
    return _rows(p, "user|full_name|user_group|user_level|active", [row])


# --- lists --------------------------------------------------------------------------------


def add_list(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "add_list"
    if not (api.level >= 8 and api.can_modify_lists):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO ADD LISTS", f"{api.user}|0")
    list_id, name = p.get("list_id", ""), p.get("list_name", "")
    campaign_id = p.get("campaign_id", "")
    if not (digits(list_id, 2, 14) and 2 <= len(name) <= 30 and 2 <= len(campaign_id) <= 8):
        return _error(fn, "YOU MUST USE ALL REQUIRED FIELDS",
                      f"{api.user}|{list_id}|{name}|{campaign_id}")
    if not store.campaign_exists(campaign_id):
        return _error(fn, "CAMPAIGN DOES NOT EXIST", f"{api.user}|{campaign_id}")
    if store.get_list(list_id) is not None:
        return _error(fn, "LIST ALREADY EXISTS", f"{api.user}|{list_id}")
    if _breaks_sql("'", name, campaign_id, p.get("active")):
        return _DIED
    active = "Y" if p.get("active") == "Y" else "N"
    store.insert_list(SandboxList(list_id, name, campaign_id, active, changed_at=_stamp(_now())))
    return _success(fn, "LIST HAS BEEN ADDED", f"{api.user}|{list_id}|{name}|{campaign_id}")


def update_list(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "update_list"
    if not (api.level >= 8 and api.can_modify_lists):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO UPDATE LISTS", api.user)
    list_id = p.get("list_id", "")
    if not digits(list_id, 2, 14):
        return _error(fn, "YOU MUST USE ALL REQUIRED FIELDS", f"{api.user}|{list_id}")
    target = store.get_list(list_id)
    if target is None:
        return _error(fn, "LIST DOES NOT EXIST", f"{api.user}|{list_id}")
    name, campaign_id, active = p.get("list_name"), p.get("campaign_id"), p.get("active")
    optional = "THIS IS AN OPTIONAL FIELD"
    if campaign_id and not store.campaign_exists(campaign_id):
        return _error(fn, f"CAMPAIGN DOES NOT EXIST, {optional}", f"{api.user}|{campaign_id}")
    if name and not 6 <= len(name) <= 30:
        return _error(fn, f"LIST NAME MUST BE FROM 6 TO 30 CHARACTERS, {optional}",
                      f"{api.user}|{name}")
    if active and active not in ("Y", "N"):
        return _error(fn, f"ACTIVE MUST BE Y OR N, {optional}", f"{api.user}|{active}")
    if not (name or campaign_id or active):
        return Result(ERROR, f"NOTICE: {fn} NO UPDATES DEFINED - {api.user}|\n")
    if _breaks_sql("'", name, campaign_id, active):
        return _DIED
    target.list_name = name or target.list_name
    target.campaign_id = campaign_id or target.campaign_id
    target.active = active or target.active
    target.changed_at = _stamp(_now())
    return _success(fn, "LIST HAS BEEN UPDATED", f"{api.user}|{list_id}")


def list_info(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "list_info"
    if not (api.level >= 8 and api.can_modify_lists):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO MODIFY LISTS", api.user)
    list_id = p.get("list_id", "")
    if not digits(list_id, 2, 14):
        return _error(fn, "YOU MUST USE ALL REQUIRED FIELDS", f"{api.user}|{list_id}")
    x = store.get_list(list_id)
    if x is None:
        return _error(fn, "LIST DOES NOT EXIST", f"{api.user}|{list_id}")
    header = ("list_id|list_name|campaign_id|active|list_changedate|list_lastcalldate|"
              "expiration_date|resets_today|")
    row = (f"{x.list_id}|{x.list_name}|{x.campaign_id}|{x.active}|{x.changed_at}|"
           f"{x.last_call_at}|{x.expiration_date}|{x.resets_today}|")
    if p.get("leads_counts") == "Y":
        leads = [lead for lead in store.leads() if lead.list_id == list_id]
        header += "all_leads_count|new_leads_count|"
        row += f"{len(leads)}|{sum(1 for lead in leads if lead.status == 'NEW')}|"
    return _rows(p, header, [row])


# --- leads --------------------------------------------------------------------------------


def add_lead(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    if not (api.level >= 8 and api.can_add_leads):
        return _line(ERROR, "USER DOES NOT HAVE PERMISSION TO ADD LEADS TO THE SYSTEM",
                     f"{api.user}|0")
    phone = p.get("phone_number", "")
    if not 6 <= len(phone) <= 16:
        return _line(ERROR, "INVALID PHONE NUMBER LENGTH", f"{phone}|{api.user}")
    list_id = p.get("list_id") or "999"
    if p.get("list_exists_check") == "Y" and store.get_list(list_id) is None:
        return _line(ERROR, "NOT A DEFINED LIST ID, LIST EXISTS CHECK ENABLED",
                     f"{phone}|{list_id}")
    options = p.get("duplicate_check", "")
    duplicate = _duplicate(store, phone, list_id, options)
    if duplicate is not None:
        return duplicate
    for prefix, quoted in _LOOKUPS_QUOTED:   # after the phone checks, as there
        if prefix in options and _breaks_sql("'", *(p.get(name) for name in quoted)):
            return _DIED
    columns = {k: v for k, v in p.items() if k in LEAD_COLUMNS and v}
    if _breaks_sql('"', *columns.values()):
        return _DIED
    columns.update(phone_code=p.get("phone_code") or "1", gmt_offset_now=GMT)
    lead_id = store.insert_lead(list_id, phone, columns)
    return _line(SUCCESS, "LEAD HAS BEEN ADDED", f"{phone}|{list_id}|{lead_id}|{GMT}|{api.user}")


# duplicate_check options whose look-ups put lead fields inside '...'.
_LOOKUPS_QUOTED = (("DUPNAMEPHONE", ("first_name", "last_name")),
                   ("DUPTITLEALTPHONE", ("title", "alt_phone")))


def _line(outcome: str, reason: str, data: str) -> Result:
    return Result(outcome, f"{outcome}: add_lead {reason} - {data}\n")


def _duplicate(store: Store, phone: str, list_id: str, options: str) -> Result | None:
    campaign = getattr(store.get_list(list_id), "campaign_id", None)
    for option in options.split("-"):
        scope = re.sub(r"\d+DAY$", "", option)
        same_phone = [lead for lead in store.leads() if lead.phone_number == phone]
        if scope == "DUPLIST":
            found = [lead for lead in same_phone if lead.list_id == list_id]
            if found:
                return _line(ERROR, "DUPLICATE PHONE NUMBER IN LIST",
                             f"{phone}|{list_id}|{found[0].lead_id}")
        elif scope in ("DUPCAMP", "DUPSYS"):
            found = [lead for lead in same_phone if scope == "DUPSYS" or (
                campaign is not None
                and getattr(store.get_list(lead.list_id), "campaign_id", None) == campaign)]
            where = "SYSTEM" if scope == "DUPSYS" else "CAMPAIGN LISTS"
            if found:
                return _line(ERROR, f"DUPLICATE PHONE NUMBER IN {where}",
                             f"{phone}|{list_id}|{found[0].lead_id}|{found[0].list_id}")
    return None


def lead_search(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "lead_search"
    if not (api.level >= 7 and api.can_view_reports and api.can_add_leads):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO SEARCH FOR LEADS", f"{api.user}|0")
    phones = [x for x in p.get("phone_number", "").split(",") if 6 <= len(x) <= 19]
    if not phones:
        return _error(fn, "NO VALID SEARCH METHOD", f"{api.user}|{p.get('phone_number', '')}|")
    limit = int(p.get("records") or 1000)
    newest = sorted(store.leads(), key=lambda lead: -lead.lead_id)
    found = {x: [str(lead.lead_id) for lead in newest if lead.phone_number == x] for x in phones}
    if not any(found.values()):
        return _error(fn, "NO MATCHES FOUND IN THE SYSTEM", f"{api.user}|{','.join(phones)}|")
    rows = [f"{x}|{len(ids)}|{'-'.join(ids[:limit])}" for x, ids in found.items()]
    return _rows(p, "search_key|records_found|lead_ids", rows)


def lead_all_info(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "lead_all_info"
    if not (api.level >= 7 and api.can_view_reports and api.can_add_leads):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO GET LEAD INFO", f"{api.user}|0")
    lead_id, phone = p.get("lead_id", ""), p.get("phone_number", "")
    newest = sorted(store.leads(), key=lambda lead: -lead.lead_id)
    if digits(lead_id, 1, 10):
        found = [lead for lead in newest if lead.lead_id == int(lead_id)]
    elif digits(phone, 6, 19):
        found = [lead for lead in newest if lead.phone_number == phone][:1000]
    else:
        return _error(fn, "INVALID SEARCH PARAMETERS", f"{api.user}|{lead_id}|{phone}|")
    if not found:
        return _error(fn, "LEAD NOT FOUND", f"{api.user}|{lead_id}|{phone}|")
    return _rows(p, LEAD_ALL_INFO_HEADER, [_lead_row(lead) for lead in found])


def update_lead(store: Store, api: ApiUser, p: Mapping[str, str]) -> Result:
    fn = "update_lead"
    if not (api.level >= 8 and api.can_add_leads):
        return _error(fn, "USER DOES NOT HAVE PERMISSION TO UPDATE LEADS IN THE SYSTEM",
                      f"{api.user}|0")
    method = p.get("search_method") or "LEAD_ID"
    lead_id, vendor = p.get("lead_id", ""), p.get("vendor_lead_code", "")
    newest = sorted(store.leads(), key=lambda lead: -lead.lead_id)
    if "LEAD_ID" in method and digits(lead_id, 1, 9):
        found = [lead for lead in newest if lead.lead_id == int(lead_id)]
    elif "VENDOR_LEAD_CODE" in method and vendor:
        found = [lead for lead in newest if lead.fields.get("vendor_lead_code") == vendor]
    else:
        return _error(fn, "NO VALID SEARCH METHOD", f"{api.user}|SYSTEM|{lead_id}|{vendor}|")
    if not found:
        return _error(fn, "NO MATCHES FOUND IN THE SYSTEM", f"{api.user}|{lead_id}|{vendor}|")
    status = p.get("status", "")
    if status:
        found[0].status = status[:6]
    return _success(fn, "LEAD HAS BEEN UPDATED", f"{api.user}|{found[0].lead_id}")


def _lead_row(lead: SandboxLead) -> str:
    known = {**_LEAD_DEFAULTS, **lead.fields, "status": lead.status, "list_id": lead.list_id,
             "phone_number": lead.phone_number, "lead_id": str(lead.lead_id)}
    return "|".join(known.get(column, "") for column in LEAD_ALL_INFO_HEADER.split("|"))


HANDLERS: dict[str, Handler] = {
    "add_user": add_user, "update_user": update_user, "user_details": user_details,
    "add_list": add_list, "update_list": update_list, "list_info": list_info,
    "add_lead": add_lead, "lead_search": lead_search, "lead_all_info": lead_all_info,
    "update_lead": update_lead,
}
