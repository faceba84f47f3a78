"""``python -m switchboard.cli ...``: the same as the ``switchboard`` command."""

from .app import main

main()
