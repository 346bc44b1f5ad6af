"""The dialer client over httpx.MockTransport: encoding, safe retries, no leaks, batching."""

from __future__ import annotations

import inspect
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer import requests
from reconciler.adapters.dialer.client import ElisionClient, lead_batches
from reconciler.adapters.dialer.transport import encoded_size, login_of
from reconciler.config.settings import DialerSettings
from reconciler.core.replies import (
    ActiveList,
    LeadOutcome,
    ListAdded,
    UserAdded,
    UserUpdated,
)
from reconciler.errors import (
    AlreadyExists,
    DialerError,
    DialerInDoubt,
    DialerMalformed,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    DoesNotExist,
    FieldInvalid,
)

URL = "http://dialer.test/dialer/elision_api.php"
CANARY_API = "canary-Pw-8271"
CANARY_AGENT = "agent-canary-5531"
CANARIES = (CANARY_API, CANARY_AGENT)

ADDED = b"SUCCESS: add_user USER HAS BEEN ADDED - api|1000|9999|1|Testing Person|AGENTS\n"
UPDATED = b"SUCCESS: update_user USER HAS BEEN UPDATED - api|1000|\n"
LIST_ADDED = (b'{"success":true,"message":"1101 list created","data":{"list_id":"1101",'
              b'"list_name":"Test API list","campaign_id":"TESTCAMP"}}')
LISTS = b'{"success":true,"message":"ok","data":["TESTCAMP-1101-Test API list","odd"]}'
LEADS_CREATED = (b'{"lead 1":{"success":true,"message":"Record(s) Created",'
                 b'"data":"1234567893|1101|1036||NEW|"}}')
LEAD = {"phone_number": "1234567893", "list_id": "1101", "first_name": "test"}


def make_settings(**over: Any) -> DialerSettings:
    base: dict[str, Any] = dict(url=URL, user="api", password=CANARY_API, source="test",
                                method="POST", max_retries=3, backoff_base=0.5, backoff_max=10.0,
                                connect_timeout=5.0, read_timeout=30.0)
    return DialerSettings(**{**base, **over})


Step = httpx.Response | BaseException | bytes


