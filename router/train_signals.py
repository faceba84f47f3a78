"""Invocation with signals and cross-task synergy: train the signal heads on specialist losses.

    switchboard train router --stage signals --preset tiny              # synergy on
    switchboard train router --stage signals --preset tiny --no-synergy # the ablation

Training items are the ``invoke`` items whose call goes to a tool with a signal (segment, track,
edit), with ``<sig_k>`` tokens after the call and the specialist's ground truth:

- segment: the referent's mask; loss = BCE + Dice of the SAM decoder's mask from the signal
  tokens alone (prompt encoder → ``signal_in`` → mask decoder; image encoder frozen);
- track: the same on the clip's first frame (the frame the tracker picks its referent on);
- edit: the MiniLM conditioning tokens of the description the edit paints; loss = MSE +
  (1 - cosine);
- all: the task discriminator on the invariant half, through gradient reversal (synergy), and
  a grounding read-out of the referent's box (segment, track);
- segment, the hybrid path: the box of the object the text call names (the detection matching
  the referent) as SAM's prompt, refined by the heads' gated residual (``refine=True``).

Two modes. ``end_to_end`` (the GPU preset, and what the tests check) runs the LLM with its
LoRA adapter in the graph, so the specialist losses reach the adapter and the new token rows.
The CPU preset keeps the LLM frozen and caches what the heads read — the ``<sig_k>`` hidden
states, the vision tower's patch features, SAM's image embeddings and the targets — once, then
trains the heads (and optionally SAM's mask decoder) for many passes over the cache: on 2 cores
the LLM's backward pass would allow ~200 steps in the time the cache allows ~5000.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from switchboard.core import Registry
from switchboard.world.requests import make_request
from switchboard.world.splits import SPLITS

from .codec import format_reply
from .data import Item, items_for, match_object, media_for, plan
from .model import Region, RouterModel
from .objects import ObjectProposer, pad_objects
from .signals import (
    REFER_KINDS,
    SignalConfig,
    SignalHeads,
    dice_bce,
    edit_signal_loss,
    pad_texts,
    pointer_loss,
    pointer_target,
    prompt_loss,
    random_boxes,
    router_text_span,
    sam_refine_logits,
    sam_signal_logits,
)

SIGNAL_TASKS = {"segment": 3.0, "segment_recolor": 1.0, "track": 1.5, "recolor": 0.6,
                "remove": 0.6, "add": 0.6, "replace": 0.6, "move": 0.6}  # fmt: skip


@dataclass(frozen=True)
class CacheSource:
    """``n`` training items drawn with ``seed`` (``tasks`` weights, ``kind_keep``: see
    :func:`draw_signal_items`), cached in files of :data:`CACHE_CHUNK` examples."""

    name: str
    seed: int
    n: int
    tasks: tuple[tuple[str, float], ...] = tuple(SIGNAL_TASKS.items())
    kind_keep: tuple[tuple[str, float], ...] = ()
    found_keep: float = 1.0  # keep-probability of items whose referent the detector found


CACHE_CHUNK = 250
HOLDOUT_EVERY = 20
# Segment-heavy, two of every three attribute expressions dropped: the requests give ~1 in 5
# segment items a relational and ~1 in 6 an ordinal expression, too few to learn from.
FOCUS_TASKS = {"segment": 5.0, "segment_recolor": 1.0, "track": 1.0, "recolor": 0.3,
               "remove": 0.3, "add": 0.3, "replace": 0.3, "move": 0.3}  # fmt: skip
FOCUS_KEEP = {"attribute": 0.3}
# Where the text path is weakest: referents the object list lacks (the detector missed them;
# the text call has only words there, which resolve to nothing). ~1 segment item in 12 has
# one, so found referents are kept one time in ten.
MISSED_TASKS = {"segment": 4.0, "segment_recolor": 1.0, "track": 1.5, "recolor": 0.5,
                "remove": 0.5, "replace": 0.5, "move": 0.5}  # fmt: skip
MISSED_FOUND_KEEP = 0.1


@dataclass
class SignalPreset:
    cache: tuple[CacheSource, ...] = ()  # cached training items (cached mode)
    steps: int = 4000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 100
    minutes: float = 0.0
    checkpoint_every: int = 200  # steps between writes of the resumable state
    end_to_end: bool = False  # LLM (LoRA) in the graph; else frozen and cached
    tune_decoder: bool = False  # also train SAM's mask decoder
    box_weight: float = 1.0
    pointer_weight: float = 0.5
    prompt_weight: float = 1.0  # segment/track: MSE to SAM's box-prompt tokens of the referent
    code_steps: int = 3000  # fit_location_code's steps before the heads' training (then frozen)
    pointer_steps: int = 0  # fit_pointer's steps (pointer + module losses, no SAM) before them
    kind_weight: float = 0.3  # the modular pointer's weights vs the expression's kind
    patch_weight: float = 0.5  # the subject phrase on the patches vs the referent's (all items)
    edit_weight: float = 1.0
    refine_weight: float = 1.0  # segment: the mask loss of the box prompt refined by the signal
    width: int = 256
    depth: int = 2


SIGNAL_PRESETS = {
    "tiny": SignalPreset(
        # 2500 items, weighted to the referents the detector missed (where the signal must
        # serve alone); building them takes ~45 min on 2 cores (the router's forward pass),
        # and a session starts with no cache.
        cache=(
            CacheSource("mixed", 0, 1000),
            CacheSource("focus", 2, 500, tuple(FOCUS_TASKS.items()), tuple(FOCUS_KEEP.items())),
            CacheSource("missed", 3, 1000, tuple(MISSED_TASKS.items()), (), MISSED_FOUND_KEEP),
        ),
        # A fixed number of steps, no time limit: the synergy run and its ablation take the
        # same steps from the same start (~1.5 s each on 2 cores with the refining pass).
        steps=500,
        batch=32,
        pointer_steps=1500,  # ~25 min before the full steps; shared with the ablation
        depth=1,  # the fusion below the trunk does the reading; 2 cost 1.6 MB per head set
    ),
    "gpu": SignalPreset(steps=3000, batch=32, lr=2e-4, end_to_end=True),
    "smoke": SignalPreset(
        cache=(CacheSource("smoke", 0, 6),),
        steps=2,
        batch=3,
        warmup=1,
        width=32,
        depth=1,
        code_steps=2,
        pointer_steps=2,
    ),
}


@dataclass
class SignalItem:
    """An invoke item whose call carries signal tokens, and what its specialist should get."""

    item: Item
    tool: str
    mask: np.ndarray | None = None  # segment/track: the referent on the (first) image
    text: str | None = None  # edit: the description to paint
    ref_kind: str | None = None
    request: Any = None  # the request the item is a step of
    box: np.ndarray | None = None  # the referent's true box (pixels XYXY), when it has one
    missed: bool = False  # the object list lacks the referent (the detector missed it)
    occluded: bool = False  # other objects show inside the referent's box


def edit_text(intent: Any, scene: Any, ids: list[int]) -> str | None:
    """The description the edit specialist paints for ``intent`` (as its text path composes it
    from the call and the object's looks)."""
    from switchboard.specialists.edit import BACKGROUND, describe

    p = intent.params
    obj = scene.objects[scene.index(ids[0])] if ids and scene is not None else None
    if intent.task == "remove":
        return BACKGROUND
    if intent.task == "add":
        return describe(p.get("color"), p.get("shape"))
    if obj is None:
        return None
    return {
        "recolor": lambda: describe(p.get("color"), obj.shape),
        "replace": lambda: describe(obj.color, p.get("shape")),
        "move": lambda: describe(obj.color, obj.shape),
    }.get(intent.task, lambda: None)()


def signal_items(request: Any, registry: Registry) -> list[SignalItem]:
    """The steps of ``request`` that call a tool with a signal, with ``<sig_k>`` targets."""
    items = [it for it in items_for(request, registry) if it.calls]
    if not items:
        return []
    _, _, scene = media_for(request)
    steps = plan(request, scene)
    out = []
    clutter = scene.others_in_box() if scene is not None else None
    for item, (intent, ids) in zip(items, steps, strict=False):
        call = item.calls[0]
        if registry.cls(call.tool).signal is None:
            continue
        item.target = format_reply("", [call], registry, with_signals=True)
        kind = intent.params.get("ref_kind")
        where: dict[str, Any] = {}
        if scene is not None and ids and any(o.id == ids[0] for o in scene.objects):
            i = scene.index(ids[0])
            box = scene.boxes[i]
            missed = bool(scene.masks[i].any()) and match_object(item.objects, box) is None
            where = {"box": box, "occluded": bool(clutter[i] > 0), "missed": missed}
        if call.tool in ("segment", "track"):
            if scene is None or not ids:
                continue
            mask = scene.masks[scene.index(ids[0])]
            if not mask.any():  # hidden behind others on this frame: nothing to segment
                continue
            out.append(SignalItem(item, call.tool, mask, None, kind, request, **where))
        elif call.tool == "edit":
            text = edit_text(intent, scene, ids)
            if text is not None:
                out.append(SignalItem(item, "edit", None, text, kind, request, **where))
    return out


def draw_signal_items(
    split: str,
    n: int,
    seed: int,
    registry: Registry,
    tasks: dict[str, float] | None = None,
    kind_keep: dict[str, float] | None = None,
    found_keep: float = 1.0,
) -> list[SignalItem]:
    """``n`` signal items of ``split``, tasks weighted by ``tasks`` (:data:`SIGNAL_TASKS`); an
    item whose referring expression is of kind ``k`` is kept with probability
    ``kind_keep.get(k, 1)`` (more relational and ordinal expressions than the requests give),
    and one whose referent the object list has with probability ``found_keep`` (more
    referents the detector missed)."""
    tasks = tasks or SIGNAL_TASKS
    lo, hi = SPLITS[split]
    rng = np.random.default_rng([seed, 23])
    names = list(tasks)
    w = np.array([tasks[t] for t in names])
    out: list[SignalItem] = []
    while len(out) < n:
        task = names[int(rng.choice(len(names), p=w / w.sum()))]
        req = make_request(lo + int(rng.integers(0, hi - lo)), split, task)
        found = signal_items(req, registry)
        if found:
            pick = found[int(rng.integers(len(found)))]
            keep = (kind_keep or {}).get(pick.ref_kind or "", 1.0)
            if pick.box is not None and not pick.missed:
                keep *= found_keep
            if keep >= 1.0 or rng.random() < keep:
                out.append(pick)
    return out


# -- the router side: <sig_k> hidden states and the visual memory -----------------------------
def encode_for_signals(
    router: RouterModel, items: list[Item]
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor], list[torch.Tensor]]:
    """Teacher-forced pass over ``items`` (their targets end in ``<sig_k>`` tokens): per item
    the last-layer hidden states at the signal tokens ``[K, d]``, the vision tower's patch
    features of its first image ``[g², dv]`` (None without one), and the last-layer and
    layer-0 states over the request and call ``[L, d]`` (:func:`router_text_span`)."""
    from .codec import SIG_TOKENS
    from .train import encode

    sig_ids = set(router.tokenizer.convert_tokens_to_ids(list(SIG_TOKENS)))
    embeds, positions, firsts, spans = [], [], [], []
    for item in items:
        ids, _ = encode(router, item)
        eos = router.tokenizer.eos_token_id
        ids = ids[:-1] if int(ids[-1]) == eos else ids  # the <sig_k> are read, not the end
        regions = [Region.of(*m.shape, mask=m) for m in item.regions]
        feats = router.encode_images(item.images) if item.images else None
        video = any(t is not None for t in item.frame_index)
        embeds.append(
            router.embed(
                ids, item.images, regions, item.frame_index if video else None, feats, item.objects
            )[0]
        )
        pos = [i for i, t in enumerate(ids.tolist()) if t in sig_ids]
        positions.append(pos)
        spans.append(router_text_span(router, ids.tolist(), pos[0]))
        firsts.append(feats[0] if feats is not None else None)
    n = max(len(e) for e in embeds)
    x = torch.zeros(len(items), n, embeds[0].shape[-1], dtype=embeds[0].dtype)
    mask = torch.zeros(len(items), n, dtype=torch.long)
    for b, e in enumerate(embeds):
        x[b, : len(e)], mask[b, : len(e)] = e, 1
    out = router(inputs_embeds=x, attention_mask=mask, output_hidden_states=True, logits_to_keep=1)
    last, first = out.hidden_states[-1], out.hidden_states[0]
    hidden = [last[b, pos] for b, pos in enumerate(positions)]
    texts = [last[b, span] for b, span in enumerate(spans)]
    words = [first[b, span] for b, span in enumerate(spans)]
    return hidden, firsts, texts, words


