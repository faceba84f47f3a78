"""The HTTP server under 8 concurrent loopback clients sharing 24 turns.

    python benchmarks/bench_server.py [--quick]

The same as ``switchboard bench --only server`` without writing the report:
the measurement lives in :mod:`switchboard.agent.bench` (its ``server`` section), so the numbers
the docs cite and this script's are one code path. Prints the section's JSON.
"""

import sys

from switchboard.agent.bench import main

if __name__ == "__main__":
    main(["server", *sys.argv[1:]])
