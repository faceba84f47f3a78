"""The ``switchboard`` command line: ``serve | chat | run | train | eval | bench | world``.

Commands are added as their parts land; ``switchboard --help`` lists what works today.
"""

from __future__ import annotations

import contextlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Switchboard: an agent that sees and edits pixels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(
    help="ShapeWorld: the synthetic data every model here learns from.", no_args_is_help=True
)
app.add_typer(world_app, name="world")
train_app = typer.Typer(help="Train a model on ShapeWorld.", no_args_is_help=True)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(help="Evaluate on held-out ShapeWorld data.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


class ExportKind(StrEnum):
    coco = "coco"
    yolo = "yolo"
    mot = "mot"
    requests = "requests"
    edits = "edits"


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as _version

    typer.echo(_version("switchboard"))


@world_app.command("preview")
def world_preview(
    out: Path = typer.Option(Path("sheet.png"), help="PNG file to write."),
    seed: int = typer.Option(0, help="First seed; the sheet is deterministic by seed."),
    scenes: int = typer.Option(8, min=1, max=32, help="Number of scenes on the sheet."),
) -> None:
    """Write a contact sheet of scenes, a video and edit pairs with ground-truth overlays."""
    from switchboard.world.preview import write_contact_sheet

    path = write_contact_sheet(out, seed=seed, scenes=scenes)
    typer.echo(f"wrote {path}")


@world_app.command("export")
def world_export(
    kind: ExportKind = typer.Argument(..., help="Which format to write."),
    out: Path = typer.Option(..., help="Output folder."),
    split: str = typer.Option("train", help="train | val | test"),
    n: int = typer.Option(100, min=1, help="Number of scenes/clips/requests/edits."),
    n_val: int = typer.Option(20, min=1, help="YOLO only: number of validation images."),
    size: int = typer.Option(256, min=32, max=2048, help="Image side in pixels."),
    label: str = typer.Option("shape", help="COCO/YOLO classes: 'shape' or 'color_shape'."),
) -> None:
    """Export ShapeWorld as COCO JSON, a YOLO dataset, MOT sequences or JSONL."""
    from switchboard.world import export

    if kind is ExportKind.coco:
        path = export.export_coco(out, split, n, size=size, label=label)
    elif kind is ExportKind.yolo:
        path = export.export_yolo(out, n, n_val, size=size, label=label)
    elif kind is ExportKind.mot:
        path = export.export_mot(out, split, n, size=min(size, 256))[0].parent
    elif kind is ExportKind.requests:
        path = export.export_requests(out, split, n)
    else:
        path = export.export_edits(out, split, n, size=size)
    typer.echo(f"wrote {path}")


@train_app.command("segment")
def train_segment(
    preset: str = typer.Option(
        "tiny", help="tiny | tiny-long | tiny-polish (both continue the committed model) | smoke"
    ),
    out: Path | None = typer.Option(
        None, help="Output folder (default trained_models/segment-tiny)."
    ),
) -> None:
    """Train the tiny SAM of the segment specialist (resumes from runs/segment/<preset>)."""
    from switchboard.specialists.train_segment import train

    typer.echo(f"wrote {train(preset, out)}")


@train_app.command("detect")
def train_detect(
    preset: str = typer.Option("tiny", help="tiny (~55 min on 2 cores) | smoke (seconds)"),
    out: Path | None = typer.Option(
        None, help="Output folder (default trained_models/detect-tiny)."
    ),
) -> None:
    """Train the detect specialist's YOLOv8n from scratch on the ShapeWorld YOLO export."""
    from switchboard.specialists.train_detect import train

    typer.echo(f"wrote {train(preset, out)}")


@train_app.command("edit")
def train_edit(
    preset: str = typer.Option(
        "tiny",
        help="tiny (~55 min on 2 cores) | tiny-long (continues tiny) | tiny-gpu (~8 min on one "
        "GPU) | smoke",
    ),
    out: Path | None = typer.Option(None, help="Output folder (default trained_models/edit-tiny)."),
    cond_cache: Path | None = typer.Option(
        None,
        help="MiniLM conditioning of every description (.pt): read if it exists, else written "
        "here first; for training where MiniLM is not installed (the GPU presets).",
    ),
) -> None:
    """Train the edit specialist's tiny latent diffusion (data, VAE, inpainting UNet)."""
    from switchboard.specialists.train_edit import train, write_cond_cache

    if cond_cache is not None and not cond_cache.exists():
        typer.echo(f"wrote {write_cond_cache(cond_cache)}")
    typer.echo(f"wrote {train(preset, out, cond_cache=cond_cache)}")


@train_app.command("router")
def train_router(
    stage: str | None = typer.Option(
        None,
        help="vision | align | ground | invoke | signals (each from the last) | all (vision "
        "→ invoke in one call: the gpu preset's 9-minute recipe)",
    ),
    preset: str = typer.Option(
        "tiny",
        help="tiny (≤ 45 min per stage on 2 cores) | objects | objects-long | conversations | "
        "plans | video-edits | gpu | smoke",
    ),
    out: Path | None = typer.Option(
        None,
        help="Output folder (default: runs/router/<stage>/model; trained_models/router-tiny "
        "after invoke; signals: the router folder, or <router>/signals-nosynergy).",
    ),
    synergy: bool = typer.Option(
        True, help="signals: train the task discriminator adversarially (--no-synergy: ablation)"
    ),
    router: Path | None = typer.Option(
        None, help="signals / --add-tools: router folder to start from (default router-tiny)"
    ),
    add_tools: bool = typer.Option(
        False,
        "--add-tools",
        help="Teach the router installed plugin tools from their example requests (a short "
        "LoRA update, minutes on CPU); writes runs/router/add-tools/model unless --out.",
    ),
    tools: str | None = typer.Option(
        None, help="--add-tools: comma-separated tool names (default: every tool it lacks)"
    ),
    steps: int = typer.Option(80, min=1, help="--add-tools: update steps (batch 8)"),
    plugin_share: float = typer.Option(
        0.25,
        min=0.05,
        max=1.0,
        help="--add-tools: share of each batch from the new tools' examples (the rest "
        "rehearses the router's own invoke items)",
    ),
    hard_share: float = typer.Option(
        0.0,
        min=0.0,
        max=1.0,
        help="--add-tools: share of the rehearsal drawn from the built-in tasks whose phrasings "
        "read most like the new tools' examples",
    ),
) -> None:
    """Train the router (LoRA on SmolLM2, vision tower, projector, region encoder) on ShapeWorld;
    ``signals`` trains the signal heads on the specialists' losses (invoke with signals and
    cross-task synergy); ``--add-tools`` teaches it plugins (docs/plugins.md)."""
    if add_tools:
        from switchboard.router.plugins import add_tools as teach

        names = [t.strip() for t in tools.split(",") if t.strip()] if tools else None
        minutes = 0.0 if preset == "smoke" else 20.0
        steps = 2 if preset == "smoke" else steps
        folder = teach(
            names,
            router,
            out,
            steps=steps,
            minutes=minutes,
            plugin_share=plugin_share,
            hard_share=hard_share,
            log=typer.echo,
        )
        typer.echo(f"wrote {folder}")
        return
    if stage is None:
        raise typer.BadParameter("--stage is needed (or --add-tools)")
    if stage == "signals":
        from switchboard.router.train_signals import train_signals

        typer.echo(f"wrote {train_signals(preset, synergy, router, out)}")
        return
    from switchboard.router.train import train, train_all

    if stage == "all":
        typer.echo(f"wrote {train_all(preset, out=out)}")
        return
    typer.echo(f"wrote {train(stage, preset, out=out)}")


def _report(name: str, metrics: dict, out: Path | None, card: bool = False) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name} ({metrics.get('split', '')})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    out = out or Path("runs/eval") / f"{name}-{metrics.get('split', 'test')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2))
    typer.echo(f"wrote {out}")
    if card:  # the default checkpoint's model card carries its held-out numbers
        from switchboard.core.config import models_dir
        from switchboard.specialists.cards import write_model_card

        folder = models_dir() / f"{name}-tiny"
        (folder / f"eval-{metrics.get('split', 'test')}.json").write_text(
            json.dumps(metrics, indent=2)
        )
        typer.echo(f"wrote {write_model_card(folder)}")