# -- the specialist side: frozen SAM encoder, MiniLM targets ----------------------------------
class SpecialistTargets:
    """What the specialist losses need: SAM (image encoder frozen) and the edit model's text
    encoder (MiniLM), loaded from the committed specialists."""

    def __init__(self, tune_decoder: bool = False) -> None:
        from switchboard.specialists.diffusion import TextConditioner
        from switchboard.specialists.segment import build_segment_model

        self.sam = build_segment_model().eval()
        self.sam.requires_grad_(False)
        if tune_decoder:
            self.sam.mask_decoder.requires_grad_(True)
        self._text = TextConditioner()
        self._text_cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def image_embedding(self, image: np.ndarray) -> torch.Tensor:
        """SAM's image embedding ``[C, g, g]`` of an HWC uint8 image."""
        from segment_anything.utils.transforms import ResizeLongestSide

        t = ResizeLongestSide(self.sam.image_encoder.img_size).apply_image(image)
        x = torch.as_tensor(t).permute(2, 0, 1)[None].float()
        return self.sam.image_encoder(self.sam.preprocess(x))[0]

    @staticmethod
    def low_res(mask: np.ndarray, side: int) -> torch.Tensor:
        """The ground-truth mask at the decoder's low-res ``side`` (area-averaged, 0..1; SAM
        pads an image to a square at the bottom right, so the mask is padded the same way)."""
        m = torch.as_tensor(mask, dtype=torch.float32)[None, None]
        h, w = mask.shape
        s = max(h, w)
        m = F.pad(m, (0, s - w, 0, s - h))
        return F.interpolate(m, size=(side, side), mode="area")[0, 0]

    @torch.no_grad()
    def text_tokens(self, text: str) -> torch.Tensor:
        if text not in self._text_cache:
            self._text_cache[text] = self._text([text])[0].float()
        return self._text_cache[text]


