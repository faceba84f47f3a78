"""``switchboard bench``: speed and memory on this machine, each section in a fresh process
(:mod:`.sections`; the hostile-client probes of the server in :mod:`.hardening`), written into
docs/RESULTS.md and docs/results/bench.json. Support code: the run time never imports it."""