@eval_app.command("segment")
def eval_segment(
    split: str = typer.Option("test"),
    n: int = typer.Option(200, min=1),
    out: Path | None = typer.Option(None, help="JSON file to write."),
    card: bool = typer.Option(False, help="Also record the result in the model card."),
) -> None:
    """Box-prompt and one-point mIoU of the segment specialist."""
    from switchboard.evals.specialists import evaluate_segment
    from switchboard.specialists import default_registry

    _report("segment", evaluate_segment(default_registry().get("segment"), split, n), out, card)


@eval_app.command("detect")
def eval_detect(
    split: str = typer.Option("test"),
    n: int = typer.Option(200, min=1),
    out: Path | None = typer.Option(None, help="JSON file to write."),
    card: bool = typer.Option(False, help="Also record the result in the model card."),
) -> None:
    """mAP50 and mAP50-95 of the detect specialist (pycocotools)."""
    from switchboard.evals.specialists import evaluate_detect
    from switchboard.specialists import default_registry

    det = default_registry().get("detect")
    det.load()
    _report("detect", evaluate_detect(det, split, n), out, card)


@eval_app.command("track")
def eval_track(
    split: str = typer.Option("test"),
    n: int = typer.Option(30, min=1),
    masks: bool = typer.Option(False, help="Also segment every frame (slower)."),
    out: Path | None = typer.Option(None, help="JSON file to write."),
) -> None:
    """MOTA and IDF1 of the track specialist on ShapeWorld videos."""
    from switchboard.evals.specialists import evaluate_track
    from switchboard.specialists import default_registry

    _report("track", evaluate_track(default_registry().get("track"), split, n, masks), out)


