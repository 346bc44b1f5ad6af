"""Load settings once, every section the same way: a TOML file, then `RECONCILER_<SECTION>_<KEY>`
environment overrides, each value checked against its dataclass field's type.

Where the file is: `--config PATH`, else `$RECONCILER_CONFIG`, else `reconciler.toml` in the
working directory. The dialer password never comes from the command line or the file itself:
it is read from an environment variable (`password_env`, default `RECONCILER_DIALER_PASSWORD`)
or a file (`password_file`); the daemon's trigger token likewise. Every problem is one
ConfigError naming the key.

This module imports only `reconciler.config.settings` and `reconciler.errors`, so that loading the
settings loads neither the dialer client, nor the daemon, nor the state database.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, get_type_hints

from reconciler.config.settings import (
    DEFAULT_PASSWORD_ENV,
    DEFAULT_TOKEN_ENV,
    DIALECT_NAMES,
    MIN_TOKEN_LENGTH,
    RESOURCES,
    CrmSettings,
    DaemonSettings,
    DialerSettings,
    GuardSettings,
    ResourceSchedule,
    Schedule,
    Settings,
    StateSettings,
    checked,
    from_text,
    kind_of,
)
from reconciler.errors import ConfigError

DEFAULT_FILE = Path("reconciler.toml")
ENV_PREFIX = "RECONCILER_"
# RECONCILER_* variables that are not settings: where the file is, the secrets' default
# variables, and the test suite's switches (README, docs/reliability.md).
OTHER_VARIABLES = frozenset({
    "RECONCILER_CONFIG", DEFAULT_PASSWORD_ENV, DEFAULT_TOKEN_ENV,
    "RECONCILER_REQUIRE_POSTGRES", "RECONCILER_REQUIRE_BROWSER",
    "RECONCILER_PROOF_EXAMPLES", "RECONCILER_CRASH_TRIALS",
})

# Keys a section may hold beyond its dataclass fields.
_EXTRA_KEYS = {"dialer": {"password_env", "password_file"}, "reconciler": {"spec"}}
_SECTIONS: dict[str, type[Any]] = {
    "dialer": DialerSettings,
    "crm": CrmSettings,
    "state": StateSettings,
    "guards": GuardSettings,
    "daemon": DaemonSettings,
}


def config_path(explicit: str | Path | None, environ: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    if environ.get("RECONCILER_CONFIG"):
        return Path(environ["RECONCILER_CONFIG"])
    return DEFAULT_FILE


def load_settings(
    explicit: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    path = config_path(explicit, environ)
    raw = _read_toml(path, required=explicit is not None or "RECONCILER_CONFIG" in environ)
    for name in raw:
        if name not in _SECTIONS and name not in ("reconciler", "targets"):
            raise ConfigError(f"{path}: unknown section [{_shown(name)}]")
    targets_raw = _targets_table(raw, path)
    merged = {name: dict(_table(raw, name, path)) for name in (*_SECTIONS, "reconciler")}
    _apply_env_overrides(merged, environ)
    _refuse_unknown_variables(merged, environ, targets_raw)

    if targets_raw and merged["dialer"]:
        raise ConfigError(f"{_variable('dialer', sorted(merged['dialer'])[0])}: "
                          f"RECONCILER_DIALER_* variables set "
                          f"[dialer], and this config declares [[targets]] instead; a target's "
                          f"settings are written in its [[targets]] table")
    targets = tuple(_build_dialer(where, table, environ, path)
                    for where, table in _named_targets(targets_raw, path))
    dialer = targets[0] if targets else _build_dialer("dialer", merged["dialer"], environ, path)
    guards = _build("guards", GuardSettings, merged["guards"], path)
    state = _build("state", StateSettings, merged["state"], path)
    _check_ranges({"guards": guards, "state": state})

    for key in merged["reconciler"]:
        if key not in _EXTRA_KEYS["reconciler"]:
            raise ConfigError(f"{path}: unknown key reconciler.{_shown(key)}")
    spec = checked("reconciler.spec", str, merged["reconciler"].get("spec", "specs/example.toml"))
    base = path.parent if path.exists() else Path()
    return Settings(
        dialer=dialer,
        crm=_build("crm", CrmSettings, merged["crm"], path),
        state=state,
        guards=guards,
        spec_path=base / spec,
        source_file=path if path.exists() else None,
        daemon=_build_daemon(merged["daemon"], path),
        targets=targets,
    )


def _build_dialer(where: str, table: Mapping[str, Any], environ: Mapping[str, str],
                  path: Path) -> DialerSettings:
    """One dialer target: `[dialer]`, or one entry of `[[targets]]` (`where`: targets.NAME)."""
    raw = dict(table)
    password = _dialer_password(raw, environ, path, where)
    if "method" in raw:
        raw["method"] = checked(f"{where}.method", str, raw["method"]).upper()
    dialer: DialerSettings = _build(where, DialerSettings, {**raw, "password": password}, path)
    if dialer.method not in ("GET", "POST"):
        raise ConfigError(f"{where}.method must be GET or POST, not {dialer.method!r}")
    if dialer.dialect not in DIALECT_NAMES:
        raise ConfigError(f"{where}.dialect must be one of {', '.join(DIALECT_NAMES)}, "
                          f"not {dialer.dialect!r}")
    _check_ranges({"dialer": dialer}, where)
    return dialer


# A target's name is part of lease names and state keys, and a routing value lists names
# separated by commas: letters, digits, `_`, `-` and `.` only.
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def _targets_table(raw: Mapping[str, Any], path: Path) -> list[Mapping[str, Any]]:
    entries = raw.get("targets", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"{path}: targets must be written as [[targets]] tables")
    if entries and "dialer" in raw:
        raise ConfigError(f"{path}: give [dialer] (one target) or [[targets]] (several), "
                          f"not both")
    return list(entries)


def _named_targets(entries: list[Mapping[str, Any]], path: Path
                   ) -> list[tuple[str, dict[str, Any]]]:
    """Each `[[targets]]` entry as (where, its keys as `[dialer]` would hold them): `name` is
    the target's name in the state database; names are unique."""
    named: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        table = dict(entry)
        if "target" in table:
            raise ConfigError(f"{path}: [[targets]] #{number}: unknown key target (a target "
                              f"is named by its `name`)")
        if "name" not in table:
            raise ConfigError(f"{path}: [[targets]] #{number}: missing setting name")
        name = checked(f"[[targets]] #{number}.name", str, table.pop("name"))
        if not _TARGET_NAME.match(name):
            raise ConfigError(f"[[targets]] #{number}.name must be 1-40 letters, digits, "
                              f"'_', '-' or '.', starting with a letter or digit, not {name!r}")
        if name in seen:
            raise ConfigError(f"targets.{name}.name: the name is given twice ([[targets]] "
                              f"#{seen[name]} and #{number}); each target needs its own")
        seen[name] = number
        named.append((f"targets.{name}", {**table, "target": name}))
    return named


