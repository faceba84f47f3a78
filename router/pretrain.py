"""Stage ``vision``: pretrain our ViT on ShapeWorld's dense labels before it meets the LLM.

LLaVA-style routers start from a vision tower that already sees (CLIP, trained on hundreds of
millions of pairs). We cannot download one, and training our tower from scratch *through* the
135M LLM costs ~15 s per batch of 8 on two cores — far too slow to learn to see. So the tower
first learns, with cheap heads and no LLM, what ShapeWorld labels say is in each patch:

- per patch: the colour, shape and size of the object covering it (or background), and the
  distances from the patch centre to that object's box edges (FCOS-style, so every patch feature
  knows its object's extent: what grounding needs);
- per image: the background kind and the number of objects (what counting needs).

The heads are thrown away; ``align`` then maps features that already mean something into the
LLM. Held-out patch accuracies (val scenes) go into ``train.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from switchboard.world.scene import BACKGROUNDS, COLOR_NAMES, SHAPES, SIZES, Scene, generate_scene
from switchboard.world.splits import SPLITS, split_seeds
from torch import nn

from .vision import to_pixels

MIN_COVER = 0.2  # a patch belongs to an object when at least this share of it shows the object
MAX_OBJECTS = 8


# The tower router-tiny trains (router/vision.py: DetectorStem): our detector's features, frozen,
# under 3 trainable transformer blocks.
TOWER = {"stem": "detector", "depth": 3}


@dataclass
class VisionPreset:
    steps: int
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 50
    minutes: float = 0.0
    checkpoint_every: int = 100
    val_scenes: int = 64
    # The tower to train (ViTConfig fields over the router's own); a router whose tower differs
    # gets a fresh one of this kind (router-tiny's first tower was a plain patchify ViT).
    vit: dict[str, Any] | None = None


VISION_PRESETS = {
    "tiny": VisionPreset(steps=3000, batch=16, minutes=25, vit=dict(TOWER)),
    # One H100/H200: the vision stage's share of the gpu recipe's 9-minute call.
    "gpu": VisionPreset(steps=6000, batch=128, minutes=1.5, vit=dict(TOWER)),
    "smoke": VisionPreset(steps=2, batch=2, warmup=1, checkpoint_every=1, val_scenes=2),
}


def patch_labels(scene: Scene, grid: int) -> dict[str, np.ndarray]:
    """Per-patch targets of one scene on a ``grid``×``grid`` patch grid (row-major, y first).

    ``color``/``shape``/``size``: class index + 1 of the object covering the most of the patch
    (at least ``MIN_COVER`` of it), 0 for background; ``ltrb``: distances from the patch centre
    to that object's box edges over the image side; ``box``: that object's XYXY box over the
    image side, so a patch feature states where its object is in absolute terms, the numbers
    grounding writes (0 for background patches).
    """
    s = scene.size
    n = len(scene.objects)
    cover = np.zeros((n + 1, grid, grid), np.float32)
    cover[0] = MIN_COVER  # background wins unless an object covers at least MIN_COVER
    for i, m in enumerate(scene.masks):
        cover[i + 1] = m.reshape(grid, s // grid, grid, s // grid).mean(axis=(1, 3))
    owner = cover.argmax(0).reshape(-1)  # 0 = background, else object index + 1
    out = {k: np.zeros(grid * grid, np.int64) for k in ("color", "shape", "size")}
    ltrb = np.zeros((grid * grid, 4), np.float32)
    xyxy = np.zeros((grid * grid, 4), np.float32)
    centres = (np.arange(grid) + 0.5) * (s / grid)
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    cx, cy = cx.reshape(-1), cy.reshape(-1)
    for p in np.nonzero(owner)[0]:
        obj = scene.objects[owner[p] - 1]
        out["color"][p] = COLOR_NAMES.index(obj.color) + 1
        out["shape"][p] = SHAPES.index(obj.shape) + 1
        out["size"][p] = list(SIZES).index(obj.size) + 1
        x1, y1, x2, y2 = scene.boxes[owner[p] - 1]
        ltrb[p] = [cx[p] - x1, cy[p] - y1, x2 - cx[p], y2 - cy[p]]
        xyxy[p] = [x1, y1, x2, y2]
    out["ltrb"] = ltrb / s
    out["box"] = xyxy / s
    return out


class DenseHeads(nn.Module):
    """Linear heads over the tower's patch features (and their mean, for image labels)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.color = nn.Linear(width, len(COLOR_NAMES) + 1)
        self.shape = nn.Linear(width, len(SHAPES) + 1)
        self.size = nn.Linear(width, len(SIZES) + 1)
        self.ltrb = nn.Linear(width, 4)
        self.box = nn.Linear(width, 4)
        self.background = nn.Linear(width, len(BACKGROUNDS))
        self.count = nn.Linear(width, MAX_OBJECTS + 1)

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = feats.mean(1)
        return {
            "color": self.color(feats),
            "shape": self.shape(feats),
            "size": self.size(feats),
            "ltrb": self.ltrb(feats),
            "box": self.box(feats),
            "background": self.background(pooled),
            "count": self.count(pooled),
        }


