"""Model cards for the checkpoints under ``trained_models/``: rendered from what training
(``train.json``) and held-out evaluation (``eval-<split>.json``) wrote beside the weights."""

from __future__ import annotations

import json
from pathlib import Path

LICENSES = {
    "segment-tiny": "AGPL-3.0-or-later (weights trained here; segment-anything code is Apache-2.0)",
    "detect-tiny": "AGPL-3.0 (Ultralytics YOLOv8 architecture); weights trained here from scratch",
    "edit-tiny": "Apache-2.0 (diffusers architectures, MiniLM conditioning); weights trained here",
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
        "switchboard train edit --preset tiny",
        "switchboard eval edit --split test --card",
    ),
}


def _table(d: dict) -> str:
    rows = ["| key | value |", "|---|---|"]
    for k, v in d.items():
        rows.append(f"| {k} | {round(v, 4) if isinstance(v, float) else v} |")
    return "\n".join(rows)


def write_model_card(folder: Path) -> Path:
    """(Re)write ``folder/README.md`` from the JSON files in ``folder``."""
    folder = Path(folder)
    name = folder.name
    train_cmd, eval_cmd = COMMANDS.get(name, ("", ""))
    parts = [f"# {name}", "", f"License: {LICENSES.get(name, 'see the project license')}.", ""]
    weights = (
        "diffusers `save_pretrained` folders (`vae/`, `unet/`, `scheduler/`, fp16 safetensors)"
        if (folder / "model_index.json").exists()
        else "`model.safetensors` (fp16) with `config.json`"
    )
    parts += [
        f"Weights: {weights}; data: ShapeWorld, generated from seeds (no files), so the numbers "
        "below can be reproduced exactly.",
        "",
    ]
    if (folder / "train.json").exists():
        parts += [
            "## Training",
            "",
            f"`{train_cmd}`",
            "",
            _table(json.loads((folder / "train.json").read_text())),
            "",
        ]
        previous = json.loads((folder / "train.json").read_text()).get("previous_stage")
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
            _table(json.loads(path.read_text())),
            "",
        ]
    out = folder / "README.md"
    out.write_text("\n".join(parts))
    return out
