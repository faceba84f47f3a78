"""ShapeWorld generation speed: scenes with masks per second on this machine.

    python benchmarks/bench_world.py --n 1000 --workers 2

Target (issue 2): 1000 256x256 scenes with masks in under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor


def _chunk(seeds: range) -> int:
    from switchboard.world import generate_scene

    objects = 0
    for s in seeds:
        objects += len(generate_scene(s).objects)
    return objects


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    bounds = [args.n * k // args.workers for k in range(args.workers + 1)]
    chunks = [range(bounds[k], bounds[k + 1]) for k in range(args.workers)]
    _chunk(range(1))  # warm imports before timing
    t0 = time.perf_counter()
    if args.workers == 1:
        objects = _chunk(range(args.n))
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            objects = sum(pool.map(_chunk, chunks))
    dt = time.perf_counter() - t0
    print(
        f"{args.n} scenes ({objects} objects, masks included) in {dt:.2f} s "
        f"with {args.workers} worker(s): {args.n / dt:.0f} scenes/s"
    )


if __name__ == "__main__":
    main()
