"""A checkout stands on its own: what the suite reads is inside it, and CI runs the README's test
command the way a loaded, shared machine needs."""

from __future__ import annotations

import os
import re
import subprocess

from hypothesis import settings

from tests.helpers import API_DOCUMENT, REPO, VICIDIAL_RECORDINGS

# The folder that sat beside the first checkout, spelt in two pieces so that this file does not
# name it itself.
SIBLING = "sha" + "red"
OUTSIDE = re.compile(rf"\.\./{SIBLING}\b|[\"']{SIBLING}[\"']|/{SIBLING}/"
                     r"|parents\[\d+\]\.parent\b")
CI_SCRIPT = REPO / ".ci" / "run"


def test_nothing_in_the_checkout_reads_or_names_a_folder_beside_it() -> None:
    places = [REPO / "README.md", REPO / "pyproject.toml", CI_SCRIPT]
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


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = re.search(r"Set up and run the tests.*?```sh\n(.*?)\n```", readme, re.DOTALL)
    assert command and command.group(1) in CI_SCRIPT.read_text(encoding="utf-8").splitlines()


def test_ci_waits_for_apt_locks_instead_of_failing() -> None:
    script = CI_SCRIPT.read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(CI_SCRIPT)], check=True, timeout=30)
    calls = [line for line in script.splitlines()
             if "apt-get" in line and not line.lstrip().startswith("#")]
    # One way to call apt-get, which waits for the dpkg lock; `update` goes through a retry.
    assert calls == ['apt_get=(apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_WAIT")']
    assert re.search(r"^APT_LOCK_WAIT=600$", script, re.MULTILINE)
    assert re.search(r'^  apt_update$', script, re.MULTILINE)
    assert re.search(r'until out=\$\("\$\{apt_get\[@\]\}" update ', script)
    assert "CI=true" in script


def test_hypothesis_draws_the_same_examples_in_ci_and_has_no_deadline() -> None:
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None
    if os.environ.get("CI", "").lower() == "true":
        assert settings.default.derandomize and settings.default.deadline is None