@eval_app.command("edit")
def eval_edit(
    split: str = typer.Option("test"),
    n: int | None = typer.Option(
        None, min=1, help="Edits per kind (default 40), or clips per op with --video (30)."
    ),
    steps: int = typer.Option(20, min=1, help="Sampler steps per edit."),
    kinds: str | None = typer.Option(
        None, help="Comma-separated edit kinds to score (default: every kind)."
    ),
    out: Path | None = typer.Option(None, help="JSON file to write."),
    card: bool = typer.Option(False, help="Also record the result in the model card."),
    video: bool = typer.Option(
        False,
        "--video",
        help="Video edits instead (recolor, remove, replace through 16-frame clips; -n is "
        "clips per op, default 30): a clip succeeds when 90%% of its frames pass the stricter "
        "judge; flicker and the keep region reported.",
    ),
) -> None:
    """Edit success per kind (judged by the detector and pixel colour) and region PSNR."""
    from switchboard.evals.specialists import evaluate_edit, evaluate_video_edit
    from switchboard.specialists import default_registry
    from switchboard.specialists.edit import EDIT_OPS
    from switchboard.specialists.video_edit import VIDEO_OPS

    if video:
        if card:
            raise typer.BadParameter("--card records the image edit evaluation")
        chosen = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else VIDEO_OPS
        reg = default_registry()
        det = reg.get("detect")
        det.load()
        res = evaluate_video_edit(reg.get("edit"), det, split, n or 30, steps, chosen)
        _report("edit-video", res, out)
        return
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else EDIT_OPS
    if card and set(chosen) != set(EDIT_OPS):
        raise typer.BadParameter("--card records a full evaluation: score every kind")
    reg = default_registry()
    det = reg.get("detect")
    det.load()
    _report("edit", evaluate_edit(reg.get("edit"), det, split, n or 40, steps, chosen), out, card)


@eval_app.command("router")
def eval_router(
    split: str = typer.Option("test"),
    n: int = typer.Option(200, min=1, help="Requests (every step of each is scored)."),
    folder: Path | None = typer.Option(None, help="Router folder (default router-tiny)."),
    base: bool = typer.Option(True, help="Also score the untuned base model, prompted."),
    base_from: Path | None = typer.Option(
        None,
        help="Reuse the base model's row from an earlier eval JSON of the same split and n "
        "(the untuned base does not change when our router is retrained).",
    ),
    out: Path | None = typer.Option(None, help="JSON file to write."),
    card: bool = typer.Option(False, help="Write the numbers into router-tiny's model card."),
    misses: int = typer.Option(0, min=0, help="Print this many of our router's misses."),
) -> None:
    """Tool selection, exact calls, arguments, decisions, answers and grounding: our router
    beside the prompt-only base model on the same held-out items."""
    import json

    from rich.console import Console
    from rich.table import Table
    from switchboard.evals.router import evaluate_base, evaluate_router
    from switchboard.router.inference import Router
    from switchboard.specialists import default_registry

    reg = default_registry()
    earlier = None
    if base_from is not None:
        earlier = [r for r in json.loads(base_from.read_text()) if r["model"] != "router-tiny"]
        if not earlier or earlier[0]["split"] != split or earlier[0].get("requests", n) != n:
            raise typer.BadParameter(f"{base_from} holds no base row for split={split}, n={n}")
    rows = [evaluate_router(Router.load(folder, reg), split, n)]
    if earlier:
        rows += earlier
    elif base:
        rows.append(evaluate_base(reg, split, n))
    for r in rows:
        r.setdefault("requests", n)
    keys = [k for k in rows[0] if k not in ("split", "model", "by_task", "misses")]
    # Metrics as rows, models as columns: readable in an 80-column terminal.
    table = Table(title=f"router ({split}, {n} requests)")
    table.add_column("metric")
    for r in rows:
        table.add_column(r["model"], justify="right")
    for k in keys:
        cells = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k)) for r in rows]
        table.add_row(k, *cells)
    Console().print(table)
    per = Table(title="our router by request task (call steps)")
    for col in ("task", "calls", "tool", "exact"):
        per.add_column(col, justify="right" if col != "task" else "left")
    for task, v in rows[0].get("by_task", {}).items():
        per.add_row(task, str(v["calls"]), f"{v['tool']:.3f}", f"{v['exact']:.3f}")
    Console().print(per)
    if misses:
        wrong = Table(title=f"our router's first {misses} misses (all are in the JSON)")
        for col in ("task", "said", "want", "got"):
            wrong.add_column(col, overflow="fold")
        for m in rows[0].get("misses", [])[:misses]:
            wrong.add_row(m["task"], m["said"], m["want"], str(m["got"]))
        Console().print(wrong)
    out = out or Path("runs/eval") / f"router-{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    typer.echo(f"wrote {out}")
    if card:
        from switchboard.core.config import models_dir
        from switchboard.specialists.cards import write_model_card

        target = folder or models_dir() / "router-tiny"
        (target / f"eval-{split}.json").write_text(json.dumps(rows, indent=2))
        typer.echo(f"wrote {write_model_card(target)}")


