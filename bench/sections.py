"""One benchmark of the whole system on this machine, written into ``docs/RESULTS.md``.

    switchboard bench                     # every section (the numbers the docs cite)
    switchboard bench --quick             # a few repeats per section: checks the pipeline
    switchboard bench --only router,passes

Every section runs in a fresh Python process (``python -m switchboard.bench.sections <section>``),
so each one's load times and peak resident memory are its own, and the sections run one after
another (never two at once: their timings would share the cores):

- **loads**: each model's load time, *cold* (a fresh process; for the router's LLM also an empty
  ``SWITCHBOARD_HOME``, so the GGUF file is dequantized) and *cached* (the LLM: a fresh process
  with the dequantized cache; the specialists: loaded again in the same process after
  ``unload()``, what the agent's memory budget does), with the memory each one adds;
- **world**: ShapeWorld scenes with masks per second on one and on two workers;
- **perception**: segment (after ``set_image``, and ``set_image``), detect per frame, track per
  frame with masks, and memory with all three loaded;
- **edit**: one recolour, one removal (20 sampler steps) and a two-object generation;
- **router**: one route (prefill and constrained decode of a call) with a 256 px image;
- **stages**: whole turns of the default agent (text calls) over held-out requests of every
  task type, split into perceive, route (each pass), each specialist, observe and respond;
- **passes**: the same single-call requests answered by hybrid single-pass routing (one decode
  writes the call and its signal embeddings; the reply comes from the observation) and by the
  text-only two-pass loop (LLM → tool → LLM, the HuggingGPT/ReAct pattern), plus text calls in
  one pass to separate the two effects: latency, router passes and task success;
- **lazy**: the agent with specialists loaded on first use against all of them loaded up front:
  time to ready, memory, the first turn;
- **server**: the HTTP server under N concurrent loopback clients (a bounded number of turns);
- **scale**: a turn through Ray Serve against in-process, 2 replicas against 1 under N clients,
  one process's concurrent turns against one at a time;
- **kernels**: :mod:`switchboard.kernels.bench` on this machine's device.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import typer

SECTIONS = ("loads", "world", "perception", "edit", "router", "stages", "passes", "lazy",
            "server", "hardening", "kernels", "scale", "integrations")  # fmt: skip
# Repeats per section: the full run and the --quick pipeline check.
FULL = {"world": 1000, "perception": 30, "clips": 3, "edit": 10, "router": 20, "stages": 4,
        "passes": 3, "lazy": 1, "clients": 8, "requests": 24, "kernels": 10,
        "sequential": 200, "ray": 4, "openai": 24}  # fmt: skip
QUICK = {"world": 50, "perception": 3, "clips": 1, "edit": 1, "router": 3, "stages": 1,
         "passes": 1, "lazy": 1, "clients": 2, "requests": 3, "kernels": 2,
         "sequential": 21, "ray": 1, "openai": 1}  # fmt: skip
# The aims the issues set for a latency or a memory figure (lower is better).
AIMS = {"segment_call_ms": 150, "detect_frame_ms": 60, "track_frame_ms": 150,
        "perception_rss_mb": 1536, "edit_ms": 1500, "video_edit_s_per_frame": 0.5,
        "route_ms": 400, "one_call_turn_s": 1.5, "world_1000_s": 30,
        "ray_turn_ratio": 1.10, "openai_turn_ratio": 1.05}  # fmt: skip
# The aims for a throughput ratio (higher is better).
AIMS_UP = {"ray_replicas_ratio": 1.5, "concurrent_turns_ratio": 1.3}
SPECIALISTS = ("segment", "detect", "track", "edit")
# The tasks whose request is one specialist call (what the passes comparison runs on).
SINGLE_CALL = ("segment", "detect", "track", "recolor", "remove", "add", "move", "replace",
               "generate")  # fmt: skip


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def timed_ms(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """p50 and p95 wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(pct(times, 50), 2), "p95_ms": round(pct(times, 95), 2)}


def rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- loads --------------------------------------------------------------------------------------
_LOAD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, switchboard.core, switchboard.specialists, switchboard.router.inference
from switchboard.bench.sections import rss_mb
out = {"import_s": time.perf_counter() - t0, "rss_before_mb": rss_mb()}
what = sys.argv[1]
t0 = time.perf_counter()
if what == "llm":
    from switchboard.router.llm import load_llm
    load_llm()
elif what == "router":
    from switchboard.router.inference import Router
    model = Router.load()
else:
    from switchboard.specialists import default_registry
    model = default_registry().get(what).load()
out["load_s"] = time.perf_counter() - t0
out["rss_after_mb"] = rss_mb()
if what not in ("llm", "router"):
    model.unload()
    import gc; gc.collect()
    t0 = time.perf_counter()
    model.load()
    out["reload_s"] = time.perf_counter() - t0
