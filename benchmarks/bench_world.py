"""ShapeWorld generation speed: 1000 scenes with masks on one and on two workers.

    python benchmarks/bench_world.py [--quick]

The same as ``switchboard bench --only world`` without writing the report:
the measurement lives in :mod:`switchboard.agent.bench` (its ``world`` section), so the numbers
the docs cite and this script's are one code path. Prints the section's JSON.
"""

import sys

from switchboard.agent.bench import main

if __name__ == "__main__":
    main(["world", *sys.argv[1:]])
