"""What every command does first: load settings once, configure logging once."""

from __future__ import annotations

import argparse

from reconciler.config import load_settings
from reconciler.logs import configure_logging
from reconciler.settings import Settings

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_REJECTED = 0, 1, 2, 3
EXIT_STOPPED = 4     # apply/resync stopped on request: the step finished, the lease freed


def setup_logging(args: argparse.Namespace, secrets: tuple[str, ...] = ()) -> None:
    fmt = getattr(args, "log_format", "auto")
    configure_logging(secrets=secrets, json=None if fmt == "auto" else fmt == "json",
                      level=getattr(args, "log_level", "INFO"))


def load(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    setup_logging(args, secrets=(settings.dialer.password,))
    return settings
