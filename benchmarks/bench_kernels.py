"""Our Triton kernels against torch on whatever device is present (the prepared GPU check).

    python benchmarks/bench_kernels.py            # a GPU if there is one, else the CPU
    python benchmarks/bench_kernels.py --check    # on a GPU: also assert issue 9's targets

The benchmark lives in :mod:`switchboard.kernels.bench` (``switchboard bench`` runs it too).
"""

from switchboard.kernels.bench import main

if __name__ == "__main__":
    main()
