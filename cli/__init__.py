"""The composition root: the ``adf`` command, which wires the core, the runner and the operator.

It sits above both: ``activedataflow.runner`` and ``activedataflow.operator`` import only the
core (``.importlinter`` in pyproject.toml enforces it), and only this package imports them both.
"""

from .commands import cli, main

__all__ = ["cli", "main"]
