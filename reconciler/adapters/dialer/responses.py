"""Parse every answer form of the dialer API into a typed reply or one of our errors. Pure: no I/O.

Forms handled (see the API document and the VICIdial recordings in tests/fixtures):
- plain lines: `SUCCESS: <fn> <MESSAGE> - a|b|c`, `ERROR: <fn> <MESSAGE> - a|b` and VICIdial's
  `ERROR: <fn> <MESSAGE>: |a|b|`; a line wrapped onto following lines is joined back;
- `ERROR: NO FUNCTION SPECIFIED` and `ERROR: Login incorrect, please try again: |user|pass|BAD|`;
- JSON objects `{"success", "message", "data"}`, JSON error arrays
  `["ERROR", "<fn> <MESSAGE>", ...]` and the per-lead map `{"lead 1": {...}}` of add_multi_lead;
- HTTP failures, empty bodies, HTML pages and truncated JSON.

The dialer echoes passwords (login errors, add_list's permission error, add_user's success data),
so every message, excerpt and reply is redacted with the request's secrets before it leaves here.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import NoReturn
from urllib.parse import quote, quote_plus

from reconciler.core.replies import (
    ActiveList,
    ActiveLists,
    LeadOutcome,
    LeadResults,
    ListAdded,
    PlainReply,
    Reply,
    UserAdded,
    UserUpdated,
)
from reconciler.errors import (
    AlreadyExists,
    DialerError,
    DialerMalformed,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    DoesNotExist,
)
from reconciler.redact import MASK, excerpt, redact_text

# A line that starts a new answer (or a PHP notice) rather than continuing a wrapped one.
_STATUS_START = re.compile(r"^[A-Z][A-Za-z_ ]*:")
_STATUS_LINE = re.compile(r"^(?P<status>SUCCESS|ERROR)\s*:\s*(?P<rest>.*)$", re.DOTALL)
# PHP diagnostics a misconfigured server prints before the answer (display_errors=On).
_PHP_NOTICE = re.compile(
    r"^(?:<br\s*/?>\s*)*(?:<b>)?\s*(?:PHP\s+)?(?:Warning|Notice|Deprecated|Strict Standards)"
    r"(?:</b>)?\s*:|^(?:<br\s*/?>\s*)+$",
    re.IGNORECASE,
)
_FUNCTION_NAME = re.compile(r"[a-z]+_[a-z_]+")
_API_NOTICE = re.compile(r"^NOTICE:\s")   # VICIdial's notices are upper case, PHP's are not
_LEAD_KEY = re.compile(r"^lead\s*(\d{1,9})$", re.IGNORECASE)
# CAMPAIGN-LISTID-NAME: the campaign is the shortest prefix followed by -digits-; the name keeps
# any further dashes ("TESTING-20042018-20042018-hardik" is list 20042018 named "20042018-hardik").
_ACTIVE_LIST = re.compile(r"^(?P<campaign>.+?)-(?P<list_id>\d+)-(?P<name>.*)$")
_RETRY_AFTER_SECONDS = re.compile(r"^\s*(\d{1,9}(?:\.\d+)?)\s*$")

# Functions whose "<object> DOES NOT EXIST" means the object the call is about is missing, as
# opposed to something it refers to ("USER GROUP DOES NOT EXIST", "campaign does not exist").
_SUBJECT_OF = {"update_user": "user", "list_info": "list"}
# Positions of echoed passwords in plain-text data, by function (both dialects: add_user echoes
# agent_pass after the agent_user, in its success and its required-fields error alike).
SECRET_POSITIONS = {"add_user": (2,)}
# Positions of a success's data that hold ids and phones, never a credential: read as they are,
# even when one equals a password ("1234" is both the example password and a lead id).
ID_POSITIONS = {"add_lead": (0, 1, 2, 3), "update_lead": (1,)}
_UNREADABLE = object()


@dataclass(frozen=True)
class _Context:
    function: str
    secrets: frozenset[str]
    raw: str   # the part of the body the answer was read from, for excerpts

    def excerpt(self) -> str:
        return excerpt(self.raw, self.secrets)

    # Messages already cleaned: an add_multi_lead answer repeats one message for most leads.
    cleaned: dict[str, str] = dataclass_field(default_factory=dict, compare=False, repr=False)

    def clean(self, text: str) -> str:
        """Free text (messages): every secret masked, wherever it appears."""
        done = self.cleaned.get(text)
        if done is None:
            done = self.cleaned[text] = " ".join(redact_text(text, self.secrets).split())
        return done

    def field(self, value: str) -> str:
        """One data field: masked when it is a secret. Not by substring, which would mangle
        phone numbers and ids that happen to contain a short password."""
        return MASK if value in self.secrets else value

    def fields(self, data: str, ids: tuple[int, ...] = ()) -> tuple[str, ...]:
        """`a|b|c` data, each field masked when it is a secret, but for the `ids` positions
        when they hold digits only."""
        for secret in self.secrets:
            if "|" in secret:   # a secret that would be cut in two by the split
                data = data.replace(secret, MASK)
        if not data:
            return ()
        return tuple(value if i in ids and value.isascii() and value.isdigit()
                     else self.field(value) for i, value in enumerate(data.split("|")))

    def malformed(self, what: str) -> NoReturn:
        raise DialerMalformed(f"{self.function}: unreadable answer from the dialer ({what})",
                              function=self.function, excerpt=self.excerpt())


def parse_response(
    function: str,
    http_status: int,
    body: bytes,
    secrets: Iterable[str] = (),
    *,
    lead_count: int = 0,
) -> Reply:
    """Read one answer to `function`; raise a DialerError subclass when it is not a success.

    `lead_count` is the size of an add_multi_lead batch, so that a lead the answer does not
    mention comes back as an outcome with `success=None` rather than disappearing.
    """
    lines = answer_lines(function, http_status, body, secrets)
    context = _Context(function, _secret_forms(secrets), "\n".join(lines))
    if context.raw[0] in "{[":
        return _parse_json(context, lead_count)
    return _parse_plain(context, lines)


def retry_after_seconds(header: str | None) -> float | None:
    """The delay a Retry-After header asks for, when given in seconds (the date form is ignored)."""
    match = _RETRY_AFTER_SECONDS.match(header or "")
    return float(match.group(1)) if match else None


def _check_status(context: _Context, status: int) -> None:
    if 200 <= status <= 299:
        return
    fn = context.function
    if status < 200 or status > 599:   # 1xx is never a final answer
        context.malformed(f"HTTP status {status}")
    error: type[DialerError]
    if status in (429, 503):
        error, text = DialerUnavailable, f"dialer busy (HTTP {status})"
    elif status == 408 or status >= 500:
        error, text = DialerUnavailable, f"dialer failed (HTTP {status})"
    elif status in (413, 414):
        error, text = DialerRefused, (f"request too large for the dialer's web server "
                                      f"(HTTP {status}); lower max_request_bytes")
    elif status in (401, 403):
        error, text = DialerRefused, f"web server refused access (HTTP {status})"
    elif status == 404:
        error, text = DialerRefused, "no dialer API at this URL (HTTP 404)"
    elif status < 400:
        error, text = DialerRefused, f"dialer answered a redirect (HTTP {status}); fix the URL"
    else:
        error, text = DialerRefused, f"dialer refused the request (HTTP {status})"
    raise error(f"{fn}: {text}", function=fn, excerpt=context.excerpt())


# --- building blocks for other dialects' parsers ----------------------------------------------


@dataclass(frozen=True)
class PlainLine:
    """A `SUCCESS:`/`ERROR:` answer line read by `read_plain_line`: redacted, not yet judged."""

    function: str
    succeeded: bool
    message: str                # secrets masked, whitespace normalised
    data: tuple[str, ...]       # the `a|b|c` part, each secret field masked
    excerpt: str                # a redacted excerpt of the line, for error messages


def answer_lines(
    function: str, http_status: int, body: bytes, secrets: Iterable[str] = (),
    *, api_notices: bool = False,
) -> list[str]:
    """The answer's stripped lines, from the first one that is not blank or a PHP notice.

    Raises as `parse_response` does for HTTP failures, empty answers and HTML pages; JSON is left
    to the caller. With `api_notices`, the API's own `NOTICE: <function> ...` lines (VICIdial's)
    count as answer lines rather than PHP diagnostics.
    """
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff")
    context = _Context(function, _secret_forms(secrets), text)
    _check_status(context, http_status)
    lines = [line.strip() for line in text.splitlines()]

    def meaningful(line: str) -> bool:
        if api_notices and _API_NOTICE.match(line):
            return True
        return bool(line) and not _PHP_NOTICE.match(line)

    start = next((i for i, line in enumerate(lines) if meaningful(line)), None)
    if start is None:
        context.malformed("empty answer")
    if lines[start].startswith("<"):
        context.malformed("HTML page instead of an API answer")
    return lines[start:]


def read_plain_line(
    function: str, lines: list[str], secrets: Iterable[str] = (),
    secret_positions: tuple[int, ...] = (),
) -> PlainLine:
    """Read `lines[0]` (with the lines it was wrapped onto) as a SUCCESS or ERROR answer.

    Both data separators are understood (` - a|b` and `: |a|b|`). Data fields at
    `secret_positions` are masked whatever their value, as is the password a login error echoes.
    """
    joined = _join_wrapped(lines)
    context = _Context(function, _secret_forms(secrets), joined)
    match = _STATUS_LINE.match(joined)
    if match is None:
        context.malformed("neither SUCCESS nor ERROR")
    succeeded = match.group("status") == "SUCCESS"
    head, _, tail = match.group("rest").partition(" ")
    if succeeded and head != function and _FUNCTION_NAME.fullmatch(head):
        context.malformed(f"success for another function ({head})")
    rest = tail if head == function else match.group("rest")
    message, data = _split_message(rest)
    raw_fields = data.split("|")
    # The positions describe the function's own answers; a login error echoes the password at 1.
    positions = secret_positions if head == function else ()
    if not succeeded and "login incorrect" in message.lower():
        positions = (1,)
    context = _with_secrets(context, (raw_fields[i] for i in positions if i < len(raw_fields)))
    # Split again after redaction, so a secret spanning the separator is masked whole.
    message = _split_message(redact_text(rest, context.secrets))[0]
    ids = ID_POSITIONS.get(function, ()) if succeeded and head == function else ()
    return PlainLine(function, succeeded, context.clean(message), context.fields(data, ids),
                     context.excerpt())


def raise_plain_error(line: PlainLine) -> NoReturn:
    """Raise the error `parse_response` raises for this ERROR line's message."""
    _raise_error(_Context(line.function, frozenset(), line.excerpt), line.message)


