"""End-to-end turn latency through the SDK (router + specialists + store) on this machine.

    python benchmarks/bench_agent.py [--repeats 8]

Request kinds (ShapeWorld test-split requests, a different scene each repeat):
- one call: ``segment`` ("segment the red circle": one route, one SAM call, one route to end);
- two calls: ``segment_recolor`` (segment, then edit);
- multi-step: ``remove_all`` (detect, then one removal per found object).

Reports p50/p95 of the whole ``Agent.chat`` per kind, the calls made, and the load time.
Target (issue 7, 2 cores): one-call p50 <= 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

KINDS = {"one_call": "segment", "two_calls": "segment_recolor", "multi_step": "remove_all"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()

    from switchboard.agent import Agent
    from switchboard.router.data import media_for
    from switchboard.world.requests import make_request

    out: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as home:
        t0 = time.perf_counter()
        agent = Agent.load(home=home)
        agent.policy.router  # noqa: B018  (load the router now, not inside the first turn)
        out["load_s"] = round(time.perf_counter() - t0, 2)
        for kind, task in KINDS.items():
            times, calls = [], []
            for k in range(args.repeats + 1):  # the first turn warms the specialists up
                req = make_request(10_000 + k, "test", task)
                images, _, _ = media_for(req)
                t = time.perf_counter()
                turn = agent.chat(req.text, image=images[0])
                if k:
                    times.append(time.perf_counter() - t)
                    calls.append(len(turn.calls))
            out[kind] = {
                "task": task,
                "p50_s": round(float(np.percentile(times, 50)), 3),
                "p95_s": round(float(np.percentile(times, 95)), 3),
                "mean_calls": round(float(np.mean(calls)), 2),
            }
            print(kind, out[kind], flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