# -- one batch of losses ------------------------------------------------------------------------
@dataclass
class Example:
    """One training example as the heads and losses see it (cached mode keeps these)."""

    tool: str
    hidden: torch.Tensor  # [K, d_llm]
    memory: torch.Tensor | None  # [g², dv]
    text_states: torch.Tensor | None = None  # [L, d_llm] over the request and call
    words: torch.Tensor | None = None  # [L, d_llm] layer-0 states over the same span
    objects: torch.Tensor | None = None  # [M, object_dim] the object memory of the image
    embedding: torch.Tensor | None = None  # SAM image embedding (segment, track)
    mask: torch.Tensor | None = None  # low-res target (segment, track)
    box: torch.Tensor | None = None  # normalized XYXY of the referent
    text: torch.Tensor | None = None  # MiniLM tokens (edit)
    kind: str | None = None
    missed: bool = False  # the object list lacks the referent (text calls only have words)
    occluded: bool = False  # other objects show inside the referent's box


def examples_for(
    router: RouterModel, batch: list[SignalItem], targets: SpecialistTargets, proposer: Any
) -> list[Example]:
    """Router features (``proposer``: the object memory's
    :class:`~switchboard.router.objects.ObjectProposer`) and specialist targets of ``batch``
    (differentiable through the router when grad is enabled)."""
    hidden, memory, texts, words = encode_for_signals(router, [s.item for s in batch])
    out = []
    for b, s in enumerate(batch):
        objects = proposer(s.item.images[0]) if s.item.images else None
        ex = Example(
            s.tool,
            hidden[b],
            memory[b],
            texts[b],
            words[b],
            objects,
            kind=s.ref_kind,
            missed=s.missed,
            occluded=s.occluded,
        )
        if s.mask is not None:
            image = s.item.images[0]
            ex.embedding = targets.image_embedding(image)
            ex.mask = targets.low_res(s.mask, 4 * ex.embedding.shape[-1])
            ys, xs = np.nonzero(s.mask)
            h, w = s.mask.shape
            ex.box = torch.tensor(
                [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h],
                dtype=torch.float32,
            )
        if s.text is not None:
            ex.text = targets.text_tokens(s.text)
        out.append(ex)
    return out


