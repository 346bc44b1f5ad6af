"""An installed reconciler carries what it needs outside Python code: migrations, the example
spec and the widget modules (a non-editable install has no checkout to find them in)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import REPO


def test_the_wheel_carries_migrations_example_spec_and_widget(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("reconciler-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "reconciler/migrations/env.py",
        "reconciler/migrations/script.py.mako",
        "reconciler/migrations/versions/0001_baseline.py",
        "reconciler/migrations/versions/0002_lease_fencing_steps.py",
        "reconciler/migrations/versions/0003_shadow_lead_phone.py",
        "reconciler/migrations/versions/0004_rejection_backoff.py",
        "reconciler/migrations/versions/0005_sync_marks.py",
        "reconciler/migrations/versions/0006_targets.py",
        "reconciler/migrations/versions/0007_dnc.py",
        "reconciler/migrations/versions/0008_lead_batch_answer.py",
        "reconciler/migrations/versions/0009_shadow_leads_fillfactor.py",
        "reconciler/migrations/versions/0010_shadow_leads_key_order.py",
        "reconciler/specs/example.toml",
        "reconciler/widget/crm-bridge.js",
        "reconciler/widget/widget-receiver.js",
    } <= names