# section.key -> (lowest allowed, whether the lowest itself is allowed, highest allowed)
_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "dialer.connect_timeout": (0, False, None),
    "dialer.read_timeout": (0, False, None),
    "dialer.max_retries": (0, True, None),
    "dialer.backoff_base": (0, True, None),
    "dialer.backoff_max": (0, True, None),
    "dialer.leads_per_batch": (1, True, None),
    "dialer.lead_concurrency": (1, True, 64),
    "dialer.max_request_bytes": (1, True, None),
    "guards.max_deactivations": (0, True, None),
    "guards.max_changed_share": (0, True, 1),
    "guards.min_users_for_share": (0, True, None),
    "state.lease_ttl": (0, False, None),
}


def _check_ranges(built: Mapping[str, Any], dialer_where: str = "dialer") -> None:
    for name, (low, low_ok, high) in _RANGES.items():
        section, key = name.split(".")
        if section not in built:
            continue
        value = getattr(built[section], key)
        if section == "dialer":
            name = f"{dialer_where}.{key}"
        if value is None:      # unset: the code's default applies
            continue
        ok = value >= low if low_ok else value > low      # written so that NaN is refused
        if not ok or (high is not None and not value <= high):
            rule = (f"between {low} and {high}" if high is not None
                    else f"at least {low}" if low_ok else f"greater than {low}")
            raise ConfigError(f"{name} must be {rule}, not {value!r}")


