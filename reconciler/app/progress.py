"""How far a lead export has got: a bar on a terminal, `leads_progress` events otherwise."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import structlog
from rich.console import Console

from reconciler.app.logs import terminal
from reconciler.apply.leads_batches import Progress

log = structlog.get_logger()


def progress_bar(total: int, enabled: bool) -> AbstractContextManager[Progress]:
    """A bar on a terminal that can draw one; structured `leads_progress` events otherwise
    (not a terminal, TERM=dumb, where rich would not draw it)."""
    console = terminal()
    if enabled and total and console.is_terminal and not console.is_dumb_terminal:
        return RichBar(total, console)
    return nullcontext(_logged_progress(total))


def _logged_progress(total: int) -> Progress:
    done = 0
    last_logged = 0

    def advance(sent: int) -> None:
        nonlocal done, last_logged
        done += sent
        if done - last_logged >= max(1, total // 20) or done >= total:
            last_logged = done
            log.info("leads_progress", done=done, total=total)

    return advance


class RichBar(AbstractContextManager[Progress]):
    def __init__(self, total: int, console: Console) -> None:
        from rich.progress import Progress as RichProgress

        # The Console the log lines go through too: they pass above the bar, not through it.
        self._bar = RichProgress(console=console, transient=True)
        self._task = self._bar.add_task("sending leads", total=total)

    def __enter__(self) -> Progress:
        self._bar.start()
        return lambda sent: self._bar.advance(self._task, sent)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