def head_inputs(heads: SignalHeads, group: list[Example]) -> dict[str, torch.Tensor | None]:
    """Keyword arguments of ``heads`` for a batch of one tool's examples (padded, float)."""
    mems = [e.memory for e in group]
    memory = None if any(m is None for m in mems) else torch.stack(mems).float()
    if memory is None and any(m is not None for m in mems):
        raise ValueError("a batch of one tool mixes items with and without images")
    text, text_mask = pad_texts([e.text_states.float() for e in group])
    words = None
    if all(e.words is not None for e in group):
        words, _ = pad_texts([e.words.float() for e in group])
    objects = objects_mask = None
    if memory is not None and all(e.objects is not None for e in group):
        objects, objects_mask = pad_objects([e.objects for e in group], heads.obj_dim)
    return {
        "hidden": torch.stack([e.hidden for e in group]).float(),
        "memory": memory,
        "text": text,
        "text_mask": text_mask,
        "words": words,
        "objects": objects,
        "objects_mask": objects_mask,
    }


def signal_losses(
    heads: SignalHeads,
    sam: Any,
    examples: list[Example],
    preset: SignalPreset,
    synergy: bool,
    pointer_only: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-loss means over ``examples``: ``mask`` (segment/track BCE + Dice through SAM),
    ``edit`` (MSE + cosine), ``box`` (grounding read-out), ``pointer`` (the pointer over patches
    and objects), ``patches`` (the subject phrase over the patches alone), ``kind`` (the modular
    pointer's weights vs the expression's kind), ``disc`` (task discriminator) and ``total``;
    plus ``disc_acc`` (detached). ``pointer_only``: the pointer, patch and kind losses of the
    segment/track examples alone (no SAM: fast)."""
    by_tool: dict[str, list[Example]] = {}
    for ex in examples:
        if pointer_only and (ex.tool not in ("segment", "track") or ex.memory is None):
            continue
        by_tool.setdefault(ex.tool, []).append(ex)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in LOSS_NAMES}
    correct = 0
    for tool, group in by_tool.items():
        inputs = head_inputs(heads, group)
        out = heads(tool, **inputs)
        _pointer_parts(parts, tool, group, inputs, out)
        if pointer_only:
            continue
        if not synergy:  # the ablation: the discriminator only probes (no gradient back)
            out.task_logits = heads.discriminator(out.invariant.detach())
        label = torch.full((len(group),), heads.task_index(tool), dtype=torch.long)
        parts["disc"].append(F.cross_entropy(out.task_logits, label, reduction="none"))
        correct += int((out.task_logits.argmax(-1) == label).sum())
        if tool in ("segment", "track"):
            emb = torch.stack([e.embedding for e in group]).float()
            target = torch.stack([e.mask for e in group])
            boxes = torch.stack([e.box for e in group])
            parts["mask"].append(dice_bce(sam_signal_logits(sam, emb, out.signal), target))
            parts["prompt"].append(prompt_loss(sam, out.signal, boxes))
            parts["box"].append(F.l1_loss(out.box, boxes, reduction="none").sum(-1))
            if tool in heads.refine_out and inputs["objects"] is not None:
                parts["refine"] += refine_losses(heads, sam, tool, group, inputs, target, boxes)
        elif tool == "edit":
            target = torch.stack([e.text for e in group])
            parts["edit"].append(edit_signal_loss(out.signal, target))
    zero = torch.zeros(())
    losses = {k: torch.cat(v).mean() if v else zero for k, v in parts.items()}
    if pointer_only:
        losses["total"] = (
            losses["pointer"]
            + preset.kind_weight * losses["kind"]
            + preset.patch_weight * losses["patches"]
        )
        return losses
    losses["total"] = (
        losses["mask"]
        + preset.edit_weight * losses["edit"]
        + preset.box_weight * losses["box"]
        + preset.pointer_weight * losses["pointer"]
        + preset.prompt_weight * losses["prompt"]
        + preset.kind_weight * losses["kind"]
        + preset.refine_weight * losses["refine"]
        + preset.pointer_weight * preset.patch_weight * losses["patches"]
        + heads.config.synergy_weight * losses["disc"]
    )
    losses["disc_acc"] = torch.tensor(correct / max(1, len(examples)))
    return losses


LOSS_NAMES = ("mask", "edit", "box", "pointer", "prompt", "kind", "refine", "patches", "disc")


def _pointer_parts(
    parts: dict[str, list[torch.Tensor]],
    tool: str,
    group: list[Example],
    inputs: dict[str, torch.Tensor | None],
    out: Any,
) -> None:
    """The pointer's losses for one tool's batch, added to ``parts``: the module weights vs
    the expression's kind; for segment and track, the pointer over the patches and objects
    vs :func:`pointer_target`, and the subject phrase over the patches vs where the referent
    shows (every referent, found or missed: the words that find detected ones learn to find
    it in the patches too)."""
    if out.modules is not None:
        kinds = torch.tensor(
            [REFER_KINDS.index(e.kind) if e.kind in REFER_KINDS else -100 for e in group]
        )
        if (kinds >= 0).any():
            nll = F.nll_loss(
                out.modules.clamp_min(1e-6).log(), kinds, ignore_index=-100, reduction="none"
            )
            parts["kind"].append(nll[kinds >= 0])
    if tool not in ("segment", "track") or out.pointer is None:
        return
    target = torch.stack([e.mask for e in group])
    boxes = torch.stack([e.box for e in group])
    grid_n = inputs["memory"].shape[1]
    where = pointer_target(target, grid_n, inputs["objects"], inputs["objects_mask"], boxes)
    parts["pointer"].append(pointer_loss(out.pointer, where))
    if out.patches is not None:
        parts["patches"].append(pointer_loss(out.patches, pointer_target(target, grid_n)))


def anchors_of(
    objects: torch.Tensor, objects_mask: torch.Tensor, boxes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The text call's box under teacher forcing: per item the detection that is the referent
    (box IoU ≥ :data:`~switchboard.router.signals.MATCH_IOU`, the object the call's index
    names) ``[B, 4]``, and whether there is one ``[B]`` (none: the detector missed it)."""
    from .objects import box_iou
    from .signals import MATCH_IOU

    iou = box_iou(objects[..., :4].float(), boxes.float()).masked_fill(~objects_mask.bool(), 0.0)
    best, idx = iou.max(-1)
    anchor = objects[torch.arange(len(idx)), idx, :4].float()
    return anchor, best >= MATCH_IOU


def refine_losses(
    heads: SignalHeads,
    sam: Any,
    tool: str,
    group: list[Example],
    inputs: dict[str, Any],
    target: torch.Tensor,
    boxes: torch.Tensor,
) -> list[torch.Tensor]:
    """The hybrid path's mask loss: the box of the object the text call names (the matched
    detection) as SAM's prompt, refined by the heads' residual (``refine=True``), for the
    items whose referent the detector found."""
    anchor, found = anchors_of(inputs["objects"], inputs["objects_mask"], boxes)
    if not bool(found.any()):
        return []
    keep = found.nonzero()[:, 0]
    sub = {k: (v[keep] if torch.is_tensor(v) else v) for k, v in inputs.items()}
    out = heads(tool, **sub, refine=True, anchor=anchor[keep])
    emb = torch.stack([group[int(i)].embedding for i in keep]).float()
    logits = sam_refine_logits(sam, emb, anchor[keep], out.signal)
    return [dice_bce(logits, target[keep])]


def fit_location_code(
    heads: SignalHeads, sam: Any, steps: int, boxes: int = 256, lr: float = 1e-3
) -> float:
    """Fit each located tool's location code alone on random boxes against SAM's box tokens,
    then freeze it (before the heads' training: a box is a box whatever the request; trained
    with the heads it learnt slowly — MSE 0.5 after 150 steps vs 0.005 alone after 1500, target
    variance 1.6 — and, left trainable after the fit, drifted to 0.05–0.1 as the prompt loss
    bent it towards the pointer's early mistakes). The prompt loss's gradient still reaches the
    pointed box through it. Returns the last MSE."""
    params = [p for m in heads.box_code.values() for p in m.parameters()]
    if not params or steps <= 0:
        return 0.0
    opt = torch.optim.AdamW(params, lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        loss = torch.zeros(())
        for tool in heads.box_code:
            b = random_boxes(boxes)
            loss = loss + prompt_loss(sam, heads.located_signal(tool, b), b).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    heads.box_code.requires_grad_(False)
    return float(loss) / len(heads.box_code)


def fit_pointer(
    heads: SignalHeads,
    preset: SignalPreset,
    cache: list[Example],
    rng: np.random.Generator,
    log: Any = print,
) -> float:
    """Train what points (the fusion, the modular pointer, the patch pointer) on the pointer
    and kind losses alone for ``preset.pointer_steps`` steps before the heads' full training:
    without SAM's decoder in the step it runs ~3x faster, and in the full steps' 18 minutes
    the pointer had ~1300 steps to learn from. Returns the last pointer loss."""
    from switchboard.specialists.schedule import cosine_lr

    params = [p for p in heads.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=0.01)
    loss = torch.zeros(())
    t0 = time.time()
    for step in range(preset.pointer_steps):
        idx = rng.choice(len(cache), size=min(preset.batch, len(cache)), replace=False)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(preset.lr, step, preset.pointer_steps, preset.warmup, 0.0)
        losses = signal_losses(heads, None, [cache[i] for i in idx], preset, False, True)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss = losses["pointer"]
        if step % 200 == 0:
            log(
                f"pointer step {step} pointer {float(loss):.3f} kind "
                f"{float(losses['kind']):.3f} ({time.time() - t0:.0f} s)"
            )
    return float(loss)


@torch.no_grad()
def validate_signals(heads: SignalHeads, sam: Any, examples: list[Example]) -> dict[str, Any]:
    """On cached examples (segment and track): mIoU of SAM's low-res mask from the signal
    alone against the referent's and how often the centre of the pointed box is on the
    referent, by expression kind and for the missed and occluded referents; and for segment
    referents the detector found, the matched detection's box prompt alone (the text path)
    against the same box refined by the signal (the hybrid path)."""
    heads.eval()
    rows: dict[str, list[tuple[float, bool]]] = {}
    boxed: dict[str, list[tuple[float, float]]] = {}

    def iou_of(logits: torch.Tensor, ref: torch.Tensor) -> float:
        low = logits > 0
        return float((low & ref).sum()) / max(1.0, float((low | ref).sum()))

    for ex in examples:
        if ex.tool not in ("segment", "track") or ex.memory is None:
            continue
        inputs = head_inputs(heads, [ex])
        out = heads(ex.tool, **inputs)
        emb = ex.embedding.float()[None]
        ref = ex.mask > 0.5
        iou = iou_of(sam_signal_logits(sam, emb, out.signal)[0], ref)
        side = ref.shape[-1]
        cx, cy = (
            ((out.committed[0, :2] + out.committed[0, 2:]) / 2 * side).long().clamp(0, side - 1)
        )
        groups = [ex.kind or ex.tool] + ["missed"] * ex.missed + ["occluded"] * ex.occluded
        for g in groups:
            rows.setdefault(g, []).append((iou, bool(ref[cy, cx])))
        if ex.tool in heads.refine_out and inputs["objects"] is not None:
            anchor, found = anchors_of(inputs["objects"], inputs["objects_mask"], ex.box[None])
            if bool(found[0]):
                r = heads(ex.tool, **inputs, refine=True, anchor=anchor).signal
                alone = iou_of(sam_refine_logits(sam, emb, anchor, torch.zeros_like(r))[0], ref)
                refined = iou_of(sam_refine_logits(sam, emb, anchor, r)[0], ref)
                for g in ["all", *(["occluded"] * ex.occluded)]:
                    boxed.setdefault(g, []).append((alone, refined))
    allrows = [r for rs in rows.values() for r in rs]
    res: dict[str, Any] = {"n": len(allrows)}
    for name, rs in [("all", allrows), *sorted(rows.items())]:
        if rs:
            res[f"{name}_miou"] = round(float(np.mean([r[0] for r in rs])), 4)
            res[f"{name}_pointer_hit"] = round(float(np.mean([r[1] for r in rs])), 4)
            res[f"{name}_n"] = len(rs)
    for name, pairs in boxed.items():
        res[f"box_{name}_miou"] = round(float(np.mean([p[0] for p in pairs])), 4)
        res[f"box_refined_{name}_miou"] = round(float(np.mean([p[1] for p in pairs])), 4)
        res[f"box_{name}_n"] = len(pairs)
    for tool, gate in heads.refine_gate.items():
        res[f"gate_{tool}"] = round(float(torch.tanh(gate)), 4)
    heads.train()
    return res


# -- the stage ---------------------------------------------------------------------------------
def build_cache(
    router: RouterModel,
    targets: SpecialistTargets,
    proposer: Any,
    source: CacheSource,
    registry: Registry,
    work: Path,
    batch: int = 8,
    log: Any = print,
) -> list[Example]:
    """The examples of ``source`` with the router frozen (no grad): chunk files
    ``<work>/cache-<name>-s<seed>-<k>.pt`` are loaded when they exist and built when not, so
    an interrupted build resumes where it stopped."""
    paths = [
        work / f"cache-{source.name}-s{source.seed}-{k:02d}.pt"
        for k in range(-(-source.n // CACHE_CHUNK))
    ]
    items: list[SignalItem] | None = None
    out: list[Example] = []
    t0 = time.time()
    for k, path in enumerate(paths):
        if path.is_file():
            out += torch.load(path, weights_only=False)
            continue
        if items is None:
            items = draw_signal_items(
                "train",
                source.n,
                source.seed,
                registry,
                dict(source.tasks),
                dict(source.kind_keep),
                source.found_keep,
            )
        chunk: list[Example] = []
        todo = items[k * CACHE_CHUNK : (k + 1) * CACHE_CHUNK]
        with torch.no_grad():
            for j in range(0, len(todo), batch):
                for ex in examples_for(router, todo[j : j + batch], targets, proposer):
                    ex.hidden = ex.hidden.half()
                    ex.text_states = ex.text_states.half()
                    ex.words = ex.words.half()
                    ex.memory = None if ex.memory is None else ex.memory.half()
                    ex.embedding = None if ex.embedding is None else ex.embedding.half()
                    chunk.append(ex)
        torch.save(chunk, path)
        out += chunk
        log(f"cache {source.name}: {len(out)}/{source.n} ({time.time() - t0:.0f} s)")
    return out


def start_heads(
    heads: SignalHeads,
    sam: Any,
    preset: SignalPreset,
    preset_name: str,
    cache: list[Example],
    work: Path,
    log: Any = print,
) -> None:
    """The heads' starting point: the location code fitted (:func:`fit_location_code`, then
    frozen) and the pointer trained first (:func:`fit_pointer`). Neither involves the
    discriminator, so the synergy run and its ablation share it: it is saved in ``work`` under
    a key of the config (less the synergy settings) and the preset, and the second run loads
    it — the ablation then differs from the synergy run in the adversarial loss alone."""
    from safetensors.torch import load_file, save_file

    cfg = asdict(heads.config)
    for k in ("synergy", "synergy_weight", "grl_lambda", "grl_ramp"):
        cfg.pop(k)
    key = json.dumps(
        {
            "config": cfg,
            "preset": preset_name,
            "code_steps": preset.code_steps,
            "pointer_steps": preset.pointer_steps,
            "lr": preset.lr,
            "batch": preset.batch,
            "kind_weight": preset.kind_weight,
            "cache": [asdict(c) for c in preset.cache],
        },
        sort_keys=True,
        default=str,
    )
    path, keyfile = work / f"start-{preset_name}.safetensors", work / f"start-{preset_name}.json"
    if path.is_file() and keyfile.is_file() and keyfile.read_text() == key:
        heads.load_state_dict(load_file(str(path)))
        heads.box_code.requires_grad_(False)
        log(f"heads start from {path} (location code and pointer already trained)")
        return
    if preset.code_steps:
        t = time.time()
        mse = fit_location_code(heads, sam, preset.code_steps)
        log(f"location code: MSE {mse:.4f} to SAM's box tokens ({time.time() - t:.0f} s)")
    if preset.pointer_steps and cache:
        t = time.time()
        last = fit_pointer(heads, preset, cache, np.random.default_rng(2), log)
        log(f"pointer: loss {last:.3f}, {preset.pointer_steps} steps ({time.time() - t:.0f} s)")
    if preset.code_steps or preset.pointer_steps:
        save_file({k: v.detach().contiguous() for k, v in heads.state_dict().items()}, str(path))
        keyfile.write_text(key)


def train_signals(
    preset_name: str = "tiny",
    synergy: bool = True,
    router_dir: Path | None = None,
    out: Path | None = None,
    work: Path = Path("runs/signals"),
    registry: Registry | None = None,
    log: Any = print,
) -> Path:
    """Train the signal heads (cached mode: router frozen) and save them into ``out`` (the
    router folder by default; the no-synergy ablation goes to ``<router>/signals-nosynergy``)."""
    from switchboard.core.config import models_dir
    from switchboard.specialists import default_registry
    from switchboard.specialists.training import fit

    preset = SIGNAL_PRESETS[preset_name]
    registry = registry or default_registry()
    router_dir = Path(router_dir) if router_dir else models_dir() / "router-tiny"
    if out is None:
        out = router_dir if synergy else router_dir / "signals-nosynergy"
    torch.manual_seed(0)
    router = RouterModel.from_pretrained(router_dir, trainable=preset.end_to_end)
    router.eval()
    targets = SpecialistTargets(preset.tune_decoder)
    proposer = ObjectProposer(models_dir() / "detect-tiny")
    heads = _new_heads(router, registry, preset, synergy, proposer.num_classes)
    work.mkdir(parents=True, exist_ok=True)
    cache: list[Example] = []
    held: list[Example] = []
    if not preset.end_to_end:
        for source in preset.cache:
            cache += build_cache(router, targets, proposer, source, registry, work, log=log)
        # Every 20th cached example is held out: a check on items the heads never saw.
        held = cache[::HOLDOUT_EVERY]
        cache = [ex for i, ex in enumerate(cache) if i % HOLDOUT_EVERY]
        log(f"cache: {len(cache)} training examples, {len(held)} held out")
    start_heads(heads, targets.sam, preset, preset_name, cache, work, log)
    # Resumable: the heads (and what else trains) are in the state file with the optimizer.
    modules = _trained_modules(heads, targets, router, preset)
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=0.01)
    t0 = time.time()

    def loss_at(step: int) -> torch.Tensor:
        if preset.end_to_end:
            batch_items = draw_signal_items("train", preset.batch, 1000 + step, registry)
            examples = examples_for(router, batch_items, targets, proposer)
        else:
            rng = np.random.default_rng([step, 1])
            idx = rng.choice(len(cache), size=min(preset.batch, len(cache)), replace=False)
            examples = [cache[i] for i in idx]
        frac = (time.time() - t0) / (preset.minutes * 60) if preset.minutes else 0.0
        heads.progress = max(frac, step / preset.steps)
        losses = signal_losses(heads, targets.sam, examples, preset, synergy)
        if step % 100 == 0:
            said = " ".join(f"{k} {float(v):.3f}" for k, v in losses.items())
            log(f"step {step} {said} ({time.time() - t0:.0f} s)")
        return losses["total"]

    state = work / ("signals_state.pt" if synergy else "signals_state_nosynergy.pt")
    fitted = fit(
        "signals",
        loss_at,
        params,
        opt,
        steps=preset.steps,
        lr=preset.lr,
        warmup=preset.warmup,
        minutes=preset.minutes,
        checkpoint_every=preset.checkpoint_every,
        state_path=state,
        modules=modules,
        skip_finished=True,
    )
    heads.eval().save(out, fp16=True, base=None if synergy else router_dir)
    if preset.end_to_end:
        router.save_pretrained(out if synergy else work / "router", fp16=True)
    _save_record(fitted, heads, targets, preset, preset_name, synergy, out, len(cache), held, log)
    return out


def _trained_modules(
    heads: SignalHeads, targets: SpecialistTargets, router: RouterModel, preset: SignalPreset
) -> dict[str, torch.nn.Module]:
    """What the stage trains, by the name its state file keeps it under: the heads, SAM's
    mask decoder with ``tune_decoder``, the router (its LoRA adapter and new token rows; the
    vision tower stays as invoke settled it) with ``end_to_end``."""
    modules: dict[str, torch.nn.Module] = {"heads": heads}
    if preset.tune_decoder:
        modules["mask_decoder"] = targets.sam.mask_decoder
    if preset.end_to_end:
        router.vision.requires_grad_(False)
        modules["router"] = router
    return modules


def _new_heads(
    router: RouterModel, registry: Registry, preset: SignalPreset, synergy: bool, classes: int
) -> SignalHeads:
    """Fresh heads for every registered tool with a signal, sized to the router and preset."""
    cfg = SignalConfig.from_registry(
        registry,
        llm_dim=router.llm.get_input_embeddings().weight.shape[1],
        vision_dim=router.vision.width,
        grid=router.vision.grid,
        width=preset.width,
        depth=preset.depth,
        synergy=synergy,
        num_classes=classes,
    )
    return SignalHeads(cfg).train()


def _save_record(
    fitted: Any,
    heads: SignalHeads,
    targets: SpecialistTargets,
    preset: SignalPreset,
    preset_name: str,
    synergy: bool,
    out: Path,
    n_cached: int,
    held: list[Example],
    log: Any,
) -> None:
    """The tuned mask decoder (if any), the loss plot and the training record with the
    held-out check (:func:`validate_signals`) beside the heads."""
    from .train import _plot

    if preset.tune_decoder:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in targets.sam.mask_decoder.state_dict().items()},
            str(out / "sam_mask_decoder.safetensors"),
        )
    _plot(fitted.history, out / ("signals-loss.png" if synergy else "loss.png"))
    record = {"stage": "signals", "preset": preset_name, **asdict(preset), "synergy": synergy,
              **fitted.summary(50), "cached_examples": n_cached,
              "held_out": validate_signals(heads, targets.sam, held)}  # fmt: skip
    log(f"held out: {record['held_out']}")
    (out / ("signals-train.json" if synergy else "train.json")).write_text(
        json.dumps(record, indent=2)
    )
