"""Train the tiny SAM of the segment specialist on ShapeWorld.

    switchboard train segment --preset tiny     # ~35 min on 2 CPU cores
    switchboard train segment --preset smoke    # a few steps; what CI runs

Every step draws fresh training scenes (train seed range), embeds each image once and prompts
every object against that embedding: a jittered box (single mask) or clicks (one positive
point, sometimes more points, multimask with the best-of-3 loss, as in SAM). Loss: BCE + Dice on
full-resolution logits, plus MSE of the IoU head. Writes ``trained_models/segment-tiny/``
(fp16 safetensors, config.json, loss.png, train.json); resumes from ``runs/segment/<preset>``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from switchboard.core.config import models_dir
from switchboard.world.scene import generate_scene
from switchboard.world.splits import SPLITS

from .sam import TINY_CONFIG, SignalSam, build_sam_tiny
from .training import fit, plot_losses


@dataclass
class SegmentPreset:
    steps: int
    batch_images: int = 4
    max_prompts: int = 8  # objects prompted per image and step
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    point_share: float = 0.5  # share of prompts that are clicks instead of boxes
    box_jitter: float = 0.08  # box corners move by up to this share of the box side
    checkpoint_every: int = 200
    time_limit_min: float = 0.0  # stop early (and save) after this long; 0 = no limit
    # Clutter: this share of the step's images are crowded scenes (``crowded_objects`` shapes
    # asked for), and a prompt's loss is weighted ``1 + clutter_weight * min(k, 2)`` where ``k``
    # is the number of other objects showing inside its box (where box prompts fail: masks that
    # take in the neighbour).
    crowded_share: float = 0.0
    crowded_objects: tuple[int, int] = (6, 8)
    clutter_weight: float = 0.0
    # Start from these weights (a folder with model.safetensors, e.g. the committed model) when
    # the run has no state of its own yet; the optimizer starts fresh with its own warmup.
    init_from: str = ""


PRESETS = {
    "tiny": SegmentPreset(steps=600, warmup=50, time_limit_min=20),
    # Continue the committed model: a warm restart of the cosine schedule, annealed over
    # whichever runs out first, the steps or the time budget.
    "tiny-long": SegmentPreset(
        steps=3000, lr=8e-4, warmup=30, time_limit_min=90, init_from="segment-tiny"
    ),
    # A last low-learning-rate pass over the committed model.
    "tiny-polish": SegmentPreset(
        steps=3000, lr=2e-4, warmup=20, time_limit_min=25, init_from="segment-tiny"
    ),
    # Continue the committed model on cluttered scenes (see docs/perception.md, "where the
    # remaining error is").
    "tiny-clutter": SegmentPreset(
        steps=3000,
        lr=4e-4,
        warmup=30,
        time_limit_min=60,
        init_from="segment-tiny",
        crowded_share=0.5,
        clutter_weight=1.0,
    ),
    # A last low-learning-rate pass of the clutter mix over the committed model.
    "tiny-clutter-polish": SegmentPreset(
        steps=3000,
        lr=1.5e-4,
        warmup=20,
        time_limit_min=25,
        init_from="segment-tiny",
        crowded_share=0.5,
        clutter_weight=1.0,
    ),
    "smoke": SegmentPreset(steps=3, batch_images=2, max_prompts=3, warmup=1, checkpoint_every=2),
}


def _dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask BCE + Dice; ``logits``/``target`` ``[P, C, H, W]`` → ``[P, C]``."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(2, 3))
    prob = logits.sigmoid()
    inter = (prob * target).sum(dim=(2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) + 1)
    return bce + dice


def _prompts(
    mask: np.ndarray, box: np.ndarray, rng: np.random.Generator, jitter: float, as_points: bool
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(points [N, 2], labels [N], box [4]) for one object, in pixels."""
    if not as_points:
        w, h = box[2] - box[0], box[3] - box[1]
        noise = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
        return None, None, box + noise
    ys, xs = np.nonzero(mask)
    k = int(rng.integers(len(xs)))
    pts, labels = [[xs[k] + 0.5, ys[k] + 0.5]], [1]
    for _ in range(int(rng.integers(0, 3))):  # sometimes more clicks, positive or negative
        if rng.random() < 0.5:
            k = int(rng.integers(len(xs)))
            pts.append([xs[k] + 0.5, ys[k] + 0.5])
            labels.append(1)
        else:
            oy, ox = np.nonzero(~mask)
            k = int(rng.integers(len(ox)))
            pts.append([ox[k] + 0.5, oy[k] + 0.5])
            labels.append(0)
    return np.array(pts, float), np.array(labels), None


