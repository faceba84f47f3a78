"""Edit latency: one recolour, one removal (20 sampler steps), a two-object generation.

    python benchmarks/bench_edit.py [--quick]

The same as ``switchboard bench --only edit`` without writing the report:
the measurement lives in :mod:`switchboard.agent.bench` (its ``edit`` section), so the numbers
the docs cite and this script's are one code path. Prints the section's JSON.
"""

import sys

from switchboard.agent.bench import main

if __name__ == "__main__":
    main(["edit", *sys.argv[1:]])
