"""Parse VICIdial NON-AGENT API answers into typed replies or our errors. Pure: no I/O.

Answer forms (tests/fixtures/vicidial-2.14-responses.txt is the ground truth, NON-AGENT_API.txt
fills in what was not recorded):
- status lines, read by `responses.read_plain_line`: `SUCCESS: add_lead LEAD HAS BEEN ADDED -
  7275551212|1001|8|-5.00|apiuser`, `ERROR: list_info LIST DOES NOT EXIST: |apiuser|5555`;
  `NOTICE:` lines may come before or after them and are kept as notices;
- bare data rows for the reads, pipe-delimited, no header unless asked for:
  list_info `1001|Renamed List|TESTCAMP|Y|2026-11-26 23:57:44||2099-12-31|1|`, user_details
  `user|full_name|user_group|user_level|active`, lead_search `phone|count|id-id-id` (one row per
  searched number), lead_all_info the 32 lead columns ending in lead_id (one row per lead);
- version: `VERSION: 2.14-202|BUILD: 250720-1841|DATE: ...|EPOCH: ...|DST: 0|TZ: -5.00|...`.
A JSON answer is handed to the Elision parser: a fork between the two keeps add_list's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NoReturn

from reconciler.adapters.dialer.responses import (
    SECRET_POSITIONS,
    PlainLine,
    answer_lines,
    parse_response,
    raise_plain_error,
    read_plain_line,
)
from reconciler.core.replies import ListAdded, Reply, UserAdded, UserUpdated
from reconciler.core.vicidial_replies import (
    LEAD_ALL_INFO_COLUMNS,
    LEAD_SEARCH_COLUMNS,
    LIST_INFO_COLUMNS,
    USER_DETAILS_COLUMNS,
    DuplicateLead,
    LeadAdded,
    LeadFound,
    LeadSearch,
    LeadsFound,
    LeadUpdated,
    ListInfo,
    ListUpdated,
    PhoneMatches,
    UserDetails,
    VersionInfo,
    VicidialReply,
)
from reconciler.errors import (
    DialerError,
    DialerMalformed,
    DialerRefused,
    DialerRejected,
    DoesNotExist,
)
from reconciler.redact import MASK, excerpt

_STATUS = re.compile(r"^(?:SUCCESS|ERROR)\s*:")
_NOTICE = re.compile(r"^NOTICE\s*:")
_VERSION_ITEM = re.compile(r"^(?P<name>[A-Z][A-Z_ ]*):\s?(?P<value>.*)$")
_DIGITS = re.compile(r"\d{1,20}")
_DATA_FUNCTIONS = {
    "user_details": USER_DETAILS_COLUMNS, "list_info": LIST_INFO_COLUMNS,
    "lead_search": LEAD_SEARCH_COLUMNS, "lead_all_info": LEAD_ALL_INFO_COLUMNS,
}

# ERROR messages (lower case, function name removed) that mean "the object is not there".
_NOT_FOUND = ("user not found", "lead not found", "no matches found in the system",
              "list does not exist", "not a defined list id")
# ERROR messages about the API user's configuration: stop the run.
_CONFIGURATION = ("not an allowed list id", "too many login attempts",
                  "your ip address is not allowed", "user_group does not exist")
# add_lead's duplicate errors: message start → positions of (phone, lead_id, list_id) in the
# data, and of the other list when the check spanned a campaign or the system.
_DUPLICATES = (
    ("duplicate phone number", (0, 2, 1, 3)),      # phone|list|lead[|dup list][|PHONE/ALT]
    ("duplicate title alt_phone", (-1, 3, 2, 4)),  # title|alt_phone|list|lead[|dup list]
    ("duplicate name phone", (2, 4, 3, 5)),        # first|last|phone|list|lead|dup list
)


def parse_vicidial_response(
    function: str, http_status: int, body: bytes, secrets: Iterable[str] = ()
) -> Reply | VicidialReply:
    """Read one answer to `function`; raise a DialerError subclass when it is not a success."""
    secrets = frozenset(s for s in secrets if s)
    lines = answer_lines(function, http_status, body, secrets, api_notices=True)
    if lines[0][0] in "{[":
        return parse_response(function, http_status, body, secrets)
    notices = tuple(excerpt(line, secrets) for line in lines if _NOTICE.match(line))
    start = next((i for i, line in enumerate(lines) if line and not _NOTICE.match(line)), None)
    if start is None:
        raise DialerRejected(f"{function}: the dialer answered only a notice ({notices[0]})",
                             function=function, excerpt=notices[0])
    rest = lines[start:]   # a status line stops at the next NOTICE line; data rows skip them
    if _STATUS.match(rest[0]):
        line = read_plain_line(function, rest, secrets, SECRET_POSITIONS.get(function, ()))
        if not line.succeeded:
            _raise_error(line)
        return _success(line, notices)
    if function == "version":
        return _version(rest[0], secrets)
    columns = _DATA_FUNCTIONS.get(function)
    if columns is None:
        raise DialerMalformed(f"{function}: unreadable answer from the dialer (neither SUCCESS "
                              "nor ERROR)", function=function, excerpt=excerpt(rest[0], secrets))
    rows = [_fields(row, secrets) for row in rest if row and not _NOTICE.match(row)]
    if rows and rows[0][:3] == columns[:3]:
        rows = rows[1:]   # a header row (header=YES)
    return _data(function, rows, rest, secrets)


# --- status lines -----------------------------------------------------------------------------


def _raise_error(line: PlainLine) -> NoReturn:
    fn, low = line.function, line.message.lower()
    if fn == "add_lead":
        for start, positions in _DUPLICATES:
            if low.startswith(start):
                raise _duplicate(line, positions)
    error: type[DialerError]
    if low.startswith(_NOT_FOUND):
        error, summary = DoesNotExist, f"does not exist on the dialer ({line.message})"
    elif low.startswith(_CONFIGURATION):
        error, summary = DialerRefused, f"dialer refused the API user ({line.message})"
    else:
        raise_plain_error(line)
    raise error(f"{fn}: {summary}", function=fn, excerpt=line.excerpt)


def _duplicate(line: PlainLine, positions: tuple[int, int, int, int]) -> DuplicateLead:
    data = line.data
    phone_at, lead_at, list_at, other_list_at = positions

    def at(index: int, digits: bool = True) -> str | None:
        value = data[index] if 0 <= index < len(data) else None
        return value if value and (not digits or _DIGITS.fullmatch(value)) else None

    scope = ("SYSTEM" if line.message.endswith("SYSTEM")
             else "CAMPAIGN LISTS" if "CAMPAIGN" in line.message else "LIST")
    list_id = (at(other_list_at) if scope != "LIST" else None) or at(list_at)
    return DuplicateLead(
        f"{line.function}: already on the dialer ({line.message})", function=line.function,
        excerpt=line.excerpt, scope=scope, phone_number=at(phone_at), list_id=list_id,
        lead_id=at(lead_at))


def _success(line: PlainLine, notices: tuple[str, ...]) -> Reply | VicidialReply:
    fn, data = line.function, line.data
    if fn == "add_user":
        return UserAdded(line.message, data)
    if fn == "update_user":
        return UserUpdated(line.message, data)
    if fn == "add_list":
        # apiuser|list_id|list_name|campaign_id
        list_id, list_name, campaign_id = (*data[1:4], "", "", "")[:3]
        return ListAdded(list_id, list_name, campaign_id, line.message)
    if fn == "update_list":
        return ListUpdated(data[1] if len(data) > 1 else "", line.message, notices)
    if fn == "update_lead":
        # api user|lead_id (NON-AGENT_API.txt: `LEAD HAS BEEN UPDATED - 6666|193716`)
        return LeadUpdated(data[1] if len(data) > 1 else "", line.message, notices)
    if fn == "add_lead":
        # 2.14: phone|list_id|lead_id|gmt_offset|api user. A lead id we cannot read leaves the
        # lead in doubt (DialerMalformed), never "not added".
        if len(data) < 4 or not all(_DIGITS.fullmatch(v) for v in data[:3]):
            _malformed(line, "add_lead success without phone|list_id|lead_id")
        return LeadAdded(data[0], data[1], data[2], data[3], line.message, notices)
    _malformed(line, "a SUCCESS line where data rows were expected")


def _malformed(line: PlainLine, what: str) -> NoReturn:
    raise DialerMalformed(f"{line.function}: unreadable answer from the dialer ({what})",
                          function=line.function, excerpt=line.excerpt)


# --- data rows --------------------------------------------------------------------------------


def _fields(row: str, secrets: frozenset[str]) -> tuple[str, ...]:
    """A pipe-delimited row, the one trailing `|` dropped, a field equal to a secret masked."""
    if row.endswith("|"):
        row = row[:-1]
    return tuple(MASK if value in secrets else value for value in row.split("|"))


def _data(function: str, rows: list[tuple[str, ...]], raw: list[str],
          secrets: frozenset[str]) -> VicidialReply:
    def malformed(what: str) -> NoReturn:
        raise DialerMalformed(f"{function}: unreadable answer from the dialer ({what})",
                              function=function, excerpt=excerpt("\n".join(raw), secrets))

    if function == "lead_search":
        return LeadSearch(tuple(_phone_matches(row) or malformed("a lead_search row")
                                for row in rows))
    if function == "lead_all_info":
        return LeadsFound(tuple(_lead(row) or malformed("a lead_all_info row") for row in rows))
    if len(rows) != 1:
        malformed(f"{len(rows)} data rows where one was expected")
    row = rows[0]
    if function == "user_details":
        # The full name is the only free text: take the other columns from both ends.
        if len(row) < 5 or not _DIGITS.fullmatch(row[-2]):
            malformed("a user_details row")
        return UserDetails(row[0], "|".join(row[1:-3]), row[-3], int(row[-2]), row[-1])
    numbers = row[7:]
    if len(row) not in (8, 10) or not all(_DIGITS.fullmatch(n) for n in numbers) \
            or not _DIGITS.fullmatch(row[0]):
        malformed("a list_info row")
    counts = [int(n) for n in numbers]
    leads = (counts[1], counts[2]) if len(counts) == 3 else (None, None)
    return ListInfo(list_id=row[0], list_name=row[1], campaign_id=row[2], active=row[3],
                    changed_at=row[4], last_call_at=row[5], expiration_date=row[6],
                    resets_today=counts[0], all_leads=leads[0], new_leads=leads[1])


def _phone_matches(row: tuple[str, ...]) -> PhoneMatches | None:
    # `4075551212|0|` (nothing found) loses its empty last column with the trailing `|`.
    if len(row) not in (2, 3) or not _DIGITS.fullmatch(row[1]):
        return None
    ids = tuple(lead_id for lead_id in (row[2] if len(row) == 3 else "").split("-") if lead_id)
    if not all(_DIGITS.fullmatch(lead_id) for lead_id in ids):
        return None
    return PhoneMatches(row[0], ids)


def _lead(row: tuple[str, ...]) -> LeadFound | None:
    width = len(LEAD_ALL_INFO_COLUMNS)
    if len(row) < width:
        return None
    # Only comments may hold a `|` (VICIdial strips it from the other text columns, and we
    # never send it in vendor_lead_code or source_id): fold the surplus back into comments.
    at = LEAD_ALL_INFO_COLUMNS.index("comments")
    surplus = len(row) - width
    row = (*row[:at], "|".join(row[at:at + surplus + 1]), *row[at + surplus + 1:])
    columns = dict(zip(LEAD_ALL_INFO_COLUMNS, row, strict=True))
    if not (_DIGITS.fullmatch(columns["lead_id"]) and _DIGITS.fullmatch(columns["list_id"])):
        return None
    return LeadFound(
        lead_id=columns["lead_id"], list_id=columns["list_id"],
        vendor_lead_code=columns["vendor_lead_code"], phone_number=columns["phone_number"],
        phone_code=columns["phone_code"], status=columns["status"],
        columns=tuple(zip(LEAD_ALL_INFO_COLUMNS, row, strict=True)))


def _version(line: str, secrets: frozenset[str]) -> VersionInfo:
    items: list[tuple[str, str]] = []
    for part in _fields(line, secrets):
        match = _VERSION_ITEM.match(part.strip())
        if match is None:
            raise DialerMalformed("version: unreadable answer from the dialer (an item is not "
                                  "NAME: value)", function="version",
                                  excerpt=excerpt(line, secrets))
        items.append((match.group("name"), match.group("value").strip()))
    found = dict(items)
    if "VERSION" not in found:
        raise DialerMalformed("version: unreadable answer from the dialer (no VERSION)",
                              function="version", excerpt=excerpt(line, secrets))
    return VersionInfo(found["VERSION"], found.get("BUILD", ""), tuple(items))
