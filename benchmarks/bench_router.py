"""Router latency: one route (prefill + constrained decode of a call) with a 256 px image.

    python benchmarks/bench_router.py [--quick]

The same as ``switchboard bench --only router`` without writing the report:
the measurement lives in :mod:`switchboard.agent.bench` (its ``router`` section), so the numbers
the docs cite and this script's are one code path. Prints the section's JSON.
"""

import sys

from switchboard.agent.bench import main

if __name__ == "__main__":
    main(["router", *sys.argv[1:]])
