"""The sandbox dialer with a real client in front of it, for either dialect's client tests."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from reconciler.dialer.client import DialerClient
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer
from reconciler.sandbox.app import DialerMode
from reconciler.settings import DialerSettings, Method

CANARY_API = "canary-Pw-8271"

C = TypeVar("C", bound=DialerClient)


class SandboxHarness(Generic[C]):
    """A sandbox in `mode`, its API user's password a canary, and clients of `client_class`."""

    mode: DialerMode = "elision"
    client_class: type[DialerClient] = DialerClient

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


def add_agent(client: DialerClient, agent_user: str = "1000", *, agent_pass: str,
              **over: Any) -> Any:
    fields: dict[str, Any] = dict(agent_pass=agent_pass, agent_user_level=1,
                                  agent_full_name="Testing Person", agent_user_group="AGENTS")
    return client.add_user(agent_user, **{**fields, **over})
