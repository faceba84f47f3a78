"""The HTTP server under N concurrent clients on loopback (a bounded number of requests).

    python benchmarks/bench_server.py [--clients 8] [--requests 24]

Starts ``switchboard serve``'s app (the embedded default agent: router-tiny, text calls) with
uvicorn on a free loopback port; N client threads share ``--requests`` chat turns (ShapeWorld
test-split segment requests with their image, via the SDK's ``Client``) while one more thread
polls ``/api/health``. Reports per-turn latency p50/p95 (queueing included: turns run one at a
time per process), turns per second, the health route's p50/p95 under that load, and errors.
Target (issue 8, 2 cores): zero errors at N = 8.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=24)
    args = ap.parse_args()

    import httpx
    import uvicorn
    from switchboard.agent import Agent, Client
    from switchboard.router.data import media_for
    from switchboard.ui.server import create_app
    from switchboard.world.requests import make_request
    from switchboard.world.splits import split_seeds

    with tempfile.TemporaryDirectory() as home:
        agent = Agent.load(home=home)
        agent.policy.router  # noqa: B018  (load the router before the clock starts)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(agent), port=port, log_level="error"))
        threading.Thread(target=server.run, daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        while not server.started:
            time.sleep(0.05)
        seeds = list(split_seeds("test", args.requests, offset=9_000))
        work = [make_request(s, "test", "segment") for s in seeds]
        Client(url).chat(work[0].text, image=media_for(work[0])[0][0])  # warm the specialists
        lock = threading.Lock()
        turns: list[float] = []
        errors: list[str] = []
        health: list[float] = []
        done = threading.Event()

        def client_loop() -> None:
            sdk = Client(url)
            while True:
                with lock:
                    if not work:
                        return
                    req = work.pop()
                t0 = time.perf_counter()
                try:
                    sdk.chat(req.text, image=media_for(req)[0][0])
                    with lock:
                        turns.append(time.perf_counter() - t0)
                except Exception as exc:  # counted, never hidden
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")

        def poll_health() -> None:
            with httpx.Client(base_url=url) as h:
                while not done.is_set():
                    t0 = time.perf_counter()
                    ok = h.get("/api/health").status_code == 200
                    health.append(time.perf_counter() - t0)
                    if not ok:
                        errors.append("health")
                    time.sleep(0.2)

        poller = threading.Thread(target=poll_health)
        poller.start()
        t_all = time.perf_counter()
        threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_all
        done.set()
        poller.join()
        server.should_exit = True

    out = {
        "clients": args.clients,
        "turns": len(turns),
        "errors": len(errors),
        "error_examples": errors[:3],
        "turn_p50_s": round(float(np.percentile(turns, 50)), 3) if turns else None,
        "turn_p95_s": round(float(np.percentile(turns, 95)), 3) if turns else None,
        "turns_per_s": round(len(turns) / wall, 3),
        "health_p50_ms": round(1000 * float(np.percentile(health, 50)), 1),
        "health_p95_ms": round(1000 * float(np.percentile(health, 95)), 1),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
