"""A checkout stands on its own: what the suite reads is inside it."""

from __future__ import annotations

import re

from tests.helpers import API_DOCUMENT, REPO, VICIDIAL_RECORDINGS

# The folder that sat beside the first checkout, spelt in two pieces so that this file does not
# name it itself.
SIBLING = "sha" + "red"
OUTSIDE = re.compile(rf"\.\./{SIBLING}\b|[\"']{SIBLING}[\"']|/{SIBLING}/"
                     r"|parents\[\d+\]\.parent\b")


def test_nothing_in_the_checkout_reads_or_names_a_folder_beside_it() -> None:
    places = [REPO / "README.md", REPO / "pyproject.toml", REPO / ".ci" / "run"]
    for folder in ("reconciler", "tests", "docs", "alembic", "specs", "bench", "examples"):
        places += [p for p in (REPO / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix in (".py", ".md", ".toml", ".txt", ".js", ".html", ".ini", "")]
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in places
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if OUTSIDE.search(line)]
    assert found == []
    assert API_DOCUMENT.is_file() and VICIDIAL_RECORDINGS.is_file()