def _read_toml(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None


def _table(raw: Mapping[str, Any], name: str, path: Path) -> Mapping[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


def _apply_env_overrides(merged: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> None:
    """`RECONCILER_<SECTION>_<KEY>` over the file, its text converted to the key's type."""
    for section, values in merged.items():
        for key, kind in _known_keys(section).items():
            env_name = _variable(section, key)
            if env_name in environ and env_name != DEFAULT_PASSWORD_ENV:
                values[key] = from_text(f"{section}.{key}", kind, environ[env_name], env_name)


def _refuse_unknown_variables(merged: Mapping[str, Mapping[str, Any]],
                              environ: Mapping[str, str],
                              targets: Sequence[Mapping[str, Any]] = ()) -> None:
    """A misspelt `RECONCILER_*` variable is an error, as a misspelt key in the file is: it
    would otherwise leave its setting at the default without a word."""
    allowed = {_variable(section, key) for section in merged for key in _known_keys(section)}
    allowed |= OTHER_VARIABLES | {str(merged["dialer"].get("password_env", "")),
                                  str(merged["daemon"].get("trigger_token_env", ""))}
    allowed |= {str(t.get("password_env", "")) for t in targets}
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown environment variable {name} (settings are "
                              f"RECONCILER_<SECTION>_<KEY>, see docs/configuration.md){hint}")


def _variable(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _known_keys(section: str) -> dict[str, type]:
    """The keys a section may hold, each with its type."""
    cls = _SECTIONS.get(section)
    hints = get_type_hints(cls) if cls else {}
    known = {f.name: kind_of(hints[f.name]) for f in fields(cls)} if cls else {}
    known.update({key: str for key in _EXTRA_KEYS.get(section, set())})
    for hidden in ("password", "password_hint"):
        known.pop(hidden, None)
    return known


def _dialer_password(raw: dict[str, Any], environ: Mapping[str, str], path: Path,
                     where: str = "dialer") -> str:
    if "password" in raw:
        raise ConfigError(
            f"{path}: {where}.password must not be written in the config file; "
            f"use {where}.password_env (an environment variable) or {where}.password_file"
        )
    password_file = checked(f"{where}.password_file", str, raw.pop("password_file", ""))
    env_name = checked(f"{where}.password_env", str,
                       raw.pop("password_env", DEFAULT_PASSWORD_ENV))
    if password_file:
        raw["password_hint"] = f"{where}.password_file {password_file} is empty"
        try:
            return Path(str(password_file)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.password_file {password_file}: {exc.strerror}") from None
    raw["password_hint"] = f"export {env_name} or set {where}.password_file"
    # Missing is only an error for commands that talk to the dialer: see require_dialer_password.
    return environ.get(env_name, "")


def require_dialer_password(settings: Settings) -> None:
    if not settings.dialer.password:
        whose = f" for target {settings.dialer.target}" if settings.several_targets else ""
        raise ConfigError(f"dialer password is not set{whose}: {settings.dialer.password_hint}")


def _build(section: str, cls: type[Any], values: Mapping[str, Any], path: Path) -> Any:
    known = {f.name: f for f in fields(cls)}
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key {section}.{_shown(key)}")
        kwargs[key] = checked(f"{section}.{key}", kind_of(hints[key]), value)
    try:
        return cls(**kwargs)
    except TypeError:
        missing = [name for name, f in known.items() if name not in kwargs
                   and f.default is MISSING and f.default_factory is MISSING]
        raise ConfigError(f"missing setting {section}.{missing[0] if missing else '?'}") from None


def _shown(name: str) -> str:
    """A name from the file on one line (line breaks escaped): an error is always one line."""
    return name if name.splitlines() in ([], [name]) else repr(name)[1:-1]


# --- [daemon]: flat keys for the whole spec, one [daemon.schedules.<resource>] table each ------

# key -> (lowest, whether the lowest itself is allowed); infinity and NaN are refused too
_DAEMON_LIMITS: dict[str, tuple[float, bool]] = {
    "interval": (0, False),
    "jitter": (0, True),
    "misfire_grace_time": (0, False),
    "lease_ttl": (0, False),
    "backoff_base": (0, False),
    "backoff_max": (0, False),
    "health_max_age": (0, False),
    "http_port": (0, True),
}
_DAEMON_TEXT_KEYS = {"cron", "http_host", "trigger_token_env"}
_SCHEDULE_KEYS = {"interval", "cron", "jitter"}


def _build_daemon(raw: Mapping[str, Any], path: Path) -> DaemonSettings:
    """The `[daemon]` table (after environment overrides) as settings; one error per bad key."""
    if "trigger_token" in raw:
        raise ConfigError(f"{path}: daemon.trigger_token must not be written in the config file; "
                          f"use daemon.trigger_token_env or daemon.trigger_token_file")
    known = {f.name for f in fields(DaemonSettings)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key daemon.{key}")
        if key == "schedules":
            values[key] = _schedules(value, path)
        elif key == "trigger_token_file":
            values[key] = checked(f"daemon.{key}", Path, value) if value else None
        elif key in _DAEMON_TEXT_KEYS:
            values[key] = _text(f"daemon.{key}", value)
        else:
            values[key] = _number(f"daemon.{key}", value, integer=key == "http_port")
    if values.get("http_port", 0) > 65535:
        raise ConfigError(f"daemon.http_port must be at most 65535, not {values['http_port']!r}")
    _check_schedule("daemon", raw, values)
    return DaemonSettings(**values)


def _schedules(raw: Any, path: Path) -> tuple[ResourceSchedule, ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: [daemon.schedules] must hold tables like "
                          f"[daemon.schedules.users]")
    found = []
    for resource, table in raw.items():
        where = f"daemon.schedules.{resource}"
        if resource not in RESOURCES:
            raise ConfigError(f"{path}: [{where}]: unknown resource (one of "
                              f"{', '.join(RESOURCES)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{path}: [{where}] must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in _SCHEDULE_KEYS:
                raise ConfigError(f"{path}: unknown key {where}.{key}")
            values[key] = (_text(f"{where}.{key}", value) if key == "cron"
                           else _number(f"{where}.{key}", value))
        _check_schedule(where, table, values)
        found.append(ResourceSchedule(resource, Schedule(**values)))
    return tuple(sorted(found, key=lambda s: RESOURCES.index(s.resource)))


def _check_schedule(where: str, raw: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    cron = values.get("cron", "")
    if cron and "interval" in raw:
        raise ConfigError(f"{where}: give interval or cron, not both")
    if cron:
        check_crontab(f"{where}.cron", cron)


def check_crontab(key: str, line: str) -> None:
    # Imported here, only when a crontab line is given: the daemon's scheduler library parses
    # the line exactly as it will run it, and nothing else loads it.
    from apscheduler.triggers.cron import CronTrigger

    parts = line.split()
    # APScheduler 3 counts weekdays from Monday = 0, crontab from Sunday = 0: a number there
    # would silently run on the wrong day, so only names are accepted.
    if len(parts) == 5 and any(ch.isdigit() for ch in parts[4]):
        raise ConfigError(f"{key}: give weekdays by name (mon-fri, sun), not by number")
    try:
        CronTrigger.from_crontab(line)
    except ValueError as exc:
        raise ConfigError(f"{key} is not a valid crontab line: {exc}") from None


def _number(key: str, value: Any, *, integer: bool = False) -> float | int:
    number: float | int = checked(key, int if integer else float, value)
    low, low_ok = _DAEMON_LIMITS[key.rsplit(".", 1)[1]]
    if math.isnan(number) or math.isinf(number) or not (number >= low if low_ok else number > low):
        rule = f"at least {low}" if low_ok else f"greater than {low}"
        raise ConfigError(f"{key} must be {rule}, not {value!r}")
    return number


def _text(key: str, value: Any) -> str:
    text: str = checked(key, str, value)
    return text.strip()


def read_trigger_token(settings: DaemonSettings, environ: Mapping[str, str]) -> str | None:
    """The bearer token for POST /trigger, or None when none is set (the trigger is off).

    Read when the daemon starts, not with the other settings: no other command needs it.
    """
    if settings.trigger_token_file is not None:
        where = f"daemon.trigger_token_file {settings.trigger_token_file}"
        try:
            token = settings.trigger_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror}") from None
    else:
        where = f"${settings.trigger_token_env}"
        token = environ.get(settings.trigger_token_env, "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"the trigger token in {where} is too short: use at least "
                          f"{MIN_TOKEN_LENGTH} characters (for example `openssl rand -hex 32`)")
    return token


def check_schedules(settings: DaemonSettings, declared: frozenset[str]) -> None:
    """Every per-resource schedule must name a resource the spec declares."""
    for entry in settings.schedules:
        if entry.resource not in declared:
            raise ConfigError(f"[daemon.schedules.{entry.resource}]: the spec declares no "
                              f"[{entry.resource}]")