class Dialer:
    """A scripted dialer: each request gets the next step; the last step repeats."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.seen: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return httpx.Response(200, content=step) if isinstance(step, bytes) else step

    def client(self, **over: Any) -> ElisionClient:
        return ElisionClient(make_settings(**over), transport=httpx.MockTransport(self.handle),
                            sleep=self.sleeps.append)

    def sent(self, index: int = -1) -> dict[str, str]:
        request = self.seen[index]
        query = request.url.query if request.method == "GET" else request.content
        return dict(parse_qsl(query.decode(), keep_blank_values=True))


def add_user(client: ElisionClient) -> Any:
    return client.add_user("1000", CANARY_AGENT, 1, "Testing Person", "AGENTS")


def add_leads(client: ElisionClient) -> Any:
    return client.add_multi_lead([LEAD])


# --- the wire ---------------------------------------------------------------------------------


def test_post_sends_a_form_body_and_nothing_in_the_url() -> None:
    dialer = Dialer(ADDED)
    with dialer.client(method="POST") as client:
        add_user(client)
    request = dialer.seen[0]
    assert request.method == "POST"
    assert request.url == httpx.URL(URL)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert list(dialer.sent().items()) == [
        ("source", "test"), ("user", "api"), ("pass", CANARY_API), ("function", "add_user"),
        ("agent_user", "1000"), ("agent_pass", CANARY_AGENT), ("agent_user_level", "1"),
        ("agent_full_name", "Testing Person"), ("agent_user_group", "AGENTS")]


def test_get_sends_params_in_the_url() -> None:
    dialer = Dialer(ADDED)
    with dialer.client(method="GET") as client:
        add_user(client)
    request = dialer.seen[0]
    assert request.method == "GET" and not request.content
    assert request.url.path == "/dialer/elision_api.php"
    assert dialer.sent()["agent_full_name"] == "Testing Person"


def test_timeouts_come_from_settings() -> None:
    dialer = Dialer(ADDED)
    with dialer.client(connect_timeout=2.0, read_timeout=20.0) as client:
        add_user(client)
    assert dialer.seen[0].extensions["timeout"] == {
        "connect": 2.0, "read": 20.0, "write": 20.0, "pool": 20.0}


def test_close_closes_the_http_client() -> None:
    client = Dialer(ADDED).client()
    with client:
        pass
    assert client.closed


@pytest.mark.parametrize(
    ("call", "answer", "expected"),
    [
        pytest.param(add_user, ADDED, UserAdded("USER HAS BEEN ADDED", (
            "api", "1000", "***", "1", "Testing Person", "AGENTS")), id="add_user"),
        pytest.param(lambda c: c.update_user("1000", active="N", agent_full_name="X Y"),
                     UPDATED, UserUpdated("USER HAS BEEN UPDATED", ("api", "1000")),
                     id="update_user"),
        pytest.param(lambda c: c.add_list("1101", "Test API list", "TESTCAMP", "Y"), LIST_ADDED,
                     ListAdded("1101", "Test API list", "TESTCAMP", "1101 list created"),
                     id="add_list"),
        pytest.param(lambda c: c.active_lists().lists, LISTS,
                     (ActiveList("TESTCAMP", "1101", "Test API list"),), id="active_lists"),
        pytest.param(add_leads, LEADS_CREATED, [LeadOutcome(
            1, True, "Record(s) Created", "1234567893", "1101", "1036", "NEW")],
            id="add_multi_lead"),
    ],
)
def test_verbs_return_typed_replies(call: Callable[[ElisionClient], Any], answer: bytes,
                                    expected: Any) -> None:
    with Dialer(answer).client() as client:
        assert call(client) == expected


def test_update_user_sends_changes_in_document_order() -> None:
    dialer = Dialer(UPDATED)
    with dialer.client() as client:
        client.update_user("1000", active="N", agent_full_name="X Y")
    assert list(dialer.sent())[4:] == ["agent_user", "agent_full_name", "active"]


def test_unparsed_active_lists_are_kept_and_reported() -> None:
    with structlog.testing.capture_logs() as logs, Dialer(LISTS).client() as client:
        reply = client.active_lists()
    assert reply.unparsed == ("odd",)
    assert {"event": "active_lists_unparsed", "count": 1, "entries": ["odd"],
            "log_level": "warning"} in logs


@pytest.mark.parametrize(
    ("call", "answer", "kind"),
    [
        pytest.param(add_user, b"ERROR: add_user USER ALREADY EXISTS - api|1000", AlreadyExists,
                     id="already-exists"),
        pytest.param(lambda c: c.update_user("1000", active="N"),
                     b"ERROR: update_user USER DOES NOT EXIST - api|1000", DoesNotExist,
                     id="does-not-exist"),
        pytest.param(add_user, b"ERROR: add_user USER GROUP DOES NOT EXIST - api|AGENTS",
                     DialerRejected, id="rejected"),
        pytest.param(add_user, b"ERROR: add_user USER DOES NOT HAVE PERMISSION TO ADD USERS - "
                     b"api|0", DialerRefused, id="no-permission"),
        pytest.param(lambda c: c.active_lists(), b"ERROR: NO FUNCTION SPECIFIED\n",
                     DialerRefused, id="no-function"),
        pytest.param(add_leads, b'["ERROR","add_multi_lead YOU MUST USE ALL REQUIRED FIELDS",'
                     b'"api",""]', DialerRejected, id="leads-rejected"),
        pytest.param(add_user, httpx.Response(404), DialerRefused, id="http-404"),
    ],
)
def test_verdicts_are_not_resent(call: Callable[[ElisionClient], Any], answer: Step,
                                 kind: type[DialerError]) -> None:
    dialer = Dialer(answer)
    with dialer.client() as client, pytest.raises(DialerError) as caught:
        call(client)
    assert type(caught.value) is kind
    assert len(dialer.seen) == 1 and dialer.sleeps == []


# --- retries ----------------------------------------------------------------------------------

MAY_HAVE_ARRIVED: list[Step] = [
    httpx.ReadTimeout("timed out"), httpx.WriteTimeout("timed out"), httpx.ReadError("reset"),
    httpx.WriteError("broken pipe"), httpx.RemoteProtocolError("server disconnected"),
    httpx.Response(500), httpx.Response(502), httpx.Response(503), httpx.Response(429),
    b"<html>proxy error</html>", b'{"lead 1":{"success":tr', b"",
]
NEVER_SENT: list[Step] = [
    httpx.ConnectError("connection refused"), httpx.ConnectTimeout("timed out"),
    httpx.PoolTimeout("no connection available"),
]


def _step_id(step: Step) -> str:
    if isinstance(step, httpx.Response):
        return f"http-{step.status_code}"
    return type(step).__name__ if isinstance(step, BaseException) else f"body-{step[:12]!r}"


@pytest.mark.parametrize("fault", NEVER_SENT + MAY_HAVE_ARRIVED, ids=_step_id)
@pytest.mark.parametrize(
    ("call", "answer"),
    [pytest.param(add_user, ADDED, id="add_user"),
     pytest.param(lambda c: c.update_user("1000", active="N"), UPDATED, id="update_user"),
     pytest.param(lambda c: c.add_list("1101", "Test API list", "TESTCAMP"), LIST_ADDED,
                  id="add_list"),
     pytest.param(lambda c: c.active_lists(), LISTS, id="active_lists")],
)
def test_safe_functions_are_resent_after_any_fault(
    call: Callable[[ElisionClient], Any], answer: bytes, fault: Step
) -> None:
    dialer = Dialer(fault, answer)
    with dialer.client() as client:
        call(client)
    assert len(dialer.seen) == 2
    assert dialer.sleeps == [0.5]


@pytest.mark.parametrize("fault", NEVER_SENT, ids=_step_id)
def test_add_multi_lead_is_resent_when_it_was_never_sent(fault: Step) -> None:
    dialer = Dialer(fault, LEADS_CREATED)
    with dialer.client() as client:
        assert add_leads(client)[0].lead_id == "1036"
    assert len(dialer.seen) == 2


@pytest.mark.parametrize("fault", MAY_HAVE_ARRIVED, ids=_step_id)
def test_add_multi_lead_is_in_doubt_once_it_may_have_arrived(fault: Step) -> None:
    dialer = Dialer(fault, LEADS_CREATED)
    with structlog.testing.capture_logs() as logs, dialer.client() as client, \
            pytest.raises(DialerInDoubt) as caught:
        add_leads(client)
    assert len(dialer.seen) == 1 and dialer.sleeps == []
    assert caught.value.function == "add_multi_lead"
    assert isinstance(caught.value.__cause__, DialerUnavailable)
    assert any(event["event"] == "dialer_in_doubt" for event in logs)


def test_add_user_read_timeout_is_retried() -> None:
    dialer = Dialer(httpx.ReadTimeout("timed out"), httpx.ReadTimeout("timed out"), ADDED)
    with dialer.client() as client:
        assert add_user(client).agent_user == "1000"
    assert len(dialer.seen) == 3 and dialer.sleeps == [0.5, 1.0]


@pytest.mark.parametrize(
    ("backoff_max", "fault", "kind", "sleeps", "probes"),
    [
        pytest.param(10.0, httpx.ConnectError("refused"), DialerUnavailable, [0.5, 1.0, 2.0], 0,
                     id="refused"),
        # 500 every time: a probe tells a failed row from an outage; it fails too: outage.
        pytest.param(1.5, httpx.Response(500), DialerUnavailable, [0.5, 1.0, 1.5], 1,
                     id="capped"),
        pytest.param(10.0, b"garbage", DialerMalformed, [0.5, 1.0, 2.0], 0, id="garbage"),
    ],
)
def test_retries_give_up_after_max_retries(backoff_max: float, fault: Step,
                                           kind: type[DialerError], sleeps: list[float],
                                           probes: int) -> None:
    dialer = Dialer(fault)
    with dialer.client(backoff_max=backoff_max) as client, pytest.raises(DialerError) as caught:
        add_user(client)
    assert type(caught.value) is kind
    assert len(dialer.seen) == 4 + probes and dialer.sleeps == sleeps


@pytest.mark.parametrize(
    ("status", "retry_after", "sleeps"),
    [
        pytest.param(503, "7", [7.0], id="503-seconds"),
        pytest.param(429, "3", [3.0], id="429-seconds"),
        pytest.param(503, "0", [0.0], id="503-now"),
        pytest.param(503, "100", [10.0], id="capped-by-backoff-max"),
        pytest.param(429, "Wed, 21 Oct 2015 07:28:00 GMT", [0.5], id="date-form-ignored"),
        pytest.param(500, "7", [0.5], id="500-not-honoured"),
    ],
)
def test_retry_after_is_honoured(status: int, retry_after: str, sleeps: list[float]) -> None:
    busy = httpx.Response(status, headers={"Retry-After": retry_after})
    dialer = Dialer(busy, ADDED)
    with dialer.client() as client:
        add_user(client)
    assert dialer.sleeps == sleeps


# --- no httpx exception escapes ---------------------------------------------------------------


def _httpx_exceptions() -> Iterator[BaseException]:
    request = httpx.Request("GET", f"{URL}?pass={CANARY_API}")
    for _, cls in sorted(inspect.getmembers(httpx, inspect.isclass)):
        if not issubclass(cls, Exception):
            continue
        message = f"failed: {URL}?pass={CANARY_API}&agent_pass={CANARY_AGENT}"
        if cls is httpx.HTTPStatusError:
            yield cls(message, request=request, response=httpx.Response(500, request=request))
        elif "message" in inspect.signature(cls).parameters:
            yield cls(message)
        else:
            yield cls()


HTTPX_EXCEPTIONS = list(_httpx_exceptions())


def test_every_httpx_exception_class_is_covered() -> None:
    assert len(HTTPX_EXCEPTIONS) >= 28
    assert {type(e) for e in HTTPX_EXCEPTIONS} >= {httpx.StreamConsumed, httpx.InvalidURL,
                                                    httpx.CookieConflict, httpx.HTTPStatusError}


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


@pytest.mark.parametrize("exception", HTTPX_EXCEPTIONS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("call", [add_user, add_leads], ids=["add_user", "add_multi_lead"])
def test_no_httpx_exception_escapes(call: Callable[[ElisionClient], Any],
                                    exception: BaseException) -> None:
    dialer = Dialer(exception)
    with dialer.client(max_retries=1) as client, pytest.raises(DialerError) as caught:
        call(client)
    assert not any(isinstance(e, httpx.HTTPError | httpx.InvalidURL | httpx.StreamError |
                              httpx.CookieConflict) for e in _chain(caught.value))
    for text in (str(caught.value), repr(caught.value)):
        assert CANARY_API not in text and CANARY_AGENT not in text
    if call is add_leads and not isinstance(exception, httpx.ConnectError | httpx.ConnectTimeout |
                                            httpx.PoolTimeout | httpx.InvalidURL |
                                            httpx.UnsupportedProtocol):
        assert type(caught.value) is DialerInDoubt
        assert len(dialer.seen) == 1


def test_unusable_url_is_refused_without_retrying() -> None:
    sleeps: list[float] = []
    # The real httpx transport: it refuses the scheme before opening anything.
    with ElisionClient(make_settings(url="ftp://dialer.test/api.php"), sleep=sleeps.append) as c, \
            pytest.raises(DialerRefused, match="URL"):
        add_user(c)
    assert sleeps == []


# --- credentials never leak -------------------------------------------------------------------

ECHO = f"pass={CANARY_API}&agent_pass={CANARY_AGENT} {CANARY_API} {CANARY_AGENT}"
LEAKY_PATHS = [
    pytest.param(add_user, [f"ERROR: Login incorrect, please try again: |api|{CANARY_API}|BAD|"
                            .encode()], id="login-echo"),
    pytest.param(lambda c: c.add_list("1101", "Test API list", "TESTCAMP"), [
        b'{"success":false,"message":"api User does not have permission to add list in the '
        b'system","data":{"user":"api","password":"' + CANARY_API.encode() + b'"}}'],
        id="add-list-permission-echo"),
    pytest.param(add_user, [f"SUCCESS: add_user USER HAS BEEN ADDED - api|1000|{CANARY_AGENT}|1|"
                            "Testing Person|AGENTS".encode()], id="add-user-success-echo"),
    pytest.param(add_user, [f"ERROR: add_user USER ALREADY EXISTS - {ECHO}".encode()],
                 id="error-echo"),
    pytest.param(add_user, [httpx.Response(500, text=ECHO)], id="http-500-echo"),
    pytest.param(add_user, [httpx.Response(404, text=ECHO)], id="http-404-echo"),
    pytest.param(add_user, [f"<html>{ECHO}</html>".encode()], id="garbage-echo"),
    pytest.param(add_user, [httpx.ConnectError(ECHO)], id="connect-error"),
    pytest.param(add_user, [httpx.ReadTimeout(ECHO)], id="read-timeout"),
    # add_multi_lead sends no agent password: only the API password is its secret.
    pytest.param(add_leads, [httpx.ReadTimeout(ECHO)], id="leads-in-doubt"),
    pytest.param(add_leads, [f'{{"lead 1":{{"success":false,"message":"{ECHO}"}}}}'.encode()],
                 id="lead-echo"),
    pytest.param(lambda c: c.active_lists(), [
        f'{{"success":true,"message":"{ECHO}","data":["{CANARY_API}"]}}'.encode()],
        id="active-lists-echo"),
]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(("call", "steps"), LEAKY_PATHS)
def test_canary_passwords_never_leak(call: Callable[[ElisionClient], Any], steps: list[Step],
                                     method: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dialer = Dialer(*steps)
    texts: list[str] = []
    with structlog.testing.capture_logs() as logs, dialer.client(method=method) as client:
        try:
            texts.append(repr(call(client)))
        except DialerError as error:
            for link in _chain(error):
                texts += [str(link), repr(link), repr(link.args)]
                texts += [getattr(link, "excerpt", ""), getattr(link, "function", "")]
    texts += [repr(event) for event in logs] + [caplog.text]
    assert dialer.seen, "the request was sent"
    for canary in (CANARY_API,) if call is add_leads else CANARIES:
        assert not any(canary in text for text in texts), canary


def test_httpx_request_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    with Dialer(LISTS).client(method="GET") as client:
        client.active_lists()
    assert "HTTP Request: GET" in caplog.text
    assert "pass=***" in caplog.text and CANARY_API not in caplog.text


# --- batching ---------------------------------------------------------------------------------


def _leads(count: int, filler: int = 0) -> list[dict[str, Any]]:
    return [{"phone_number": f"{5550000000 + i}", "list_id": "1101", "comments": "x" * filler}
            for i in range(count)]


def _size(config: DialerSettings, batch: list[Any]) -> int:
    return encoded_size(config, requests.build_add_multi_lead(login_of(config), batch))


def test_batches_by_lead_count() -> None:
    config = make_settings(leads_per_batch=3, max_request_bytes=100_000)
    assert [len(b) for b in lead_batches(config, _leads(7))] == [3, 3, 1]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_batches_by_encoded_size_fill_each_batch(method: str) -> None:
    config = make_settings(method=method, leads_per_batch=500, max_request_bytes=1500)
    leads = _leads(40, filler=30)
    batches = list(lead_batches(config, iter(leads)))
    assert [lead for batch in batches for lead in batch] == leads
    for batch, following in itertools.pairwise(batches):
        assert _size(config, batch) <= 1500
        assert _size(config, [*batch, following[0]]) > 1500   # greedy: nothing more fitted
    assert _size(config, batches[-1]) <= 1500


def _fewest_batches(config: DialerSettings, leads: list[Any]) -> int:
    """Fewest order-keeping batches, by trying every split point."""
    best = [0] + [len(leads) + 1] * len(leads)
    for end in range(1, len(leads) + 1):
        for start in range(end):
            batch = leads[start:end]
            if len(batch) <= config.leads_per_batch and \
                    _size(config, batch) <= config.max_request_bytes:
                best[end] = min(best[end], best[start] + 1)
    return best[-1]


@settings(max_examples=25, deadline=None)
@given(
    fillers=st.lists(st.integers(0, 120), min_size=1, max_size=7),
    per_batch=st.integers(1, 4),
    method=st.sampled_from(["GET", "POST"]),
    accents=st.booleans(),
)
def test_batches_are_as_few_as_possible(fillers: list[int], per_batch: int, method: str,
                                        accents: bool) -> None:
    config = make_settings(method=method, leads_per_batch=per_batch, max_request_bytes=600)
    char = "é" if accents else "a b"
    leads = [{"phone_number": f"{5550000000 + i}", "list_id": "1101", "comments": char * n}
             for i, n in enumerate(fillers)]
    leads = [lead for lead in leads if len(lead["comments"]) <= 255]
    try:
        batches = list(lead_batches(config, leads))
    except FieldInvalid:
        assert any(_size(config, [lead]) > 600 for lead in leads)
        return
    assert all(_size(config, b) <= 600 and len(b) <= per_batch for b in batches)
    assert len(batches) == _fewest_batches(config, leads)


def test_a_lead_too_big_alone_is_invalid() -> None:
    config = make_settings(max_request_bytes=400)
    leads = [*_leads(1), *_leads(1, filler=250)]
    with pytest.raises(FieldInvalid, match="lead 2 alone") as caught:
        list(lead_batches(config, leads))
    assert caught.value.function == "add_multi_lead"


@pytest.mark.parametrize(
    ("over", "rule"),
    [pytest.param({"leads_per_batch": 2}, "must hold at most 2 leads", id="count"),
     pytest.param({"max_request_bytes": 300}, "must encode to at most 300 bytes", id="bytes")],
)
def test_add_multi_lead_refuses_a_batch_over_the_limits(over: dict[str, Any], rule: str) -> None:
    dialer = Dialer(LEADS_CREATED)
    with dialer.client(**over) as client, pytest.raises(FieldInvalid) as caught:
        client.add_multi_lead(_leads(3))
    assert caught.value.rule == rule
    assert dialer.seen == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_encoded_size_is_what_goes_on_the_wire(method: str) -> None:
    dialer = Dialer(b'{"lead 1":{"success":true},"lead 2":{"success":true}}')
    config = make_settings(method=method)
    with dialer.client(method=method) as client:
        client.add_multi_lead(_leads(2, filler=5))
    wire = dialer.seen[0]
    on_wire = len(str(wire.url)) if method == "GET" else len(wire.content)
    assert _size(config, _leads(2, filler=5)) == on_wire
    assert json.loads(dialer.sent()["multi_leads"]) == _leads(2, filler=5)
