"""One evaluation of the whole system: every task's eval on the ShapeWorld test split, written to
``docs/RESULTS.md`` with the command, the date and the commit, and plots where a picture says
more (``docs/results/*.png``).

    switchboard eval all                  # the full run (the numbers every doc cites)
    switchboard eval all --quick          # a few items each: the pipeline (runs/RESULTS-quick.md)

Each section calls the same function as its own ``switchboard eval <task>`` command, with the
item counts in :data:`FULL` (each section names the equivalent command), so the numbers are the
ones those commands print.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVALS = ("segment", "detect", "track", "edit", "edit-video", "router", "signals", "agent",
         "conversations", "photos")  # fmt: skip
# Item counts: the full run (each task's own command's default) and the --quick smoke run.
FULL = {"segment": 200, "detect": 200, "track": 30, "edit": 40, "edit-video": 30, "router": 100,
        "signals": 300,
        "signals_missed": 60, "signals_track": 30, "signals_edit": 20, "agent": 240,
        "agent_turns": 42, "conversations": 126, "photos": 3}  # fmt: skip
QUICK = {"segment": 4, "detect": 4, "track": 2, "edit": 1, "edit-video": 1, "router": 4,
         "signals": 3,
         "signals_missed": 1, "signals_track": 1, "signals_edit": 1, "agent": 7, "agent_turns": 7,
         "conversations": 3, "photos": 1}  # fmt: skip
# The targets the issues set (metric → minimum), shown beside each number.
TARGETS = {
    ("segment", "box_mIoU"): 0.90, ("segment", "point_mIoU"): 0.80,
    ("detect", "mAP50"): 0.90, ("detect", "mAP50_95"): 0.70,
    ("track", "MOTA"): 0.85, ("track", "IDF1"): 0.85,
    ("agent", "success"): 0.85, ("conversations", "turn success"): 0.85,
}  # fmt: skip
EDIT_KINDS = ("recolor", "remove", "add", "move", "replace", "generate")
ROUTER_KEYS = ("valid_calls", "decision", "tool_selection", "exact_call", "argument_accuracy",
               "answers", "grounding_iou50")  # fmt: skip


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            text=True,
            capture_output=True,
        ).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_evals(
    split: str = "test",
    quick: bool = False,
    only: tuple[str, ...] = EVALS,
    log: Callable[[str], None] = print,
    figures: Path | None = None,
) -> dict[str, Any]:
    """Every eval in ``only``; each result with the seconds it took (``figures``: where the
    photo smoke run draws its sheet)."""
    from switchboard.specialists import default_registry

    n = QUICK if quick else FULL
    reg = default_registry()
    out: dict[str, Any] = {"split": split, "quick": quick, "commit": commit(),
                           "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                           "seconds": {}}  # fmt: skip
    t_all = time.time()
    for name in only:
        log(f"== eval {name}")
        t0 = time.time()
        extra = {"figures": figures} if name == "photos" else {}
        out[name] = _EVALS[name](reg, split, n, log, **extra)
        out["seconds"][name] = round(time.time() - t0, 1)
        log(f"== {name}: {out['seconds'][name]:.0f} s")
    out["seconds"]["all"] = round(time.time() - t_all, 1)
    return out


def _segment(reg, split, n, log):
    from switchboard.evals.specialists import evaluate_segment

    return evaluate_segment(reg.get("segment"), split, n["segment"])


def _detect(reg, split, n, log):
    from switchboard.evals.specialists import evaluate_detect

    det = reg.get("detect")
    det.load()
    return evaluate_detect(det, split, n["detect"])


def _track(reg, split, n, log):
    from switchboard.evals.specialists import evaluate_track

    return evaluate_track(reg.get("track"), split, n["track"], False)


def _edit(reg, split, n, log):
    from switchboard.evals.specialists import evaluate_edit

    det = reg.get("detect")
    det.load()
    return evaluate_edit(reg.get("edit"), det, split, n["edit"], 20, EDIT_KINDS)


def _edit_video(reg, split, n, log):
    from switchboard.evals.specialists import evaluate_video_edit

    det = reg.get("detect")
    det.load()
    return evaluate_video_edit(reg.get("edit"), det, split, n["edit-video"], 20)


def _router(reg, split, n, log):
    from switchboard.evals.router import evaluate_base, evaluate_router
    from switchboard.router.inference import Router

    rows = [evaluate_router(Router.load(None, reg), split, n["router"])]
    rows.append(evaluate_base(reg, split, n["router"]))
    return rows


def _signals(reg, split, n, log):
    from switchboard.core.config import models_dir
    from switchboard.evals.signals import evaluate_signals
    from switchboard.router.inference import Router
    from switchboard.router.signals import SignalHeads

    folder = models_dir() / "router-tiny"
    router = Router.load(folder, reg)
    ablation_dir = folder / "signals-nosynergy"
    ablation = SignalHeads.load(ablation_dir) if SignalHeads.exists(ablation_dir) else None
    return evaluate_signals(
        router,
        ablation,
        split,
        n["signals"],
        n["signals_track"],
        n["signals_edit"],
        n_missed=n["signals_missed"],
        log=log,
    )


def _agent(reg, split, n, log):
    """The suite with text calls, then with hybrid calls (the agent's default), then as the
    second turn of a conversation reading 0 and 1 earlier turns (and the same tasks fresh),
    text calls."""
    from switchboard.evals.agent import evaluate_agent

    out = evaluate_agent(split=split, n=n["agent"], log=log)
    log("== agent, hybrid calls")
    out["hybrid"] = _brief(evaluate_agent(split=split, n=n["agent"], with_signals=True, log=log))
    k = n["agent_turns"]
    out["conversation"] = {"fresh": _brief(evaluate_agent(split=split, n=k))}
    for h in (0, 1):
        log(f"== agent, second turn reading {h} earlier turns")
        res = evaluate_agent(split=split, n=k, after_turn=True, history_turns=h)
        out["conversation"][f"after_turn_history_{h}"] = _brief(res)
    return out


def _conversations(reg, split, n, log):
    """Scripted conversations through the default agent (it reads earlier turns)."""
    from switchboard.evals.agent import evaluate_conversations

    return evaluate_conversations(split=split, n=n["conversations"], log=log)


def _brief(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k != "misses"}


def photo_paths() -> list[Path]:
    """Real photographs shipped inside installed packages (no download): Ultralytics' sample
    images and matplotlib's portrait."""
    import importlib.util

    found = []
    for package, rel in (
        ("ultralytics", "assets/bus.jpg"),
        ("ultralytics", "assets/zidane.jpg"),
        ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ):
        spec = importlib.util.find_spec(package)
        if spec and spec.origin and (path := Path(spec.origin).parent / rel).is_file():
            found.append(path)
    return found


# What the smoke run asks of each photo: (request, region) — region "centre" = the middle half.
PHOTO_REQUESTS = (
    ("what is in this picture?", None),
    ("detect every object", None),
    ("segment the biggest object", None),
    ("segment this", "centre"),
    ("make the red object blue", None),
    ("remove the object on the left", None),
)


def _photos(reg, split, n, log, figures: Path | None = None):
    """The whole pipeline (router, graph, specialists, store) on real photographs: every turn
    must finish without an error; what the ShapeWorld-trained models make of them is recorded
    as it is. Also one panning clip of the first photo, tracked."""
    import tempfile

    from switchboard.agent.sdk import Agent
    from switchboard.core.media import Video, load_image

    rows, shown = [], []
    with tempfile.TemporaryDirectory() as home:
        agent = Agent.load(home=home)
        photos = photo_paths()[: n["photos"]]
        for path in photos:
            image = load_image(path)
            h, w = image.shape[:2]
            for text, where in PHOTO_REQUESTS:
                region = [w // 4, h // 4, 3 * w // 4, 3 * h // 4] if where == "centre" else None
                t0 = time.perf_counter()
                try:
                    turn = agent.chat(text, image=image, region=region)
                    error = None
                except Exception as exc:  # a crash is what this run exists to catch
                    turn, error = None, f"{type(exc).__name__}: {exc}"
                row = {"photo": path.name, "size": f"{w}x{h}", "request": text,
                       "region": region, "seconds": round(time.perf_counter() - t0, 2),
                       "error": error}  # fmt: skip
                if turn is not None:
                    row |= {
                        "reply": turn.text,
                        "calls": [
                            f"{c.tool}({json.dumps(c.args)[:80]}) → {c.status}" for c in turn.calls
                        ],
                        "masks": len(turn.masks),
                        "boxes": len(turn.boxes),
                        "images": len(turn.images),
                    }
                    if turn.masks or turn.boxes or turn.images:
                        shown.append((image, turn, text))
                rows.append(row)
                log(f"{path.name}: {text!r} → {row.get('reply', error)!r}")
        if photos:  # a clip: the first photo panned left to right, 12 frames
            image = load_image(photos[0])
            side = min(image.shape[:2])
            xs = np.linspace(0, image.shape[1] - side, 12).astype(int)
            frames = np.stack([image[:side, x : x + side] for x in xs])
            t0 = time.perf_counter()
            try:
                turn = agent.chat("track every object", video=Video(frames=frames, fps=6))
                row = {"reply": turn.text, "tracks": len(turn.tracks), "error": None,
                       "calls": [f"{c.tool} → {c.status}" for c in turn.calls]}  # fmt: skip
            except Exception as exc:
                row = {"error": f"{type(exc).__name__}: {exc}"}
            row |= {
                "photo": photos[0].name,
                "size": f"{side}x{side}x12 frames",
                "request": "track every object",
                "seconds": round(time.perf_counter() - t0, 2),
            }
            rows.append(row)
    if figures is not None and shown:  # before write_report: the folder may be new
        figures.mkdir(parents=True, exist_ok=True)
        _photo_sheet(shown[:8], figures / "photos.png")
    return {
        "photos": [p.name for p in photos],
        "turns": len(rows),
        "errors": sum(r["error"] is not None for r in rows),
        "failed_calls": sum(
            c.endswith("error") or c.endswith("timeout") for r in rows for c in r.get("calls", [])
        ),
        "rows": rows,
    }


def _photo_sheet(shown, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(14, 7))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, turn, text) in zip(axes.flat, shown, strict=False):
        ax.imshow(turn.images[-1] if turn.images else image)
        for m in turn.masks:
            ax.imshow(np.ma.masked_where(~m, m), alpha=0.5, cmap="autumn")
        for (x1, y1, x2, y2), label, _ in turn.boxes:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime"))
            ax.text(x1, y1, label, fontsize=6, backgroundcolor="lime")
        ax.set_title(f"{text} → {turn.text}"[:60], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


_EVALS: dict[str, Callable[..., Any]] = {
    "segment": _segment, "detect": _detect, "track": _track, "edit": _edit,
    "edit-video": _edit_video, "router": _router, "signals": _signals, "agent": _agent,
    "conversations": _conversations, "photos": _photos,
}  # fmt: skip


# -- the report -------------------------------------------------------------------------------
def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _meets(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"≥ {target:.2f} " + ("met" if value >= target else "**not met**")


def _target(task: str, key: str, value: float) -> str:
    return _meets(value, TARGETS.get((task, key)))


def headline(res: dict[str, Any]) -> list[tuple[str, str, float, float | None]]:
    """(task, metric, value, target) — one row per task's main numbers."""
    rows = []
    for task, keys in (
        ("segment", ("box_mIoU", "point_mIoU")),
        ("detect", ("mAP50", "mAP50_95")),
        ("track", ("MOTA", "IDF1")),
    ):
        if task in res:
            rows += [(task, k, float(res[task][k]), TARGETS.get((task, k))) for k in keys]
    if "edit" in res:
        rows += [
            ("edit", f"{k} success", float(res["edit"][f"{k}_success"]), None)
            for k in EDIT_KINDS
            if f"{k}_success" in res["edit"]
        ]
    if "edit-video" in res:
        rows += [
            ("edit-video", f"{k} clip success", float(res["edit-video"][f"{k}_success"]), 0.80)
            for k in ("recolor", "remove", "replace")
            if f"{k}_success" in res["edit-video"]
        ]
    if "router" in res:
        rows += [
            ("router", k, float(res["router"][0][k]), None)
            for k in ("tool_selection", "exact_call")
        ]
    if "signals" in res:
        s = res["signals"]
        paths = [
            p
            for p in ("text_only", "signal_only", "hybrid")
            if s.get(f"segment_{p}_miou") is not None
        ]
        rows += [
            ("signals", f"referring mIoU ({p})", float(s[f"segment_{p}_miou"]), None) for p in paths
        ]
    if "agent" in res:
        rows.append(
            ("agent", "task success", float(res["agent"]["success"]), TARGETS[("agent", "success")])
        )
    if "conversations" in res:
        rows.append(
            (
                "conversations",
                "turn success",
                float(res["conversations"]["turn_success"]),
                TARGETS[("conversations", "turn success")],
            )
        )
    return rows


def _conversation_section(c: dict[str, Any]) -> list[str]:
    from switchboard.evals.agent import conversation_table

    pos = {int(k): v["success"] for k, v in c["by_position"].items()}
    later = [v for k, v in c["by_position"].items() if int(k) > 1]
    later_mean = sum(v["success"] * v["n"] for v in later) / max(sum(v["n"] for v in later), 1)
    return [
        f"## Conversations (`switchboard eval agent --conversations --split {c['split']}`)",
        "",
        f"{c['conversations']} scripted conversations of 2–5 turns ({c['turns']} turns), "
        f"the router reading up to {c['history_turns']} earlier turns:",
        "",
        conversation_table(c),
        "",
        f"Whole conversations right: {c['conversation_success']:.3f}. First turns "
        f"{pos.get(1, 0.0):.3f}, later turns {later_mean:.3f}. Chat, greeting and thanks "
        f"turns (a picture attached or current) that edited something: "
        f"**{c['chat_turns_that_edited']} of {c['chat_turns_with_picture']}**; the router "
        f"wrote an edit with a colour, shape or place nobody said on "
        f"{c.get('turns_with_refused_edits', 0)} turns "
        f"({c.get('chat_turns_with_refused_edits', 0)} of them chat, greeting or thanks), "
        "which the agent did not run (it asked instead). "
        f"{c['errors']} errors; turn p50 {c['turn_s_p50']:.2f} s. Target ≥ 0.85 at every "
        "turn position: " + ("met." if min(pos.values()) >= 0.85 else "**not met**."),
        "",
    ]


def write_report(res: dict[str, Any], md: Path, figures: Path, command: str) -> Path:
    """``RESULTS.md`` and its plots from :func:`run_evals`' result."""
    figures.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(figures, md.parent)
    n, sp = (QUICK if res["quick"] else FULL), res["split"]  # the equivalent commands' counts
    lines = [
        "# Results",
        "",
        f"Produced by `{command}` on {res['date']}, commit `{res['commit']}`, "
        f"{res['machine']}, split `{res['split']}`"
        + (" (**--quick: a handful of items per eval, not model quality**)" if res["quick"]
           else "") + f". The whole run took {res['seconds']['all'] / 60:.1f} min.",
        "",
        *(f"Re-run later: {', '.join(u['evals'])} by `{u['command']}` on {u['date']}, commit "
          f"`{u['commit']}`." for u in res.get("updates", [])),
        "",
        "Every number here is what the named command printed in this run; nothing is copied "
        "in by hand. Re-run it to regenerate this file and the plots beside it. Quality comes "
        "from `switchboard eval all` (these sections), speed and memory from `switchboard "
        "bench` (its section at the end). The docs cite these two. The one other kind of figure "
        "in the docs is a training record: how long a `switchboard train …` run took and what "
        "its log said when the committed weights were made. Those are history; these two "
        "commands do not re-measure them.",
        "",
        "## Every task at a glance",
        "",
        "| task | metric | value | target | eval time |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for task, key, value, target in headline(res):
        t = _meets(value, target)
        lines.append(f"| {task} | {key} | {value:.3f} | {t} | {res['seconds'][task]:.0f} s |")
    lines += ["", f"![per task]({rel}/per_task.png)", ""]
    _plot_headline(res, figures / "per_task.png")

    for name, section in REPORT_SECTIONS.items():
        if name in res:
            lines += section(res[name], sp, n, rel, figures)
    lines += [
        "## Example outputs",
        "",
        f"![contact sheet]({rel}/contact_sheet.png)",
        "",
        "Test-split inputs and what the specialists made of them: a mask from a box "
        "prompt, the detector's boxes, a track over a clip, and an edit's before/after.",
        "",
    ]
    contact_sheet(figures / "contact_sheet.png")
    from switchboard.bench.sections import bench_block

    kept = bench_block(md)  # switchboard bench's section stays as that command wrote it
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines).rstrip() + "\n" + (f"\n{kept}\n" if kept else ""))
    return md


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table: its head, the rule under it, one line per row (cells as given)."""
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def _metrics(task: str, res: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """``task``'s metric table: each of ``keys`` that ``res`` has, with its target."""
    rows = [
        (k, _f(res[k]), _target(task, k, res[k]) if isinstance(res[k], float) else "")
        for k in keys
        if k in res
    ]
    return _table(("metric", "value", "target"), rows)


# Each section below takes the eval's result, the split, the item counts, the figures' folder as
# the report links it and as a path, and returns its markdown lines.
def _segment_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    keys = ("box_mIoU", "point_mIoU", "box_mIoU_small", "box_mIoU_medium", "box_mIoU_large")
    return [
        f"## Segment (`switchboard eval segment --split {sp} --n {n['segment']}`)",
        "",
        f"{res['scenes']} scenes, {res['objects']} objects.",
        "",
        *_metrics("segment", res, keys),
        "",
    ]


def _detect_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    return [
        f"## Detect (`switchboard eval detect --split {sp} --n {n['detect']}`)",
        "",
        f"{res['images']} images.",
        "",
        *_metrics("detect", res, ("mAP50", "mAP50_95", "AP75", "color_accuracy")),
        "",
    ]


def _track_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    return [
        f"## Track (`switchboard eval track --split {sp} --n {n['track']}`)",
        "",
        f"{res['clips']} clips, {res['frames']} frames.",
        "",
        *_metrics("track", res, ("MOTA", "IDF1", "FN", "FP", "IDSW")),
        "",
    ]


def _edit_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    rows = [
        (
            k,
            f"{res[f'{k}_success']:.3f}",
            _f(res.get(f"{k}_strict_success")),
            _f(res.get(f"{k}_strict_on_truth")),
            _f(res.get(f"{k}_region_psnr")),
        )
        for k in EDIT_KINDS
        if f"{k}_success" in res
    ]
    head = ("kind", "success", "strict success", "strict on the true edit", "region PSNR (dB)")
    return [
        f"## Edit (`switchboard eval edit --split {sp} --n {n['edit']}`)",
        "",
        f"{res.get('per_kind')} edits per kind, {res.get('sampler_steps')} sampler steps. "
        "Success: the detector finds the edit (shape, colour, place); strict: also the "
        "recoloured outline kept (IoU ≥ 0.90), no ghost of a removed object (PSNR ≥ 28 dB vs "
        "the true background), every other object untouched (IoU ≥ 0.95); the strict judge "
        "on the true after-images is its ceiling (the detector's own misses).",
        "",
        *_table(head, rows),
        "",
    ]


def _edit_video_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    ops = [k for k in ("recolor", "remove", "replace") if f"{k}_success" in res]
    rows = [
        (
            k,
            f"{res[f'{k}_success']:.3f}",
            _f(res.get(f"{k}_on_truth")),
            _f(res.get(f"{k}_frames_passed")),
            _f(res.get(f"{k}_region_psnr")),
            f"{res[f'{k}_flicker']:.1f} / {res[f'{k}_flicker_truth']:.1f}",
        )
        for k in ops
    ]
    head = ("op", "clip success", "on the true clip", "frames passed", "region PSNR (dB)",
            "flicker: edit / true clip")  # fmt: skip
    return [
        f"## Video edits (`switchboard eval edit --video --split {sp} --n {n['edit-video']}`)",
        "",
        f"{res.get('clips_per_op')} clips per op (16 frames, 256 px), the object given as its "
        f"box on the first frame; a clip succeeds when ≥ {res.get('frames_to_pass', 0.9):.0%} "
        "of its frames pass the stricter image judge. Flicker: mean absolute change from frame "
        "to frame inside the true edit region (grey levels). Keep region byte-identical on "
        f"every frame: {res.get('keep_region_identical')}; "
        f"{res.get('seconds_per_frame', 0):.2f} s per frame (tracking included).",
        "",
        *_table(head, rows),
        "",
    ]


def _router_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    ours, base = res[0], res[1]
    per_task = [
        (task, v["calls"], _f(v["tool"]), _f(v["exact"]), _f(b.get("tool")), _f(b.get("exact")))
        for task, v in sorted(ours.get("by_task", {}).items())
        for b in [base.get("by_task", {}).get(task, {})]
    ]
    _plot_router(ours, base, figures / "router_vs_base.png")
    return [
        "## Router vs the prompt-only base model "
        f"(`switchboard eval router --split {sp} --n {n['router']}`)",
        "",
        f"{ours.get('items')} items of {n['router']} held-out requests; the base is "
        "SmolLM2-135M-Instruct prompted with the same tool specs, untuned.",
        "",
        *_table(
            ("metric", ours["model"], base["model"]),
            ((k, _f(ours.get(k)), _f(base.get(k))) for k in ROUTER_KEYS),
        ),
        "",
        f"Route p50: router {ours['route_ms_p50']:.0f} ms, base "
        f"{base['route_ms_p50']:.0f} ms (the base writes free text until it stops).",
        "",
        "Per task (the items that call a tool):",
        "",
        *_table(("task", "calls", "tool right", "exact call", "base tool", "base exact"), per_task),
        "",
        f"![router vs base]({rel}/router_vs_base.png)",
        "",
    ]


def _signals_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    from switchboard.evals.signals import signals_table

    _plot_signals(res, figures / "signals.png")
    return [
        f"## Signals and synergy (`switchboard eval signals --split {sp} --n {n['signals']} "
        f"--n-missed {n['signals_missed']} --n-track {n['signals_track']} "
        f"--n-edit {n['signals_edit']}`)",
        "",
        signals_table(res),
        "",
        f"![signals]({rel}/signals.png)",
        "",
    ]


def _agent_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    from switchboard.evals.agent import agent_table

    a = res
    lines = [
        f"## Agent task suite (`switchboard eval agent --split {sp} --n {n['agent']} "
        "--no-signals`, then with hybrid calls)",
        "",
        agent_table(a),
        "",
        f"Turn latency p50 {a['turn_s_p50']:.2f} s, p95 {a['turn_s_p95']:.2f} s; "
        f"{a['errors']} errors. Target ≥ 0.85: "
        + ("met." if a["success"] >= 0.85 else "**not met**."),
        "",
    ]
    if "hybrid" in a:
        hy = a["hybrid"]
        rows = [
            (k, f"{v['success']:.3f}", _f(hy["by_type"].get(k, {}).get("success")))
            for k, v in a["by_type"].items()
        ]
        rows.append(("**all**", f"**{a['success']:.3f}**", f"**{hy['success']:.3f}**"))
        lines += [
            "The same tasks with hybrid calls (the agent's default: the router's signal "
            "embeddings sent with each call; `switchboard eval agent`):",
            "",
            *_table(("task type", "text calls", "hybrid calls (default)"), rows),
            "",
        ]
    if "conversation" in a:
        c, k = a["conversation"], n["agent_turns"]
        rows = [("the request alone, first turn", f"{c['fresh']['success']:.3f}")]
        rows += [
            (f"{h} earlier turn(s), second turn", f"{c[f'after_turn_history_{h}']['success']:.3f}")
            for h in (0, 1)
        ]
        lines += [
            f"As the second turn of a conversation (`--n {k} --no-signals --after-turn "
            '[--history-turns N]`: each task follows "segment the biggest shape" on '
            "another scene):",
            "",
            *_table(("the router reads", "success"), rows),
            "",
        ]
    return lines


def _photos_section(res: Any, sp: str, n: dict[str, int], rel: str, figures: Path) -> list[str]:
    ph = res
    rows = [
        (
            r["photo"],
            r["request"],
            (r.get("reply") or r.get("error") or "").replace("|", "/")[:90],
            "; ".join(r.get("calls", [])).replace("|", "/")[:120],
            r["seconds"],
        )
        for r in ph["rows"]
    ]
    lines = [
        "## Real photographs (smoke run)",
        "",
        f"The whole pipeline on photographs shipped inside installed packages "
        f"({', '.join(ph['photos'])}) — {ph['turns']} turns, **{ph['errors']} "
        f"errors**, {ph['failed_calls']} specialist calls that reported a failure. The "
        "models were trained on ShapeWorld only: what they make of photos is recorded "
        "as it came, not judged.",
        "",
        *_table(("photo", "request", "reply", "calls", "s"), rows),
    ]
    if (figures / "photos.png").exists():
        lines += ["", f"![photos]({rel}/photos.png)"]
    lines.append("")
    return lines


# The evals in the order the report shows them.
REPORT_SECTIONS: dict[str, Callable[..., list[str]]] = {
    "segment": _segment_section,
    "detect": _detect_section,
    "track": _track_section,
    "edit": _edit_section,
    "edit-video": _edit_video_section,
    "router": _router_section,
    "signals": _signals_section,
    "agent": _agent_section,
    "conversations": lambda res, *_: _conversation_section(res),
    "photos": _photos_section,
}


def _bar(ax, labels, groups: dict[str, list[float]], title: str) -> None:
    width = 0.8 / len(groups)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(groups.items()):
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    if len(groups) > 1:
        ax.legend(fontsize=8)


def _plot_headline(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = headline(res)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    labels = [f"{t}: {k}" for t, k, _, _ in rows]
    ax.bar(range(len(rows)), [v for _, _, v, _ in rows], color="#4363d8")
    for i, (_, _, _, target) in enumerate(rows):
        if target is not None:
            ax.plot([i - 0.4, i + 0.4], [target, target], color="#e6194b", lw=2)
    ax.set_xticks(range(len(rows)), labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title("test split: each task's main metrics (red: the target)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_router(ours, base, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    keys = [k for k in ROUTER_KEYS if ours.get(k) is not None]
    _bar(
        ax,
        keys,
        {ours["model"]: [ours[k] for k in keys], base["model"]: [base.get(k) or 0.0 for k in keys]},
        "router vs prompt-only base (test split)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_signals(s, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = ["referring mIoU", "… occluded", "… detector missed", "track frame-0 mIoU",
              "edit success"]  # fmt: skip
    keys = ["segment_{p}_miou", "segment_{p}_miou_occluded", "segment_{p}_miou_missed",
            "track_first_frame_{p}_miou", "edit_{e}_success"]  # fmt: skip
    names = {"text-only": ("text_only", "text"), "signal-only": ("signal_only",) * 2,
             "text + signal": ("hybrid",) * 2,
             "text + signal, no synergy": ("hybrid_nosynergy",) * 2}  # fmt: skip
    groups = {name: [s.get(k.format(p=p, e=e)) for k in keys] for name, (p, e) in names.items()}
    groups = {k: [v or 0.0 for v in vs] for k, vs in groups.items()}
    _bar(ax, labels, groups, "signal embeddings and the synergy module (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def contact_sheet(path: Path, seed_offset: int = 0) -> Path:
    """Test-split examples run through the specialists: input, mask (box prompt), detections,
    a track over a clip, an edit's before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    from switchboard.core.media import Image, Video
    from switchboard.specialists import default_registry
    from switchboard.world.requests import make_request
    from switchboard.world.scene import generate_scene
    from switchboard.world.splits import split_seeds
    from switchboard.world.video import generate_video

    reg = default_registry()
    seeds = split_seeds("test", 3 + seed_offset)[seed_offset:]
    fig, axes = plt.subplots(3, 5, figsize=(13, 8))
    for row, seed in enumerate(seeds):
        scene = generate_scene(seed)
        k = int(np.argmax([m.sum() for m in scene.masks]))
        ax = axes[row]
        ax[0].imshow(scene.image)
        ax[0].set_title("input", fontsize=8)
        masks = reg.get("segment")(Image(pixels=scene.image), {"box": list(scene.boxes[k])})
        ax[1].imshow(scene.image)
        ax[1].imshow(np.ma.masked_where(~masks.masks[0], masks.masks[0]), alpha=0.55, cmap="autumn")
        x1, y1, x2, y2 = scene.boxes[k]
        ax[1].add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="yellow"))
        ax[1].set_title("segment (box prompt)", fontsize=8)
        boxes = reg.get("detect")(Image(pixels=scene.image), {})
        ax[2].imshow(scene.image)
        for (bx1, by1, bx2, by2), label in zip(boxes.xyxy, boxes.labels, strict=True):
            ax[2].add_patch(
                patches.Rectangle((bx1, by1), bx2 - bx1, by2 - by1, fill=False, ec="lime")
            )
            ax[2].text(bx1, by1, label, fontsize=6, color="black", backgroundcolor="lime")
        ax[2].set_title(f"detect ({len(boxes.xyxy)} boxes)", fontsize=8)
        clip = generate_video(seed)
        tracks = reg.get("track")(Video(frames=clip.frames, fps=clip.fps), {"masks": False})
        ax[3].imshow(clip.frames[-1])
        for t in tracks.tracks:
            centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in t.xyxy])
            ax[3].plot(centres[:, 0], centres[:, 1], "-", lw=2)
            ax[3].text(*centres[-1], f"#{t.track_id}", fontsize=7, color="white")
        ax[3].set_title(f"track ({len(tracks.tracks)} tracks, last frame)", fontsize=8)
        req = make_request(seed, "test", "recolor")
        intent = req.intents[0]
        before = generate_scene(req.seed).image
        edited = reg.get("edit")(
            Image(pixels=before),
            {"op": "recolor", "target": intent.target_text, "color": intent.params.get("color")},
        )
        ax[4].imshow(np.concatenate([before, edited.image], axis=1))
        ax[4].set_title(f"edit: {req.text}"[:48], fontsize=7)
        for a in ax:
            a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def merge_runs(
    earlier: dict[str, Any], new: dict[str, Any], chosen: tuple[str, ...], command: str, kind: str
) -> dict[str, Any]:
    """A run of some evals (or bench sections: ``kind`` ``"evals"`` / ``"sections"``) merged
    into the earlier full run: the chosen parts and their seconds replaced, the others kept,
    and the update recorded (what was re-run, when, at which commit, by which command)."""
    res = earlier | {k: v for k, v in new.items() if k in chosen}
    res["seconds"] = earlier.get("seconds", {}) | {k: new["seconds"][k] for k in chosen}
    res["seconds"]["all"] = round(sum(v for k, v in res["seconds"].items() if k != "all"), 1)
    update = {kind: list(chosen), "date": new["date"], "commit": new["commit"], "command": command}
    res["updates"] = [*earlier.get("updates", []), update]
    return res


def save_json(res: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str))
    return path
