"""Settings: grouped frozen dataclasses, built once by `reconciler.config` and passed explicitly,
and the rules a value of each setting type must follow.

Every section lives here, the daemon's included, and this module imports nothing of ours but
the errors: the planner, the dialer client and the daemon all read their settings from it
without loading each other. Names that other layers own but the loader must check (the
dialects, the resources a schedule may name) are plain data here, each kept in step with its
owner by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

from reconciler.core.model import GuardSettings as GuardSettings  # the planner's limits, set here
from reconciler.errors import ConfigError

Method = Literal["GET", "POST"]
# The dialects reconciler.adapters.dialer.dialects implements, in the order messages list them.
DIALECT_NAMES = ("elision", "vicidial")
# The resources a spec may declare, in the order they are planned and shown.
RESOURCES = ("users", "lists", "leads")
DEFAULT_PASSWORD_ENV = "RECONCILER_DIALER_PASSWORD"  # noqa: S105 - a variable name
DEFAULT_TOKEN_ENV = "RECONCILER_DAEMON_TOKEN"  # noqa: S105 - a variable name
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class DialerSettings:
    url: str
    user: str
    # Never printed: repr=False keeps it out of every repr and traceback of this object.
    password: str = field(repr=False)
    source: str = "reconciler"
    target: str = "default"          # names this dialer in the state database
    method: Method = "POST"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 3             # for requests that are safe to resend
    backoff_base: float = 0.5        # seconds; doubled per attempt, capped by backoff_max
    backoff_max: float = 10.0
    leads_per_batch: int = 500
    dialect: str = "elision"         # one of DIALECT_NAMES: see reconciler.adapters.dialer.dialects
    lead_concurrency: int = 4        # add_lead calls in flight at once (one-by-one dialects)
    # What carries add_multi_lead's parameters stays under this: the URL for GET, the body for
    # POST. Unset: 8,000 for GET (URL limits of web servers), 8,000,000 for POST (PHP's
    # default post_max_size).
    max_request_bytes: int | None = None
    # How to set the password, for messages; never the password itself.
    password_hint: str = "export RECONCILER_DIALER_PASSWORD"  # noqa: S105


    @property
    def request_byte_limit(self) -> int:
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return 8000 if self.method == "GET" else 8_000_000


@dataclass(frozen=True)
class CrmSettings:
    url: str


@dataclass(frozen=True)
class StateSettings:
    url: str = "sqlite:///reconciler-state.db"
    # Key for the keyed digests of agent passwords; created on first use when missing.
    digest_key_file: Path = Path(".reconciler-key")
    # `apply`, `resync`: the write lease expires this long after its last heartbeat (renewed
    # every quarter of it), which is how long a crashed process blocks the next one.
    lease_ttl: float = 120.0


@dataclass(frozen=True)
class Schedule:
    """When `reconciler daemon` runs: every `interval` seconds, or by a crontab line."""

    interval: float = 300.0          # seconds; used when `cron` is empty
    cron: str = ""                   # a five-field crontab line, in the machine's time zone
    jitter: float = 0.0              # up to this many seconds added to every fire time

    def describe(self) -> str:
        when = f"cron {self.cron!r}" if self.cron else f"every {self.interval:g}s"
        return when + (f", jitter {self.jitter:g}s" if self.jitter else "")


@dataclass(frozen=True)
class ResourceSchedule:
    resource: str                    # one of RESOURCES
    schedule: Schedule


@dataclass(frozen=True)
class DaemonSettings:
    """`reconciler daemon`: when runs happen, how outages back off, the HTTP endpoint.

    The trigger token is a secret like the dialer password: only named here, read when the
    daemon starts (`reconciler.config.read_trigger_token`).
    """

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


@dataclass(frozen=True)
class Settings:
    # The dialer target a run works on: the `[dialer]` section, or one of the `[[targets]]`
    # (see `for_target`). Everything that runs against one dialer reads this one.
    dialer: DialerSettings
    crm: CrmSettings
    state: StateSettings = StateSettings()
    guards: GuardSettings = GuardSettings()
    spec_path: Path = Path("specs/example.toml")
    source_file: Path | None = None   # the TOML file these came from, for messages
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    # Every target of a `[[targets]]` config, in file order; empty for a `[dialer]` config,
    # whose one target is `dialer`.
    targets: tuple[DialerSettings, ...] = ()

    @property
    def several_targets(self) -> bool:
        """Declared with `[[targets]]`: commands answer with one section per target."""
        return bool(self.targets)

    @property
    def all_targets(self) -> tuple[DialerSettings, ...]:
        return self.targets or (self.dialer,)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.target for t in self.all_targets)

    @property
    def passwords(self) -> tuple[str, ...]:
        """Every dialer password, for the log's redaction."""
        return tuple(t.password for t in self.all_targets)

    def for_target(self, name: str) -> Settings:
        """These settings with `dialer` set to the target called `name`."""
        for target in self.all_targets:
            if target.target == name:
                return replace(self, dialer=target)
        raise ConfigError(f"unknown target {name!r}: the config names "
                          f"{', '.join(self.target_names)}")


# --- types: a value from the TOML file must already have its setting's type (TOML has types,
# so `max_retries = "3"` is refused, not quietly converted); a variable's text is converted ---

_WHAT = {int: "a whole number", float: "a number", str: "a string", Path: "a string (a path)",
         bool: "true or false"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def kind_of(hint: Any) -> type:
    """The type a setting's annotation asks for: `int | None` -> int, a Literal -> str."""
    if get_origin(hint) in (Union, UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not NoneType)
    if get_origin(hint) is Literal:
        return str
    return get_origin(hint) or hint  # type: ignore[no-any-return]


def checked(key: str, kind: type, value: Any) -> Any:
    """A value read from the file, as `kind`; an integer is a number too (2 -> 2.0)."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind in (str, Path):
        ok = isinstance(value, str)
    else:
        return value                     # tables (daemon schedules) are checked by their reader
    if not ok:
        raise ConfigError(f"{key} must be {_WHAT[kind]}, not {_shown_value(kind, value)}")
    return kind(value)


def from_text(key: str, kind: type, text: str, variable: str) -> Any:
    """An environment variable's text as `kind` (text stays text)."""
    try:
        if kind is int:
            return int(text.strip())
        if kind is float:
            return float(text.strip())
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(text)
            return lowered in _TRUE
    except ValueError:
        raise ConfigError(f"{key} must be {_WHAT[kind]}, not {text!r} (from {variable})"
                          ) from None
    return text


def _shown_value(kind: type, value: Any) -> str:
    if isinstance(value, str) and kind is not str:
        try:
            from_text("", kind, value, "")
        except ConfigError:
            return repr(value)
        return f"the string {value!r} (write it without quotes)"
    return repr(value)