print("BENCH " + json.dumps(out))
"""


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=1200,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"benchmark child {args} failed:\n{proc.stderr[-2000:]}")


def bench_loads(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home:  # an empty cache: the GGUF is dequantized
        env = {"SWITCHBOARD_HOME": home}
        cold = _child(_LOAD, "llm", env=env)
        cached = _child(_LOAD, "llm", env=env)
        out["llm"] = {"cold_s": cold["load_s"], "cached_s": cached["load_s"],
                      "import_s": cached["import_s"],
                      "added_mb": cached["rss_after_mb"] - cached["rss_before_mb"]}  # fmt: skip
        log(f"llm: cold {cold['load_s']:.1f} s, cached {cached['load_s']:.2f} s")
        r = _child(_LOAD, "router", env=env)
        out["router"] = {"cached_s": r["load_s"],
                         "added_mb": r["rss_after_mb"] - r["rss_before_mb"]}  # fmt: skip
        log(f"router (LLM cached + tower + heads): {r['load_s']:.2f} s")
        for name in SPECIALISTS:
            r = _child(_LOAD, name, env=env)
            out[name] = {"cold_s": r["load_s"], "cached_s": r["reload_s"],
                         "added_mb": r["rss_after_mb"] - r["rss_before_mb"]}  # fmt: skip
            log(f"{name}: cold {r['load_s']:.2f} s, reload {r['reload_s']:.2f} s")
        out["import_s"] = r["import_s"]
    return out


# -- world, perception, edit, router ------------------------------------------------------------
def _scenes(seeds: range) -> int:
    from switchboard.world import generate_scene

    return sum(len(generate_scene(s).objects) for s in seeds)


def bench_world(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    total, out = n["world"], {"scenes": n["world"]}
    _scenes(range(1))  # imports before the clock
    for workers in (1, 2):
        bounds = [total * k // workers for k in range(workers + 1)]
        t0 = time.perf_counter()
        if workers == 1:
            _scenes(range(total))
        else:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_scenes, [range(bounds[k], bounds[k + 1]) for k in range(workers)]))
        out[f"workers_{workers}_s"] = round(time.perf_counter() - t0, 2)
        log(f"{total} scenes on {workers} worker(s): {out[f'workers_{workers}_s']} s")
    return out


def bench_perception(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    from switchboard.core import Image, Video
    from switchboard.specialists import default_registry
    from switchboard.world import generate_scene, generate_video

    rss0 = rss_mb()
    reg = default_registry()
    seg, det, trk = reg.get("segment").load(), reg.get("detect").load(), reg.get("track").load()
    scene = generate_scene(1_010_000)
    img = Image(pixels=scene.image)
    box = tuple(float(v) for v in scene.boxes[0])
    seg(img, {"box": box})  # set_image happens here, once
    out: dict[str, Any] = {
        "segment_call": timed_ms(lambda: seg(img, {"box": box}), n["perception"]),
        "segment_set_image": timed_ms(
            lambda: (setattr(seg, "_image_key", None), seg.set_image(scene.image)),
            max(n["perception"] // 3, 1)),
        "detect_frame": timed_ms(lambda: det(img, {}), n["perception"]),
    }  # fmt: skip
    per_frame = []
    for k in range(n["clips"]):
        clip = generate_video(1_010_000 + k)
        video = Video(frames=clip.frames, fps=clip.fps)
        t0 = time.perf_counter()
        trk(video, {"masks": True})
        per_frame.append((time.perf_counter() - t0) * 1000 / clip.num_frames)
    out["track_frame_masks_ms"] = round(float(np.mean(per_frame)), 1)
    out["rss_all_loaded_mb"] = rss_mb()
    out["rss_models_mb"] = round(out["rss_all_loaded_mb"] - rss0, 1)
    log(
        f"segment {out['segment_call']['p50_ms']} ms, detect {out['detect_frame']['p50_ms']} ms,"
        f" track {out['track_frame_masks_ms']} ms/frame"
    )
    return out


def bench_edit(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    from switchboard.core import Image
    from switchboard.specialists import default_registry
    from switchboard.world.edits import generate_edit

    rss0 = rss_mb()
    edit = default_registry().get("edit").load()
    pair = generate_edit(1_010_000, "recolor")
    img = Image(pixels=pair.before.image)
    mask = pair.before.masks[pair.before.index(pair.target)]
    base = {"steps": 20}
    prompt = "a red circle at the left and a blue star"
    out = {
        "working_size": edit.work_size, "sampler_steps": 20,
        "recolor": timed_ms(lambda: edit(img, {**base, "op": "recolor", "region": mask,
                                               "color": "blue"}), n["edit"]),
        "remove": timed_ms(lambda: edit(img, {**base, "op": "remove", "region": mask}), n["edit"]),
        "generate_2_objects": timed_ms(
            lambda: edit(None, {**base, "op": "generate", "prompt": prompt}),
            max(n["edit"] // 2, 1)),
    }  # fmt: skip
    out["video"] = _video_edit_timings(edit, max(n["edit"] // 3, 1))
    out["rss_added_mb"] = round(rss_mb() - rss0, 1)
    log(f"recolor {out['recolor']['p50_ms']} ms, remove {out['remove']['p50_ms']} ms; video "
        f"recolour {out['video']['recolor_batched']['s_per_frame']} s/frame batched, "
        f"{out['video']['recolor_frame_by_frame']['s_per_frame']} frame by frame")  # fmt: skip
    return out


def _video_edit_timings(edit: Any, repeats: int) -> dict[str, Any]:
    """Seconds per frame of video edits on a 16-frame 256 px clip (tracking included):
    recolour with the model's frames in one batch and one frame per pass, removal and
    replacement (batched)."""
    from switchboard.core import Video
    from switchboard.world.video import generate_video_edit

    pair = generate_video_edit(1_010_000, "recolor")
    clip = pair.before
    i = [o.id for o in clip.objects].index(pair.target)
    video = Video(frames=clip.frames, fps=clip.fps)
    base = {"box": tuple(float(v) for v in clip.boxes[0, i]), "steps": 20}
    runs = {
        "recolor_batched": (16, {"op": "recolor", "color": "blue"}),
        "recolor_frame_by_frame": (1, {"op": "recolor", "color": "blue"}),
        "remove_batched": (16, {"op": "remove"}),
        "replace_batched": (16, {"op": "replace", "shape": "star"}),
    }
    out: dict[str, Any] = {"frames": clip.num_frames, "size": clip.size}
    keep = edit.frame_batch
    try:
        for name, (batch, args) in runs.items():
            edit.frame_batch = batch
            t = timed_ms(lambda a=args: edit(video, {**base, **a}), repeats)
            out[name] = t | {"s_per_frame": round(t["p50_ms"] / 1000 / clip.num_frames, 3)}
    finally:
        edit.frame_batch = keep
    return out


def _without_objects(item: Any) -> Any:
    """``item`` with the object list taken out of its prompt (the router's prompt before it
    read one)."""
    import re
    from dataclasses import replace

    listed = re.compile(r"Objects:\n(?:#\d+<object>[^\n]*\n)*|Objects: none found\.\n")
    messages = [{**m, "content": listed.sub("", m["content"])} for m in item.messages]
    return replace(item, messages=messages, objects=None)


def _router_items(n: int, reg: Any) -> list[Any]:
    """The first step of held-out image requests that make a call: ``n`` and one to warm up."""
    from switchboard.router.data import items_for
    from switchboard.world.requests import make_request
    from switchboard.world.splits import split_seeds

    items = []
    for seed in split_seeds("test", 400):
        req = make_request(seed, "test")
        if req.media == "image":
            it = items_for(req, reg)[0]
            if it.calls:
                items.append(it)
        if len(items) > n:
            break
    return items


def _timed_routes(router: Any, items: list[Any]) -> dict[str, list[Any]]:
    """Each item routed once: its seconds, reply tokens, forward passes and token ids."""
    times, tokens, steps, replies = [], [], [], []
    for it in items:
        t0 = time.perf_counter()
        _, dec = router.route_item(it)
        times.append(time.perf_counter() - t0)
        tokens.append(len(dec.token_ids))
        steps.append(dec.steps)
        replies.append(dec.token_ids)
    return {"times": times, "tokens": tokens, "steps": steps, "replies": replies}


def bench_router(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """Routes of held-out image requests, decoded the default way (fp16 steps after an fp32
    prefill) and then in fp32 alone, on the same items: latency, and how many replies the two
    decoders write token for token the same. The default decoder also routes the same items
    without their object list (what the list costs a route) and the detector's list is timed
    (what it costs perceive)."""
    import gc

    from switchboard.core.config import get_settings
    from switchboard.router.inference import Router
    from switchboard.specialists import default_registry
    from switchboard.specialists.objects import detect_objects

    reg = default_registry()
    items = _router_items(n["router"], reg)
    default = get_settings().router_decode
    prompt = 0
    runs: dict[str, dict[str, Any]] = {}
    for decode in dict.fromkeys((default, "float32")):
        router = Router.load(registry=reg, decode=decode)
        router.route_item(items[0])  # warm-up
        prompt = len(router.prompt_ids(items[0].messages, items[0].images, False)[0])
        runs[decode] = _timed_routes(router, items[1:])
        log(f"decode {decode}: route p50 {1000 * pct(runs[decode]['times'], 50):.0f} ms")
        if decode == default:
            bare = []
            for it in items[1:]:
                t0 = time.perf_counter()
                router.route_item(_without_objects(it))
                bare.append(time.perf_counter() - t0)
            runs["bare"] = {"times": bare}
        del router
        gc.collect()

    def speed(run: dict[str, Any]) -> dict[str, float]:
        return {
            "route_p50_ms": round(1000 * pct(run["times"], 50), 1),
            "route_p95_ms": round(1000 * pct(run["times"], 95), 1),
            "tokens_per_s": round(float(np.sum(run["tokens"]) / np.sum(run["times"])), 1),
        }

    r = runs[default]
    out = {
        "decode": default,
        "image_px": int(items[0].images[0].shape[0]),
        "prompt_tokens": prompt,
        "routes": len(r["times"]),
        **speed(r),
        "reply_tokens_mean": round(float(np.mean(r["tokens"])), 1),
        "forward_passes_mean": round(float(np.mean(r["steps"])), 1),
    }
    detector = reg.get("detect").load()
    listing = []
    for it in items[1:]:
        t0 = time.perf_counter()
        detect_objects(detector, it.images[0])
        listing.append(time.perf_counter() - t0)
    out["object_list"] = {
        "objects_mean": round(float(np.mean([len(it.objects or []) for it in items])), 1),
        "route_p50_ms_without": round(1000 * pct(runs["bare"]["times"], 50), 1),
        "p50_ratio_with_vs_without": round(pct(r["times"], 50) / pct(runs["bare"]["times"], 50), 2),
        "detect_list_ms_p50": round(1000 * pct(listing, 50), 1),
    }
    log(
        f"object list: route p50 without {out['object_list']['route_p50_ms_without']} ms, "
        f"listing {out['object_list']['detect_list_ms_p50']} ms"
    )
    if default != "float32":
        f = runs["float32"]
        out["fp32"] = {
            **speed(f),
            "p50_ratio": round(pct(r["times"], 50) / pct(f["times"], 50), 2),
            "identical_replies": sum(map(list.__eq__, r["replies"], f["replies"])),
        }
    log(f"route p50 {out['route_p50_ms']} ms, p95 {out['route_p95_ms']} ms")
    return out


# -- the agent: stages, passes, lazy loading ----------------------------------------------------
def _requests(tasks: tuple[str, ...], per_task: int, offset: int = 7_000) -> list[Any]:
    """``per_task`` held-out (test split) requests of each task, the same on every run."""
    from switchboard.world.requests import make_request
    from switchboard.world.splits import SPLITS

    lo = SPLITS["test"][0] + offset
    return [
        make_request(lo + 100 * i + k, "test", t)
        for i, t in enumerate(tasks)
        for k in range(per_task)
    ]


def _agent(home: str, signals: bool = True, single_pass: bool = False, **kw: Any) -> Any:
    from switchboard.agent.sdk import Agent

    agent = Agent.load(home=home, signals=signals, single_pass=single_pass, **kw)
    agent.policy.router  # noqa: B018  (load the router now, not inside the first turn)
    return agent


def _warm(agent: Any) -> None:
    """One turn per specialist kind, so loading is not counted in the turns measured."""
    from switchboard.evals.agent import _media

    for req in _requests(("segment", "recolor", "track", "detect"), 1, offset=7_900):
        agent.chat(req.text, **_media(req))


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": round(pct(values, 50), 3),
        "p95_s": round(pct(values, 95), 3),
    }


def _stage_order(item: tuple[str, Any]) -> tuple[int, str]:
    order = ("perceive", "route", "call", "observe", "respond")
    return order.index(item[0].split(":")[0]), item[0]


def bench_stages(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    from switchboard.evals.agent import TASK_TYPES, _media

    tasks = tuple(t for ts in TASK_TYPES.values() for t in ts)
    with tempfile.TemporaryDirectory() as home:
        agent = _agent(home)
        _warm(agent)
        stages: dict[str, list[float]] = {}
        first_route, later_routes, totals, passes = [], [], [], []
        by_calls: dict[str, list[float]] = {}
        by_task: dict[str, list[float]] = {}
        for req in _requests(tasks, n["stages"]):
            t0 = time.perf_counter()
            turn = agent.chat(req.text, **_media(req))
            totals.append(time.perf_counter() - t0)
            routes = [s for st, s in turn.timings if st == "route"]
            first_route += routes[:1]
            later_routes += routes[1:]
            passes.append(len(routes))
            for st, s in turn.timings:
                stages.setdefault(st, []).append(s)
            calls = len(turn.calls)
            key = "no call" if not calls else "one call" if calls == 1 else "several calls"
            by_calls.setdefault(key, []).append(totals[-1])
            by_task.setdefault(req.task, []).append(totals[-1])
    out = {
        "turns": len(totals),
        "tasks": list(tasks),
        "total": _summary(totals),
        "by_calls": {k: _summary(v) for k, v in by_calls.items()},
        "by_task": {k: _summary(v) for k, v in by_task.items()},
        "route_first": _summary(first_route),
        "route_later": _summary(later_routes),
        "router_passes_mean": round(float(np.mean(passes)), 2),
        "stages": {k: _summary(v) for k, v in sorted(stages.items(), key=_stage_order)},
    }
    log(f"{len(totals)} turns: p50 {out['total']['p50_s']} s, p95 {out['total']['p95_s']} s")
    return out


def bench_passes(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    from switchboard.evals.agent import _media, judge

    reqs = _requests(SINGLE_CALL, n["passes"], offset=7_500)
    modes = {"hybrid_single_pass": (True, True), "text_two_pass": (False, False),
             "text_single_pass": (False, True)}  # fmt: skip
    out: dict[str, Any] = {"requests": len(reqs), "tasks": list(SINGLE_CALL)}
    with tempfile.TemporaryDirectory() as home:
        agent = _agent(home)
        _warm(agent)
        for mode, (signals, single) in modes.items():
            agent.policy.with_signals, agent.single_pass = signals, single
            totals, routes, oks, llm_s = [], [], [], []
            for req in reqs:
                t0 = time.perf_counter()
                turn = agent.chat(req.text, **_media(req))
                totals.append(time.perf_counter() - t0)
                r = [s for st, s in turn.timings if st == "route"]
                routes.append(len(r))
                llm_s.append(sum(r))
                oks.append(judge(req, turn).ok)
            out[mode] = {**_summary(totals), "mean_s": round(float(np.mean(totals)), 3),
                         "router_passes_mean": round(float(np.mean(routes)), 2),
                         "router_s_mean": round(float(np.mean(llm_s)), 3),
                         "success": round(float(np.mean(oks)), 3)}  # fmt: skip
            log(f"{mode}: p50 {out[mode]['p50_s']} s, success {out[mode]['success']}")
    two = out["text_two_pass"]
    for mode in ("hybrid_single_pass", "text_single_pass"):
        out[f"{mode}_vs_text_two_pass"] = {
            "p50_ratio": round(out[mode]["p50_s"] / two["p50_s"], 3),
            "mean_ratio": round(out[mode]["mean_s"] / two["mean_s"], 3),
            "success_diff": round(out[mode]["success"] - two["success"], 3),
        }
    return out


_LAZY = r"""
import json, sys, tempfile, time
t0 = time.perf_counter()
from switchboard.bench.sections import _agent, _requests, peak_rss_mb, rss_mb
from switchboard.evals.agent import _media
eager = sys.argv[1] == "eager"
with tempfile.TemporaryDirectory() as home:
    agent = _agent(home)
    if eager:
        for name in agent.registry.names():
            agent.registry.get(name).load()
    out = {"ready_s": time.perf_counter() - t0, "ready_rss_mb": rss_mb(),
           "loaded": agent.registry.loaded()}
    turns = []
    for req in _requests(("segment", "recolor", "detect", "track"), 1, offset=7_800):
        t = time.perf_counter()
        agent.chat(req.text, **_media(req))
        turns.append(time.perf_counter() - t)
    out |= {"first_turns_s": turns, "after_rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(),
            "to_fourth_reply_s": time.perf_counter() - t0}
