"""Settings sit at the bottom: loading them, or planning with them, loads neither the dialer
client (httpx), nor the daemon (APScheduler), and `status` answers without the daemon package.

Each import is checked in a fresh interpreter: this test session has long loaded everything."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.adapters.dialer.dialects import DIALECTS
from reconciler.config import load as config
from reconciler.config import settings
from reconciler.config.settings import DIALECT_NAMES
from tests.helpers import REPO


def modules_loaded_by(*imported: str) -> set[str]:
    """The modules in sys.modules after a fresh interpreter imports `imported` from this tree."""
    code = (f"import {', '.join(imported)}, sys\n"
            "print('\\n'.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def heavy(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in loaded if name.split(".")[0] in prefixes
                  or name.startswith(prefixes))


def test_loading_settings_and_planning_load_no_dialer_and_no_daemon() -> None:
    loaded = modules_loaded_by("reconciler.config.load", "reconciler.config.settings",
                               "reconciler.core.planner")
    assert "reconciler.core.planner" in loaded            # the check itself ran
    assert heavy(loaded, ("httpx", "apscheduler", "reconciler.daemon",
                          "reconciler.adapters")) == []


def test_status_command_does_not_load_the_daemon() -> None:
    loaded = modules_loaded_by("reconciler.cli.commands.status")
    assert "reconciler.cli.commands.status" in loaded
    assert heavy(loaded, ("apscheduler", "reconciler.daemon")) == []


def imports_of_ours(module: object) -> set[str]:
    """The `reconciler.*` modules a module's source imports, at any depth of its code."""
    source = Path(str(getattr(module, "__file__", ""))).read_text(encoding="utf-8")
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "reconciler"}


@pytest.mark.parametrize(("module", "allowed"), [
    (settings, {"reconciler.errors", "reconciler.core.model"}),
    (config, {"reconciler.errors", "reconciler.core.model", "reconciler.config.settings"}),
])
def test_the_settings_and_their_loader_import_only_what_is_below_them(
    module: object, allowed: set[str]
) -> None:
    assert imports_of_ours(module) <= allowed


def test_dialect_names_in_the_settings_are_the_dialects_implemented() -> None:
    assert tuple(DIALECTS) == DIALECT_NAMES
