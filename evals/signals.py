"""``switchboard eval signals``: what the router's signals add, on held-out ShapeWorld requests.

One decoding per request gives both the text call and the ``<sig_k>`` hidden states, so every
path below sees the same router output:

- **referring segmentation** (segment requests, attribute / relational / ordinal expressions in
  equal shares), mask IoU against the referent by three paths: *text-only* (the call's
  ``target`` → detect → choose → SAM box prompt), *hybrid* (the signal through the synergy
  heads into SAM) and *hybrid without synergy* (the ablation heads);
- **track**: the referent on the first frame (where the tracker picks it) by the same paths;
- **edit** (recolor, remove, add, replace, move requests): the edit specialist run on the
  router's call with text conditioning and with signal conditioning (the same call, so the same
  region), judged by issue 4's judge; and the cosine of the signal to the text encoder's tokens;
- **discriminator accuracy** on the invariant half, with and without synergy, over all items
  (chance = the largest task's share).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from switchboard.core import Image, InvalidInputError, SpecialistFailedError
from switchboard.evals.metrics import mask_iou
from switchboard.router.signals import SignalHeads
from switchboard.router.train_signals import signal_items
from switchboard.world.edits import EditError
from switchboard.world.requests import make_request
from switchboard.world.splits import SPLITS

REF_KINDS = ("attribute", "relational", "ordinal")
EDIT_OPS_SIGNAL = ("recolor", "remove", "add", "replace", "move")


def _segment_items(split: str, n: int, registry: Any) -> list[Any]:
    """``n`` segment items of ``split``, a third of each expression kind, in seed order."""
    lo, _ = SPLITS[split]
    per = {k: n // 3 + (1 if i < n % 3 else 0) for i, k in enumerate(REF_KINDS)}
    out, seed = [], lo
    while any(per.values()):
        req = make_request(seed, split, "segment")
        seed += 1
        kind = req.intents[0].params.get("ref_kind")
        if per.get(kind, 0) <= 0:
            continue
        found = signal_items(req, registry)
        if found:
            out.append(found[0])
            per[kind] -= 1
    return out


def _task_items(split: str, n: int, task: str, registry: Any, offset: int = 0) -> list[Any]:
    lo, _ = SPLITS[split]
    out = []
    for k in range(4 * n):
        if len(out) >= n:
            break
        req = make_request(lo + offset + k, split, task)
        found = [s for s in signal_items(req, registry) if s.item.step == 0]
        out += found[:1]
    return out


def _edit_pair(request: Any) -> Any:
    """The ground-truth edit of an edit request (as ``make_request`` checked it can be made)."""
    from switchboard.world.edits import apply_edit
    from switchboard.world.scene import generate_scene

    intent = request.intents[0]
    scene = generate_scene(request.seed)
    params = {k: v for k, v in intent.params.items() if k != "ref_kind"}
    target = intent.targets[0] if intent.targets else None
    return apply_edit(scene, intent.task, target, params, np.random.default_rng(request.seed))


def _judge(det: Any, pair: Any, image: np.ndarray) -> bool:
    """Issue 4's judge; an ``add`` is judged in the named place's third of the image (the
    request names a place, not the box the ground truth happened to draw)."""
    from switchboard.evals.specialists import _find, judge_edit, place_cell

    if pair.op != "add":
        return judge_edit(det, pair, image)[0]
    cell = place_cell(pair.params["place"], image.shape[0])
    return _find(det, image, pair.params["shape"], pair.params["color"], cell)


def _safe(fn: Any, *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)``, or None when the specialist refuses or fails (scored as a miss)."""
    try:
        return fn(*args, **kw)
    except (InvalidInputError, SpecialistFailedError):
        return None


