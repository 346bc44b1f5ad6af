"""structlog, configured once by the CLI: console on a TTY, JSON lines otherwise.

Every event passes through `SecretScrubber` last before rendering, so a password reaches no log
line even when it hides inside an exception text or an echoed dialer body.

On a terminal, log lines are written through the one rich Console that the lead progress bar
draws on (`terminal()`): rich then prints each line above the live bar and draws the bar again
below it, instead of the line landing on the bar and leaving a stale copy of it behind. That
Console also decides colour: none when NO_COLOR is set or TERM=dumb, as the bar does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from rich.console import Console
from rich.text import Text

from reconciler.redact import redact_value

_terminal: Console | None = None


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


class ConsoleLogger:
    """A structlog logger that prints each rendered line through a rich Console, as it is:
    no markup, emoji or highlighting, no wrapping; ANSI colours become rich styles, which
    the Console keeps or drops by the terminal's wishes."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def msg(self, message: str) -> None:
        self._console.print(Text.from_ansi(message), soft_wrap=True, markup=False, emoji=False,
                            highlight=False)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


def terminal() -> Console:
    """The Console on stderr shared by the log lines and the progress bar."""
    global _terminal
    if _terminal is None:
        _terminal = Console(stderr=True)
    return _terminal


def plain_terminal(console: Console) -> bool:
    """Whether `console` must not be coloured or animated (not a terminal, NO_COLOR, TERM=dumb)."""
    return not console.is_terminal or console.is_dumb_terminal or console.no_color


def configure_logging(
    *, secrets: Iterable[str] = (), json: bool | None = None, level: str = "INFO",
    stream: TextIO | None = None,
) -> None:
    global _terminal
    stream = stream or sys.stderr
    _terminal = Console(file=stream)
    # httpx logs whole request URLs at INFO, and a GET request's URL carries `pass=`.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    as_json = (not stream.isatty()) if json is None else json
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=not plain_terminal(_terminal))
    console = _terminal
    factory: Any = (structlog.PrintLoggerFactory(file=stream) if not console.is_terminal
                    else lambda *_args: ConsoleLogger(console))
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
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
