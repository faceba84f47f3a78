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
from switchboard.core import Image, NotFoundError, Video, mask_to_box
from switchboard.core.vocabulary import COLOR_NAMES
from switchboard.evals.metrics import box_ap, box_iou, mask_iou, mot_metrics
from switchboard.specialists.colors import color_in_box, color_labels
from switchboard.specialists.edit import EDIT_OPS
from switchboard.specialists.segment import innermost_point
from switchboard.world.scene import SHAPES, generate_scene
from switchboard.world.splits import split_seeds
from switchboard.world.video import generate_video


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


def _find(det: Any, image: np.ndarray, shape: str | None, color: str | None, box: Any) -> bool:
    """Whether the detector finds ``shape`` (any class if None) of ``color`` (any if None)
    centred inside ``box`` (XYXY, grown by 10 %)."""
    x1, y1, x2, y2 = box
    gx, gy = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    boxes, _, cls = det.detect_all(image, conf=0.25)
    for b, c in zip(boxes, cls, strict=True):
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if not (x1 - gx <= cx <= x2 + gx and y1 - gy <= cy <= y2 + gy):
            continue
        if shape is not None and det.class_names[int(c)] != shape:
            continue
        if color is not None and color_in_box(image, tuple(b)) != color:
            continue
        return True
    return False


def _gone(det: Any, image: np.ndarray, box: Any) -> bool:
    """No detection overlaps ``box`` with IoU >= 0.5 any more."""
    boxes, _, _ = det.detect_all(image, conf=0.25)
    return all(box_iou(np.array(b), np.array(box)) < 0.5 for b in boxes)


def removed(
    det: Any, image: np.ndarray, box: Any, background: np.ndarray, mask: np.ndarray
) -> bool:
    """An object at ``box`` is removed from ``image``: the detector no longer finds it and the
    pixels of its ``mask`` match the true ``background`` image (max channel gap of the means
    <= 25)."""
    gap = np.abs(image[mask].mean(0) - background[mask].mean(0)).max()
    return _gone(det, image, box) and gap <= 25


def place_cell(place: str, size: int) -> tuple[float, float, float, float]:
    """The third of a ``size``-pixel square image that a place word names, XYXY."""
    from switchboard.specialists.edit import place_box

    return place_box(place, size, size)


def judge_edit(det: Any, pair: Any, image: np.ndarray) -> tuple[bool, np.ndarray | None]:
    """Whether ``image`` makes the edit of ``pair`` (an :class:`~switchboard.world.edits.EditPair`),
    judged by the detector and pixel colour, and the region its PSNR is taken over (None for
    move). The rules are :func:`evaluate_edit`'s."""
    from switchboard.specialists.edit import box_region, replace_box, square_box

    op, before, after = pair.op, pair.before, pair.after
    size = before.size
    if op == "add":
        obj = after.objects[after.index(pair.params["id"])]
        box = square_box(obj.x, obj.y, 2 * obj.radius * 1.07, size, size)
        return _find(det, image, obj.shape, obj.color, box), box_region(box, size, size)
    mask = before.masks[before.index(pair.target)]
    old = before.objects[before.index(pair.target)]
    if op == "recolor":
        return color_in_box(image, mask_to_box(mask), mask) == pair.params["color"], mask
    if op == "remove":
        box = before.boxes[before.index(pair.target)]
        return removed(det, image, box, after.image, mask), mask
    if op == "replace":
        rbox = replace_box(mask)
        ok = _find(det, image, pair.params["shape"], old.color, rbox)
        return ok, box_region(rbox, size, size)
    moved = after.objects[after.index(pair.target)]
    cell = place_cell(pair.params["place"], size)
    gone = _gone(det, image, before.boxes[before.index(pair.target)])
    return gone and _find(det, image, moved.shape, moved.color, cell), None


# The stricter judge's thresholds (what a user sees as right, not only what the detector finds).
SHAPE_IOU = 0.90  # a recoloured object keeps its outline: its new-colour pixels vs its mask
REMOVE_PSNR = 28.0  # dB over the removed object's pixels vs the true background: no ghost
OTHERS_IOU = 0.95  # every other object keeps its pixels: its colour's pixels vs its mask


def _grown(mask: np.ndarray, frac: float = 0.15, px: int = 3) -> np.ndarray:
    """HW bool: the box of ``mask`` grown by ``frac`` of its side plus ``px`` pixels."""
    h, w = mask.shape
    x1, y1, x2, y2 = mask_to_box(mask)
    gx, gy = frac * (x2 - x1) + px, frac * (y2 - y1) + px
    out = np.zeros_like(mask)
    out[max(int(y1 - gy), 0) : min(int(np.ceil(y2 + gy)), h),
        max(int(x1 - gx), 0) : min(int(np.ceil(x2 + gx)), w)] = True  # fmt: skip
    return out


