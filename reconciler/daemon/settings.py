"""Settings of `reconciler daemon`: when runs happen, how outages back off, the HTTP endpoint.

They come from the `[daemon]` section of the config file, plus one `[daemon.schedules.<name>]`
table for each resource that needs a schedule of its own:

    [daemon]
    interval = 300                # seconds between runs of the whole spec, or instead
    cron = "*/5 * * * *"          # a crontab line (weekdays by name: mon-fri)
    jitter = 10

    [daemon.schedules.leads]      # leads alone, more often, on top of the whole-spec runs
    interval = 60

The trigger token is a secret like the dialer password: it is never written in the file, only
named there (`trigger_token_env`, `trigger_token_file`) and read when the daemon starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from reconciler.errors import ConfigError
from reconciler.settingtypes import checked

RESOURCES = ("users", "lists", "leads")
DEFAULT_TOKEN_ENV = "RECONCILER_DAEMON_TOKEN"  # noqa: S105 - a variable name
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Schedule:
    interval: float = 300.0          # seconds; used when `cron` is empty
    cron: str = ""                   # a five-field crontab line, in the machine's time zone
    jitter: float = 0.0              # up to this many seconds added to every fire time

    def describe(self) -> str:
        when = f"cron {self.cron!r}" if self.cron else f"every {self.interval:g}s"
        return when + (f", jitter {self.jitter:g}s" if self.jitter else "")


@dataclass(frozen=True)
class ResourceSchedule:
    resource: str                    # users | lists | leads
    schedule: Schedule


@dataclass(frozen=True)
class DaemonSettings:
    # The whole spec, every resource together (flat keys, so that environment overrides such
    # as RECONCILER_DAEMON_INTERVAL reach them).
    interval: float = 300.0
    cron: str = ""
    jitter: float = 0.0
    misfire_grace_time: float = 60.0     # a fire later than this (busy, suspended) is skipped
    lease_ttl: float = 120.0             # the write lease expires this long after a heartbeat
    backoff_base: float = 10.0           # first wait after a failing run, doubled per failure
    backoff_max: float = 600.0
    health_max_age: float = 1800.0       # /healthz fails when the last success is older
    http_host: str = "127.0.0.1"
    http_port: int = 0                   # 0: no HTTP endpoint
    trigger_token_env: str = DEFAULT_TOKEN_ENV
    trigger_token_file: Path | None = None
    schedules: tuple[ResourceSchedule, ...] = ()

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.interval, self.cron, self.jitter)


# key -> (lowest, whether the lowest itself is allowed)
_LIMITS: dict[str, tuple[float, bool]] = {
    "interval": (0, False),
    "jitter": (0, True),
    "misfire_grace_time": (0, False),
    "lease_ttl": (0, False),
    "backoff_base": (0, False),
    "backoff_max": (0, False),
    "health_max_age": (0, False),
    "http_port": (0, True),
}
_TEXT_KEYS = {"cron", "http_host", "trigger_token_env"}
_SCHEDULE_KEYS = {"interval", "cron", "jitter"}


def build_daemon_settings(raw: Mapping[str, Any], path: Path) -> DaemonSettings:
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
        elif key in _TEXT_KEYS:
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
    low, low_ok = _LIMITS[key.rsplit(".", 1)[1]]
    if math.isnan(number) or math.isinf(number) or not (number >= low if low_ok else number > low):
        rule = f"at least {low}" if low_ok else f"greater than {low}"
        raise ConfigError(f"{key} must be {rule}, not {value!r}")
    return number


def _text(key: str, value: Any) -> str:
    text: str = checked(key, str, value)
    return text.strip()


def read_trigger_token(settings: DaemonSettings, environ: Mapping[str, str]) -> str | None:
    """The bearer token for POST /trigger, or None when none is set (the trigger is off)."""
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

