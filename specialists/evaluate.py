"""Held-out evaluation of the perception specialists on ShapeWorld (test split by default).

    switchboard eval segment --split test --n 200
    switchboard eval detect --split test --n 200
    switchboard eval track --split test --n 30

Each returns a dict of metrics (and the CLI prints a table and writes JSON).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from switchboard.core import Image, Video
from switchboard.world.metrics import box_ap, box_iou, mask_iou, mot_metrics
from switchboard.world.scene import SHAPES, generate_scene
from switchboard.world.splits import split_seeds
from switchboard.world.video import generate_video

from .colors import color_in_box
from .segment import innermost_point


def evaluate_segment(seg: Any, split: str = "test", n: int = 200) -> dict[str, Any]:
    """Box-prompt and one-positive-point mIoU over every object of ``n`` scenes."""
    box_ious, point_ious, sizes = [], [], []
    t0 = time.time()
    for seed in split_seeds(split, n):
        scene = generate_scene(seed)
        img = Image(pixels=scene.image)
        for obj, m, box in zip(scene.objects, scene.masks, scene.boxes, strict=True):
            out = seg(img, {"box": tuple(float(v) for v in box)})
            box_ious.append(mask_iou(out.masks[0], m))
            out = seg(img, {"points": [innermost_point(m)], "point_labels": [1]})
            point_ious.append(mask_iou(out.masks[0], m))
            sizes.append(obj.size)
    sizes_arr = np.array(sizes)
    res: dict[str, Any] = {
        "split": split,
        "scenes": n,
        "objects": len(box_ious),
        "box_mIoU": float(np.mean(box_ious)),
        "point_mIoU": float(np.mean(point_ious)),
        "seconds": round(time.time() - t0, 1),
    }
    for size in ("small", "medium", "large"):
        sel = sizes_arr == size
        if sel.any():
            res[f"box_mIoU_{size}"] = float(np.mean(np.array(box_ious)[sel]))
    return res


def evaluate_detect(det: Any, split: str = "test", n: int = 200) -> dict[str, Any]:
    """COCO box AP over shape classes, and how often the colour word of a match is right."""
    gt, pred = [], []
    color_right = color_total = 0
    t0 = time.time()
    names = det.class_names
    for seed in split_seeds(split, n):
        scene = generate_scene(seed)
        boxes, scores, cls = det.detect_all(scene.image, conf=0.001)
        gt.append({"boxes": scene.boxes, "labels": [o.shape for o in scene.objects]})
        pred.append({"boxes": boxes, "labels": [names[c] for c in cls], "scores": scores})
        keep = scores >= 0.35
        if keep.any() and len(scene.objects):
            iou = box_iou(scene.boxes, boxes[keep])
            for k, obj in enumerate(scene.objects):
                j = int(np.argmax(iou[k]))
                if iou[k, j] >= 0.5:
                    color_total += 1
                    color_right += int(
                        color_in_box(scene.image, tuple(boxes[keep][j])) == obj.color
                    )
    ap = box_ap(gt, pred, [s for s in SHAPES if s in names] or names)
    return {
        "split": split,
        "images": n,
        "mAP50": ap["AP50"],
        "mAP50_95": ap["AP"],
        "AP75": ap["AP75"],
        "color_accuracy": color_right / max(color_total, 1),
        "seconds": round(time.time() - t0, 1),
    }


def evaluate_track(
    tracker: Any, split: str = "test", n: int = 30, masks: bool = False
) -> dict[str, Any]:
    """MOTA / IDF1 over ``n`` clips, every object tracked (``track`` without a referent)."""
    gts, preds = [], []
    t0 = time.time()
    frames = 0
    for seed in split_seeds(split, n):
        clip = generate_video(seed)
        out = tracker(Video(frames=clip.frames, fps=clip.fps), {"masks": masks})
        for t in range(clip.num_frames):
            # Ids are made unique per clip so no match carries over between clips.
            gts.append(
                {
                    o.id + 10_000 * seed: clip.boxes[t, k]
                    for k, o in enumerate(clip.objects)
                    if clip.present[t, k]
                }
            )
            preds.append({})
        for tr in out.tracks:
            for t, box in zip(tr.frames, tr.xyxy, strict=True):
                preds[len(preds) - clip.num_frames + t][tr.track_id + 10_000 * seed] = np.array(box)
        frames += clip.num_frames
    m = mot_metrics(gts, preds)
    return {
        "split": split,
        "clips": n,
        "frames": frames,
        **m,
        "seconds": round(time.time() - t0, 1),
    }
