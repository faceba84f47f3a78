"""Edit latency on this machine (CPU by default): one local edit and one generation.

    python benchmarks/bench_edit.py [--repeats 10] [--steps 20]

Target (issue 4, 2 cores): one edit with 20 sampler steps <= 1.5 s at the working resolution.
"""

from __future__ import annotations

import argparse
import json
import time

import psutil
import torch
from timing import ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    from switchboard.core import Image
    from switchboard.specialists import default_registry
    from switchboard.world.edits import generate_edit

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    edit = default_registry().get("edit").load()
    load_s = time.perf_counter() - t0
    pair = generate_edit(1_010_000, "recolor")
    img = Image(pixels=pair.before.image)
    mask = pair.before.masks[pair.before.index(pair.target)]
    base = {"steps": args.steps}
    out: dict[str, object] = {
        "torch_threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "working_size": edit.work_size,
        "sampler_steps": args.steps,
    }
    out["recolor"] = ms(
        lambda: edit(img, {**base, "op": "recolor", "region": mask, "color": "blue"}),
        args.repeats,
    )
    out["remove"] = ms(lambda: edit(img, {**base, "op": "remove", "region": mask}), args.repeats)
    out["generate_2_objects_256px"] = ms(
        lambda: edit(
            None, {**base, "op": "generate", "prompt": "a red circle at the left and a blue star"}
        ),
        max(args.repeats // 2, 1),
    )
    out["rss_added_MB"] = round((proc.memory_info().rss - rss0) / 2**20, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
