"""The core is pure: importing it loads no database, HTTP, logging or terminal library.

import-linter checks the import statements (pyproject.toml); this checks what really loads, in
a fresh interpreter, so an import hidden behind a function or a plug-in cannot slip through.
"""

from __future__ import annotations

import subprocess
import sys

IO_LIBRARIES = ("sqlalchemy", "alembic", "httpx", "structlog", "rich", "apscheduler")


def test_importing_the_core_loads_no_io_library() -> None:
    probe = (
        "import sys, pkgutil, importlib, reconciler.core as core\n"
        "for info in pkgutil.walk_packages(core.__path__, 'reconciler.core.'):\n"
        "    importlib.import_module(info.name)\n"
        f"print(sorted(m for m in {IO_LIBRARIES!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    assert loaded == "[]"