@eval_app.command("signals")
def eval_signals(
    split: str = typer.Option("test"),
    n: int = typer.Option(300, min=3, help="Referring-segmentation requests (a third per kind)."),
    n_missed: int = typer.Option(
        60, min=0, help="Add segment requests whose referent the detector missed up to this many."
    ),
    n_track: int = typer.Option(30, min=1, help="Track requests."),
    n_edit: int = typer.Option(20, min=1, help="Edit requests per op."),
    folder: Path | None = typer.Option(None, help="Router folder (default router-tiny)."),
    out: Path | None = typer.Option(None, help="JSON file to write."),
    card: bool = typer.Option(False, help="Also write the numbers beside router-tiny."),
) -> None:
    """Text-only vs signal-only vs text + signal (the hybrid call), with standard errors:
    referring segmentation by expression kind, occluded and detector-missed referents, track's
    first-frame referent, edit success per op; synergy's paired effect per task and the task
    discriminator's accuracy with and without it."""
    import json

    from switchboard.core.config import models_dir
    from switchboard.evals.signals import evaluate_signals, signals_table
    from switchboard.router.inference import Router
    from switchboard.router.signals import SignalHeads
    from switchboard.specialists import default_registry

    folder = folder or models_dir() / "router-tiny"
    router = Router.load(folder, default_registry())
    if router.heads is None:
        raise typer.BadParameter(f"{folder} has no signal heads (train --stage signals first)")
    ablation_dir = folder / "signals-nosynergy"
    ablation = SignalHeads.load(ablation_dir) if SignalHeads.exists(ablation_dir) else None
    res = evaluate_signals(
        router, ablation, split, n, n_track, n_edit, n_missed=n_missed, log=typer.echo
    )
    table = signals_table(res)
    typer.echo(table)
    out = out or Path("runs/eval") / f"signals-{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    typer.echo(f"wrote {out}")
    if card:
        (folder / f"signals-{split}.json").write_text(json.dumps(res, indent=2))
        (folder / f"signals-{split}.md").write_text(table + "\n")
        from switchboard.specialists.cards import write_model_card

        typer.echo(f"wrote {write_model_card(folder)}")