@torch.no_grad()
def evaluate_signals(
    router: Any,
    ablation: SignalHeads | None,
    split: str = "test",
    n: int = 90,
    n_track: int = 20,
    n_edit: int = 8,
    edit_steps: int = 20,
    log: Any = print,
) -> dict[str, Any]:
    """The table's numbers (see the module docstring); ``router`` is a
    :class:`~switchboard.router.inference.Router` with its (synergy) signal heads."""
    registry = router.registry
    seg, editor = registry.get("segment"), registry.get("edit")
    det = registry.get("detect")
    heads = {"hybrid": router.heads, "hybrid_nosynergy": ablation}
    res: dict[str, Any] = {"split": split}
    disc: dict[str, list[bool]] = {"hybrid": [], "hybrid_nosynergy": []}
    disc_tools: list[str] = []  # the tool of each item the (synergy) discriminator saw
    t0 = time.time()

    def route(item: Any) -> tuple[Any, Any, dict[str, Any]]:
        """The reply (its calls carry the synergy signals) and, per head set, the signal of
        the first call with one (None when the router called no tool with a signal)."""
        reply, decoded = router.route_item(item.item, with_signals=True)
        sigs: dict[str, Any] = {}
        first = next((c for c in reply.calls if c.signal is not None), None)
        for name, h in heads.items():
            if h is None or first is None or not decoded.signal_hidden:
                sigs[name] = None
                continue
            out = h(first.tool, **router.signal_inputs(decoded, 0))
            sigs[name] = out.signal[0]
            sigs[f"{name}_pointer"] = out.box if out.pointer is not None else None
            if first.tool in h.tool_names:
                want = h.task_index(first.tool)
                disc[name].append(int(out.task_logits.argmax(-1)[0]) == want)
                if name == "hybrid":
                    disc_tools.append(first.tool)
        return reply, first, sigs

    # -- referring segmentation ------------------------------------------------------------
    pointers: dict[str, list[bool]] = {name: [] for name in heads}
    rows: dict[str, dict[str, list[float]]] = {
        p: {k: [] for k in REF_KINDS} for p in ("text_only", *heads)
    }
    for i, it in enumerate(_segment_items(split, n, registry)):
        reply, first, sigs = route(it)
        image = Image(pixels=it.item.images[0])
        call = reply.calls[0] if reply.calls else None
        text_masks = None
        if call is not None and call.tool == "segment":
            text_masks = _safe(seg, image, _as_agent(call.args, it.item, det))
        rows["text_only"][it.ref_kind].append(
            mask_iou(text_masks.masks[0], it.mask) if text_masks else 0.0
        )
        for name in heads:
            m = None
            if sigs[name] is not None and first.tool == "segment":
                m = _safe(seg, image, {}, signal=sigs[name])
            rows[name][it.ref_kind].append(mask_iou(m.masks[0], it.mask) if m else 0.0)
        for name in heads:
            if sigs.get(f"{name}_pointer") is not None:
                pointers[name].append(_pointer_hit(sigs[f"{name}_pointer"][0], it.mask))
        if (i + 1) % 30 == 0:
            log(f"segment {i + 1}/{n} ({time.time() - t0:.0f} s)")
    for path, by_kind in rows.items():
        _grouped_means(res, f"segment_{path}_miou", "", by_kind)
    res["segment_n"] = sum(len(v) for v in rows["text_only"].values())
    for kind, vs in rows["text_only"].items():
        res[f"segment_n_{kind}"] = len(vs)
    for name, hits in pointers.items():  # a diagnostic: is the heads' pointer on the referent?
        res[f"segment_{name}_pointer_hit"] = _mean(hits)

    # -- track: the referent on the first frame -----------------------------------------------
    track_rows: dict[str, list[float]] = {p: [] for p in ("text_only", *heads)}
    for it in _task_items(split, n_track, "track", registry):
        reply, first, sigs = route(it)
        frame = Image(pixels=it.item.images[0])
        call = reply.calls[0] if reply.calls else None
        m = None
        if call is not None and call.tool == "track" and call.args.get("target"):
            m = _safe(seg, frame, {"target": call.args["target"]})
        track_rows["text_only"].append(mask_iou(m.masks[0], it.mask) if m else 0.0)
        for name in heads:
            m = None
            if sigs[name] is not None and first.tool == "track":
                m = _safe(seg, frame, {}, signal=sigs[name])
            track_rows[name].append(mask_iou(m.masks[0], it.mask) if m else 0.0)
    for path, vs in track_rows.items():
        res[f"track_first_frame_{path}_miou"] = _mean(vs)
    res["track_n"] = len(track_rows["text_only"])

    # -- edit: text vs signal conditioning --------------------------------------------------
    edit_rows: dict[str, dict[str, list[bool]]] = {
        p: {op: [] for op in EDIT_OPS_SIGNAL} for p in ("text", *heads)
    }
    cosines: dict[str, list[float]] = {p: [] for p in heads}
    text_enc = None
    for op in EDIT_OPS_SIGNAL:
        for it in _task_items(split, n_edit, op, registry, offset=1000):
            reply, first, sigs = route(it)
            try:
                pair = _edit_pair(it.request)
            except EditError:  # no room for the ground truth: nothing to judge against
                continue
            image = Image(pixels=pair.before.image)
            call = reply.calls[0] if reply.calls else None
            ok_call = call is not None and call.tool == "edit"
            args = None
            if ok_call:
                args = {**_as_agent(call.args, it.item, det), "steps": edit_steps, "seed": 0}
            out = _safe(editor, image, args) if ok_call else None
            edit_rows["text"][op].append(bool(out) and _judge(det, pair, out.image))
            if text_enc is None:
                from switchboard.specialists.diffusion import TextConditioner

                text_enc = TextConditioner()
            for name in heads:
                s = sigs[name]
                good = ok_call and s is not None and first.tool == "edit"
                out = _safe(editor, image, args, signal=s) if good else None
                edit_rows[name][op].append(bool(out) and _judge(det, pair, out.image))
                if good and it.text is not None:
                    t = text_enc([it.text])[0].float()
                    cosines[name].append(float(torch.cosine_similarity(s, t, dim=-1).mean()))
        log(f"edit {op} done ({time.time() - t0:.0f} s)")
    for path, by_op in edit_rows.items():
        _grouped_means(res, f"edit_{path}", "_success", by_op)
    for path, vs in cosines.items():
        res[f"edit_{path}_cosine_to_text"] = _mean(vs)
    res["edit_n_per_op"] = n_edit

    for path, vs in disc.items():
        res[f"discriminator_acc_{path}"] = _mean(vs)
    res["discriminator_chance"] = _chance(disc_tools)
    res["seconds"] = round(time.time() - t0, 1)
    return res


