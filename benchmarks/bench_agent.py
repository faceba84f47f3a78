"""Whole agent turns over held-out requests of every task, stage by stage.

    python benchmarks/bench_agent.py [--quick]

The same as ``switchboard bench --only stages`` without writing the report:
the measurement lives in :mod:`switchboard.agent.bench` (its ``stages`` section), so the numbers
the docs cite and this script's are one code path. Prints the section's JSON.
"""

import sys

from switchboard.agent.bench import main

if __name__ == "__main__":
    main(["stages", *sys.argv[1:]])