def _outline_iou(labels: np.ndarray, mask: np.ndarray, color: str, others: np.ndarray) -> float:
    """IoU of ``mask`` with the pixels labelled ``color`` (:func:`color_labels`' ``labels``)
    around it (its grown box), not counting the pixels ``others`` (HW bool) of the scene's
    other objects."""
    if not mask.any():
        return 1.0
    pred = (labels == COLOR_NAMES.index(color)) & _grown(mask) & ~others
    return float((pred & mask).sum() / max((pred | mask).sum(), 1))


def _others_iou(labels: np.ndarray, scene: Any, skip: set[int]) -> float:
    """The worst :func:`_outline_iou` over the objects of ``scene`` (a ground-truth after
    scene) whose ids are not in ``skip``: 1.0 when every one kept its pixels."""
    worst = 1.0
    every = scene.masks.any(0)
    for i, obj in enumerate(scene.objects):
        if obj.id in skip or not scene.masks[i].any():
            continue
        worst = min(worst, _outline_iou(labels, scene.masks[i], obj.color, every & ~scene.masks[i]))
    return worst


def strict_edit(
    det: Any, pair: Any, image: np.ndarray, found: bool | None = None
) -> dict[str, Any]:
    """The stricter judge of ``image`` as the edit of ``pair``: ``ok`` and what it measured
    (``found``: :func:`judge_edit`'s verdict on the image when the caller has it already).

    recolor: the object's new-colour pixels match its mask (IoU >= :data:`SHAPE_IOU`) — the
    shape kept its outline, not only its colour; remove: the detector finds nothing there and
    the object's pixels match the true background (PSNR >= :data:`REMOVE_PSNR` dB); add /
    replace: the detector finds the shape and colour in its place (:func:`judge_edit`'s rule)
    and every other object kept its pixels (IoU >= :data:`OTHERS_IOU`); move: gone from the
    old place (background there, as remove) and found at the new one, the others kept."""
    from switchboard.evals.metrics import psnr

    op, before, after = pair.op, pair.before, pair.after
    if found is None:
        found, _ = judge_edit(det, pair, image)
    res: dict[str, Any] = {"found": bool(found)}
    labels = color_labels(image) if op != "remove" else None
    if op == "recolor":
        i = before.index(pair.target)
        rest = before.masks.any(0) & ~before.masks[i]
        res["shape_iou"] = _outline_iou(labels, before.masks[i], pair.params["color"], rest)
        res["ok"] = bool(found) and res["shape_iou"] >= SHAPE_IOU
        return res
    if op in ("remove", "move"):
        i = before.index(pair.target)
        region = before.masks[i]
        if op == "move":
            region = region & ~after.masks[after.index(pair.target)]
        res["psnr"] = psnr(image, after.image, region) if region.any() else float("inf")
    new = pair.params["id"] if op == "add" else pair.target
    if op != "remove":
        res["others_iou"] = _others_iou(labels, after, {new})
    res["ok"] = (
        bool(found)
        and res.get("psnr", float("inf")) >= REMOVE_PSNR
        and res.get("others_iou", 1.0) >= OTHERS_IOU
    )
    return res


def _edit_args(pair: Any, op: str, steps: int, seed: int) -> dict[str, Any]:
    """The edit tool's arguments for a ground-truth edit pair: the true box and description
    for an addition, the referent's true mask and the pair's parameters otherwise."""
    from switchboard.specialists.edit import square_box

    before, after = pair.before, pair.after
    size = before.size
    args: dict[str, Any] = {"op": op, "steps": steps, "seed": seed}
    if op == "add":
        obj = after.objects[after.index(pair.params["id"])]
        box = square_box(obj.x, obj.y, 2 * obj.radius * 1.07, size, size)
        return args | {"box": box, "color": obj.color, "shape": obj.shape}
    old = before.objects[before.index(pair.target)]
    args["region"] = before.masks[before.index(pair.target)]
    if op == "recolor":
        args["color"] = pair.params["color"]
    elif op == "replace":
        args |= {"shape": pair.params["shape"], "color": old.color}
    elif op == "move":
        args["place"] = pair.params["place"]
    return args


