"""What every command does first: load settings once, configure logging once; argument types."""

from __future__ import annotations

import argparse

from reconciler.app.logs import configure_logging
from reconciler.cli.exitcodes import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, EXIT_REJECTED, EXIT_STOPPED
from reconciler.config.load import load_settings
from reconciler.config.settings import Settings

# Re-exported: the command modules take them from here.
__all__ = ["EXIT_CHANGES", "EXIT_ERROR", "EXIT_OK", "EXIT_REJECTED", "EXIT_STOPPED",
           "count_at_least_one", "load", "port_number", "setup_logging"]


def setup_logging(args: argparse.Namespace, secrets: tuple[str, ...] = ()) -> None:
    fmt = getattr(args, "log_format", "auto")
    configure_logging(secrets=secrets, json=None if fmt == "auto" else fmt == "json",
                      level=getattr(args, "log_level", "INFO"))


def load(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    setup_logging(args, secrets=settings.passwords)
    return settings


def count_at_least_one(text: str) -> int:
    """argparse type for counts such as `history --limit`: a bad one is a usage error (64)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def port_number(text: str) -> int:
    """argparse type for a TCP port (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {value}")
    return value