@eval_app.command("agent")
def eval_agent(
    split: str = typer.Option("test"),
    n: int = typer.Option(240, min=1, help="Tasks, spread evenly over the task types."),
    out: Path | None = typer.Option(None, help="JSON file to write."),
    misses: int = typer.Option(0, min=0, help="Print this many misses (all are in the JSON)."),
    signals: bool = typer.Option(
        True,
        "--signals/--no-signals",
        help="Hybrid calls (the default): send the router's signal embeddings with its calls; "
        "--no-signals: text calls only.",
    ),
    folder: Path | None = typer.Option(None, help="Router folder (default router-tiny)."),
    after_turn: bool = typer.Option(False, help="Run each task as a session's second turn."),
    history_turns: int | None = typer.Option(
        None, min=0, help="Earlier turns the router reads (default: the agent's, 4)."
    ),
    rename: bool = typer.Option(
        False,
        help="Renamed vocabulary: the detector's classes called by nouns never trained on "
        "(understanding, segmentation and detection tasks).",
    ),
    types: str | None = typer.Option(
        None, help="Comma-separated task types to run (default: all), e.g. 'video editing'."
    ),
    conversations: bool = typer.Option(
        False,
        help="Scripted conversations of 2-5 turns instead (--n of them, default 126): "
        "follow-ups, corrections, undo/redo, thanks; success per turn position.",
    ),
) -> None:
    """End-to-end task success through the SDK (router, graph, specialists, store), judged on
    the final reply, masks, boxes, tracks and images against ShapeWorld's ground truth."""
    import json

    from rich.console import Console
    from rich.table import Table
    from switchboard.evals.agent import agent_table, evaluate_agent

    if conversations:
        _eval_conversations(split, None if n == 240 else n, out, misses, folder, history_turns)
        return
    res = evaluate_agent(
        split=split,
        n=n,
        log=typer.echo,
        with_signals=signals,
        folder=folder,
        after_turn=after_turn,
        history_turns=history_turns,
        rename=rename,
        types=tuple(t.strip() for t in types.split(",") if t.strip()) if types else None,
    )
    how = "hybrid calls" if signals else "text calls only"
    if rename:
        how += ", renamed vocabulary"
    if after_turn:
        how += f", 2nd turn, router reads {res['history_turns']} earlier turn(s)"
    table = Table(title=f"agent ({split}, {res['tasks']} tasks, {how}, {res['seconds']:.0f} s)")
    for col in ("task type", "tasks", "success"):
        table.add_column(col, justify="left" if col == "task type" else "right")
    for k, v in res["by_type"].items():
        table.add_row(k, str(v["n"]), f"{v['success']:.3f}")
    table.add_row("all", str(res["tasks"]), f"{res['success']:.3f}")
    Console().print(table)
    per = Table(title="by world task")
    for col in ("task", "tasks", "success"):
        per.add_column(col, justify="left" if col == "task" else "right")
    for k, v in res["by_task"].items():
        per.add_row(k, str(v["n"]), f"{v['success']:.3f}")
    Console().print(per)
    typer.echo(
        f"turn p50 {res['turn_s_p50']:.2f} s, p95 {res['turn_s_p95']:.2f} s; errors {res['errors']}"
    )
    for m in res["misses"][:misses]:
        typer.echo(f"- [{m['task']}] {m['said']!r} -> {m['reply']!r} {m['calls']}: {m['why']}")
    suffix = f"-after-turn-h{res['history_turns']}" if after_turn else ""
    suffix += "-renamed" if rename else ""
    out = out or Path("runs/eval") / f"agent-{split}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    res["table"] = agent_table(res)
    out.write_text(json.dumps(res, indent=2))
    typer.echo(f"wrote {out}")


def _eval_conversations(
    split: str,
    n: int | None,
    out: Path | None,
    misses: int,
    folder: Path | None,
    history_turns: int | None,
) -> None:
    import json

    from switchboard.evals.agent import (
        CONVERSATIONS,
        conversation_table,
        evaluate_conversations,
    )

    res = evaluate_conversations(
        split=split,
        n=n or CONVERSATIONS,
        log=typer.echo,
        folder=folder,
        history_turns=history_turns,
    )
    typer.echo(conversation_table(res))
    typer.echo(
        f"{res['conversations']} conversations, {res['turns']} turns; whole conversations "
        f"right {res['conversation_success']:.3f}; chat/greeting/thanks turns that edited: "
        f"{res['chat_turns_that_edited']} of {res['chat_turns_with_picture']}; unasked "
        f"edits not run: {res['turns_with_refused_edits']} turns "
        f"({res['chat_turns_with_refused_edits']} chat); errors "
        f"{res['errors']}; {res['seconds']:.0f} s"
    )
    for m in res["misses"][:misses]:
        typer.echo(
            f"- [{m['script']} {m['position']}] {m['said']!r} -> {m['reply']!r} "
            f"{m['calls']}: {m['why']}"
        )
    out = out or Path("runs/eval") / f"conversations-{split}-h{res['history_turns']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    res["table"] = conversation_table(res)
    out.write_text(json.dumps(res, indent=2))
    typer.echo(f"wrote {out}")


