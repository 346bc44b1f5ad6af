"""The sandbox dialer with a real client in front of it, for either dialect's client tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from reconciler.adapters.dialer.base import SharedVerbs
from reconciler.adapters.dialer.client import ElisionClient
from reconciler.config.settings import DialerSettings, Method
from reconciler.errors import DialerError
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer
from reconciler.sandbox.app import DialerMode

CANARY_API = "canary-Pw-8271"

C = TypeVar("C", bound=SharedVerbs)

# What each kind of fault a `mixed` plan picks makes the client's error say.
FAULT_CAUSES = {"status": "HTTP 503", "garbage": "unreadable answer",
                "truncated": "unreadable answer", "drop": "cannot talk to the dialer",
                "timeout": "no answer in time"}


@dataclass(frozen=True)
class Attempt:
    """One call of a client verb: the requests the sandbox logged for it, and how it ended."""

    function: str
    calls: list[dict[str, Any]]       # the sandbox's call log entries, in order
    result: Any
    error: DialerError | None

    @property
    def faults(self) -> list[str | None]:
        return [call["fault"] for call in self.calls]

    @property
    def reached_dialer(self) -> bool:
        """Whether any of its requests was carried out (a fault may have lost the answer)."""
        return any(call["result"] is not None for call in self.calls)

    def names_its_fault(self) -> bool:
        """The error of a call whose last request met a fault names that fault's cause."""
        last = self.faults[-1]
        return last is None or (self.error is not None and FAULT_CAUSES[last] in str(self.error))


class SandboxHarness(Generic[C]):
    """A sandbox in `mode`, its API user's password a canary, and clients of `client_class`."""

    mode: DialerMode = "elision"
    client_class: Callable[..., SharedVerbs] = ElisionClient

    def __init__(self, method: Method, **data: Any) -> None:
        api_users = data.pop("api_users", (ApiUser("api", CANARY_API),))
        self.dialer = SandboxDialer(SandboxData(api_users=api_users, **data), mode=self.mode)
        self.method = method
        self.sleeps: list[float] = []

    def client(self, password: str = CANARY_API, **over: Any) -> C:
        config = DialerSettings(url=f"http://sandbox{self.dialer.api_path}", user="api",
                                password=password, source="test", method=self.method, **over)
        return cast(C, self.client_class(config, transport=self.dialer.transport(),
                                         sleep=self.sleeps.append))

    def calls(self, function: str) -> list[dict[str, Any]]:
        return [c for c in self.dialer.snapshot()["calls"] if c["function"] == function]

    def attempt(self, function: str, call: Callable[[], Any]) -> Attempt:
        """Run one verb, keeping our own errors (anything else fails the test)."""
        before = len(self.dialer.snapshot()["calls"])
        result, error = None, None
        try:
            result = call()
        except DialerError as exc:
            error = exc
        calls = self.dialer.snapshot()["calls"][before:]
        assert {c["function"] for c in calls} == {function}, calls
        return Attempt(function, calls, result, error)


def add_agent(client: ElisionClient, agent_user: str = "1000", *, agent_pass: str,
              **over: Any) -> Any:
    fields: dict[str, Any] = dict(agent_pass=agent_pass, agent_user_level=1,
                                  agent_full_name="Testing Person", agent_user_group="AGENTS")
    return client.add_user(agent_user, **{**fields, **over})
