"""mypy --strict passes ([tool.mypy] of pyproject.toml, over the package as it installs): a type error fails."""

from __future__ import annotations

import subprocess
import sys

from tests import REPO


def test_mypy_strict_finds_no_errors() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "typecheck")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout
