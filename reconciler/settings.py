"""Settings: grouped frozen dataclasses, built once by `reconciler.config` and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reconciler.daemon.settings import DaemonSettings

Method = Literal["GET", "POST"]


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
    dialect: str = "elision"         # elision | vicidial: see reconciler.dialect
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
class GuardSettings:
    max_deactivations: int = 10
    max_changed_share: float = 0.5   # of the users we manage, changed in one run
    min_users_for_share: int = 10    # below this many users the share guard does not apply


@dataclass(frozen=True)
class Settings:
    dialer: DialerSettings
    crm: CrmSettings
    state: StateSettings = StateSettings()
    guards: GuardSettings = GuardSettings()
    spec_path: Path = Path("specs/example.toml")
    source_file: Path | None = None   # the TOML file these came from, for messages
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