# --- plain-text answers -----------------------------------------------------------------------


def _parse_plain(context: _Context, lines: list[str]) -> Reply:
    line = read_plain_line(context.function, lines, context.secrets,
                           SECRET_POSITIONS.get(context.function, ()))
    if not line.succeeded:
        raise_plain_error(line)
    return _plain_success(_Context(line.function, frozenset(), line.excerpt), line.message,
                          line.data)


def _join_wrapped(lines: list[str]) -> str:
    """The first answer line, with the lines it was wrapped onto joined back.

    The document wraps both messages ("...IN THIS\\nUSER LEVEL - api|8") and data
    ("...|Testing Person|\\nAGENTS"): a break right after `|` joins without a space.
    """
    joined = lines[0]
    for line in lines[1:]:
        if not line or _STATUS_START.match(line):
            break
        joined += line if joined.endswith("|") else " " + line
    return joined


def _split_message(rest: str) -> tuple[str, str]:
    """Split `<MESSAGE> - a|b|` (document) or `<MESSAGE>: |a|b|` (VICIdial) into its parts."""
    dash, colon = rest.find(" - "), rest.find(": |")
    if dash < 0 and colon < 0:
        return rest.strip(), ""
    if colon >= 0 and (dash < 0 or colon < dash):
        message, data = rest[:colon], rest[colon + 3:]
    else:
        message, data = rest[:dash], rest[dash + 3:]
    data = data.strip()
    if data.endswith("|"):
        data = data[:-1]
    return message.strip(), data