@eval_app.command("all")
def eval_all(
    split: str = typer.Option("test"),
    quick: bool = typer.Option(False, help="A few items per eval: checks the pipeline only."),
    only: str | None = typer.Option(
        None, help="Comma-separated evals (default: all); the others' last results are kept."
    ),
    results: Path | None = typer.Option(
        None, help="The report to write (docs/RESULTS.md; a --quick run: runs/RESULTS-quick.md)."
    ),
    figures: Path | None = typer.Option(
        None, help="Folder for the plots (docs/results; a --quick run: runs/results-quick)."
    ),
    report_from: Path | None = typer.Option(
        None, help="Write the report from an earlier run's JSON instead of evaluating."
    ),
) -> None:
    """Every task's eval (segment, detect, track, edit, router, signals, agent) on the split,
    written to docs/RESULTS.md with the command, date, commit and plots."""
    import json
    import sys

    from switchboard.evals.report import EVALS, merge_runs, run_evals, save_json, write_report

    # A quick run checks the pipeline: its report never replaces the real one in docs/.
    results = results or Path("runs/RESULTS-quick.md" if quick else "docs/RESULTS.md")
    figures = figures or Path("runs/results-quick" if quick else "docs/results")

    if report_from is not None:
        res = json.loads(report_from.read_text())
        command = res.get("command", f"switchboard eval all --split {res['split']}")
        typer.echo(f"wrote {write_report(res, results, figures, command)}")
        return
    chosen = tuple(k.strip() for k in only.split(",") if k.strip()) if only else EVALS
    unknown = set(chosen) - set(EVALS)
    if unknown:
        raise typer.BadParameter(f"unknown evals {sorted(unknown)}; choose from {EVALS}")
    saved = saved_run("eval-all", split, quick)
    earlier = earlier_run(saved, chosen, EVALS, "switchboard eval all") if only else None
    res = new = run_evals(split, quick, chosen, log=typer.echo, figures=figures)
    if earlier is not None:  # some evals re-run: the others' results are kept
        res = merge_runs(earlier, new, chosen, "switchboard " + " ".join(sys.argv[1:]), "evals")
    command = (
        "switchboard " + " ".join(sys.argv[1:])
        if sys.argv[1:2] == ["eval"]
        else (f"switchboard eval all --split {split}" + (" --quick" if quick else ""))
    )
    res.setdefault("command", command)
    typer.echo(f"wrote {save_json(res, saved)}")
    md = write_report(res, results, figures, res["command"])
    typer.echo(f"wrote {md} ({res['seconds']['all'] / 60:.1f} min)")


def saved_run(kind: str, split: str | None, quick: bool) -> Path:
    """Where a run's JSON is kept: a full run beside the report it wrote (docs/results/, in
    the repository, so that ``--only`` on any clone keeps the other parts); a quick one, which
    checks the pipeline only, under runs/."""
    name = f"{kind}-{split}" if split else kind
    return Path("runs") / f"{name}-quick.json" if quick else Path("docs/results") / f"{name}.json"


def earlier_run(
    saved: Path, chosen: tuple[str, ...], parts: tuple[str, ...], whole: str
) -> dict[str, Any]:
    """The saved run that ``--only`` merges into, checked before anything is measured: every
    part not re-run must be in it, or the report would lose those parts."""
    import json

    earlier = json.loads(saved.read_text()) if saved.is_file() else {}
    lacking = [p for p in parts if p not in chosen and p not in earlier]
    if lacking:
        raise typer.BadParameter(
            f"--only keeps the other parts from {saved}, which lacks {', '.join(lacking)}: "
            f"run `{whole}` whole, or name them in --only too"
        )
    return earlier


@app.command("bench")
def bench(
    quick: bool = typer.Option(False, help="A few repeats per section: checks the pipeline only."),
    only: str | None = typer.Option(
        None, help="Comma-separated sections (default: all); the others' last results are kept."
    ),
    results: Path = typer.Option(Path("docs/RESULTS.md"), help="The report to write into."),
    report_from: Path | None = typer.Option(
        None, help="Write the report from an earlier run's JSON instead of measuring."
    ),
) -> None:
    """Speed and memory on this machine, each section in a fresh process: model loads (cold and
    cached), per-stage turn latency, hybrid single-pass vs text two-pass routing, lazy vs eager
    loading, server throughput under concurrent clients, specialists, router, kernels. Written
    into docs/RESULTS.md (its own section) and docs/results/bench.json."""
    import json
    import sys

    from switchboard.bench.sections import SECTIONS, run_bench, write_bench
    from switchboard.evals.report import merge_runs

    saved = saved_run("bench", None, quick)
    if report_from is not None:
        res = json.loads(report_from.read_text())
        typer.echo(f"wrote {write_bench(res, results, res['command'])}")
        return
    chosen = tuple(k.strip() for k in only.split(",") if k.strip()) if only else SECTIONS
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise typer.BadParameter(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    earlier = earlier_run(saved, chosen, SECTIONS, "switchboard bench") if only else None
    res = new = run_bench(quick, chosen, log=typer.echo)
    command = (
        "switchboard " + " ".join(sys.argv[1:])
        if sys.argv[1:2] == ["bench"]
        else ("switchboard bench" + (" --quick" if quick else ""))
    )
    if earlier is not None:  # some sections re-run: the others' results are kept
        res = merge_runs(earlier, new, chosen, command, "sections")
    res.setdefault("command", command)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(res, indent=2))
    typer.echo(f"wrote {saved}")
    md = write_bench(res, results, res["command"])
    typer.echo(f"wrote {md} ({res['seconds']['all'] / 60:.1f} min)")


