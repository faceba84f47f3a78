"""Perception latency and memory on this machine (CPU by default).

    python benchmarks/bench_perception.py [--repeats 30]

Targets (issue 3, 2 cores): segment call after set_image <= 150 ms at 256 px; detect <= 60 ms
per frame; track <= 150 ms per frame with masks; all three loaded <= 1.5 GB RSS.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import psutil
import torch
from timing import ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--clips", type=int, default=3)
    args = ap.parse_args()

    from switchboard.core import Image, Video
    from switchboard.specialists import default_registry
    from switchboard.world import generate_scene, generate_video

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    reg = default_registry()
    t0 = time.perf_counter()
    seg, det, trk = reg.get("segment").load(), reg.get("detect").load(), reg.get("track").load()
    load_s = time.perf_counter() - t0
    scene = generate_scene(1_010_000)
    img = Image(pixels=scene.image)
    box = tuple(float(v) for v in scene.boxes[0])
    seg(img, {"box": box})  # set_image happens here, once
    out: dict[str, object] = {
        "torch_threads": torch.get_num_threads(),
        "load_all_s": round(load_s, 2),
    }
    out["segment_call_after_set_image"] = ms(lambda: seg(img, {"box": box}), args.repeats)
    out["segment_set_image"] = ms(
        lambda: (setattr(seg, "_image_key", None), seg.set_image(scene.image)), 10
    )
    out["detect_per_frame"] = ms(lambda: det(img, {}), args.repeats)
    per_frame = []
    for k in range(args.clips):
        clip = generate_video(1_010_000 + k)
        video = Video(frames=clip.frames, fps=clip.fps)
        t0 = time.perf_counter()
        trk(video, {"masks": True})
        per_frame.append((time.perf_counter() - t0) * 1000 / clip.num_frames)
    out["track_per_frame_with_masks_ms"] = float(np.mean(per_frame))
    out["rss_all_loaded_MB"] = round(proc.memory_info().rss / 2**20, 1)
    out["rss_added_by_models_MB"] = round((proc.memory_info().rss - rss0) / 2**20, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
