"""Metrics every eval uses: mask IoU, box AP (pycocotools), MOTA/IDF1, PSNR on edit/keep
regions, and call exact-match / argument accuracy."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two HW bool masks; two empty masks agree perfectly (1.0)."""
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[N, M]`` of XYXY boxes ``a [N, 4]`` and ``b [M, 4]``."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_ap(
    gt: Sequence[dict[str, Any]], pred: Sequence[dict[str, Any]], labels: Sequence[str]
) -> dict[str, float]:
    """COCO box AP with pycocotools.

    ``gt[i] = {"boxes": [N, 4] XYXY, "labels": [N]}`` and ``pred[i] = {"boxes", "labels",
    "scores"}`` per image. Returns ``{"AP": mAP@[.5:.95], "AP50": ..., "AP75": ...}``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat = {name: k + 1 for k, name in enumerate(labels)}
    images, anns, dets = [], [], []
    for img_id, (g, p) in enumerate(zip(gt, pred, strict=True), start=1):
        images.append({"id": img_id, "width": 1, "height": 1})
        for box, label in zip(np.asarray(g["boxes"]).reshape(-1, 4), g["labels"], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for box, label, score in zip(
            np.asarray(p["boxes"]).reshape(-1, 4), p["labels"], p["scores"], strict=True
        ):
            x1, y1, x2, y2 = (float(v) for v in box)
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": cat[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    if not anns:
        raise ValueError("box AP needs at least one ground-truth box")
    if not dets:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": v, "name": k} for k, v in cat.items()],
        }
        coco.createIndex()
        res = coco.loadRes(dets)
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {
        "AP": float(max(ev.stats[0], 0.0)),
        "AP50": float(max(ev.stats[1], 0.0)),
        "AP75": float(max(ev.stats[2], 0.0)),
    }


def mot_metrics(
    gt: Sequence[dict[int, np.ndarray]],
    pred: Sequence[dict[int, np.ndarray]],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """CLEAR-MOT MOTA and IDF1 over a sequence.

    ``gt[t]`` and ``pred[t]`` map track id → XYXY box in frame ``t``. A match needs IoU ≥
    ``iou_threshold``; matches of the previous frame are kept while they still qualify.
    """
    if len(gt) != len(pred):
        raise ValueError(f"gt has {len(gt)} frames, pred {len(pred)}")
    fn = fp = idsw = matches = num_gt = num_pred = 0
    last: dict[int, int] = {}  # gt id -> pred id it was last matched to
    pair_counts: dict[tuple[int, int], int] = {}
    for g, p in zip(gt, pred, strict=True):
        g_ids, p_ids = list(g), list(p)
        num_gt, num_pred = num_gt + len(g_ids), num_pred + len(p_ids)
        frame_match: dict[int, int] = {}
        if g_ids and p_ids:
            iou = box_iou(np.stack([g[i] for i in g_ids]), np.stack([p[j] for j in p_ids]))
            # Keep last frame's pairs that still overlap enough, then match the rest optimally.
            for gi, gid in enumerate(g_ids):
                pid = last.get(gid)
                if pid in p and iou[gi, p_ids.index(pid)] >= iou_threshold:
                    frame_match[gid] = pid
            free_g = [k for k, gid in enumerate(g_ids) if gid not in frame_match]
            used = set(frame_match.values())
            free_p = [k for k, pid in enumerate(p_ids) if pid not in used]
            if free_g and free_p:
                sub = iou[np.ix_(free_g, free_p)]
                rows, cols = linear_sum_assignment(-sub)
                for r, c in zip(rows, cols, strict=True):
                    if sub[r, c] >= iou_threshold:
                        gid, pid = g_ids[free_g[r]], p_ids[free_p[c]]
                        if gid in last and last[gid] != pid:
                            idsw += 1
                        frame_match[gid] = pid
        for gid, pid in frame_match.items():
            last[gid] = pid
            pair_counts[(gid, pid)] = pair_counts.get((gid, pid), 0) + 1
        matches += len(frame_match)
        fn += len(g_ids) - len(frame_match)
        fp += len(p_ids) - len(frame_match)
    mota = 1.0 - (fn + fp + idsw) / num_gt if num_gt else float(num_pred == 0)
    # IDF1: one global gt-id ↔ pred-id assignment maximizing frames where they coincide.
    idtp = 0
    if pair_counts:
        gids = sorted({g for g, _ in pair_counts})
        pids = sorted({p for _, p in pair_counts})
        w = np.zeros((len(gids), len(pids)))
        for (g, p), c in pair_counts.items():
            w[gids.index(g), pids.index(p)] = c
        rows, cols = linear_sum_assignment(-w)
        idtp = int(w[rows, cols].sum())
    denom = num_gt + num_pred
    idf1 = 2 * idtp / denom if denom else 1.0
    return {
        "MOTA": float(mota),
        "IDF1": float(idf1),
        "FN": fn,
        "FP": fp,
        "IDSW": idsw,
        "matches": matches,
        "num_gt": num_gt,
    }


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) between HWC uint8 images over ``mask`` (HW bool; all if None).

    Identical pixels give ``inf``; an empty mask raises.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        if not mask.any():
            raise ValueError("PSNR over an empty mask is undefined")
        diff = diff[mask.astype(bool)]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def edit_psnr(
    before: np.ndarray, after: np.ndarray, target: np.ndarray, edit_mask: np.ndarray
) -> dict[str, float]:
    """PSNR of the result against the target inside the edit region, and against the input
    outside it (keep region: how well untouched pixels were kept)."""
    return {
        "edit_psnr": psnr(after, target, edit_mask),
        "keep_psnr": psnr(after, before, ~edit_mask) if (~edit_mask).any() else float("inf"),
    }


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def call_scores(pred: Sequence[dict[str, Any]], gold: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Exact match and argument accuracy of predicted calls ``{"tool", "args"}`` vs gold.

    ``exact_match``: share of gold calls reproduced exactly (tool and all args, in order);
    ``tool_accuracy``: right tool at the right position; ``arg_accuracy``: share of gold
    arguments with the right value among calls with the right tool.
    """
    if not gold:
        raise ValueError("no gold calls to score against")
    exact = tools = 0
    arg_right = arg_total = 0
    for k, g in enumerate(gold):
        p = pred[k] if k < len(pred) else None
        if p is None or p.get("tool") != g["tool"]:
            arg_total += len(g.get("args", {}))
            continue
        tools += 1
        pa, ga = _norm(p.get("args", {})), _norm(g.get("args", {}))
        arg_right += sum(1 for key, v in ga.items() if pa.get(key) == v)
        arg_total += len(ga)
        exact += int(pa == ga)
    extra = max(len(pred) - len(gold), 0)  # spurious calls count against exact match
    return {
        "exact_match": exact / (len(gold) + extra),
        "tool_accuracy": tools / len(gold),
        "arg_accuracy": arg_right / arg_total if arg_total else float(tools == len(gold)),
    }