@eval_app.command("plugin")
def eval_plugin(
    folder: Path = typer.Option(
        Path("runs/router/add-tools/model"), help="Router folder taught by --add-tools."
    ),
    tools: str | None = typer.Option(None, help="Comma-separated tools (default: all taught)."),
    split: str = typer.Option("test"),
    n: int = typer.Option(60, min=1, help="Requests per tool, in held-out phrasings."),
    out: Path | None = typer.Option(None, help="JSON file to write."),
) -> None:
    """How often the router calls each taught plugin tool correctly on its held-out phrasings
    (examples it never trained on) over held-out scenes."""
    import json

    from switchboard.router.inference import Router
    from switchboard.router.plugins import evaluate_plugins, taught_tools
    from switchboard.specialists import default_registry

    names = [t.strip() for t in tools.split(",") if t.strip()] if tools else taught_tools(folder)
    if not names:
        raise typer.BadParameter(f"{folder} was taught no plugin tools (see --add-tools)")
    res = evaluate_plugins(Router.load(folder, default_registry()), names, split, n)
    for name, v in res["tools"].items():
        typer.echo(
            f"{name}: tool {v['tool']:.3f}, exact call {v['exact']:.3f} over {v['requests']} "
            f"requests; held out: {v['held_out_phrasings']}"
        )
    out = out or Path("runs/eval") / f"plugin-{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    typer.echo(f"wrote {out}")


def _parse_box(box: str | None) -> list[float] | None:
    if box is None:
        return None
    parts = box.replace(",", " ").split()
    if len(parts) != 4:
        raise typer.BadParameter(f"a box is four numbers x1 y1 x2 y2, got {box!r}")
    return [float(v) for v in parts]


def _print_turn(turn: object) -> None:
    for c in turn.calls:  # type: ignore[attr-defined]
        typer.echo(f"  [{c.tool} {c.status} {c.seconds:.2f} s] {c.observation}")
    typer.echo(turn.text)  # type: ignore[attr-defined]


@app.command("run")
def run_once(
    request: str = typer.Argument(..., help="what to do, e.g. 'remove the red circle'"),
    image: Path | None = typer.Option(None, help="an image file"),
    video: Path | None = typer.Option(None, help="a video file (mp4, gif, …)"),
    box: str | None = typer.Option(None, help="a region: 'x1 y1 x2 y2' in pixels"),
    out: Path = typer.Option(Path("out"), help="folder for the reply, calls and artifacts"),
    session: str | None = typer.Option(None, help="continue this session"),
    home: Path | None = typer.Option(None, help="conversations folder (SWITCHBOARD_HOME)"),
    signals: bool = typer.Option(
        True,
        "--signals/--no-signals",
        help="Hybrid calls (the default): send the router's signal embeddings with its calls; "
        "--no-signals: text calls only.",
    ),
    memory_budget_mb: float | None = typer.Option(
        None,
        min=1,
        help="Unload least recently used specialists over this resident memory "
        "(MiB; SWITCHBOARD_MEMORY_BUDGET_MB).",
    ),
) -> None:
    """One request, one turn: print the reply and write it with its artifacts to --out."""
    from switchboard.agent import Agent
    from switchboard.core.errors import SwitchboardError

    try:
        agent = Agent.load(home=home, signals=signals, **_budget(memory_budget_mb))
        turn = agent.chat(
            request, image=image, video=video, region=_parse_box(box), session=session
        )
    except SwitchboardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print_turn(turn)
    written = turn.save(out)
    typer.echo(f"session {turn.session}; wrote {len(written)} files to {out}")


def _budget(mb: float | None) -> dict[str, float]:
    """The memory budget given on the command line (else the setting applies)."""
    return {} if mb is None else {"memory_budget_mb": mb}


