"""The sandbox dialer's database: users, lists, leads and the call log, in memory.

One re-entrant lock guards everything, because the loopback server answers on several threads.
With a state file the store is loaded from it at start (the initial users and lists of
`SandboxData` are used only when the file does not exist yet) and written back atomically after
every recorded call and every out-of-band edit, so a sandbox in another process keeps whatever it
committed across a restart. The file holds agent and phone passwords — it is the fake dialer's
own database — so it is created readable by its owner only; `snapshot()` never shows them.

Configuration (API accounts, user groups, campaigns, phones) always comes from `SandboxData`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from reconciler.errors import ConfigError

_FILE_FORMAT = "reconciler-sandbox/1"
_Record = TypeVar("_Record", "SandboxUser", "SandboxList", "SandboxLead", "CallRecord")


@dataclass(frozen=True)
class ApiUser:
    """An account allowed to call the API (in VICIdial, a user with API access)."""

    user: str
    password: str = field(repr=False)
    level: int = 9
    can_modify_users: bool = True
    can_modify_lists: bool = True
    can_add_leads: bool = True
    can_view_reports: bool = True   # VICIdial's reads (user_details, lead_search...) need it


@dataclass
class SandboxUser:
    """An agent on the dialer."""

    agent_user: str
    agent_pass: str = field(default="", repr=False)
    full_name: str = ""
    user_level: int = 1
    user_group: str = "AGENTS"
    phone_login: str = ""
    phone_pass: str = field(default="", repr=False)
    voicemail_id: str = ""
    email: str = ""
    active: str = "Y"

    def public(self) -> dict[str, Any]:
        """Everything but the passwords."""
        return {
            "agent_user": self.agent_user,
            "full_name": self.full_name,
            "user_level": self.user_level,
            "user_group": self.user_group,
            "phone_login": self.phone_login,
            "voicemail_id": self.voicemail_id,
            "email": self.email,
            "active": self.active,
        }


@dataclass
class SandboxList:
    list_id: str
    list_name: str
    campaign_id: str
    active: str = "N"
    # What VICIdial's list_info shows besides; the Elision API never shows them.
    changed_at: str = ""
    last_call_at: str = ""
    expiration_date: str = "2099-12-31"
    resets_today: int = 0

    def public(self) -> dict[str, Any]:
        return {"list_id": self.list_id, "list_name": self.list_name,
                "campaign_id": self.campaign_id, "active": self.active}


@dataclass
class SandboxLead:
    lead_id: int
    list_id: str
    phone_number: str
    status: str = "NEW"
    fields: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"lead_id": self.lead_id, "list_id": self.list_id,
                "phone_number": self.phone_number, "status": self.status, **self.fields}


@dataclass(frozen=True)
class CallRecord:
    """One API call as the dialer saw it. `params` never holds a password field.

    `result` is what the dialer did (SUCCESS, ERROR, PARTIAL) or None when a fault answered
    before the call reached it; `outcome` is what the client was shown: the result, or
    `fault:<kind>` when a fault shaped the answer.
    """

    seq: int
    function: str
    method: str
    params: dict[str, str]
    outcome: str
    result: str | None
    fault: str | None


@dataclass(frozen=True)
class SandboxData:
    """What the sandbox starts with. Defaults: API user `api`/`1234` at level 9 with every right."""

    api_users: tuple[ApiUser, ...] = (ApiUser("api", "1234"),)
    user_groups: tuple[str, ...] = ("ADMIN", "AGENTS")
    campaigns: tuple[str, ...] = ("TESTCAMP", "SALES", "SUPPORT")
    # Known phone logins. None: there is no phones table and any phone_login of 1-20 chars is fine.
    phones: tuple[str, ...] | None = None
    users: tuple[SandboxUser, ...] = ()
    lists: tuple[SandboxList, ...] = ()
    first_lead_id: int = 1001


class Store:
    def __init__(self, data: SandboxData, state_file: Path | None = None) -> None:
        self.data = data
        self.lock = threading.RLock()
        self._state_file = state_file
        self._users: dict[str, SandboxUser] = {}
        self._lists: dict[str, SandboxList] = {}
        self._leads: list[SandboxLead] = []
        self._calls: list[CallRecord] = []
        self._next_lead_id = data.first_lead_id
        if state_file is not None and state_file.exists():
            self._load(state_file)
        else:
            # Copies: the store mutates its records, SandboxData stays as the caller built it.
            self._users = {u.agent_user: replace(u) for u in data.users}
            self._lists = {x.list_id: replace(x) for x in data.lists}
            self.persist()

    # --- configuration ---------------------------------------------------------------------

    def authenticate(self, user: str, password: str) -> ApiUser | None:
        for account in self.data.api_users:
            if account.user == user and _same(account.password, password):
                return account
        return None

    def is_api_account(self, name: str) -> bool:
        return any(account.user == name for account in self.data.api_users)

    def group_exists(self, group: str) -> bool:
        return group in self.data.user_groups

    def campaign_exists(self, campaign_id: str) -> bool:
        return campaign_id in self.data.campaigns

    def phone_known(self, phone_login: str) -> bool:
        return self.data.phones is None or phone_login in self.data.phones

    # --- reads and writes used by the API functions (callers hold the lock) -----------------

    def user(self, agent_user: str) -> SandboxUser | None:
        return self._users.get(agent_user)

    def insert_user(self, user: SandboxUser) -> None:
        self._users[user.agent_user] = user

    def get_list(self, list_id: str) -> SandboxList | None:
        return self._lists.get(list_id)

    def insert_list(self, dialer_list: SandboxList) -> None:
        self._lists[dialer_list.list_id] = dialer_list

    def active_lists(self) -> list[SandboxList]:
        return [x for x in self._ordered_lists() if x.active == "Y"]

    def _ordered_lists(self) -> list[SandboxList]:
        # VICIdial's lists table is keyed by a numeric list_id: rows come back in that order.
        return sorted(self._lists.values(), key=lambda x: (len(x.list_id), x.list_id))

    def leads(self) -> list[SandboxLead]:
        """Every lead, oldest first."""
        return list(self._leads)

    def insert_lead(self, list_id: str, phone_number: str, lead_fields: dict[str, str]) -> int:
        lead_id = self._next_lead_id
        self._next_lead_id += 1
        self._leads.append(SandboxLead(lead_id, list_id, phone_number, "NEW", lead_fields))
        return lead_id

    def record_call(self, *, function: str, method: str, params: dict[str, str], outcome: str,
                    result: str | None, fault: str | None) -> None:
        """Append to the call log and persist: the end of every API call's transaction."""
        with self.lock:
            seq = len(self._calls) + 1
            self._calls.append(CallRecord(seq, function, method, params, outcome, result, fault))
            self.persist()

    # --- out-of-band edits (someone working on the dialer directly) -------------------------

    def put_user(self, agent_user: str, *, agent_pass: str = "", full_name: str = "",
                 user_level: int = 1, user_group: str = "AGENTS", phone_login: str = "",
                 phone_pass: str = "", voicemail_id: str = "", email: str = "",
                 active: str = "Y") -> None:
        """Create or overwrite a user, with no validation at all."""
        user = SandboxUser(agent_user, agent_pass, full_name, user_level, user_group,
                           phone_login, phone_pass, voicemail_id, email, active)
        with self.lock:
            self._users[agent_user] = user
            self.persist()

    def delete_user(self, agent_user: str) -> None:
        with self.lock:
            self._users.pop(agent_user, None)
            self.persist()

    def put_list(self, list_id: str, list_name: str, campaign_id: str = "TESTCAMP",
                 active: str = "Y") -> None:
        """Create or overwrite a list, with no validation at all."""
        with self.lock:
            self._lists[list_id] = SandboxList(list_id, list_name, campaign_id, active)
            self.persist()

    def set_list_active(self, list_id: str, active: bool) -> None:
        with self.lock:
            self._lists[list_id].active = "Y" if active else "N"
            self.persist()

    def deactivate_list(self, list_id: str) -> None:
        self.set_list_active(list_id, False)

    def delete_list(self, list_id: str) -> None:
        with self.lock:
            self._lists.pop(list_id, None)
            self.persist()

    # --- checks and views for tests ---------------------------------------------------------

    def check_password(self, agent_user: str, candidate: str) -> bool:
        """True when the user exists and its agent password is exactly `candidate`."""
        with self.lock:
            user = self._users.get(agent_user)
            return user is not None and _same(user.agent_pass, candidate)

    def check_phone_password(self, agent_user: str, candidate: str) -> bool:
        with self.lock:
            user = self._users.get(agent_user)
            return user is not None and _same(user.phone_pass, candidate)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Everything the dialer holds, with no password anywhere."""
        with self.lock:
            return {
                "users": [self._users[k].public() for k in sorted(self._users)],
                "lists": [x.public() for x in self._ordered_lists()],
                "leads": [lead.public() for lead in self._leads],
                "calls": [asdict(call) for call in self._calls],
            }

    # --- persistence ------------------------------------------------------------------------

    def persist(self) -> None:
        """Write the whole store to the state file, atomically (temp file + os.replace)."""
        if self._state_file is None:
            return
        with self.lock:
            payload = {
                "format": _FILE_FORMAT,
                "next_lead_id": self._next_lead_id,
                "users": [asdict(u) for u in self._users.values()],
                "lists": [asdict(x) for x in self._lists.values()],
                "leads": [asdict(lead) for lead in self._leads],
                "calls": [asdict(call) for call in self._calls],
            }
            _write_atomically(self._state_file, json.dumps(payload, ensure_ascii=False))

    def _load(self, path: Path) -> None:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("format") != _FILE_FORMAT:
                raise ValueError(f"unknown format {payload.get('format')!r}")
            self._next_lead_id = int(payload["next_lead_id"])
            self._users = {u["agent_user"]: _build(SandboxUser, u) for u in payload["users"]}
            self._lists = {x["list_id"]: _build(SandboxList, x) for x in payload["lists"]}
            self._leads = [_build(SandboxLead, lead) for lead in payload["leads"]]
            self._calls = [_build(CallRecord, call) for call in payload["calls"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"sandbox state file {path} cannot be loaded: {exc}") from exc


def _same(secret: str, candidate: str) -> bool:
    return hmac.compare_digest(secret.encode("utf-8"), candidate.encode("utf-8"))


def _build(cls: type[_Record], row: dict[str, Any]) -> _Record:
    # Unknown keys are skipped so that a file written by a later version still loads.
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in row.items() if k in known})


def _write_atomically(path: Path, text: str) -> None:
    # mkstemp creates the file with mode 0600: the file holds agent passwords.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
