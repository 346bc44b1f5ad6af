"""The dialer client: httpx transport, retries only where safe, and the five API verbs.

No httpx exception leaves this module: every one becomes a DialerError that says what the caller
should do. add_multi_lead is never resent once it may have reached the dialer (it is not
idempotent); such a batch raises DialerInDoubt instead. A write of one object that the dialer
answers with HTTP 500 every time, while it answers a probe, fails that object alone
(DialerRowFailed); every other unavailability is the dialer's, and stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import httpx
import structlog

from reconciler.dialer import requests
from reconciler.dialer.fields import FieldValue
from reconciler.dialer.replies import (
    ActiveLists,
    LeadOutcome,
    LeadResults,
    ListAdded,
    UserAdded,
    UserUpdated,
)
from reconciler.dialer.requests import ApiLogin, DialerRequest, Lead
from reconciler.dialer.responses import parse_response, retry_after_seconds
from reconciler.errors import (
    DialerError,
    DialerInDoubt,
    DialerMalformed,
    DialerRefused,
    DialerRowFailed,
    DialerUnavailable,
    FieldInvalid,
)
from reconciler.redact import excerpt, redact_text
from reconciler.settings import DialerSettings

log = structlog.get_logger()

# Functions that may be sent again after an unclear failure (DESIGN.md, "Safe retries"). The
# second line is the vicidial dialect's: reads, and update_list (it sets fields to values).
# add_lead, like add_multi_lead, is not: a lead sent twice is a lead called twice.
RESENDABLE = frozenset({"add_user", "update_user", "add_list", "active_lists",
                        "version", "user_details", "list_info", "update_list", "lead_search",
                        "lead_all_info"})

# Writes of one object, safe to resend. When every attempt at one is answered HTTP 500 (the
# dialer's script died on it) and the dialer then answers a probe, that object breaks the dialer
# (stock VICIdial's SQL on a quote), not the dialer itself: DialerRowFailed. Leads are never
# judged so: a lead whose answer was lost stays in doubt.
ROW_WRITES = frozenset({"add_user", "update_user", "add_list", "update_list"})
# The probe: `version` needs no login (VICIdial answers it after reading its database; a dialer
# without it still answers, with an error), so no credential is sent for it.
PROBE = DialerRequest("version", (("function", "version"),), frozenset())

# Failures that prove the request never left this process: no connection was ever made, so even
# add_multi_lead may be sent again. A failure after connecting (ReadTimeout, WriteError,
# RemoteProtocolError...) may follow a request the dialer has already acted on.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures retrying cannot cure: the URL itself is unusable. Nothing was sent.
_BAD_URL = (httpx.InvalidURL, httpx.UnsupportedProtocol)
# Everything httpx raises on its own account (StreamError is a RuntimeError, not an HTTPError).
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError)

_R = TypeVar("_R")


class DialerClient:
    """Talks to one dialer. Use as a context manager, or call close()."""

    def __init__(
        self,
        settings: DialerSettings,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._login = login_of(settings)
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            follow_redirects=False,   # a redirect is a wrong URL; following it could resend
        )
        _redact_httpx_logs()

    def __enter__(self) -> DialerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- verbs --------------------------------------------------------------------------------

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
        return _expect(self._call(request), UserAdded, request)

    def update_user(self, agent_user: FieldValue, **changes: FieldValue) -> UserUpdated:
        request = requests.build_update_user(self._login, agent_user, changes)
        return _expect(self._call(request), UserUpdated, request)

    def add_list(
        self, list_id: FieldValue, list_name: str, campaign_id: str, active: str | None = None
    ) -> ListAdded:
        request = requests.build_add_list(self._login, list_id, list_name, campaign_id, active)
        return _expect(self._call(request), ListAdded, request)

    def active_lists(self) -> ActiveLists:
        request = requests.build_active_lists(self._login)
        reply = _expect(self._call(request), ActiveLists, request)
        if reply.unparsed:
            log.warning("active_lists_unparsed", count=len(reply.unparsed),
                        entries=[excerpt(entry, limit=80) for entry in reply.unparsed[:10]])
        return reply

    def add_multi_lead(self, leads: Sequence[Lead]) -> list[LeadOutcome]:
        """Send one batch; split larger sets with `lead_batches` first.

        One outcome per lead, in the order sent; `success=None` marks a lead the answer did not
        cover. Raises DialerInDoubt when the batch may have been applied but no answer was read.
        """
        request = requests.build_add_multi_lead(self._login, leads)
        if len(leads) > self.settings.leads_per_batch:
            raise FieldInvalid("add_multi_lead", "multi_leads",
                               f"must hold at most {self.settings.leads_per_batch} leads")
        limit = self.settings.request_byte_limit
        if encoded_size(self.settings, request) > limit:
            raise FieldInvalid("add_multi_lead", "multi_leads",
                               f"must encode to at most {limit} bytes")
        return list(_expect(self._call(request), LeadResults, request).outcomes)

    # --- transport ----------------------------------------------------------------------------

    def _call(self, request: DialerRequest) -> object:
        fn = request.function
        attempts = 1 + max(0, self.settings.max_retries)
        answered_500 = 0
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            result = self._exchange(request)
            elapsed_ms = round((time.monotonic() - started) * 1000)
            if not isinstance(result, _Failure):
                log.debug("dialer_call", function=fn, attempt=attempt, outcome="ok",
                          elapsed_ms=elapsed_ms)
                return result
            error = result.error
            if result.status == 500:
                answered_500 += 1
            log.debug("dialer_call", function=fn, attempt=attempt,
                      outcome=type(error).__name__, elapsed_ms=elapsed_ms)
            if not isinstance(error, DialerUnavailable):
                raise error   # the dialer's verdict (or our configuration): resending won't help
            if result.sent and fn not in RESENDABLE:
                log.warning("dialer_in_doubt", function=fn, lead_count=request.lead_count,
                            reason=str(error))
                cause = str(error.args[0]).removeprefix(f"{fn}: ")
                raise DialerInDoubt(
                    f"{fn}: outcome unknown, the request may have reached the dialer and is "
                    f"not resent ({cause})", function=fn, excerpt=error.excerpt,
                ) from error
            if attempt == attempts:
                log.warning("dialer_gave_up", function=fn, attempts=attempts, reason=str(error))
                if fn in ROW_WRITES and answered_500 == attempts and self._answers():
                    log.warning("dialer_row_failed", function=fn, attempts=attempts)
                    raise DialerRowFailed(
                        f"{fn}: the dialer fails on this row (HTTP 500 on all {attempts} "
                        "attempts, while it answers other calls)",
                        function=fn, excerpt=error.excerpt) from error
                raise error
            delay = self._delay(attempt, result.retry_after)
            log.warning("dialer_retry", function=fn, attempt=attempt, delay_s=delay,
                        reason=str(error))
            self._sleep(delay)
        raise AssertionError("attempts is at least 1")

    def _exchange(self, request: DialerRequest) -> object:
        try:
            response = self._send(request)
        except _HTTPX_ERRORS as exc:
            sent = not isinstance(exc, _NOT_SENT + _BAD_URL)
            return _Failure(_transport_error(request, exc), sent=sent)
        try:
            return self._parse(request, response)
        except DialerError as error:
            retry_after = None
            if response.status_code in (429, 503):
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return _Failure(error, sent=True, retry_after=retry_after,
                            status=response.status_code)

    def _answers(self) -> bool:
        """Whether the dialer answers at all: any 2xx answer to the probe, whatever it says.
        One attempt: a dialer that fails it too is down, and the run stops."""
        try:
            answered = 200 <= self._send(PROBE).status_code <= 299
        except _HTTPX_ERRORS:
            answered = False
        log.info("dialer_probe", answered=answered)
        return answered

    def _parse(self, request: DialerRequest, response: httpx.Response) -> object:
        """One answer as a typed reply, or a DialerError. A dialect's client overrides this."""
        return parse_response(request.function, response.status_code, response.content,
                              request.secrets, lead_count=request.lead_count)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Capped exponential backoff; a Retry-After in seconds replaces it, under the same cap."""
        wanted = self.settings.backoff_base * 2.0 ** min(attempt - 1, 30)
        if retry_after is not None:
            wanted = retry_after
        return max(0.0, min(self.settings.backoff_max, wanted))

    def _send(self, request: DialerRequest) -> httpx.Response:
        if self.settings.method == "GET":
            return self._http.get(self.settings.url, params=request.params)
        return self._http.post(self.settings.url, data=dict(request.params))


def login_of(settings: DialerSettings) -> ApiLogin:
    return ApiLogin(settings.user, settings.password, settings.source)


def encoded_size(settings: DialerSettings, request: DialerRequest) -> int:
    """Bytes of what carries the parameters: the full URL for GET, the form body for POST."""
    if settings.method == "GET":
        return len(str(httpx.Request("GET", settings.url, params=request.params).url))
    return len(httpx.Request("POST", settings.url, data=dict(request.params)).content)


def lead_batches(settings: DialerSettings, leads: Iterable[Lead]) -> Iterator[list[Lead]]:
    """Split `leads`, in order, into add_multi_lead batches within both limits.

    Each batch holds at most `leads_per_batch` leads and its request encodes to at most
    `request_byte_limit`. Batches are filled greedily, which gives the fewest batches an
    order-keeping split can have. A lead too big to travel alone raises FieldInvalid.
    """
    login = login_of(settings)
    limit = settings.request_byte_limit

    def size_with(multi_leads: str) -> int:
        request = requests.api_request(login, "add_multi_lead", {"multi_leads": multi_leads})
        return encoded_size(settings, request)

    # Form and URL encoding work character by character, so a batch's size is the size of an
    # empty list plus each lead's encoded JSON plus one encoded comma between leads.
    empty = size_with("[]")
    comma = size_with("[,]") - empty
    batch: list[Lead] = []
    size = empty
    for position, lead in enumerate(leads, start=1):
        cost = size_with(requests.encode_leads([lead])) - empty
        if empty + cost > limit:
            raise FieldInvalid("add_multi_lead", "multi_leads",
                               f"lead {position} alone encodes to more than {limit} bytes")
        if batch and (len(batch) >= settings.leads_per_batch or size + comma + cost > limit):
            yield batch
            batch, size = [], empty
        size += cost + (comma if batch else 0)
        batch.append(lead)
    if batch:
        yield batch


@dataclass(frozen=True)
class _Failure:
    error: DialerError
    sent: bool                        # the request may have reached the dialer
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After header
    status: int | None = None         # the HTTP status of the answer, when one came


def _transport_error(request: DialerRequest, exc: Exception) -> DialerError:
    """Our error for an httpx failure. The httpx exception is not chained: it holds the request,
    whose URL carries the password in GET mode."""
    fn, name = request.function, type(exc).__name__
    detail = excerpt(str(exc), request.secrets, limit=120)
    cause = f"{name}: {detail}" if detail else name
    if isinstance(exc, _BAD_URL):
        return DialerRefused(f"{fn}: the dialer URL cannot be used ({cause})", function=fn)
    if isinstance(exc, httpx.DecodingError):
        return DialerMalformed(f"{fn}: undecodable answer from the dialer ({cause})", function=fn)
    if isinstance(exc, httpx.TimeoutException):
        return DialerUnavailable(f"{fn}: no answer in time ({cause})", function=fn)
    return DialerUnavailable(f"{fn}: cannot talk to the dialer ({cause})", function=fn)


def _expect(reply: object, kind: type[_R], request: DialerRequest) -> _R:
    if not isinstance(reply, kind):
        raise DialerMalformed(f"{request.function}: unexpected kind of answer",
                              function=request.function)
    return reply


class _RedactingFilter(logging.Filter):
    """httpx logs each request URL at INFO; in GET mode that URL carries `pass=`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = redact_text(record.getMessage())
            record.args = None
        except (TypeError, ValueError):
            record.msg, record.args = "(unloggable httpx message)", None
        return True


def _redact_httpx_logs() -> None:
    # httpcore's own (debug) log lines name hosts, never the URL's query.
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
        logger.addFilter(_RedactingFilter())