def _as_agent(args: dict[str, Any], item: Any, det: Any) -> dict[str, Any]:
    """A text call's arguments as the agent hands them to the specialist: an ``object`` index
    resolved against the item's object list to that detection's box (checked against the
    call's words), as :func:`~switchboard.agent.graph.resolve_object` does in a turn."""
    from switchboard.agent.graph import resolve_object

    if not det.loaded:
        det.load()
    side = float(max(item.images[0].shape[:2])) if item.images else 0.0
    try:
        return resolve_object(dict(args), item.objects, det.class_names, side)
    except InvalidInputError:  # not found, or no such object: the words alone, as sent
        return {k: v for k, v in args.items() if k != "object"}


def _mean(values: list[Any]) -> float | None:
    return float(np.mean(values)) if values else None


def _grouped_means(
    res: dict[str, Any], prefix: str, suffix: str, groups: dict[str, list[Any]]
) -> None:
    """``{prefix}{suffix}`` over every group together, and ``{prefix}_{group}{suffix}`` each."""
    res[f"{prefix}{suffix}"] = _mean([v for vs in groups.values() for v in vs])
    for name, vs in groups.items():
        res[f"{prefix}_{name}{suffix}"] = _mean(vs)


def _pointer_hit(box: torch.Tensor, mask: np.ndarray) -> bool:
    """Whether the centre of the box the pointer chose (normalized XYXY) is on the referent."""
    h, w = mask.shape
    side = max(h, w)
    x = int((float(box[0]) + float(box[2])) / 2 * side)
    y = int((float(box[1]) + float(box[3])) / 2 * side)
    return bool(0 <= x < w and 0 <= y < h and mask[y, x])


def _chance(tools: list[str]) -> float:
    """The largest task's share of the items the discriminator saw."""
    return max((tools.count(t) for t in set(tools)), default=0) / max(1, len(tools))


def signals_table(res: dict[str, Any]) -> str:
    """The results as one markdown table."""

    def f(v: Any) -> str:
        return "—" if v is None else f"{v:.3f}"

    paths = ("text_only", "hybrid", "hybrid_nosynergy")
    lines = ["| metric | text-only | hybrid (synergy) | hybrid, no synergy |", "|---|---|---|---|"]
    for suffix, label in [
        ("", "referring segmentation mIoU, all"),
        *((f"_{k}", f"… {k}") for k in REF_KINDS),
    ]:
        vals = [f(res.get(f"segment_{p}_miou{suffix}")) for p in paths]
        count = res.get(f"segment_n{suffix}", res["segment_n"])
        lines.append(f"| {label} (n={count}) | " + " | ".join(vals) + " |")
    lines.append(
        "| … the heads' pointer on the referent (diagnostic) | — | "
        f"{f(res.get('segment_hybrid_pointer_hit'))} | "
        f"{f(res.get('segment_hybrid_nosynergy_pointer_hit'))} |"
    )
    vals = [f(res.get(f"track_first_frame_{p}_miou")) for p in paths]
    label = f"track, referent on frame 0, mIoU (n={res['track_n']})"
    lines.append(f"| {label} | " + " | ".join(vals) + " |")
    epaths = ("text", "hybrid", "hybrid_nosynergy")
    for suffix, label in [
        ("", "edit success, all"),
        *((f"_{op}", f"… {op}") for op in EDIT_OPS_SIGNAL),
    ]:
        vals = [f(res.get(f"edit_{p}{suffix}_success")) for p in epaths]
        n_edit = res["edit_n_per_op"] * (len(EDIT_OPS_SIGNAL) if not suffix else 1)
        lines.append(f"| {label} (n={n_edit}) | " + " | ".join(vals) + " |")
    lines.append(
        "| edit signal cosine to the text tokens | — | "
        f"{f(res.get('edit_hybrid_cosine_to_text'))} | "
        f"{f(res.get('edit_hybrid_nosynergy_cosine_to_text'))} |"
    )
    lines.append(
        f"| task discriminator accuracy on the invariant half (chance "
        f"{res['discriminator_chance']:.2f}) | — | "
        f"{f(res.get('discriminator_acc_hybrid'))} | "
        f"{f(res.get('discriminator_acc_hybrid_nosynergy'))} |"
    )
    return "\n".join(lines)