def batch_targets(scenes: list[Scene], grid: int) -> dict[str, torch.Tensor]:
    labels = [patch_labels(sc, grid) for sc in scenes]
    t = {k: torch.from_numpy(np.stack([lab[k] for lab in labels])) for k in labels[0]}
    t["background"] = torch.tensor([BACKGROUNDS.index(sc.background.kind) for sc in scenes])
    t["count"] = torch.tensor([min(len(sc.objects), MAX_OBJECTS) for sc in scenes])
    return t


def dense_loss(out: dict[str, torch.Tensor], t: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = sum(
        F.cross_entropy(out[k].flatten(0, 1), t[k].flatten()) for k in ("color", "shape", "size")
    )
    fg = t["color"] > 0
    if fg.any():
        loss = loss + 5 * F.smooth_l1_loss(out["ltrb"][fg], t["ltrb"][fg], beta=0.05)
        loss = loss + 5 * F.smooth_l1_loss(out["box"][fg], t["box"][fg], beta=0.05)
    loss = loss + F.cross_entropy(out["background"], t["background"])
    return loss + F.cross_entropy(out["count"], t["count"])


def object_accuracy(logits: torch.Tensor, scenes: list[Scene], grid: int, key: str) -> float:
    """Per object, the class read off the patch it covers most (what a reader of the patch
    tokens sees at the object's heart, rather than on its edge patches), against the truth."""
    names = SHAPES if key == "shape" else COLOR_NAMES
    hits = []
    for b, sc in enumerate(scenes):
        s = sc.size
        for i, obj in enumerate(sc.objects):
            cover = sc.masks[i].reshape(grid, s // grid, grid, s // grid).mean(axis=(1, 3))
            p = int(cover.reshape(-1).argmax())
            hits.append(int(logits[b, p].argmax()) == names.index(getattr(obj, key)) + 1)
    return float(np.mean(hits)) if hits else 0.0


@torch.no_grad()
def evaluate_dense(vision: nn.Module, heads: DenseHeads, scenes: list[Scene]) -> dict[str, float]:
    """Held-out accuracies: per-patch colour/shape on object patches, background patches told
    apart from object patches, background kind and object count per image."""
    was = vision.training
    vision.eval()
    feats = torch.cat(
        [
            vision(to_pixels([sc.image for sc in scenes[i : i + 16]], vision.image_size))
            for i in range(0, len(scenes), 16)
        ]
    )
    out = heads(feats)
    t = batch_targets(scenes, vision.grid)
    fg = t["color"] > 0
    res = {
        "patch_color_acc": float((out["color"].argmax(-1) == t["color"])[fg].float().mean()),
        "patch_shape_acc": float((out["shape"].argmax(-1) == t["shape"])[fg].float().mean()),
        "patch_object_vs_background_acc": float(
            ((out["color"].argmax(-1) > 0) == fg).float().mean()
        ),
        "ltrb_mae_px": float((out["ltrb"][fg] - t["ltrb"][fg]).abs().mean() * scenes[0].size),
        "box_mae_px": float((out["box"][fg] - t["box"][fg]).abs().mean() * scenes[0].size),
        "background_acc": float((out["background"].argmax(-1) == t["background"]).float().mean()),
        "count_acc": float((out["count"].argmax(-1) == t["count"]).float().mean()),
        "object_shape_acc": object_accuracy(out["shape"], scenes, vision.grid, "shape"),
        "object_color_acc": object_accuracy(out["color"], scenes, vision.grid, "color"),
    }
    vision.train(was)
    return res


def pretrain_vision(router: Any, preset_name: str, run: Path) -> dict[str, Any]:
    """Train ``router.vision`` with dense heads (resumable from ``run/vision_state.pt``);
    returns the record for ``train.json``. The router itself is saved by the caller."""
    from switchboard.specialists.training import fit

    preset = VISION_PRESETS[preset_name]
    if not hasattr(router.vision, "config"):
        raise ValueError("the vision stage pretrains our ShapeViT; a hub tower is used as it is")
    want = {**asdict(router.vision.config), **(preset.vit or {})}
    if want != asdict(router.vision.config):
        router.replace_vision(want)
        if want["stem"] == "detector":
            router.vision.patch.load_detector()
    vision = router.vision
    size = vision.image_size
    heads = DenseHeads(vision.width)
    params = list(vision.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=0.05)
    vision.train()
    lo, _ = SPLITS["train"]

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng([step, 23])
        scenes = [generate_scene(lo + int(rng.integers(0, 900_000))) for _ in range(preset.batch)]
        feats = vision(to_pixels([sc.image for sc in scenes], size))
        return dense_loss(heads(feats), batch_targets(scenes, vision.grid))

    fitted = fit(
        "vision",
        loss_at,
        params,
        opt,
        steps=preset.steps,
        lr=preset.lr,
        warmup=preset.warmup,
        minutes=preset.minutes,
        checkpoint_every=preset.checkpoint_every,
        state_path=run / "vision_state.pt",
        modules={"vision": vision, "heads": heads},
    )
    val = [generate_scene(s) for s in split_seeds("val", preset.val_scenes)]
    metrics = evaluate_dense(vision, heads, val)
    record = {
        "stage": "vision",
        "preset": preset_name,
        **asdict(preset),
        **fitted.summary(20),
        "train_seed_range": [lo, lo + 900_000],
        "val": metrics,
    }
    (run / "train.json").write_text(json.dumps(record, indent=2))
    return {"record": record, "history": fitted.history}
