"""Our own exception tree, split by what the caller should do.

Nothing outside the dialer client ever sees an httpx exception, and nothing here ever carries a
password: messages are built from field names, rules and redacted excerpts only.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""


class ConfigError(ReconcilerError):
    """A setting is missing or malformed. The message names the key."""


class SpecError(ReconcilerError):
    """A sync spec is malformed. The message names the file and the entry."""


class StateError(ReconcilerError):
    """The state database cannot be used as it is."""


class StateUnavailable(StateError):
    """The state database could not be read or written (down, locked, damaged): retry later.

    The message names the database (its URL without the password) and the driver's cause.
    """


class SchemaOutdated(StateError):
    """The state database schema is not at the revision this version needs."""


class LockHeld(StateError):
    """Another process holds the write lease."""


class LeaseLost(StateError):
    """The write lease stopped being ours during a run (it expired and another process took it
    over, or it was broken): this process must not send anything more."""


class PlanRefused(ReconcilerError):
    """A saved plan cannot be applied (stale, altered, or over a guard limit)."""


# --- the dialer -------------------------------------------------------------------------------


class DialerError(ReconcilerError):
    """Anything that went wrong talking to the dialer.

    `function` is the API function; `excerpt` is a short, redacted piece of the answer (or empty).
    """

    def __init__(self, message: str, *, function: str = "", excerpt: str = "") -> None:
        super().__init__(message)
        self.function = function
        self.excerpt = excerpt

    def __str__(self) -> str:
        text = super().__str__()
        if self.excerpt:
            return f"{text} (dialer said: {self.excerpt})"
        return text


class DialerUnavailable(DialerError):
    """The dialer could not be reached or answered 5xx/429: retry later."""


class DialerMalformed(DialerUnavailable):
    """The dialer answered something we cannot understand (HTML page, truncated JSON, ...).

    Treated as "retry later": such answers come from proxies and half-restarted servers.
    """


class DialerInDoubt(DialerUnavailable):
    """A request that is not safe to resend may have reached the dialer; its outcome is unknown."""


class DialerRefused(DialerError):
    """Permissions or configuration (login, API user level, unknown function): stop the run."""


class DialerRejected(DialerError):
    """The dialer refused this one object (invalid field, unknown group...): reject the row."""


class DialerRowFailed(DialerRejected):
    """The dialer failed on this one object (HTTP 500 on every attempt) while it still answers
    other calls: the object's values break something there. Reject the row, go on."""


class FieldInvalid(DialerRejected):
    """A request failed our own check of the API's field rules before it was sent."""

    def __init__(self, function: str, field: str, rule: str) -> None:
        super().__init__(f"{function}: field {field!r} {rule}", function=function)
        self.field = field
        self.rule = rule


class AlreadyExists(DialerRejected):
    """The object is already on the dialer (add_user / add_list): converge or adopt."""


class DoesNotExist(DialerRejected):
    """The object is not on the dialer (update_user): recreate it."""
