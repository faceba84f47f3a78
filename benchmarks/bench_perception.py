"""Perception latency and memory: segment, detect, track with masks, all three loaded.

    python benchmarks/bench_perception.py [--quick]

The same as ``switchboard bench --only perception`` without writing the report:
the measurement lives in :mod:`switchboard.agent.bench` (its ``perception`` section), so the numbers
the docs cite and this script's are one code path. Prints the section's JSON.
"""

import sys

from switchboard.agent.bench import main

if __name__ == "__main__":
    main(["perception", *sys.argv[1:]])