def _generate_success(editor: Any, det: Any, seeds: list[int], steps: int) -> float:
    """Generation: 1-3 objects in distinct places, from descriptions drawn on held-out seeds;
    a success when the detector finds every one of them in its place."""
    from switchboard.specialists.edit import PLACES
    from switchboard.world.scene import COLOR_NAMES

    wins = []
    for seed in seeds:
        rng = np.random.default_rng([seed, 13])
        k = int(rng.integers(1, 4))
        places = rng.choice(list(PLACES), size=k, replace=False)
        objs = [
            {
                "shape": str(rng.choice(SHAPES)),
                "color": str(rng.choice(COLOR_NAMES)),
                "place": str(p),
                "size": str(rng.choice(["medium", "large"])),
            }
            for p in places
        ]
        out = editor(None, {"op": "generate", "objects": objs, "steps": steps, "seed": seed})
        s = out.image.shape[0]
        found = [
            _find(det, out.image, o["shape"], o["color"], place_cell(o["place"], s)) for o in objs
        ]
        wins.append(all(found))
    return float(np.mean(wins))


def _strict_summary(op: str, rows: list[dict[str, Any]], truth: list[bool]) -> dict[str, Any]:
    """The stricter judge's columns for one kind: its success, the same judge on the true
    after-images (its ceiling: the detector's own misses), and the mean of each measure."""
    out: dict[str, Any] = {
        f"{op}_strict_success": float(np.mean([r["ok"] for r in rows])),
        f"{op}_strict_on_truth": float(np.mean(truth)),
    }
    for key in ("shape_iou", "psnr", "others_iou"):
        vals = [min(r[key], 99.0) for r in rows if key in r]  # an identical region: 99 dB
        if vals:
            out[f"{op}_{key}"] = float(np.mean(vals))
    return out


def evaluate_edit(
    editor: Any,
    det: Any,
    split: str = "test",
    n: int = 40,
    steps: int = 20,
    kinds: tuple[str, ...] = EDIT_OPS,
) -> dict[str, Any]:
    """Edit success per kind, judged by the detector and pixel colour (never by the editor),
    edit-region PSNR against the ground-truth after-image, and the keep-region check.

    recolor: the object's pixels now name the target colour; remove: the detector no longer
    finds it and the region's mean colour matches the true background (max channel gap <= 25);
    add / replace: the detector finds the requested shape and colour in the region; move: gone
    from the old place, found at the new one; generate: every described object found in its
    place. Beside it the stricter judge (:func:`strict_edit`: outlines kept, no ghost, the
    other objects untouched), with its ceiling on the true after-images.
    """
    from switchboard.evals.metrics import psnr
    from switchboard.world.edits import generate_edit

    res: dict[str, Any] = {"split": split, "per_kind": n, "sampler_steps": steps}
    t0 = time.time()
    keep_ok = True
    seeds = split_seeds(split, n)
    unknown = set(kinds) - set(EDIT_OPS)
    if unknown:
        raise ValueError(f"unknown edit kinds {sorted(unknown)}; expected some of {EDIT_OPS}")
    for op in (k for k in EDIT_OPS if k in kinds and k != "generate"):
        wins, psnrs, strict, truth = [], [], [], []
        for seed in seeds:
            pair = generate_edit(seed, op)
            before, after = pair.before, pair.after
            img = Image(pixels=before.image)
            out = editor(img, _edit_args(pair, op, steps, seed))
            im = out.image
            keep_ok &= bool((im[~out.edit_mask] == before.image[~out.edit_mask]).all())
            ok, region = judge_edit(det, pair, im)
            wins.append(bool(ok))
            if region is not None:
                psnrs.append(psnr(im, after.image, region))
            strict.append(strict_edit(det, pair, im, found=bool(ok)))
            truth.append(strict_edit(det, pair, after.image)["ok"])
        res[f"{op}_success"] = float(np.mean(wins))
        if psnrs:  # an identical region (an exact fill) counts as 99 dB, as in the strict judge
            res[f"{op}_region_psnr"] = float(np.mean(np.minimum(psnrs, 99.0)))
        res |= _strict_summary(op, strict, truth)
    if "generate" in kinds:
        res["generate_success"] = _generate_success(editor, det, seeds, steps)
    res["keep_region_identical"] = keep_ok
    res["seconds"] = round(time.time() - t0, 1)
    return res


FRAMES_TO_PASS = 0.90  # a video edit succeeds when this share of its frames pass the judge


def judge_video_frame(det: Any, pair: Any, image: np.ndarray, t: int) -> dict[str, Any]:
    """The stricter judge (:func:`strict_edit`) on frame ``t`` of a video edit ``pair`` (a
    :class:`~switchboard.world.video.VideoEditPair`). A frame where the object is not seen
    (out of the frame, or hidden) passes when it matches the true edited frame (PSNR >=
    :data:`REMOVE_PSNR` dB over the object's pixels there, or the frame unchanged)."""
    from switchboard.evals.metrics import psnr

    i = [o.id for o in pair.before.objects].index(pair.target)
    if not pair.before.present[t, i]:
        region = pair.edit_masks[t]
        if not region.any():
            return {"ok": True, "present": False}
        ok = psnr(image, pair.after.frames[t], region) >= REMOVE_PSNR
        return {"ok": bool(ok), "present": False}
    return strict_edit(det, pair.frame_pair(t), image) | {"present": True}


