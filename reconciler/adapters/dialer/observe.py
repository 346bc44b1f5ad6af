"""The observed view: what the dialer says now, read the way its dialect can.

A dialer with `active_lists` shows every active list in one call (inactive ones are invisible).
A dialer that reads lists one by one (`list_info`) is asked about each list we manage, and shows
inactive ones too; one that reads users (`user_details`) is asked about each user we manage.
A list or user the dialer does not have is simply absent. Any other failure makes the whole view
unavailable: no plan is better than a plan made on half a view.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from reconciler.core.model import Capabilities, Observed, ObservedList, ObservedUser
from reconciler.core.ports import DialerPort, lacking
from reconciler.errors import DialerError, DoesNotExist

log = structlog.get_logger()


def observe(
    dialer: DialerPort,
    capabilities: Capabilities,
    *,
    list_ids: Iterable[str] | None = (),
    agent_users: Iterable[str] | None = None,
) -> Observed:
    """Read lists (`list_ids`: the managed ones; None: no need) and, when the dialer can,
    users (`agent_users`: the managed ones; None: no need)."""
    function = "active_lists"
    try:
        unparsed: tuple[str, ...] = ()
        lists: dict[str, ObservedList] = {}
        if list_ids is not None and capabilities.reads_lists_individually:
            function = "list_info"
            lists = _lists_one_by_one(dialer, list_ids)
        elif list_ids is not None:
            reader = dialer.active_list_reader
            if reader is None:
                raise lacking("active_lists")
            answer = reader.active_lists()
            lists = {a.list_id: ObservedList(a.list_id, a.list_name, a.campaign_id)
                     for a in answer.lists}
            unparsed = tuple(answer.unparsed)
        users = None
        if agent_users is not None and capabilities.reads_users:
            function = "user_details"
            users = _users(dialer, agent_users)
    except DialerError as exc:
        log.warning("dialer_read_failed", function=function, error=str(exc))
        return Observed(None, str(exc))
    return Observed(lists, unparsed=unparsed, users=users)


def _lists_one_by_one(dialer: DialerPort, list_ids: Iterable[str]) -> dict[str, ObservedList]:
    reader = dialer.list_reader
    if reader is None:
        raise lacking("list_info")
    lists: dict[str, ObservedList] = {}
    for list_id in sorted(set(list_ids)):
        try:
            info = reader.list_info(list_id)
        except DoesNotExist:
            continue
        lists[list_id] = ObservedList(list_id, info.list_name, info.campaign_id,
                                      "Y" if info.active == "Y" else "N")
    return lists


def _users(dialer: DialerPort, agent_users: Iterable[str]) -> dict[str, ObservedUser]:
    reader = dialer.user_reader
    if reader is None:
        raise lacking("user_details")
    users: dict[str, ObservedUser] = {}
    for agent_user in sorted(set(agent_users)):
        try:
            details = reader.user_details(agent_user)
        except DoesNotExist:
            continue
        users[agent_user] = ObservedUser(agent_user, {
            "agent_full_name": details.full_name,
            "agent_user_group": details.user_group,
            "agent_user_level": str(details.user_level),
            "active": "Y" if details.active == "Y" else "N",
        })
    return users
