"""``python -m activedataflow.cli``: the ``adf`` command."""

from .commands import main

main()