def _plain_success(context: _Context, message: str, data: tuple[str, ...]) -> Reply:
    fn = context.function
    if fn == "add_user":
        return UserAdded(message, data)
    if fn == "update_user":
        return UserUpdated(message, data)
    if fn == "add_list":
        # VICIdial: apiuser|list_id|list_name|campaign_id
        list_id, list_name, campaign_id = (*data[1:4], "", "", "")[:3]
        return ListAdded(list_id, list_name, campaign_id, message)
    if fn in ("active_lists", "add_multi_lead"):
        context.malformed("plain-text success where JSON was expected")
    return PlainReply(fn, message, data)


# --- JSON answers -----------------------------------------------------------------------------


def _parse_json(context: _Context, lead_count: int) -> Reply:
    # Not raised inside the except: the JSONDecodeError would ride along as __context__, and it
    # holds the whole body, passwords included.
    document: object = _UNREADABLE
    with contextlib.suppress(ValueError, RecursionError):
        document = json.loads(context.raw)
    if document is _UNREADABLE:
        context.malformed("truncated or invalid JSON")
    if isinstance(document, list):
        return _parse_json_array(context, document)
    if not isinstance(document, dict):
        context.malformed("JSON that is neither an object nor an array")
    if "success" in document:
        succeeded = _as_bool(document["success"])
        if succeeded is None:
            context.malformed("JSON 'success' is not true or false")
        message = _as_text(document.get("message"))
        if not succeeded:
            _raise_error(context, message)
        return _json_success(context, context.clean(message), document.get("data"))
    if context.function == "add_multi_lead":
        return _lead_results(context, document, lead_count)
    context.malformed("JSON object without 'success'")


