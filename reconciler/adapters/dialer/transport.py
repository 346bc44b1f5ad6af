"""The dialer transport both dialects' clients are built on: httpx, retries only where safe,
the in-doubt rule, redaction, and the mapping of every failure to one of our errors.

No httpx exception leaves this module: every one becomes a DialerError that says what the caller
should do. What a dialect decides is passed in: how its answers read (`parse`), which of its
functions may be sent again after an unclear failure (`resendable`), and which are writes of one
object (`row_writes`). A function that is not resendable is never resent once it may have reached
the dialer (a lead sent twice is a lead called twice): it raises DialerInDoubt instead. A write of
one object that the dialer answers with HTTP 500 every time, while it answers a probe, fails that
object alone (DialerRowFailed); every other unavailability is the dialer's, and stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import structlog

from reconciler.adapters.dialer.requests import ApiLogin, DialerRequest
from reconciler.adapters.dialer.responses import retry_after_seconds
from reconciler.config.settings import DialerSettings
from reconciler.errors import (
    DialerError,
    DialerInDoubt,
    DialerMalformed,
    DialerRefused,
    DialerRowFailed,
    DialerUnavailable,
)
from reconciler.redact import excerpt, redact_text

log = structlog.get_logger()

# request, HTTP status, body -> the typed reply, or raises the DialerError the answer means
Parse = Callable[[DialerRequest, int, bytes], object]

# The probe: `version` needs no login (VICIdial answers it after reading its database; a dialer
# without it still answers, with an error), so no credential is sent for it.
PROBE = DialerRequest("version", (("function", "version"),), frozenset())

# Failures that prove the request never left this process: no connection was ever made, so even
# a function that is not resendable may be sent again. A failure after connecting (ReadTimeout,
# WriteError, RemoteProtocolError...) may follow a request the dialer has already acted on.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures retrying cannot cure: the URL itself is unusable. Nothing was sent.
_BAD_URL = (httpx.InvalidURL, httpx.UnsupportedProtocol)
# Everything httpx raises on its own account (StreamError is a RuntimeError, not an HTTPError).
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError)

_R = TypeVar("_R")

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Transport:
    """One dialer's HTTP connection, shared by the verbs of a dialect's client. Call close()."""

    def __init__(
        self,
        settings: DialerSettings,
        *,
        parse: Parse,
        resendable: frozenset[str],
        row_writes: frozenset[str],
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.settings = settings
        self._parse = parse
        self._resendable = resendable
        self._row_writes = row_writes
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            follow_redirects=False,   # a redirect is a wrong URL; following it could resend
        )
        _redact_httpx_logs()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def close(self) -> None:
        self._http.close()

    def call(self, request: DialerRequest) -> object:
        """Send `request` until it is answered, resending only what is safe to resend; the typed
        reply its dialect's parser reads, or the DialerError that says what to do."""
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
            if result.sent and fn not in self._resendable:
                log.warning("dialer_in_doubt", function=fn, lead_count=request.lead_count,
                            reason=str(error))
                cause = str(error.args[0]).removeprefix(f"{fn}: ")
                raise DialerInDoubt(
                    f"{fn}: outcome unknown, the request may have reached the dialer and is "
                    f"not resent ({cause})", function=fn, excerpt=error.excerpt,
                ) from error
            if attempt == attempts:
                log.warning("dialer_gave_up", function=fn, attempts=attempts, reason=str(error))
                if fn in self._row_writes and answered_500 == attempts and self._answers():
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
            return self._parse(request, response.status_code, response.content)
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

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Capped exponential backoff; a Retry-After in seconds replaces it, under the same cap."""
        wanted = self.settings.backoff_base * 2.0 ** min(attempt - 1, 30)
        if retry_after is not None:
            wanted = retry_after
        return max(0.0, min(self.settings.backoff_max, wanted))

    def _send(self, request: DialerRequest) -> httpx.Response:
        if self.settings.method == "GET":
            return self._http.get(self.settings.url, params=request.params)
        # The body encoded once (encoded_size measured the same bytes), not again by httpx.
        return self._http.post(self.settings.url, content=request.form_body, headers=FORM)



def login_of(settings: DialerSettings) -> ApiLogin:
    return ApiLogin(settings.user, settings.password, settings.source)


def encoded_size(settings: DialerSettings, request: DialerRequest) -> int:
    """Bytes of what carries the parameters: the full URL for GET, the form body for POST."""
    if settings.method == "GET":
        return len(str(httpx.Request("GET", settings.url, params=request.params).url))
    return len(request.form_body)


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


def expect(reply: object, kind: type[_R], request: DialerRequest) -> _R:
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
