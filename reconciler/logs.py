"""structlog, configured once by the CLI: console on a TTY, JSON lines otherwise.

Every event passes through `SecretScrubber` last before rendering, so a password reaches no log
line even when it hides inside an exception text or an echoed dialer body.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from reconciler.redact import redact_value


class SecretScrubber:
    """structlog processor: masks secret-named fields and known secret values in every event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = redact_value(key, value, self._secrets)
        return event_dict


def configure_logging(
    *, secrets: Iterable[str] = (), json: bool | None = None, level: str = "INFO",
    stream: TextIO | None = None,
) -> None:
    stream = stream or sys.stderr
    # httpx logs whole request URLs at INFO, and a GET request's URL carries `pass=`.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    as_json = (not stream.isatty()) if json is None else json
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            SecretScrubber(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