print("BENCH " + json.dumps(out))
"""


def bench_lazy(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("lazy", "eager"):
        out[mode] = _child(_LAZY, mode)
        log(f"{mode}: ready in {out[mode]['ready_s']:.1f} s at {out[mode]['ready_rss_mb']} MB")
    lazy, eager = out["lazy"], out["eager"]
    out["lazy_vs_eager"] = {
        "ready_time_ratio": round(lazy["ready_s"] / eager["ready_s"], 3),
        "ready_rss_ratio": round(lazy["ready_rss_mb"] / eager["ready_rss_mb"], 3),
        "first_turn_ratio": round(lazy["first_turns_s"][0] / eager["first_turns_s"][0], 3),
        "to_fourth_reply_ratio": round(lazy["to_fourth_reply_s"] / eager["to_fourth_reply_s"], 3),
    }
    return out


# -- server, kernels ----------------------------------------------------------------------------
def bench_server(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """``switchboard serve``'s app on a free loopback port; N client threads share a bounded
    number of turns (test-split segment requests with their image, via the SDK's ``Client``)
    while one more thread polls ``/api/health``."""
    with tempfile.TemporaryDirectory() as home:
        out = _serve_load(_agent(home), n["clients"], n["requests"])
    log(f"{out['turns']} turns, {out['errors']} errors, {out['turns_per_s']} turns/s")
    return out


def _serve_load(agent: Any, clients: int, requests: int) -> dict[str, Any]:
    """``agent`` behind the HTTP server on a free loopback port; ``clients`` threads share
    ``requests`` held-out segment turns (each with its image, via the SDK's ``Client``) while
    one more thread polls ``/api/health``. Turn latency, turns per second, errors."""
    import threading

    import httpx
    from switchboard.agent.client import Client
    from switchboard.router.data import media_for
    from switchboard.ui.server import create_app

    url, server = _start_server(create_app(agent))
    work = _requests(("segment",), requests, offset=9_000)
    Client(url).chat(work[0].text, image=media_for(work[0])[0][0])  # warm the specialists
    done = threading.Event()
    health: list[float] = []
    errors: list[str] = []

    def poll_health() -> None:
        with httpx.Client(base_url=url) as h:
            while not done.is_set():
                t0 = time.perf_counter()
                if h.get("/api/health").status_code != 200:
                    errors.append("health")
                health.append(time.perf_counter() - t0)
                time.sleep(0.2)

    poller = threading.Thread(target=poll_health)
    poller.start()
    sdks = threading.local()

    def turn(req: Any) -> None:
        if not hasattr(sdks, "client"):
            sdks.client = Client(url)
        sdks.client.chat(req.text, image=media_for(req)[0][0])

    turns, failed, wall = _clients(clients, work, turn)
    errors += failed
    done.set()
    poller.join()
    server.should_exit = True
    agent.close()
    return {
        "clients": clients, "concurrent_turns": agent.concurrent_turns,
        "turns": len(turns), "errors": len(errors),
        "error_examples": errors[:3],
        "turn_p50_s": round(pct(turns, 50), 3), "turn_p95_s": round(pct(turns, 95), 3),
        "turns_per_s": round(len(turns) / wall, 3),
        "health_p50_ms": round(1000 * pct(health, 50), 1),
        "health_p95_ms": round(1000 * pct(health, 95), 1),
        "wall_s": round(wall, 1),
    }  # fmt: skip


def _start_server(app: Any) -> tuple[str, Any]:
    """``app`` under uvicorn on a free loopback port, in a thread: its URL, and the server
    (``should_exit = True`` stops it)."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def _clients(
    clients: int, work: list[Any], turn: Callable[[Any], Any]
) -> tuple[list[float], list[str], float]:
    """``clients`` threads take requests from ``work`` until none is left and run ``turn`` on
    each: every turn's seconds, every failure (counted, never hidden) and the wall time."""
    import threading

    lock = threading.Lock()
    times: list[float] = []
    errors: list[str] = []

    def loop() -> None:
        while True:
            with lock:
                if not work:
                    return
                req = work.pop()
            t0 = time.perf_counter()
            try:
                turn(req)
                with lock:
                    times.append(time.perf_counter() - t0)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    t_all = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors, time.perf_counter() - t_all


CONCURRENT_TURNS = 4  # the concurrent server's slots (SWITCHBOARD_CONCURRENT_TURNS)


def _concurrency(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """The same server load (N clients, held-out segment turns over HTTP) on one process
    running one turn at a time (the server before concurrent turns), then
    :data:`CONCURRENT_TURNS` at once (per-model locks, turns of a session in order)."""
    runs = {}
    for slots in (1, CONCURRENT_TURNS):
        with tempfile.TemporaryDirectory() as home:
            runs[slots] = _serve_load(
                _agent(home, concurrent_turns=slots), n["clients"], n["requests"]
            )
        log(f"one process, {slots} turn(s) at a time: {runs[slots]['turns_per_s']} turns/s, "
            f"p50 {runs[slots]['turn_p50_s']} s, {runs[slots]['errors']} errors")  # fmt: skip
    one, many = runs[1], runs[CONCURRENT_TURNS]
    ratio = many["turns_per_s"] / max(one["turns_per_s"], 1e-9)
    return {"serialized": one, "concurrent": many, "slots": CONCURRENT_TURNS,
            "turns_per_s_ratio": round(ratio, 3)}  # fmt: skip


def _replicas(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """Segment turns from N client threads through Ray Serve with every deployment (router,
    segment, detect) at 1 replica, then at 2, each replica on one torch thread: turns per
    second. The agent admits every client's turn at once, so the replicas are the limit."""

    from switchboard.agent import ray_serve
    from switchboard.agent.sdk import Agent
    from switchboard.core import Registry
    from switchboard.evals.agent import _media
    from switchboard.specialists import BUILTINS

    runs = {}
    for replicas in (1, 2):
        one = ray_serve.ToolPlan(replicas=replicas, torch_threads=1)
        plan = ray_serve.ServePlan(default=one, router=one)
        registry = Registry({k: BUILTINS[k] for k in ("segment", "detect")})
        with tempfile.TemporaryDirectory() as home:
            agent = Agent.load(home=home, registry=registry, backend="ray", serve_config=plan,
                               concurrent_turns=n["clients"])  # fmt: skip
            work = _requests(("segment",), n["requests"], offset=9_000)
            for req in work[: 2 * replicas]:  # every replica warm
                agent.chat(req.text, **_media(req))
            times, errors, wall = _clients(
                n["clients"], work, lambda req, agent=agent: agent.chat(req.text, **_media(req))
            )
            agent.close()
        ray_serve.shutdown()
        runs[replicas] = {"turns": len(times), "errors": len(errors),
                          "error_examples": errors[:3], "turns_per_s": round(len(times) / wall, 3),
                          **_summary(times)}  # fmt: skip
        log(f"Ray, {replicas} replica(s) per deployment: {runs[replicas]['turns_per_s']} "
            f"turns/s, {len(errors)} errors")  # fmt: skip
    ratio = runs[2]["turns_per_s"] / max(runs[1]["turns_per_s"], 1e-9)
    return {"one": runs[1], "two": runs[2], "clients": n["clients"],
            "turns_per_s_ratio": round(ratio, 3)}  # fmt: skip


RAY_TASKS = ("segment", "detect", "recolor", "track")


def bench_scale(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """Scale-out: a turn through Ray against in-process (:func:`_ray_turns`), 2 replicas
    against 1 under N clients (:func:`_replicas`), and one process's concurrent turns against
    one turn at a time (:func:`_concurrency`)."""
    import ray

    # One process's concurrency first, on a quiet machine: a Ray cluster left running (its
    # GCS, raylet and idle workers) takes CPU from whatever runs after it.
    out = {"concurrency": _concurrency(n, log)}
    try:
        out.update(turns=_ray_turns(n, log), replicas=_replicas(n, log))
    finally:
        ray.shutdown()
    return out


def _ray_turns(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """The same held-out turns through the embedded agent and through Ray Serve deployments
    (``Agent.load(backend="ray")`` on a local cluster of this machine's cores), alternating
    request by request so both see the same machine state; both warmed first."""
    from switchboard.agent import ray_serve
    from switchboard.agent.sdk import Agent
    from switchboard.evals.agent import _media

    reqs = _requests(RAY_TASKS, n["ray"])
    local_s, ray_s, same = [], [], 0
    with tempfile.TemporaryDirectory() as h1, tempfile.TemporaryDirectory() as h2:
        local = _agent(h1)
        t0 = time.perf_counter()
        remote = Agent.load(home=h2, backend="ray")
        start_s = time.perf_counter() - t0
        _warm(local)
        _warm(remote)
        for req in reqs:
            turns = []
            for agent, out in ((local, local_s), (remote, ray_s)):
                t0 = time.perf_counter()
                turns.append(agent.chat(req.text, **_media(req)))
                out.append(time.perf_counter() - t0)
            same += [c.tool for c in turns[0].calls] == [c.tool for c in turns[1].calls]
        local.close()
        remote.close()
        ray_serve.shutdown()
    ratio = pct(ray_s, 50) / max(pct(local_s, 50), 1e-9)
    out = {"tasks": list(RAY_TASKS), "turns": len(reqs), "start_s": round(start_s, 1),
           "in_process": _summary(local_s), "ray": _summary(ray_s),
           "p50_ratio": round(ratio, 3), "same_calls": same}  # fmt: skip
    log(f"{len(reqs)} turns: in-process p50 {out['in_process']['p50_s']} s, through Ray "
        f"{out['ray']['p50_s']} s (x{ratio:.2f}); deployments up in {start_s:.0f} s")  # fmt: skip
    return out


def bench_integrations(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """The same held-out turns (segment and detect requests with their image) over the native
    route (``POST /api/sessions/{id}/messages``, a multipart upload; the session made before
    the clock starts) and the OpenAI-compatible one (``/v1/chat/completions`` with the image
    as a base64 data URL, through the ``openai`` client: the session made inside), one at a
    time, alternating, on one server, both warmed first. What the route adds to a turn."""
    import base64

    import httpx
    import openai
    from switchboard.core.media import encode_png
    from switchboard.router.data import media_for
    from switchboard.ui.server import create_app

    token = "bench"
    with tempfile.TemporaryDirectory() as home:
        agent = _agent(home)
        url, server = _start_server(create_app(agent, tokens=[token]))
        auth = {"Authorization": f"Bearer {token}"}
        native = httpx.Client(base_url=url, headers=auth, timeout=300)
        client = openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0, timeout=300)

        def by_native(text: str, png: bytes) -> tuple[float, str]:
            sid = native.post("/api/sessions").json()["id"]
            t0 = time.perf_counter()
            r = native.post(f"/api/sessions/{sid}/messages", data={"text": text},
                            files={"file": ("image.png", png, "image/png")})  # fmt: skip
            seconds = time.perf_counter() - t0
            r.raise_for_status()
            return seconds, r.json()["text"]

        def by_openai(text: str, png: bytes) -> tuple[float, str]:
            image = "data:image/png;base64," + base64.b64encode(png).decode()
            t0 = time.perf_counter()
            reply = client.chat.completions.create(
                model="switchboard",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": text},
                            {"type": "image_url", "image_url": {"url": image}},
                        ],
                    }
                ],  # fmt: skip
            )
            seconds = time.perf_counter() - t0
            links = r"(\n\n|\n)!?\[[^\]]*\]\([^)\s]*\)"  # the artifacts' links after the text
            return seconds, re.sub(f"({links})+$", "", reply.choices[0].message.content)

        reqs = _requests(("segment", "detect"), n["openai"] // 2 + 1, offset=11_000)
        work = [(r.text, encode_png(media_for(r)[0][0])) for r in reqs]
        by_native(*work[0]), by_openai(*work[0])  # warm: models loaded, first paths taken
        times: dict[str, list[float]] = {"native": [], "openai": []}
        same = 0
        for i, (text, png) in enumerate(work[1:]):
            order = (by_native, by_openai) if i % 2 == 0 else (by_openai, by_native)
            said = {}
            for route in order:
                seconds, said[route.__name__] = route(text, png)
                times[route.__name__.removeprefix("by_")].append(seconds)
            same += said["by_native"] == said["by_openai"]
        server.should_exit = True
        agent.close()
    ratio = pct(times["openai"], 50) / pct(times["native"], 50)
    # Each turn against itself: the same request by both routes, one right after the other.
    paired = [o / n for o, n in zip(times["openai"], times["native"], strict=True)]
    out = {"turns": len(work) - 1, "tasks": ["segment", "detect"],
           "native": _summary(times["native"]), "openai": _summary(times["openai"]),
           "p50_ratio": round(ratio, 3), "paired_ratio_p50": round(pct(paired, 50), 3),
           "same_replies": same}  # fmt: skip
    log(f"{out['turns']} turns: native p50 {out['native']['p50_s']} s, OpenAI route "
        f"{out['openai']['p50_s']} s (x{ratio:.3f}); same reply on {same}")  # fmt: skip
    return out


def bench_hardening(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    """``switchboard serve`` in its own process under hostile probes (:mod:`.bench_hardening`)."""
    from .hardening import bench_hardening as run

    return run(n, log)


def bench_kernels(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    from switchboard.kernels.bench import run

    out = run(repeats=n["kernels"])
    log(f"linear-CE torch {out['linear_ce']['torch']['p50_ms']:.0f} ms on {out['device']}")
    return out


_SECTIONS: dict[str, Callable[[dict[str, int], Callable[[str], None]], dict[str, Any]]] = {
    "loads": bench_loads, "world": bench_world, "perception": bench_perception,
    "edit": bench_edit, "router": bench_router, "stages": bench_stages,
    "passes": bench_passes, "lazy": bench_lazy, "server": bench_server,
    "hardening": bench_hardening, "kernels": bench_kernels, "scale": bench_scale,
    "integrations": bench_integrations,
}  # fmt: skip


# -- the run ------------------------------------------------------------------------------------
def run_section(name: str, quick: bool = False, log: Callable[[str], None] = print) -> dict:
    """One section in this process, with its time and this process's peak memory."""
    import torch

    t0 = time.perf_counter()
    out = _SECTIONS[name](QUICK if quick else FULL, log)
    return {
        **out,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
    }


def run_bench(
    quick: bool = False, only: tuple[str, ...] = SECTIONS, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every section in ``only``, each in a fresh process, one after another."""
    from switchboard.evals.report import commit

    out: dict[str, Any] = {"quick": quick, "commit": commit(),
                           "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                           "machine": machine(), "seconds": {}}  # fmt: skip
    t_all = time.time()
    for name in only:
        log(f"== bench {name}")
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [sys.executable, "-m", "switchboard.bench.sections", name, "--out", f.name]
            proc = subprocess.run(
                cmd + (["--quick"] if quick else []),
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for line in proc.stdout.splitlines():
                if line.startswith("  "):
                    log(line)
            if proc.returncode != 0:
                raise RuntimeError(f"bench {name} failed:\n{proc.stdout[-3000:]}")
            out[name] = json.loads(Path(f.name).read_text())
        out["seconds"][name] = out[name]["seconds"]
        log(f"== {name}: {out[name]['seconds']:.0f} s, peak {out[name]['peak_rss_mb']:.0f} MB")
    out["seconds"]["all"] = round(time.time() - t_all, 1)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, CPU only"


def _one_section(
    section: str = typer.Argument(..., help=f"one of: {', '.join(SECTIONS)}"),
    quick: bool = typer.Option(False, "--quick", help="A few repeats: checks the pipeline only."),
    out: Path | None = typer.Option(None, "--out", help="Write the JSON here (else print it)."),
) -> None:
    """One section of switchboard bench, in this process."""
    if section not in SECTIONS:
        raise typer.BadParameter(f"unknown section {section!r}; choose from {SECTIONS}")
    res = run_section(section, quick, log=lambda s: print("  " + s, flush=True))
    text = json.dumps(res, indent=2)
    if out:
        out.write_text(text)
    else:
        print(text)


def main(argv: list[str] | None = None) -> None:
    """``python -m switchboard.bench.sections SECTION [--quick] [--out FILE]``."""
    app = typer.Typer(add_completion=False)
    app.command()(_one_section)
    app(args=argv)


if __name__ == "__main__":
    main()


# -- the report ---------------------------------------------------------------------------------
BEGIN, END = "<!-- switchboard bench: begin -->", "<!-- switchboard bench: end -->"


def _ms(d: dict[str, float]) -> str:
    return f"{d['p50_ms']:.0f} / {d['p95_ms']:.0f} ms"


def _s(d: dict[str, float]) -> str:
    return f"{d['p50_s']:.2f} / {d['p95_s']:.2f} s"


def _aim(value: float, aim: float, unit: str) -> str:
    return f"≤ {aim:g} {unit} " + ("(met)" if value <= aim else "(**not met**)")


def _hardening_markdown(h: dict[str, Any]) -> list[str]:
    bm, up, rs = h["bad_media"], h["unauthenticated_post"], h["restart"]
    ab, sq = h["abandoned_streams"], h["sequential"]
    rows = [
        f"| {k} | {v['bytes'] / 1e3:.0f} kB | {v['status']} | {v['peak_above_idle_mb']:.0f} MB |"
        for k, v in bm["probes"].items()
    ]
    last = next(k for k in sq if k.startswith("rss_after_") and k != "rss_after_20_mb")
    return [
        "### The server under hostile probes (`--only hardening`)",
        "",
        f"`switchboard serve` in its own process (healthy {h['start_to_health_s']:.1f} s after "
        f"its start; idle {bm['idle_rss_mb']:.0f} MB after one turn), its RSS sampled every "
        "10 ms from outside:",
        "",
        "| bad upload | size | answer | peak RSS above idle |",
        "|---|---|---|---|",
        *rows,
        "",
        f"- An unauthenticated POST claiming {up['claimed_bytes'] / 1e9:.1f} GB: "
        f"{up['status']} after {up['answered_s']:.3f} s, "
        f"{up['sent_before_answer_mb']:.2f} MB sent by then.",
        f"- `kill -9` with {rs['pending_at_kill']} turns pending, a new server on the same "
        f"home: `/api/health` after **{rs['restart_to_health_s']:.1f} s**; the turns then "
        f"ended {', '.join(rs['statuses_after'])} ({rs['resumed']} resumed).",
        f"- {ab['clients']} clients at once, {ab['abandoned']} closing their stream at once "
        f"(`SWITCHBOARD_ON_DISCONNECT=cancel`): **{ab['errors_of_the_others']} errors** for "
        f"the others; the abandoned turns ended {ab['abandoned_statuses']}.",
        f"- RSS over {sq['turns']} sequential segment turns: {sq['rss_after_20_mb']:.0f} MB "
        f"after 20, {sq[last]:.0f} MB after {sq['turns']} ({sq['change_pct']:+.1f} %).",
        "",
    ]


def bench_markdown(res: dict[str, Any], command: str) -> str:
    """The benchmark's section of RESULTS.md (between :data:`BEGIN` and :data:`END`)."""
    quick = " (**--quick: a few repeats per section, not the figures the docs cite**)"
    lines = [BEGIN, "## Speed and memory (`switchboard bench`)", "",
             f"Produced by `{command}` on {res['date']}, commit `{res['commit']}`, "
             f"{res['machine']}" + (quick if res["quick"] else "")
             + f". The whole run took {res['seconds']['all'] / 60:.1f} min; each section runs in "
             "a fresh process, one after another. p50 / p95 throughout.", "",
             *(f"Re-run later: {', '.join(u['sections'])} by `{u['command']}` on {u['date']}, "
               f"commit `{u['commit']}`." for u in res.get("updates", [])), "",
             "| section | time | peak RSS |", "|---|---|---|",
             *(f"| {k} | {res[k]['seconds']:.0f} s | {res[k]['peak_rss_mb']:.0f} MB |"
               for k in SECTIONS if k in res), ""]  # fmt: skip
    for name, section in SECTION_MARKDOWN.items():
        if name in res:
            lines += section(res[name])
    lines.append(END)
    return "\n".join(lines)


def _loads_markdown(res: dict[str, Any]) -> list[str]:
    """The ``loads`` section's lines."""
    lines: list[str] = []
    lo = res
    lines += [
        "### Model loads",
        "",
        "Cold: a fresh process (for the LLM also an empty cache: the GGUF file is "
        "dequantized). Cached: the LLM in a fresh process with its dequantized cache; a "
        "specialist loaded again in the same process after `unload()` (what the memory "
        f"budget does). Importing torch and the packages first: {lo['import_s']:.1f} s.",
        "",
        "| model | cold | cached | memory added |",
        "|---|---|---|---|",
        f"| router LLM (SmolLM2-135M) | {lo['llm']['cold_s']:.1f} s | "
        f"{lo['llm']['cached_s']:.2f} s | {lo['llm']['added_mb']:.0f} MB |",
        f"| router (LLM cached + vision tower + LoRA + signal heads) | — | "
        f"{lo['router']['cached_s']:.2f} s | {lo['router']['added_mb']:.0f} MB |",
        *(
            f"| {k} | {lo[k]['cold_s']:.2f} s | {lo[k]['cached_s']:.2f} s | "
            f"{lo[k]['added_mb']:.0f} MB |"
            for k in SPECIALISTS
        ),
        "",
    ]
    return lines


def _stages_markdown(res: dict[str, Any]) -> list[str]:
    """The ``stages`` section's lines."""
    lines: list[str] = []
    st = res
    per = st["turns"] // len(st["tasks"])
    lines += [
        "### A turn, stage by stage",
        "",
        f"{st['turns']} turns of the default agent (text calls), {per} held-out "
        f"requests of each of the {len(st['tasks'])} tasks, after one warm-up turn "
        "per specialist. Whole turn "
        f"{_s(st['total'])}; {st['router_passes_mean']:.2f} router passes per turn.",
        "",
        "| stage | runs | p50 / p95 |",
        "|---|---|---|",
        *(f"| {k} | {v['n']} | {_s(v)} |" for k, v in st["stages"].items() if k == "perceive"),
        f"| route (first pass) | {st['route_first']['n']} | {_s(st['route_first'])} |",
        f"| route (later passes: KV prefix reused) | {st['route_later']['n']} | "
        f"{_s(st['route_later'])} |",
        *(
            f"| {k} | {v['n']} | {_s(v)} |"
            for k, v in st["stages"].items()
            if k not in ("route", "perceive")
        ),
        *(f"| whole turn, {k} | {v['n']} | {_s(v)} |" for k, v in st["by_calls"].items()),
        "",
    ]
    seg = st.get("by_task", {}).get("segment")
    if seg:  # issue 7's aim is a one-call turn: "segment the …" with its image
        lines += [
            f"A one-call segment turn: p50 {seg['p50_s']:.2f} s, aim "
            f"{_aim(seg['p50_s'], AIMS['one_call_turn_s'], 's')}.",
            "",
            "| task | turns | whole turn p50 / p95 |",
            "|---|---|---|",
            *(f"| {k} | {v['n']} | {_s(v)} |" for k, v in st["by_task"].items()),
            "",
        ]
    return lines


def _passes_markdown(res: dict[str, Any]) -> list[str]:
    """The ``passes`` section's lines."""
    lines: list[str] = []
    p = res
    rows = (("hybrid single pass (call + signals in one decode)", "hybrid_single_pass"),
            ("text two passes (LLM → tool → LLM)", "text_two_pass"),
            ("text single pass", "text_single_pass"))  # fmt: skip
    r = p["hybrid_single_pass_vs_text_two_pass"]
    lines += [
        "### Hybrid single-pass routing vs a text-only two-pass loop",
        "",
        f"The same {p['requests']} held-out single-call requests "
        f"({', '.join(p['tasks'])}), each judged as `switchboard eval agent` judges.",
        "",
        "| mode | turn p50 / p95 | mean | router passes | router time | success |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {_s(p[k])} | {p[k]['mean_s']:.2f} s | "
            f"{p[k]['router_passes_mean']:.2f} | {p[k]['router_s_mean']:.2f} s | "
            f"{p[k]['success']:.3f} |"
            for name, k in rows
        ),
        "",
        f"**Hybrid single pass / text two passes: p50 ×{r['p50_ratio']:.2f}, mean "
        f"×{r['mean_ratio']:.2f}, success {r['success_diff']:+.3f}.**",
        "",
    ]
    return lines


def _lazy_markdown(res: dict[str, Any]) -> list[str]:
    """The ``lazy`` section's lines."""
    lines: list[str] = []
    lz, r = res, res["lazy_vs_eager"]
    lines += [
        "### Lazy loading vs every specialist loaded",
        "",
        "A fresh process each: the agent with the router loaded, then four turns "
        "(segment, recolour, detect, track).",
        "",
        "| | ready | memory at ready | first turn | four replies from start | peak |",
        "|---|---|---|---|---|---|",
        *(
            f"| {k} | {lz[k]['ready_s']:.1f} s | {lz[k]['ready_rss_mb']:.0f} MB | "
            f"{lz[k]['first_turns_s'][0]:.2f} s | {lz[k]['to_fourth_reply_s']:.1f} s | "
            f"{lz[k]['peak_rss_mb']:.0f} MB |"
            for k in ("lazy", "eager")
        ),
        "",
        f"**Lazy / eager: ready ×{r['ready_time_ratio']:.2f}, memory at ready "
        f"×{r['ready_rss_ratio']:.2f}, first turn ×{r['first_turn_ratio']:.2f}, four "
        f"replies ×{r['to_fourth_reply_ratio']:.2f}.**",
        "",
    ]
    return lines


def _server_markdown(res: dict[str, Any]) -> list[str]:
    """The ``server`` section's lines."""
    lines: list[str] = []
    sv = res
    lines += [
        "### HTTP server under concurrent clients",
        "",
        f"{sv['clients']} client threads on loopback share {sv['turns']} segment turns "
        "(each with its image, through the SDK's `Client`) while another polls "
        f"`/api/health`: **{sv['errors']} errors**, {sv['turns_per_s']:.2f} turns/s "
        f"({_at_once(sv.get('concurrent_turns', 1))} per process), turn latency with the queue "
        f"{sv['turn_p50_s']:.1f} / {sv['turn_p95_s']:.1f} s, `/api/health` "
        f"{sv['health_p50_ms']:.1f} / {sv['health_p95_ms']:.1f} ms.",
        "",
    ]
    return lines


def _router_markdown(res: dict[str, Any]) -> list[str]:
    """The ``router`` section's lines."""
    lines: list[str] = []
    ro = res
    lines += [
        "### Router",
        "",
        f"{ro['routes']} routes of held-out requests with a {ro['image_px']} px image "
        f"({ro['prompt_tokens']} prompt tokens): **{ro['route_p50_ms']:.0f} / "
        f"{ro['route_p95_ms']:.0f} ms** (aim "
        f"{_aim(ro['route_p50_ms'], AIMS['route_ms'], 'ms')}), "
        f"{ro['reply_tokens_mean']:.1f} reply tokens in {ro['forward_passes_mean']:.1f}"
        f" forward passes, {ro['tokens_per_s']:.1f} tokens/s; the decoding steps in "
        f"{ro.get('decode', 'float32')} after an fp32 prefill.",
        "",
    ]
    if "fp32" in ro:
        f = ro["fp32"]
        lines += [
            f"The same routes decoded in fp32 alone (`SWITCHBOARD_ROUTER_DECODE=float32`"
            f"): {f['route_p50_ms']:.0f} / {f['route_p95_ms']:.0f} ms, "
            f"{f['tokens_per_s']:.1f} tokens/s; {ro['decode']} decoding takes "
            f"**×{f['p50_ratio']:.2f}** the p50 and writes **{f['identical_replies']} "
            f"of {ro['routes']}** replies token for token as fp32 does.",
            "",
        ]
    if "object_list" in ro:
        ol = ro["object_list"]
        lines += [
            f"The object list ({ol['objects_mean']:.1f} objects per image on average) "
            f"costs a route ×{ol['p50_ratio_with_vs_without']:.2f} the p50 of the same "
            f"routes without it ({ol['route_p50_ms_without']:.0f} ms), and perceive "
            f"{ol['detect_list_ms_p50']:.0f} ms p50 to detect it.",
            "",
        ]
    return lines


def _perception_markdown(res: dict[str, Any]) -> list[str]:
    """The ``perception`` section's lines."""
    lines: list[str] = []
    pe = res
    lines += [
        "### Perception specialists",
        "",
        "| measure | p50 / p95 | aim |",
        "|---|---|---|",
        f"| segment call after `set_image` | {_ms(pe['segment_call'])} | "
        f"{_aim(pe['segment_call']['p50_ms'], AIMS['segment_call_ms'], 'ms')} |",
        f"| segment `set_image` (SAM's image encoder) | {_ms(pe['segment_set_image'])} | — |",
        f"| detect, one 256 px frame | {_ms(pe['detect_frame'])} | "
        f"{_aim(pe['detect_frame']['p50_ms'], AIMS['detect_frame_ms'], 'ms')} |",
        f"| track with masks, per frame (mean) | {pe['track_frame_masks_ms']:.0f} ms | "
        f"{_aim(pe['track_frame_masks_ms'], AIMS['track_frame_ms'], 'ms')} |",
        f"| memory, all three loaded | {pe['rss_all_loaded_mb']:.0f} MB "
        f"({pe['rss_models_mb']:.0f} MB the models) | "
        f"{_aim(pe['rss_all_loaded_mb'], AIMS['perception_rss_mb'], 'MB')} |",
        "",
    ]
    return lines


def _edit_markdown(res: dict[str, Any]) -> list[str]:
    """The ``edit`` section's lines."""
    lines: list[str] = []
    ed = res
    lines += [
        "### Edit specialist",
        "",
        f"On {ed['working_size']} px crops with {ed['sampler_steps']} sampler steps: "
        f"recolour {_ms(ed['recolor'])}, removal {_ms(ed['remove'])} (aim "
        f"{_aim(ed['recolor']['p50_ms'], AIMS['edit_ms'], 'ms')}), a two-object "
        f"generation {_ms(ed['generate_2_objects'])}; the pipeline adds "
        f"{ed['rss_added_mb']:.0f} MB.",
        "",
    ]
    v = ed.get("video")
    if v:
        b, f = v["recolor_batched"], v["recolor_frame_by_frame"]
        lines += [
            f"Video edits on a {v['frames']}-frame {v['size']} px clip (tracking included): "
            f"recolour {b['s_per_frame']:.3f} s per frame with the model's frames in one batch, "
            f"{f['s_per_frame']:.3f} s frame by frame (×{f['p50_ms'] / b['p50_ms']:.2f}); "
            f"removal {v['remove_batched']['s_per_frame']:.3f} s, replacement "
            f"{v['replace_batched']['s_per_frame']:.3f} s per frame (aim "
            f"{_aim(b['s_per_frame'], AIMS['video_edit_s_per_frame'], 's')} per frame).",
            "",
        ]
    return lines


def _world_markdown(res: dict[str, Any]) -> list[str]:
    """The ``world`` section's lines."""
    lines: list[str] = []
    w = res
    lines += [
        "### ShapeWorld generation",
        "",
        f"{w['scenes']} scenes of 256 × 256 with masks: {w['workers_1_s']:.1f} s on one "
        f"worker, {w['workers_2_s']:.1f} s on two (aim "
        f"{_aim(w['workers_2_s'] * 1000 / w['scenes'], AIMS['world_1000_s'], 's')} "
        "per 1000).",
        "",
    ]
    return lines


def _kernels_markdown(res: dict[str, Any]) -> list[str]:
    """The ``kernels`` section's lines."""
    lines: list[str] = []
    k = res
    lines += [
        "### Kernels",
        "",
        f"Device: {k['device']}. " + (k.get("note", "") + ".")
        if k["device"] == "cpu"
        else f"Device: {k['device']}.",
        "",
        "| measure | torch p50 | kernel p50 | speed-up |",
        "|---|---|---|---|",
    ]
    for key, name in (
        ("linear_ce", f"linear + CE fwd+bwd, {k['linear_ce']['shape']['tokens']} tokens → 49 152"),
        ("masks_256_to_1024", "mask post-processing, 256 → 1024"),
        ("masks_sam_photo", "the same, SAM's photo case"),
    ):
        v = k[key]
        kern = f"{v['kernel']['p50_ms']:.1f} ms" if "kernel" in v else "— (interpreter only)"
        sp = f"×{v['speedup']:.2f}" if "speedup" in v else "—"
        lines.append(f"| {name} | {v['torch']['p50_ms']:.1f} ms | {kern} | {sp} |")
    sig = k["signal_projection"]["output_mlps"]
    lines += [f"| signal heads' output MLPs fwd+bwd | {sig['p50_ms']:.1f} ms | — | — |", ""]
    return lines


# The sections in the order the report shows them.
def _scale_markdown(res: dict[str, Any]) -> list[str]:
    r, rep, con = res["turns"], res["replicas"], res["concurrency"]
    one, two = rep["one"], rep["two"]
    ser, par = con["serialized"], con["concurrent"]
    return [
        "### Scale-out (`--only scale`)",
        "",
        f"- **A turn through Ray**: {r['turns']} held-out turns ({', '.join(r['tasks'])}), each "
        'through the embedded agent and through `Agent.load(backend="ray")` (every tool and '
        "the router a Serve deployment on a local cluster of this machine), alternating, both "
        f"warmed first: in-process {_s(r['in_process'])}, through Ray {_s(r['ray'])} — p50 "
        f"**×{r['p50_ratio']:.2f}** ({_aim(r['p50_ratio'], AIMS['ray_turn_ratio'], '×')}); "
        f"the same tools called on {r['same_calls']} of {r['turns']}; the deployments were up "
        f"{r['start_s']:.0f} s after `Agent.load`.",
        f"- **Replicas**: {rep['clients']} client threads share {one['turns'] + one['errors']} "
        "held-out segment turns through Ray (router, segment and detect deployed, one torch "
        f"thread per replica): 1 replica each {one['turns_per_s']:.2f} turns/s "
        f"(p50 {one['p50_s']:.1f} s), 2 replicas each {two['turns_per_s']:.2f} turns/s "
        f"(p50 {two['p50_s']:.1f} s): **×{rep['turns_per_s_ratio']:.2f}** "
        f"({_up(rep['turns_per_s_ratio'], AIMS_UP['ray_replicas_ratio'])}); "
        f"{one['errors'] + two['errors']} errors.",
        f"- **Concurrent turns in one process**: the HTTP server under {ser['clients']} clients "
        f"({ser['turns']} segment turns): one turn at a time {ser['turns_per_s']:.2f} turns/s "
        f"(p50 {ser['turn_p50_s']:.1f} s), {con['slots']} at a time {par['turns_per_s']:.2f} "
        f"turns/s (p50 {par['turn_p50_s']:.1f} s): **×{con['turns_per_s_ratio']:.2f}** "
        f"({_up(con['turns_per_s_ratio'], AIMS_UP['concurrent_turns_ratio'])}); "
        f"{ser['errors'] + par['errors']} errors.",
        "",
    ]


def _integrations_markdown(res: dict[str, Any]) -> list[str]:
    return [
        "### The OpenAI-compatible route (`--only integrations`)",
        "",
        f"- {res['turns']} held-out turns ({', '.join(res['tasks'])}, each with its image), "
        "one at a time, alternating between the native route (a multipart upload to "
        "`/api/sessions/{id}/messages`) and `/v1/chat/completions` through the `openai` client "
        f"(the image as a data URL): native {_s(res['native'])}, OpenAI route "
        f"{_s(res['openai'])} — p50 **×{res['p50_ratio']:.3f}** "
        f"({_aim(res['p50_ratio'], AIMS['openai_turn_ratio'], '×')}); turn by turn (each "
        "request by both routes, one after the other) the median ratio is "
        f"×{res.get('paired_ratio_p50', float('nan')):.3f}; the same reply on "
        f"{res['same_replies']} of {res['turns']}.",
        "",
    ]


def _at_once(slots: int) -> str:
    return "turns run one at a time" if slots == 1 else f"up to {slots} turns at once"


def _up(value: float, aim: float) -> str:
    return f"aim ≥ ×{aim:g}, " + ("met" if value >= aim else "**not met**")


SECTION_MARKDOWN: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "loads": _loads_markdown,
    "stages": _stages_markdown,
    "passes": _passes_markdown,
    "lazy": _lazy_markdown,
    "server": _server_markdown,
    "hardening": _hardening_markdown,
    "scale": _scale_markdown,
    "integrations": _integrations_markdown,
    "router": _router_markdown,
    "perception": _perception_markdown,
    "edit": _edit_markdown,
    "world": _world_markdown,
    "kernels": _kernels_markdown,
}


def write_bench(res: dict[str, Any], md: Path, command: str) -> Path:
    """Put the benchmark's section into ``md`` (replacing the previous one; the evaluation's
    part of the file is left as it is)."""
    block = bench_markdown(res, command)
    text = md.read_text() if md.is_file() else "# Results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    return md


def bench_block(md: Path) -> str:
    """The benchmark's section of an existing ``md`` ('' if none): what ``eval all`` keeps."""
    text = md.read_text() if md.is_file() else ""
    if BEGIN in text and END in text:
        return BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END
    return ""