def step_loss(
    sam: SignalSam, seeds: list[int], preset: SegmentPreset, rng: np.random.Generator
) -> torch.Tensor:
    """The loss of one step over the scenes of ``seeds``."""
    size = sam.image_encoder.img_size
    scenes = []
    for s in seeds:
        n = None
        if preset.crowded_share > 0 and rng.random() < preset.crowded_share:
            n = int(rng.integers(preset.crowded_objects[0], preset.crowded_objects[1] + 1))
        scenes.append(generate_scene(s, size=size, num_objects=n))
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in scenes])
    emb = sam.image_encoder(sam.preprocess(images))  # [B, C, h, w]
    pe = sam.prompt_encoder.get_dense_pe()
    losses, weights = [], []
    for b, scene in enumerate(scenes):
        order = rng.permutation(len(scene.objects))[: preset.max_prompts]
        clutter = np.minimum(scene.others_in_box(), 2) * preset.clutter_weight + 1.0
        for as_points in (False, True):
            chosen = [i for i in order if (rng.random() < preset.point_share) == as_points]
            if not chosen:
                continue
            prompts = [
                _prompts(scene.masks[i], scene.boxes[i], rng, preset.box_jitter, as_points)
                for i in chosen
            ]
            if as_points:
                n = max(len(p[0]) for p in prompts)
                # Pad click lists with "not a point" (label -1), as SAM's prompt encoder expects.
                coords = torch.zeros(len(chosen), n, 2)
                labels = torch.full((len(chosen), n), -1, dtype=torch.int)
                for j, (pts, lab, _) in enumerate(prompts):
                    coords[j, : len(pts)] = torch.from_numpy(pts).float()
                    labels[j, : len(lab)] = torch.from_numpy(lab).int()
                sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            else:
                boxes = torch.from_numpy(np.stack([p[2] for p in prompts])).float()
                sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
            low, iou_pred = sam.mask_decoder(
                image_embeddings=emb[b : b + 1],
                image_pe=pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=as_points,
            )
            logits = F.interpolate(
                low, size=images.shape[-2:], mode="bilinear", align_corners=False
            )
            target = torch.from_numpy(scene.masks[chosen]).float()[:, None].expand_as(logits)
            per_mask = _dice_bce(logits, target)  # [P, C]
            with torch.no_grad():
                pred = logits > 0
                inter = (pred & (target > 0.5)).sum(dim=(2, 3)).float()
                union = (pred | (target > 0.5)).sum(dim=(2, 3)).float().clamp(min=1)
                true_iou = inter / union
            best = per_mask.argmin(dim=1)  # multimask: only the best candidate is trained
            rows = torch.arange(len(chosen))
            losses.append(
                per_mask[rows, best] + F.mse_loss(iou_pred, true_iou, reduction="none").mean(dim=1)
            )
            weights.append(torch.from_numpy(clutter[chosen]).float())
    w = torch.cat(weights)
    return (torch.cat(losses) * w).sum() / w.sum()


def save_checkpoint(sam: SignalSam, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in sam.state_dict().items()
    }
    save_file(state, out / "model.safetensors")
    (out / "config.json").write_text(json.dumps({"builder": "tiny", **TINY_CONFIG}, indent=2))


def train(
    preset_name: str = "tiny", out: Path | None = None, work: Path = Path("runs/segment")
) -> Path:
    preset = PRESETS[preset_name]
    out = out or models_dir() / "segment-tiny"
    run = work / preset_name
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sam = build_sam_tiny().train()
    opt = torch.optim.AdamW(sam.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    state_path = run / "state.pt"
    if preset.init_from and not state_path.exists():
        from .sam import load_sam_weights

        src = Path(preset.init_from)
        src = src if src.is_absolute() or src.exists() else models_dir() / src
        load_sam_weights(sam, src / "model.safetensors" if src.is_dir() else src)
        sam.train()
    lo, _ = SPLITS["train"]

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng([step, 1])
        seeds = [lo + int(s) for s in rng.integers(0, 900_000, preset.batch_images)]
        return step_loss(sam, seeds, preset, rng)

    fitted = fit(
        "segment",
        loss_at,
        list(sam.parameters()),
        opt,
        steps=preset.steps,
        lr=preset.lr,
        warmup=preset.warmup,
        minutes=preset.time_limit_min,
        checkpoint_every=preset.checkpoint_every,
        state_path=state_path,
        modules={"model": sam},
    )
    sam.eval()
    save_checkpoint(sam, out)
    plot_losses({"BCE + Dice + IoU MSE": fitted.history}, out / "loss.png", title="segment-tiny")
    previous = None
    if preset.init_from and (out / "train.json").exists():  # keep the record of the stage before
        previous = json.loads((out / "train.json").read_text())
    (out / "train.json").write_text(
        json.dumps(
            {
                "preset": preset_name,
                **asdict(preset),
                "final_lr": fitted.last_lr,
                **fitted.summary(50),
                "train_seed_range": [lo, lo + 900_000],
                **({"previous_stage": previous} if previous else {}),
            },
            indent=2,
        )
    )
    return out