def _parse_json_array(context: _Context, document: list[object]) -> Reply:
    # ["ERROR","add_multi_lead YOU MUST USE ALL REQUIRED FIELDS","api",""]
    if len(document) < 2 or document[0] not in ("ERROR", "SUCCESS") \
            or not isinstance(document[1], str):
        context.malformed("JSON array that is not an ERROR or SUCCESS answer")
    head, _, tail = document[1].partition(" ")
    message = tail if head == context.function else document[1]
    if document[0] == "ERROR":
        _raise_error(context, message)
    if context.function in ("active_lists", "add_multi_lead"):
        context.malformed("JSON array success where a JSON object was expected")
    data = tuple(context.field(_as_text(item)) for item in document[2:])
    return _plain_success(context, context.clean(message), data)


def _json_success(context: _Context, message: str, data: object) -> Reply:
    fn = context.function
    if fn == "add_list":
        echo = data if isinstance(data, dict) else {}
        list_id, list_name, campaign_id = (
            context.field(_as_text(echo.get(name)))
            for name in ("list_id", "list_name", "campaign_id"))
        return ListAdded(list_id, list_name, campaign_id, message)
    if fn == "active_lists":
        if data is None:
            return ActiveLists((), ())
        if not isinstance(data, list):
            context.malformed("active_lists data is not a list")
        return _active_lists(context, data)
    if fn == "add_multi_lead":
        context.malformed("add_multi_lead answer without per-lead results")
    if fn == "add_user":
        return UserAdded(message, ())
    if fn == "update_user":
        return UserUpdated(message, ())
    return PlainReply(fn, message, ())


def _active_lists(context: _Context, entries: list[object]) -> ActiveLists:
    parsed: list[ActiveList] = []
    unparsed: list[str] = []
    for entry in entries:
        match = _ACTIVE_LIST.match(entry) if isinstance(entry, str) else None
        if match is None:
            unparsed.append(redact_text(_as_text(entry), context.secrets))
        else:
            parsed.append(ActiveList(*(context.field(part) for part in match.groups())))
    return ActiveLists(tuple(parsed), tuple(unparsed))


