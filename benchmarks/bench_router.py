"""Router latency on this machine (CPU): load (cold and cached), route p50/p95, tokens/s.

    python benchmarks/bench_router.py [--repeats 20] [--folder trained_models/router-tiny]

Target (issue 5, 2 cores): route (prefill + constrained decode of one call) with a 256 px image,
p50 <= 400 ms. Without a trained router folder it measures a freshly initialised one (same
architecture and decoding path; its replies are not meaningful, its timings are).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--skip-cold", action="store_true", help="Skip the GGUF dequantization.")
    args = ap.parse_args()

    from switchboard.core import config
    from switchboard.router import llm as llm_mod

    out: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    if not args.skip_cold:  # the first load on a fresh machine: GGUF → dequantized cache
        with tempfile.TemporaryDirectory() as home:
            old = os.environ.get("SWITCHBOARD_HOME")
            os.environ["SWITCHBOARD_HOME"] = home
            config.get_settings.cache_clear()
            t0 = time.perf_counter()
            llm_mod.load_llm()
            out["llm_load_cold_s"] = round(time.perf_counter() - t0, 2)
            if old is None:
                os.environ.pop("SWITCHBOARD_HOME")
            else:
                os.environ["SWITCHBOARD_HOME"] = old
            config.get_settings.cache_clear()
    llm_mod.load_llm()  # make sure the normal cache exists
    t0 = time.perf_counter()
    llm_mod.load_llm()
    out["llm_load_cached_s"] = round(time.perf_counter() - t0, 2)

    from switchboard.core.config import models_dir
    from switchboard.router.data import items_for
    from switchboard.router.inference import Router
    from switchboard.router.model import RouterModel
    from switchboard.specialists import default_registry
    from switchboard.world.requests import make_request
    from switchboard.world.splits import split_seeds

    reg = default_registry()
    folder = args.folder or models_dir() / "router-tiny"
    t0 = time.perf_counter()
    if (folder / "router.json").is_file():
        router = Router(RouterModel.from_pretrained(folder), reg)
        out["router"] = str(folder)
    else:
        router = Router(RouterModel.create(), reg)
        out["router"] = "untrained (no router folder): timings only"
    out["router_load_s"] = round(time.perf_counter() - t0, 2)

    items = []
    for seed in split_seeds("test", 200):
        req = make_request(seed, "test")
        if req.media == "image":
            it = items_for(req, reg)[0]
            if it.calls:
                items.append(it)
        if len(items) >= args.repeats:
            break
    router.route_item(items[0])  # warm-up
    times, tokens, steps = [], [], []
    for it in items:
        t0 = time.perf_counter()
        _, dec = router.route_item(it)
        times.append(time.perf_counter() - t0)
        tokens.append(len(dec.token_ids))
        steps.append(dec.steps)
    prompt_len = len(router.prompt_ids(items[0].messages, items[0].images, False)[0])
    out |= {
        "image_px": int(items[0].images[0].shape[0]),
        "prompt_tokens": prompt_len,
        "route_p50_ms": round(1000 * float(np.percentile(times, 50)), 1),
        "route_p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
        "reply_tokens_mean": round(float(np.mean(tokens)), 1),
        "forward_passes_mean": round(float(np.mean(steps)), 1),
        "tokens_per_s": round(float(np.sum(tokens) / np.sum(times)), 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
