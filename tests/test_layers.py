"""The layers point one way (pyproject.toml's import-linter contracts): a violation fails the suite."""

from __future__ import annotations

import subprocess
import sys

from tests import REPO


def test_the_import_contracts_are_kept() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lint-imports")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
