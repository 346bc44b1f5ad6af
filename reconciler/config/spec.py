"""Sync specs: TOML files declaring, per resource, the CRM model and the policies.

A spec is checked whole on load; each problem is one SpecError naming the file and the entry.
The format is documented in docs/spec.md.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.config.settings import RESOURCES
from reconciler.core.fields import LEAD_RULES, duplicate_check_value
from reconciler.core.model import (
    LIST_FIELDS,
    LIST_REQUIRED_FIELDS,
    USER_FIELDS,
    USER_REQUIRED_FIELDS,
    SyncPolicy,
)
from reconciler.errors import FieldInvalid, SpecError

SPEC_VERSION = 1
POLICIES = ("deactivate", "ignore")
LEAD_DUPLICATE_POLICIES = ("keep_first", "send_all")
LEAD_KEY = "lead_key"      # the CRM's own key of a lead; the dialer has none we can choose
DEFAULT_FULL_PASS_EVERY = 86400   # seconds: a daily full pass catches deletions and late rows
INCREMENTAL_KEYS = ("change_column", "full_pass_every")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FieldSource:
    """Where one dialer field comes from: a CRM column, or a constant."""

    column: str | None = None
    value: str | None = None
    default: str | None = None
    yes_no: bool = False                              # truthy/falsy CRM value -> "Y" / "N"
    map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceSpec:
    name: str                                         # users | lists
    key_field: str                                    # agent_user | list_id
    query: str | None
    table: str | None
    fields: Mapping[str, FieldSource]
    required: tuple[str, ...] = ()                    # must have a value in every row
    # Incremental reads (leads only, docs/incremental.md): a CRM column that grows whenever a
    # row changes, and how often (seconds) a full pass reads every row all the same.
    change_column: str | None = None
    full_pass_every: int = DEFAULT_FULL_PASS_EVERY
    # `targets`: a SQL expression naming the dialer target(s) of each row (config.routing);
    # once routed to one target, the query of the rows that go to no target at all.
    route: str | None = None
    route_rejects: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(sorted({s.column for s in self.fields.values() if s.column}))


@dataclass(frozen=True)
class Spec:
    path: Path
    hash: str
    users: ResourceSpec | None
    lists: ResourceSpec | None
    policy: SyncPolicy
    leads: ResourceSpec | None = None
    # add_lead's duplicate_check options ("DUPLIST", ...), for dialers that send leads one by one
    lead_duplicate_check: tuple[str, ...] = ()
    dnc: DncSpec | None = None                        # the do-not-call source ([dnc])


@dataclass(frozen=True)
class DncSpec:
    """A CRM table or query of phones never to call (docs/dnc.md). An entry with a list or a
    campaign applies to that list or campaign; one with neither applies everywhere."""

    query: str | None
    table: str | None
    phone: str                                        # the column of the phone
    list_id: str | None = None                        # the column scoping an entry to a list
    campaign_id: str | None = None                    # ... or to a campaign

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.phone, self.list_id, self.campaign_id) if c)


def spec_resources(spec: Spec) -> frozenset[str]:
    """The resources (users, lists, leads) that a spec declares."""
    return frozenset(name for name in RESOURCES if getattr(spec, name, None) is not None)


_RESOURCES = {
    "users": ("agent_user", USER_FIELDS, USER_REQUIRED_FIELDS),
    "lists": ("list_id", LIST_FIELDS, LIST_REQUIRED_FIELDS),
    "leads": (LEAD_KEY, tuple(LEAD_RULES), ("list_id", "phone_number")),
}
_RESOURCE_KEYS = {
    "users": {"query", "table", "fields", "on_removed", "on_inactive", "owned_fields",
              "targets"},
    "lists": {"query", "table", "fields", "owned_fields", "targets"},
    "leads": {"query", "table", "fields", "key", "duplicates", "duplicate_check", "targets",
              *INCREMENTAL_KEYS},
}
_SOURCE_KEYS = {"column", "value", "default", "yes_no", "map"}


def load_spec(path: Path) -> Spec:
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"spec {path}: cannot be read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"spec {path}: not valid TOML: {exc}") from None
    return parse_spec(raw, path, hashlib.sha256(raw_bytes).hexdigest())


def parse_spec(raw: Mapping[str, Any], path: Path, spec_hash: str = "") -> Spec:
    where = f"spec {path}"
    unknown = set(raw) - {"version", "dnc", *_RESOURCES}
    if unknown:
        raise SpecError(f"{where}: unknown entry {sorted(unknown)[0]!r}")
    if raw.get("version", SPEC_VERSION) != SPEC_VERSION:
        raise SpecError(f"{where}: version must be {SPEC_VERSION}")
    resources = {name: _resource(name, raw[name], where) for name in _RESOURCES if name in raw}
    if not resources:
        raise SpecError(f"{where}: declares no resource ([users], [lists] or [leads])")
    users_raw, lists_raw = raw.get("users", {}), raw.get("lists", {})
    users, lists = resources.get("users"), resources.get("lists")
    leads_raw = raw.get("leads", {})
    duplicates = leads_raw.get("duplicates", "keep_first")
    if duplicates not in LEAD_DUPLICATE_POLICIES:
        raise SpecError(f"{where}: [leads] duplicates must be one of "
                        f"{', '.join(LEAD_DUPLICATE_POLICIES)}, not {duplicates!r}")
    policy = SyncPolicy(
        user_fields=_owned("users", users_raw, users, USER_FIELDS, where),
        list_fields=_owned("lists", lists_raw, lists, LIST_FIELDS, where),
        on_user_removed=_policy(users_raw, "on_removed", where),
        on_user_inactive=_policy(users_raw, "on_inactive", where),
        manage_users=users is not None,
        manage_lists=lists is not None,
        lead_duplicates=str(duplicates),
    )
    dnc = _dnc(raw["dnc"], where) if "dnc" in raw else None
    if dnc is not None and "leads" not in resources:
        raise SpecError(f"{where}: [dnc] needs a [leads] section: it filters the leads sent")
    return Spec(path, spec_hash, users, lists, policy, resources.get("leads"),
                _duplicate_check(leads_raw.get("duplicate_check", ""), where), dnc)


_DNC_KEYS = {"query", "table", "phone", "list_id", "campaign_id"}


def _dnc(raw: Any, where: str) -> DncSpec:
    where = f"{where}: [dnc]"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be a table")
    unknown = set(raw) - _DNC_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown entry {sorted(unknown)[0]!r}")
    query, table = _query_or_table(raw, where, "crm_dnc")
    columns: dict[str, str | None] = {}
    for name in ("phone", "list_id", "campaign_id"):
        value = raw.get(name)
        if name == "phone" and value is None:
            raise SpecError(f"{where}: 'phone' must name the column of the phone")
        if value is not None and (not isinstance(value, str) or not _IDENTIFIER.match(value)
                                  or "." in value):
            raise SpecError(f"{where}: {name!r} must be a column name")
        columns[name] = value
    phone = columns["phone"]
    assert phone is not None
    return DncSpec(query, table, phone, columns["list_id"], columns["campaign_id"])


def _query_or_table(raw: Mapping[str, Any], where: str, example: str
                    ) -> tuple[str | None, str | None]:
    """Where a section's rows come from: exactly one of a SQL query or a table name."""
    query, table = raw.get("query"), raw.get("table")
    if (query is None) == (table is None):
        raise SpecError(f"{where}: give exactly one of 'query' or 'table'")
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise SpecError(f"{where}: 'query' must be a non-empty SQL string")
    if table is not None and (not isinstance(table, str) or not _IDENTIFIER.match(table)):
        raise SpecError(f"{where}: 'table' must be a table name like {example} or schema.table")
    return query, table


