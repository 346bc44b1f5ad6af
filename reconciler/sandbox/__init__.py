"""A faithful fake of Elision's dialer API, for tests, the demo and trying a spec.

    dialer = SandboxDialer()                                   # api / 1234, groups, campaigns
    client = httpx.Client(transport=dialer.transport(), base_url="http://sandbox")
    client.get("/dialer/elision_api.php", params={...})
    dialer.snapshot()                                          # users, lists, leads, calls
    dialer.inject("drop", function="add_multi_lead")           # see faults.py
    with start_background(dialer) as server: ...               # loopback HTTP, server.url

Behaviour where the Elision document is silent is listed in `reconciler.sandbox.api`.
`SandboxDialer(mode="vicidial")` answers as VICIdial 2.14 at VICIDIAL_API_PATH instead
(`reconciler.sandbox.vicidial_api`).
"""

from reconciler.sandbox.app import API_PATH, VICIDIAL_API_PATH, SandboxDialer, SandboxTransport
from reconciler.sandbox.faults import FaultKind, FaultPlan
from reconciler.sandbox.server import BackgroundServer, serve, start_background
from reconciler.sandbox.store import ApiUser, SandboxData, SandboxLead, SandboxList, SandboxUser

__all__ = [
    "API_PATH",
    "VICIDIAL_API_PATH",
    "ApiUser",
    "BackgroundServer",
    "FaultKind",
    "FaultPlan",
    "SandboxData",
    "SandboxDialer",
    "SandboxLead",
    "SandboxList",
    "SandboxTransport",
    "SandboxUser",
    "serve",
    "start_background",
]
