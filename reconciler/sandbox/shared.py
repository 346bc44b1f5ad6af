"""What both sandbox dialects share: the answer type, login and dispatch, and the field rules
and user attributes the two APIs have in common."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.sandbox.store import ApiUser, Store

SUCCESS, ERROR, PARTIAL = "SUCCESS", "ERROR", "PARTIAL"

LEAD_COLUMNS = frozenset({
    "vendor_lead_code", "source_id", "phone_code", "title", "first_name", "middle_initial",
    "last_name", "address1", "address2", "address3", "city", "state", "province",
    "postal_code", "country_code", "gender", "date_of_birth", "alt_phone", "email",
    "security_phrase", "comments", "rank", "owner",
})

# update_user field → SandboxUser attribute
UPDATABLE = {
    "agent_pass": "agent_pass", "agent_full_name": "full_name", "agent_user_level": "user_level",
    "agent_user_group": "user_group", "phone_login": "phone_login", "phone_pass": "phone_pass",
    "voicemail_id": "voicemail_id", "email": "email", "active": "active",
}


@dataclass(frozen=True)
class Result:
    outcome: str        # SUCCESS, ERROR, or PARTIAL (some leads of a batch created)
    body: str
    is_json: bool = False


Handler = Callable[[Store, ApiUser, Mapping[str, str]], Result]


def dispatch(store: Store, params: Mapping[str, str], handlers: Mapping[str, Handler]) -> Result:
    """Log the API user in and run the function's handler. The caller holds the store's lock."""
    user, password = params.get("user", ""), params.get("pass", "")
    api = store.authenticate(user, password)
    if api is None:
        return Result(ERROR, f"ERROR: Login incorrect, please try again: |{user}|{password}|BAD|\n")
    handler = handlers.get(params.get("function", ""))
    if handler is None:
        return Result(ERROR, "ERROR: NO FUNCTION SPECIFIED\n")
    return handler(store, api, params)


def digits(value: str, low: int, high: int) -> bool:
    return re.fullmatch(f"[0-9]{{{low},{high}}}", value) is not None
