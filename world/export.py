"""Exports of ShapeWorld to standard formats: COCO JSON (RLE masks), an Ultralytics YOLO
dataset, MOT-format tracks, and JSONL for requests and edit pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .edits import EDIT_OPS, generate_edit
from .language import caption
from .requests import make_request
from .scene import COLOR_NAMES, SHAPES, Scene, generate_scene
from .splits import split_seeds
from .video import generate_video


def _save_png(array: np.ndarray, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path.name


def class_names(label: str = "shape") -> list[str]:
    """Detection classes: shapes (8) or colour+shape (64)."""
    if label == "shape":
        return list(SHAPES)
    if label == "color_shape":
        return [f"{c} {s}" for c in COLOR_NAMES for s in SHAPES]
    raise ValueError(f"unknown label scheme {label!r}: use 'shape' or 'color_shape'")


def _label_of(obj, label: str) -> str:  # noqa: ANN001 - ShapeObject
    return obj.shape if label == "shape" else f"{obj.color} {obj.shape}"


def scene_to_coco(
    scene: Scene,
    image_id: int,
    file_name: str,
    first_ann_id: int,
    categories: dict[str, int],
    label: str = "shape",
) -> tuple[dict, list[dict]]:
    """COCO image record and annotations (compressed RLE of the visible masks)."""
    image = {
        "id": image_id,
        "file_name": file_name,
        "width": scene.size,
        "height": scene.size,
        "caption": caption(scene),
        "seed": scene.seed,
    }
    anns = []
    for k, (obj, m, box) in enumerate(zip(scene.objects, scene.masks, scene.boxes, strict=True)):
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x1, y1, x2, y2 = (float(v) for v in box)
        anns.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": categories[_label_of(obj, label)],
                "segmentation": rle,
                "area": int(m.sum()),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "iscrowd": 0,
                "attributes": {"color": obj.color, "size": obj.size, "object_id": obj.id},
            }
        )
    return image, anns


def export_coco(out: Path, split: str, n: int, size: int = 256, label: str = "shape") -> Path:
    """Write ``out/images/*.png`` and ``out/annotations.json``; returns the JSON path."""
    out = Path(out)
    categories = {name: k + 1 for k, name in enumerate(class_names(label))}
    images, anns = [], []
    for k, seed in enumerate(split_seeds(split, n)):
        scene = generate_scene(seed, size=size)
        name = _save_png(scene.image, out / "images" / f"{seed:07d}.png")
        img, a = scene_to_coco(scene, k + 1, f"images/{name}", len(anns) + 1, categories, label)
        images.append(img)
        anns += a
    path = out / "annotations.json"
    path.write_text(
        json.dumps(
            {
                "info": {"description": f"ShapeWorld {split}", "split": split},
                "images": images,
                "annotations": anns,
                "categories": [{"id": v, "name": k} for k, v in categories.items()],
            }
        )
    )
    return path


def export_yolo(
    out: Path,
    n_train: int,
    n_val: int,
    size: int = 256,
    label: str = "shape",
    val_split: str = "val",
    truncate_prob: float = 0.0,
    train_offset: int = 0,
) -> Path:
    """An Ultralytics detection dataset (``images/{train,val}``, ``labels/…``, ``data.yaml``).

    ``truncate_prob``: share of objects cut by the image border; ``train_offset``: where in the
    train seed range the training images start."""
    out = Path(out).resolve()
    names = class_names(label)
    index = {name: k for k, name in enumerate(names)}
    for part, split, n, offset in (
        ("train", "train", n_train, train_offset),
        ("val", val_split, n_val, 0),
    ):
        for seed in split_seeds(split, n, offset):
            scene = generate_scene(seed, size=size, truncate_prob=truncate_prob)
            _save_png(scene.image, out / "images" / part / f"{seed:07d}.png")
            lines = []
            for obj, (x1, y1, x2, y2) in zip(scene.objects, scene.boxes, strict=True):
                cx, cy = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size
                w, h = (x2 - x1) / size, (y2 - y1) / size
                lines.append(f"{index[_label_of(obj, label)]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            lbl = out / "labels" / part / f"{seed:07d}.txt"
            lbl.parent.mkdir(parents=True, exist_ok=True)
            lbl.write_text("\n".join(lines) + ("\n" if lines else ""))
    yaml_lines = [f"path: {out}", "train: images/train", "val: images/val", "names:"]
    yaml_lines += [f"  {k}: {name}" for k, name in enumerate(names)]
    path = out / "data.yaml"
    path.write_text("\n".join(yaml_lines) + "\n")
    return path


def export_mot(out: Path, split: str, n: int, size: int = 256, num_frames: int = 16) -> list[Path]:
    """One MOTChallenge-style sequence per clip: ``img1/*.png``, ``gt/gt.txt``, ``seqinfo.ini``.

    ``gt.txt`` rows: ``frame, id, left, top, width, height, 1, class, visibility`` (frames and
    ids 1-based; visibility is the visible share of the whole shape).
    """
    from .scene import SHAPES as shape_list
    from .scene import object_mask

    seqs = []
    for seed in split_seeds(split, n):
        clip = generate_video(seed, size=size, num_frames=num_frames)
        seq = Path(out) / f"shapeworld-{seed:07d}"
        rows = []
        for t in range(clip.num_frames):
            _save_png(clip.frames[t], seq / "img1" / f"{t + 1:06d}.png")
            for k, obj in enumerate(clip.objects):
                if not clip.present[t, k]:
                    continue
                x1, y1, x2, y2 = (float(v) for v in clip.boxes[t, k])
                whole = object_mask(obj, size).sum() or 1
                vis = clip.masks[t, k].sum() / whole
                rows.append(
                    f"{t + 1},{obj.id + 1},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},"
                    f"1,{shape_list.index(obj.shape) + 1},{min(vis, 1.0):.3f}"
                )
        (seq / "gt").mkdir(parents=True, exist_ok=True)
        (seq / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
        (seq / "seqinfo.ini").write_text(
            f"[Sequence]\nname={seq.name}\nimDir=img1\nframeRate={clip.fps:g}\n"
            f"seqLength={clip.num_frames}\nimWidth={size}\nimHeight={size}\nimExt=.png\n"
        )
        seqs.append(seq)
    return seqs


def export_requests(out: Path, split: str, n: int) -> Path:
    """JSONL: one request per line with its intents, answer and scene seed."""
    path = Path(out) / f"requests-{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for seed in split_seeds(split, n):
            f.write(json.dumps(make_request(seed, split).to_json()) + "\n")
    return path


def export_edits(out: Path, split: str, n: int, size: int = 256) -> Path:
    """JSONL of edit pairs with before/after/mask PNGs beside it."""
    out = Path(out)
    path = out / f"edits-{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for k, seed in enumerate(split_seeds(split, n)):
            pair = generate_edit(seed, EDIT_OPS[k % len(EDIT_OPS)], size=size)
            stem = f"{seed:07d}-{pair.op}"
            rec = {
                "seed": seed,
                "op": pair.op,
                "target": pair.target,
                "params": pair.params,
                "before": "edits/"
                + _save_png(pair.before.image, out / "edits" / f"{stem}-before.png"),
                "after": "edits/"
                + _save_png(pair.after.image, out / "edits" / f"{stem}-after.png"),
                "mask": "edits/"
                + _save_png(
                    pair.edit_mask.astype(np.uint8) * 255, out / "edits" / f"{stem}-mask.png"
                ),
            }
            f.write(json.dumps(rec) + "\n")
    return path
