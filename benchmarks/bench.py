"""One section of ``switchboard bench`` in this process, its JSON printed (no report written):

    python benchmarks/bench.py SECTION [--quick] [--out FILE]
    python benchmarks/bench.py --help      # the sections: loads, world, perception, edit, …

The measurement lives in :mod:`switchboard.bench.sections`, so the numbers the docs cite and this
script's are one code path. The kernels have their own script (``bench_kernels.py``: the GPU
check).
"""

from switchboard.bench.sections import main

if __name__ == "__main__":
    main()