def _resource(name: str, raw: Any, where: str) -> ResourceSpec:
    where = f"{where}: [{name}]"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be a table")
    incremental = [k for k in INCREMENTAL_KEYS if k in raw]
    if incremental and name != "leads":
        raise SpecError(f"{where}: {incremental[0]!r} is for [leads] only: {name} are compared "
                        f"with what the dialer holds on every run, which an incremental read "
                        f"would skip (see docs/incremental.md)")
    unknown = set(raw) - _RESOURCE_KEYS[name]
    if unknown:
        raise SpecError(f"{where}: unknown entry {sorted(unknown)[0]!r}")
    query, table = _query_or_table(raw, where, "crm_agents")
    key_field, allowed, required = _RESOURCES[name]
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, Mapping):
        raise SpecError(f"{where}: missing [{name}.fields] mapping dialer fields to CRM columns")
    sources: dict[str, FieldSource] = {}
    if name == "leads":
        sources.update(_lead_key(raw, where))
    for dialer_field, source in fields_raw.items():
        if dialer_field != key_field and dialer_field not in allowed:
            raise SpecError(f"{where}: unknown dialer field {dialer_field!r} "
                            f"(known: {', '.join((key_field, *allowed))})")
        sources[dialer_field] = _source(source, f"{where}.fields.{dialer_field}")
    if key_field not in sources or sources[key_field].column is None:
        raise SpecError(f"{where}: the key field {key_field!r} must map to a CRM column")
    for needed in required:
        if needed not in sources:
            raise SpecError(f"{where}: required dialer field {needed!r} is not mapped")
    if name == "leads":
        # The dialer keeps vendor_lead_code: by default it carries the CRM key back to us.
        sources.setdefault("vendor_lead_code", FieldSource(column=sources[LEAD_KEY].column))
    route = raw.get("targets")
    if route is not None and (not isinstance(route, str) or not route.strip()
                              or ";" in route):
        raise SpecError(f"{where}: 'targets' must be a CRM column or SQL expression whose value "
                        f"names the row's target(s)")
    route = route.strip() if route else None
    if name == "leads":
        column, every = _incremental(raw, where)
        return ResourceSpec(name, key_field, query, table, sources, required,
                            change_column=column, full_pass_every=every, route=route)
    return ResourceSpec(name, key_field, query, table, sources, required, route=route)


