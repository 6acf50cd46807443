"""The source tree laid out as it installs, for tools that cannot follow the editable install.

The folders (core/, cli/, operator/, runner/ ...) map into one package through setuptools'
package-dir, which an editable install resolves with an import hook that static tools (grimp for
import-linter, mypy) cannot follow. :func:`lay_out` copies the .py files per the mapping into a
directory, so ``activedataflow`` is importable from there as it is from site-packages.
Used by scripts/lint-imports and scripts/typecheck.
"""

import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lay_out(into: Path) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    # the parents first, so a subpackage's folder lands inside its parent's copy
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        target = into.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