def _lead_results(context: _Context, document: dict[str, object], lead_count: int) -> LeadResults:
    # Read at the pace of the wire: this runs between one batch's answer and the next request.
    outcomes: dict[int, LeadOutcome] = {}
    for key, entry in document.items():
        index = _lead_index(key)
        if index is None:
            context.malformed("add_multi_lead answer with a key that is not 'lead N'")
        if index < 1 or (lead_count and index > lead_count) or index in outcomes:
            context.malformed(f"add_multi_lead answer for a lead that was not sent ({index})")
        outcomes[index] = _lead_outcome(context, index, entry)
    for index in range(1, lead_count + 1):
        if index not in outcomes:
            outcomes[index] = LeadOutcome.unknown(index, "no answer for this lead")
    if list(outcomes) == list(range(1, len(outcomes) + 1)):     # the usual order: no sort
        return LeadResults(tuple(outcomes.values()))
    return LeadResults(tuple(outcomes[i] for i in sorted(outcomes)))


def _lead_index(key: str) -> int | None:
    """N of a `lead N` key; None when the key is not one."""
    digits = key[5:]
    if key[:5] == "lead " and digits.isascii() and digits.isdigit() and len(digits) <= 9:
        return int(digits)                  # as the API writes it: no pattern to match
    match = _LEAD_KEY.match(key)
    return None if match is None else int(match.group(1))


def _lead_outcome(context: _Context, index: int, entry: object) -> LeadOutcome:
    if not isinstance(entry, dict):
        return LeadOutcome.unknown(index, "unreadable answer for this lead")
    succeeded = _as_bool(entry.get("success"))
    if succeeded is None:
        return LeadOutcome.unknown(index, "unreadable answer for this lead")
    message = context.clean(_as_text(entry.get("message")))
    # Success: phone|list_id|lead_id||status|   Failure: usually just the phone number.
    # Digits here are the dialer's own phone, list and lead numbers, never an echoed password:
    # a lead id that happens to equal a numeric password is kept (the answer has no other).
    parts = list(map(str.strip, _as_text(entry.get("data")).split("|")))
    if not context.secrets.isdisjoint(parts):       # rare: looked at field by field only then
        parts = [part if part.isdigit() else context.field(part) for part in parts]
    if len(parts) < 5:
        parts += [""] * (5 - len(parts))
    if succeeded:
        return LeadOutcome(index, True, message, parts[0] or None, parts[1] or None,
                           parts[2] or None, parts[4] or None)
    return LeadOutcome(index, False, message, parts[0] or None, parts[1] or None)


# --- errors -----------------------------------------------------------------------------------


def _raise_error(context: _Context, message: str) -> NoReturn:
    """Raise the error class that tells the caller what to do about this dialer message."""
    fn = context.function
    text = context.clean(message)
    low = text.lower()
    error: type[DialerError] = DialerRejected
    summary = f"dialer rejected the request: {text}"
    if "login incorrect" in low:
        error, summary = DialerRefused, "dialer refused the API login; check API user and password"
    elif "no function specified" in low:
        error, summary = DialerRefused, f"dialer does not offer the function {fn!r} ({text})"
    elif "permission" in low:
        found = re.search(r"permission to (.+?)(?: in the system)?$", low)
        summary = f"API user lacks permission to {found.group(1) if found else 'do this'}"
        # "...IN THIS USER LEVEL" / "...UPDATE THIS USER" concern this one row; the others are
        # the API user's configuration and stop the run.
        error = DialerRejected if re.search(r"\bthis user\b", low) else DialerRefused
    elif "already exist" in low:
        error, summary = AlreadyExists, f"already exists on the dialer ({text})"
    elif fn in _SUBJECT_OF and re.fullmatch(rf"(?:\S+ )?{_SUBJECT_OF[fn]} does not exist", low):
        error, summary = DoesNotExist, f"does not exist on the dialer ({text})"
    raise error(f"{fn}: {summary}", function=fn, excerpt=context.excerpt())


def _with_secrets(context: _Context, extra: Iterable[str]) -> _Context:
    return _Context(context.function, context.secrets | _secret_forms(extra), context.raw)


def _secret_forms(secrets: Iterable[str]) -> frozenset[str]:
    """Each secret as sent and as an answer may carry it: JSON-escaped or URL-encoded."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update((secret, json.dumps(secret)[1:-1],
                          json.dumps(secret, ensure_ascii=False)[1:-1],
                          quote_plus(secret), quote(secret, safe="")))
    return frozenset(forms)


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1", "true", "false"):
        return value in (1, "1", "true")
    return None


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return "(unprintable)"
