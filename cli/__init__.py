"""The ``switchboard`` command line (a support package: it fronts the run time, the trainers,
the evals and the benches; nothing of the run time imports it)."""

from .app import app, main

__all__ = ["app", "main"]