def evaluate_video_edit(
    editor: Any,
    det: Any,
    split: str = "test",
    n: int = 30,
    steps: int = 20,
    kinds: tuple[str, ...] = ("recolor", "remove", "replace"),
    log: Any = None,
) -> dict[str, Any]:
    """Video edits per op on ``n`` held-out clips each (16 frames, 256 px): the object is
    given as its box on the first frame and the editor tracks it. A clip succeeds when at least
    :data:`FRAMES_TO_PASS` of its frames pass the stricter judge (:func:`judge_video_frame`);
    beside it the same judge on the true edited clips (the detector's ceiling), the share of
    frames passed, region PSNR over the true edit region, flicker (mean absolute change from
    frame to frame inside the edited region) of the output and of the true edited clip, and
    whether every frame's keep region is byte-identical."""
    from switchboard.evals.metrics import psnr
    from switchboard.specialists.video_edit import VIDEO_OPS, flicker
    from switchboard.world.video import generate_video_edit

    unknown = set(kinds) - set(VIDEO_OPS)
    if unknown:
        raise ValueError(
            f"unknown video edit kinds {sorted(unknown)}; expected some of {VIDEO_OPS}"
        )
    res: dict[str, Any] = {"split": split, "clips_per_op": n, "sampler_steps": steps,
                           "frames_to_pass": FRAMES_TO_PASS}  # fmt: skip
    t0 = time.time()
    keep_ok = True
    frame_seconds: list[float] = []
    failed: list[str] = []
    for op in (k for k in VIDEO_OPS if k in kinds):
        wins, truth_wins, shares, psnrs, flick, flick_true = [], [], [], [], [], []
        for seed in split_seeds(split, n):
            pair = generate_video_edit(seed, op)
            clip = pair.before
            i = [o.id for o in clip.objects].index(pair.target)
            args = {"op": op, "box": tuple(float(v) for v in clip.boxes[0, i]), "steps": steps,
                    "seed": seed} | dict(pair.params)  # fmt: skip
            if op == "replace":
                args["color"] = clip.objects[i].color
            t1 = time.perf_counter()
            try:
                out = editor(Video(frames=clip.frames, fps=clip.fps), args)
            except NotFoundError as exc:  # the tracker lost the object: the clip fails
                failed.append(f"{op} seed {seed}: {exc}")
                wins.append(False)
                truth_wins.append(True)
                shares.append(0.0)
                continue
            frame_seconds.append((time.perf_counter() - t1) / clip.num_frames)
            for t in range(clip.num_frames):
                keep = ~np.asarray(out.edit_masks[t], bool)
                keep_ok &= bool((out.frames[t][keep] == clip.frames[t][keep]).all())
            passed = [judge_video_frame(det, pair, out.frames[t], t)["ok"]
                      for t in range(clip.num_frames)]  # fmt: skip
            on_truth = [judge_video_frame(det, pair, pair.after.frames[t], t)["ok"]
                        for t in range(clip.num_frames)]  # fmt: skip
            shares.append(float(np.mean(passed)))
            wins.append(shares[-1] >= FRAMES_TO_PASS)
            truth_wins.append(float(np.mean(on_truth)) >= FRAMES_TO_PASS)
            psnrs += [min(psnr(out.frames[t], pair.after.frames[t], m), 99.0)
                      for t, m in enumerate(pair.edit_masks) if m.any()]  # fmt: skip
            flick.append(flicker(out.frames, pair.edit_masks))
            flick_true.append(flicker(pair.after.frames, pair.edit_masks))
            if log is not None:
                log(
                    f"{op} seed {seed}: {sum(passed)}/{len(passed)} frames pass (truth "
                    f"{sum(on_truth)}), flicker {flick[-1]:.2f} vs {flick_true[-1]:.2f}"
                )
        res[f"{op}_success"] = float(np.mean(wins))
        res[f"{op}_on_truth"] = float(np.mean(truth_wins))
        res[f"{op}_frames_passed"] = float(np.mean(shares))
        res[f"{op}_region_psnr"] = float(np.mean(psnrs))
        res[f"{op}_flicker"] = float(np.mean(flick))
        res[f"{op}_flicker_truth"] = float(np.mean(flick_true))
    res["not_tracked"] = failed
    res["keep_region_identical"] = keep_ok
    res["seconds_per_frame"] = float(np.mean(frame_seconds))
    res["seconds"] = round(time.time() - t0, 1)
    return res