@app.command("chat")
def chat(
    home: Path | None = typer.Option(None, help="conversations folder (SWITCHBOARD_HOME)"),
    session: str | None = typer.Option(None, help="continue this session"),
    signals: bool = typer.Option(
        True,
        "--signals/--no-signals",
        help="Hybrid calls (the default): send the router's signal embeddings with its calls; "
        "--no-signals: text calls only.",
    ),
    memory_budget_mb: float | None = typer.Option(
        None,
        min=1,
        help="Unload least recently used specialists over this resident memory "
        "(MiB; SWITCHBOARD_MEMORY_BUDGET_MB).",
    ),
) -> None:
    """A terminal chat: /image PATH, /video PATH, /box X1 Y1 X2 Y2, /new, /quit."""
    from switchboard.agent import Agent
    from switchboard.core.errors import SwitchboardError

    agent = Agent.load(home=home, signals=signals, **_budget(memory_budget_mb))
    media: dict[str, object] = {}
    typer.echo("switchboard chat: /image PATH, /video PATH, /box X1 Y1 X2 Y2, /new, /quit")
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            continue
        cmd, _, rest = line.partition(" ")
        if cmd == "/quit":
            break
        if cmd == "/new":
            session, media = None, {}
            continue
        if cmd in ("/image", "/video"):
            media = {cmd[1:]: Path(rest.strip())}
            typer.echo(f"{cmd[1:]}: {rest.strip()}")
            continue
        if cmd == "/box":
            try:
                media["region"] = _parse_box(rest)
            except typer.BadParameter as exc:
                typer.echo(f"error: {exc}")
            continue
        try:
            turn = agent.chat(line, session=session, **media)  # type: ignore[arg-type]
        except SwitchboardError as exc:
            typer.echo(f"error: {exc}")
            continue
        session = turn.session
        media.pop("region", None)
        _print_turn(turn)


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port"),
    home: Path | None = typer.Option(None, help="conversations folder (SWITCHBOARD_HOME)"),
    signals: bool = typer.Option(
        True,
        "--signals/--no-signals",
        help="Hybrid calls (the default): send the router's signal embeddings with its calls; "
        "--no-signals: text calls only.",
    ),
    memory_budget_mb: float | None = typer.Option(
        None,
        min=1,
        help="Unload least recently used specialists over this resident memory "
        "(MiB; SWITCHBOARD_MEMORY_BUDGET_MB).",
    ),
    ray: bool = typer.Option(
        False,
        "--ray",
        help="Run every specialist and the router as Ray Serve deployments "
        "(pip install 'switchboard[ray]'; docs/deploy.md).",
    ),
    ray_address: str | None = typer.Option(
        None, help="with --ray: join this cluster ('auto': this machine's); else start one"
    ),
    serve_config: Path | None = typer.Option(
        None, help="with --ray: replicas, CPUs/GPUs and resources per tool (serve.yaml)"
    ),
) -> None:
    """The web page and the HTTP API (FastAPI; OpenAPI at /docs) over the embedded agent. Set
    SWITCHBOARD_API_TOKEN to require bearer tokens (comma-separated: one owner each)."""
    import uvicorn
    from switchboard.agent import Agent
    from switchboard.ui.server import create_app

    typer.echo("loading the agent (router, specialists on first use)…")
    # Interrupted turns are resumed on a thread: the server answers at once.
    backend = {"backend": "ray", "ray_address": ray_address, "serve_config": serve_config}
    agent = Agent.load(
        home=home,
        signals=signals,
        recover="background",
        **(backend if ray else {}),
        **_budget(memory_budget_mb),
    )
    app_ = create_app(agent)
    typer.echo(f"Switchboard: open http://{host}:{port}/ (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command("mcp")
def mcp(
    http: bool = typer.Option(
        False, "--http", help="streamable HTTP at http://HOST:PORT/mcp instead of stdio"
    ),
    host: str = typer.Option("127.0.0.1", help="with --http: address to listen on"),
    port: int = typer.Option(8001, help="with --http: port"),
    home: Path | None = typer.Option(None, help="conversations folder (SWITCHBOARD_HOME)"),
    signals: bool = typer.Option(
        True, "--signals/--no-signals", help="the chat tool's calls carry signal embeddings"
    ),
) -> None:
    """The specialists and the agent's chat as Model Context Protocol tools (docs/integrations.md):
    over stdio for an MCP client that starts this command, or over streamable HTTP (--http;
    SWITCHBOARD_API_TOKEN's bearer tokens are required when set)."""
    from switchboard.agent import Agent
    from switchboard.ui import mcp as mcp_server

    # The router loads on the chat tool's first call. Over stdio, stdout is the wire: what the
    # libraries print while loading goes to stderr (while serving, the SDK points fd 1 there).
    with contextlib.redirect_stdout(sys.stderr):
        agent = Agent.load(home=home, signals=signals, recover="background")
    try:
        if not http:
            mcp_server.serve_stdio(agent)
            return
        import uvicorn
        from switchboard.core.config import get_settings

        raw = get_settings().api_token or ""
        tokens = [t.strip() for t in raw.split(",") if t.strip()]
        typer.echo(f"Switchboard MCP: http://{host}:{port}/mcp", err=True)
        uvicorn.run(mcp_server.http_app(agent, tokens, host), host=host, port=port,
                    log_level="warning")  # fmt: skip
    finally:
        agent.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
