"""What every dialect's client shares: its transport, closing, and the three verbs both APIs
take with the same fields (add_user, update_user, add_list).

A dialect's client derives from `SharedVerbs`, gives it a Transport built with the dialect's
parser and retry sets, adds its own verbs, and says which optional facets of the port
(reconciler.core.ports) it has.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from reconciler.adapters.dialer import requests
from reconciler.adapters.dialer.requests import ApiLogin, DialerRequest
from reconciler.adapters.dialer.transport import Transport, expect
from reconciler.core.fields import FieldValue
from reconciler.core.replies import ListAdded, UserAdded, UserUpdated


class SharedVerbs:
    """The verbs and plumbing every dialect's client has. Use as a context manager."""

    def __init__(self, login: ApiLogin, transport: Transport) -> None:
        self.settings = transport.settings
        self._login = login
        self._transport = transport

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    def _call(self, request: DialerRequest) -> object:
        """Send one request; a dialect's client may check it first."""
        return self._transport.call(request)

    def add_user(
        self,
        agent_user: FieldValue,
        agent_pass: str,
        agent_user_level: FieldValue,
        agent_full_name: str,
        agent_user_group: str,
        *,
        phone_login: FieldValue | None = None,
        phone_pass: str | None = None,
        voicemail_id: FieldValue | None = None,
        email: str | None = None,
    ) -> UserAdded:
        request = requests.build_add_user(
            self._login, agent_user=agent_user, agent_pass=agent_pass,
            agent_user_level=agent_user_level, agent_full_name=agent_full_name,
            agent_user_group=agent_user_group, phone_login=phone_login, phone_pass=phone_pass,
            voicemail_id=voicemail_id, email=email)
        return expect(self._call(request), UserAdded, request)

    def update_user(self, agent_user: FieldValue, **changes: FieldValue) -> UserUpdated:
        request = requests.build_update_user(self._login, agent_user, changes)
        return expect(self._call(request), UserUpdated, request)

    def add_list(
        self, list_id: FieldValue, list_name: str, campaign_id: str, active: str | None = None
    ) -> ListAdded:
        request = requests.build_add_list(self._login, list_id, list_name, campaign_id, active)
        return expect(self._call(request), ListAdded, request)