def _incremental(raw: Mapping[str, Any], where: str) -> tuple[str | None, int]:
    """`change_column` and `full_pass_every` of [leads] (docs/incremental.md)."""
    column = raw.get("change_column")
    if column is not None and (not isinstance(column, str) or not _PLAIN_NAME.match(column)):
        raise SpecError(f"{where}: 'change_column' must name one CRM column, like updated_at")
    every = raw.get("full_pass_every", DEFAULT_FULL_PASS_EVERY)
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        raise SpecError(f"{where}: 'full_pass_every' must be a whole number of seconds above 0")
    if column is None and "full_pass_every" in raw:
        raise SpecError(f"{where}: 'full_pass_every' needs a 'change_column': without one every "
                        f"pass is a full pass")
    return column, every


def _duplicate_check(raw: Any, where: str) -> tuple[str, ...]:
    """`"DUPLIST"`, `"DUPLIST-DUPSYS90DAY"` or a list of options; checked as add_lead checks."""
    options = raw.split("-") if isinstance(raw, str) else raw
    if not isinstance(options, list | tuple) or not all(isinstance(o, str) for o in options):
        raise SpecError(f"{where}: [leads] duplicate_check must be a string like \"DUPLIST\"")
    options = tuple(o for o in options if o)
    try:
        duplicate_check_value(options)
    except FieldInvalid as exc:
        raise SpecError(f"{where}: [leads] duplicate_check {exc.rule}") from None
    return options


def _lead_key(raw: Mapping[str, Any], where: str) -> dict[str, FieldSource]:
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise SpecError(f"{where}: 'key' must name the CRM column that identifies a lead")
    if LEAD_KEY in raw.get("fields", {}):
        raise SpecError(f"{where}: {LEAD_KEY!r} is set by 'key', not in fields")
    return {LEAD_KEY: FieldSource(column=key)}


def _source(raw: Any, where: str) -> FieldSource:
    if isinstance(raw, str):
        return FieldSource(column=raw)
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: must be a column name or a table like {{ column = \"...\" }}")
    unknown = set(raw) - _SOURCE_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown option {sorted(unknown)[0]!r}")
    if ("column" in raw) == ("value" in raw):
        raise SpecError(f"{where}: give exactly one of 'column' or 'value'")
    for name in ("column", "value", "default"):
        if name in raw and not isinstance(raw[name], str):
            raise SpecError(f"{where}: {name!r} must be a string")
    mapping = raw.get("map", {})
    if not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values()):
        raise SpecError(f"{where}: 'map' must be a table of strings")
    if not isinstance(raw.get("yes_no", False), bool):
        raise SpecError(f"{where}: 'yes_no' must be true or false")
    return FieldSource(raw.get("column"), raw.get("value"), raw.get("default"),
                       raw.get("yes_no", False), dict(mapping))


def _owned(
    name: str, raw: Mapping[str, Any], resource: ResourceSpec | None,
    allowed: tuple[str, ...], where: str,
) -> tuple[str, ...]:
    if resource is None:
        return ()
    mapped = tuple(f for f in allowed if f in resource.fields)
    owned = raw.get("owned_fields")
    if owned is None:
        return mapped
    if not isinstance(owned, list) or not all(isinstance(f, str) for f in owned):
        raise SpecError(f"{where}: [{name}] owned_fields must be a list of field names")
    for f in owned:
        if f not in mapped:
            raise SpecError(f"{where}: [{name}] owned field {f!r} is not mapped in fields")
    return tuple(f for f in allowed if f in owned)


def _policy(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "deactivate")
    if value not in POLICIES:
        raise SpecError(f"{where}: [users] {key} must be one of {', '.join(POLICIES)}, "
                        f"not {value!r}")
    return str(value)
