"""Train the detect specialist's YOLO from scratch on ShapeWorld.

    switchboard train detect --preset tiny      # ~50 min on 2 CPU cores
    switchboard train detect --preset smoke     # seconds; what CI runs

Writes ``trained_models/detect-tiny/``: ``model.safetensors`` (fp16), ``config.json``,
``loss.png`` and ``README.md`` (the model card). Fully offline: the model is built from its YAML
(no pretrained download), plots are off, and Ultralytics never fetches a font.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from switchboard.core.config import models_dir
from switchboard.world.export import class_names, export_yolo
from switchboard.world.splits import SPLITS


@dataclass
class DetectPreset:
    n_train: int
    n_val: int
    epochs: int
    imgsz: int = 256
    batch: int = 32
    arch: str = "yolov8n.yaml"
    close_mosaic: int = 5
    truncate_prob: float = 0.0  # share of objects cut by the image border
    train_offset: int = 0  # first training seed (a fine-tune sees new scenes)
    init_from: str | None = None  # fine-tune from this trained_models/ folder
    lr0: float = 0.01
    warmup_epochs: float = 3.0


PRESETS = {
    "tiny": DetectPreset(n_train=1000, n_val=100, epochs=30),
    # Second stage: objects cut by the border, as in videos where shapes enter and leave.
    "tiny-ft": DetectPreset(
        n_train=1000,
        n_val=100,
        epochs=8,
        close_mosaic=3,
        truncate_prob=0.3,
        train_offset=1000,
        init_from="detect-tiny",
        lr0=0.002,
        warmup_epochs=0,
    ),
    "smoke": DetectPreset(n_train=12, n_val=4, epochs=1, imgsz=128, batch=4, close_mosaic=0),
}


def _plot_losses(results_csv: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(results_csv.open()))
    if not rows:
        return
    rows = [{k.strip(): v for k, v in r.items()} for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
        if key in rows[0]:
            ax.plot([int(r["epoch"]) for r in rows], [float(r[key]) for r in rows], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("detect-tiny training loss")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def export_checkpoint(best_pt: Path, out: Path, preset: DetectPreset) -> None:
    """Ultralytics ``best.pt`` → fp16 safetensors + config.json (no pickles committed)."""
    ckpt = torch.load(best_pt, map_location="cpu", weights_only=False)
    model = ckpt["model"]
    state = {
        k: v.half().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()
    }
    state |= {k: v.contiguous() for k, v in model.state_dict().items() if not v.is_floating_point()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, out / "model.safetensors")
    names = [model.names[i] for i in range(len(model.names))]
    (out / "config.json").write_text(
        json.dumps({"arch": preset.arch, "names": names, "imgsz": preset.imgsz}, indent=2)
    )


def _as_ultralytics_pt(folder: Path, path: Path) -> Path:
    """Our safetensors checkpoint as the ``.pt`` Ultralytics' trainer starts a fine-tune from
    (a temporary file under ``runs/``, never committed)."""
    from .detect import load_yolo

    net = load_yolo(folder, fuse=False).model
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net, "train_args": {}}, path)
    return path


def train(
    preset_name: str = "tiny", out: Path | None = None, work: Path = Path("runs/detect")
) -> Path:
    from ultralytics import YOLO

    preset = PRESETS[preset_name]
    out = out or models_dir() / "detect-tiny"
    data_dir = work / f"data-{preset_name}"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    yaml = export_yolo(
        data_dir,
        preset.n_train,
        preset.n_val,
        size=preset.imgsz,
        label="shape",
        truncate_prob=preset.truncate_prob,
        train_offset=preset.train_offset,
    )
    t0 = time.time()
    if preset.init_from:
        model = YOLO(str(_as_ultralytics_pt(models_dir() / preset.init_from, work / "init.pt")))
    else:
        model = YOLO(preset.arch)
    model.train(
        lr0=preset.lr0,
        warmup_epochs=preset.warmup_epochs,
        data=str(yaml),
        epochs=preset.epochs,
        imgsz=preset.imgsz,
        batch=preset.batch,
        device="cpu",
        workers=2,
        pretrained=bool(preset.init_from),  # a fine-tune starts from init_from's weights
        amp=False,
        plots=False,
        val=False,
        cache="ram",
        close_mosaic=preset.close_mosaic,
        project=str(work.resolve()),
        name=preset_name,
        exist_ok=True,
        seed=0,
        deterministic=True,
        verbose=True,
    )
    wall = time.time() - t0
    run = work.resolve() / preset_name
    weights = run / "weights" / "best.pt"
    if not weights.exists():
        weights = run / "weights" / "last.pt"
    if preset.init_from and (out / "loss.png").exists():
        (out / "loss.png").rename(out / f"loss-{preset.init_from}.png")
    export_checkpoint(weights, out, preset)
    if (run / "results.csv").exists():
        _plot_losses(run / "results.csv", out / "loss.png")
    lo = SPLITS["train"][0]
    previous = None
    if preset.init_from and (out / "train.json").exists():
        previous = json.loads((out / "train.json").read_text())
    (out / "train.json").write_text(
        json.dumps(
            {
                "preset": preset_name,
                **asdict(preset),
                "wall_time_s": round(wall, 1),
                "train_seeds": [
                    lo + preset.train_offset,
                    lo + preset.train_offset + preset.n_train,
                ],
                "val_split": "val",
                "classes": class_names("shape"),
                "previous_stage": previous,
            },
            indent=2,
        )
    )
    return out
