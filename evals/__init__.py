"""Every eval in one place, and the report they write (``switchboard eval …``).

- :mod:`.metrics` — the measures (mask IoU, box AP, MOTA/IDF1, region PSNR, …).
- :mod:`.specialists` — segment, detect, track and edit on held-out ShapeWorld.
- :mod:`.router` — the router's calls against the held-out requests (and the untuned base).
- :mod:`.signals` — hybrid calls vs text calls, and the synergy ablation.
- :mod:`.agent` — the task suite and scripted conversations through the real agent.
- :mod:`.report` — ``switchboard eval all``: every eval, written to docs/RESULTS.md.

Support code: the run time never imports it (the import contracts in pyproject.toml).
"""
