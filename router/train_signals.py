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
  a grounding read-out of the referent's box (segment, track).

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
from .data import Item, items_for, media_for, plan
from .model import Region, RouterModel
from .signals import (
    SignalConfig,
    SignalHeads,
    dice_bce,
    edit_signal_loss,
    pad_texts,
    pointer_loss,
    router_text_span,
    sam_signal_logits,
)

SIGNAL_TASKS = {"segment": 3.0, "segment_recolor": 1.0, "track": 1.5, "recolor": 0.6,
                "remove": 0.6, "add": 0.6, "replace": 0.6, "move": 0.6}  # fmt: skip


@dataclass
class SignalPreset:
    items: int = 4000  # cached training items (cached mode)
    steps: int = 4000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 100
    minutes: float = 0.0
    end_to_end: bool = False  # LLM (LoRA) in the graph; else frozen and cached
    tune_decoder: bool = False  # also train SAM's mask decoder
    box_weight: float = 1.0
    pointer_weight: float = 0.5
    edit_weight: float = 1.0
    width: int = 256
    depth: int = 2


SIGNAL_PRESETS = {
    "tiny": SignalPreset(items=3000, steps=6000, batch=32, minutes=17),
    "gpu": SignalPreset(items=0, steps=3000, batch=32, lr=2e-4, end_to_end=True),
    "smoke": SignalPreset(items=6, steps=2, batch=3, warmup=1, width=32, depth=1),
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
    for item, (intent, ids) in zip(items, steps, strict=False):
        call = item.calls[0]
        if registry.cls(call.tool).signal is None:
            continue
        item.target = format_reply("", [call], registry, with_signals=True)
        kind = intent.params.get("ref_kind")
        if call.tool in ("segment", "track"):
            if scene is None or not ids:
                continue
            mask = scene.masks[scene.index(ids[0])]
            if not mask.any():  # hidden behind others on this frame: nothing to segment
                continue
            out.append(SignalItem(item, call.tool, mask, None, kind, request))
        elif call.tool == "edit":
            text = edit_text(intent, scene, ids)
            if text is not None:
                out.append(SignalItem(item, "edit", None, text, kind, request))
    return out


def draw_signal_items(split: str, n: int, seed: int, registry: Registry) -> list[SignalItem]:
    """``n`` signal items of ``split``, tasks weighted by :data:`SIGNAL_TASKS`."""
    lo, hi = SPLITS[split]
    rng = np.random.default_rng([seed, 23])
    names = list(SIGNAL_TASKS)
    w = np.array([SIGNAL_TASKS[t] for t in names])
    out: list[SignalItem] = []
    while len(out) < n:
        task = names[int(rng.choice(len(names), p=w / w.sum()))]
        req = make_request(lo + int(rng.integers(0, hi - lo)), split, task)
        found = signal_items(req, registry)
        if found:
            out.append(found[int(rng.integers(len(found)))])
    return out


# -- the router side: <sig_k> hidden states and the visual memory -----------------------------
def encode_for_signals(
    router: RouterModel, items: list[Item]
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor]]:
    """Teacher-forced pass over ``items`` (their targets end in ``<sig_k>`` tokens): per item
    the last-layer hidden states at the signal tokens ``[K, d]``, the vision tower's patch
    features of its first image ``[g², dv]`` (None without one), and the last-layer states
    over the request and call ``[L, d]`` (:func:`router_text_span`)."""
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
            router.embed(ids, item.images, regions, item.frame_index if video else None, feats)[0]
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
    last = out.hidden_states[-1]
    hidden = [last[b, pos] for b, pos in enumerate(positions)]
    texts = [last[b, span] for b, span in enumerate(spans)]
    return hidden, firsts, texts


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
    embedding: torch.Tensor | None = None  # SAM image embedding (segment, track)
    mask: torch.Tensor | None = None  # low-res target (segment, track)
    box: torch.Tensor | None = None  # normalized XYXY of the referent
    text: torch.Tensor | None = None  # MiniLM tokens (edit)
    kind: str | None = None


def examples_for(
    router: RouterModel, batch: list[SignalItem], targets: SpecialistTargets
) -> list[Example]:
    """Router features and specialist targets of ``batch`` (differentiable through the router
    when grad is enabled)."""
    hidden, memory, texts = encode_for_signals(router, [s.item for s in batch])
    out = []
    for b, s in enumerate(batch):
        ex = Example(s.tool, hidden[b], memory[b], texts[b], kind=s.ref_kind)
        if s.mask is not None:
            image = s.item.images[0]
            ex.embedding = targets.image_embedding(image)
            ex.mask = targets.low_res(s.mask, 4 * ex.embedding.shape[-1])
            ys, xs = np.nonzero(s.mask)
            h, w = s.mask.shape
            ex.box = torch.tensor([xs.min() / w, ys.min() / h, (xs.max() + 1) / w,
                                   (ys.max() + 1) / h], dtype=torch.float32)  # fmt: skip
        if s.text is not None:
            ex.text = targets.text_tokens(s.text)
        out.append(ex)
    return out


def signal_losses(
    heads: SignalHeads,
    sam: Any,
    examples: list[Example],
    preset: SignalPreset,
    synergy: bool,
) -> dict[str, torch.Tensor]:
    """Per-loss means over ``examples``: ``mask`` (segment/track BCE + Dice through SAM),
    ``edit`` (MSE + cosine), ``box`` (grounding read-out), ``pointer`` (the patch pointer),
    ``disc`` (task discriminator) and ``total``; plus ``disc_acc`` (detached)."""
    by_tool: dict[str, list[Example]] = {}
    for ex in examples:
        by_tool.setdefault(ex.tool, []).append(ex)
    mask_l, edit_l, box_l, point_l, disc_l, correct = [], [], [], [], [], 0
    for tool, group in by_tool.items():
        hidden = torch.stack([e.hidden for e in group]).float()
        mems = [e.memory for e in group]
        memory = None if any(m is None for m in mems) else torch.stack(mems).float()
        if memory is None and any(m is not None for m in mems):
            raise ValueError("a batch of one tool mixes items with and without images")
        text, text_mask = pad_texts([e.text_states.float() for e in group])
        out = heads(tool, hidden, memory, text, text_mask)
        if not synergy:  # the ablation: the discriminator only probes (no gradient back)
            out.task_logits = heads.discriminator(out.invariant.detach())
        label = torch.full((len(group),), heads.task_index(tool), dtype=torch.long)
        disc_l.append(F.cross_entropy(out.task_logits, label, reduction="none"))
        correct += int((out.task_logits.argmax(-1) == label).sum())
        if tool in ("segment", "track"):
            emb = torch.stack([e.embedding for e in group]).float()
            logits = sam_signal_logits(sam, emb, out.signal)
            target = torch.stack([e.mask for e in group])
            mask_l.append(dice_bce(logits, target))
            point_l.append(pointer_loss(out.pointer, target))
            box_l.append(F.l1_loss(out.box, torch.stack([e.box for e in group]),
                                   reduction="none").sum(-1))  # fmt: skip
        elif tool == "edit":
            edit_l.append(edit_signal_loss(out.signal, torch.stack([e.text for e in group])))
    zero = torch.zeros(())

    def mean(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts).mean() if parts else zero

    losses = {"mask": mean(mask_l), "edit": mean(edit_l), "box": mean(box_l),
              "pointer": mean(point_l), "disc": mean(disc_l)}  # fmt: skip
    weight = heads.config.synergy_weight
    losses["total"] = (
        losses["mask"]
        + preset.edit_weight * losses["edit"]
        + preset.box_weight * losses["box"]
        + preset.pointer_weight * losses["pointer"]
        + weight * losses["disc"]
    )
    losses["disc_acc"] = torch.tensor(correct / max(1, len(examples)))
    return losses


# -- the stage ---------------------------------------------------------------------------------
def build_cache(
    router: RouterModel, targets: SpecialistTargets, n: int, seed: int, registry: Registry,
    chunk: int = 8, log: Any = print,
) -> list[Example]:  # fmt: skip
    """``n`` training examples with the router frozen (no grad), in chunks of ``chunk``."""
    items = draw_signal_items("train", n, seed, registry)
    out: list[Example] = []
    t0 = time.time()
    with torch.no_grad():
        for k in range(0, len(items), chunk):
            for ex in examples_for(router, items[k : k + chunk], targets):
                ex.hidden = ex.hidden.half()
                ex.text_states = ex.text_states.half()
                ex.memory = None if ex.memory is None else ex.memory.half()
                ex.embedding = None if ex.embedding is None else ex.embedding.half()
                out.append(ex)
            if (k // chunk) % 25 == 0:
                log(f"cache {len(out)}/{n} ({time.time() - t0:.0f} s)")
    return out


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
    from switchboard.specialists.schedule import cosine_lr

    from .train import _plot

    preset = SIGNAL_PRESETS[preset_name]
    registry = registry or default_registry()
    router_dir = Path(router_dir) if router_dir else models_dir() / "router-tiny"
    if out is None:
        out = router_dir if synergy else router_dir / "signals-nosynergy"
    torch.manual_seed(0)
    router = RouterModel.from_pretrained(router_dir, trainable=preset.end_to_end)
    router.eval()
    targets = SpecialistTargets(preset.tune_decoder)
    cfg = SignalConfig.from_registry(
        registry, llm_dim=router.llm.get_input_embeddings().weight.shape[1],
        vision_dim=router.vision.width, grid=router.vision.grid, width=preset.width,
        depth=preset.depth, synergy=synergy,
    )  # fmt: skip
    heads = SignalHeads(cfg).train()
    params = list(heads.parameters())
    if preset.tune_decoder:
        params += list(targets.sam.mask_decoder.parameters())
    if preset.end_to_end:  # the vision tower is settled by invoke; what reads it trains
        router.vision.requires_grad_(False)
        params += [p for p in router.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=0.01)
    work.mkdir(parents=True, exist_ok=True)
    cache: list[Example] = []
    if not preset.end_to_end:
        cache_path = work / f"cache-{preset_name}-{preset.items}.pt"
        if cache_path.is_file():
            cache = torch.load(cache_path, weights_only=False)
            log(f"cache: {len(cache)} examples from {cache_path}")
        else:
            cache = build_cache(router, targets, preset.items, 0, registry, log=log)
            torch.save(cache, cache_path)
    rng = np.random.default_rng(1)
    history: list[tuple[int, float]] = []
    t0, done = time.time(), 0
    for step in range(preset.steps):
        if preset.end_to_end:
            batch_items = draw_signal_items("train", preset.batch, 1000 + step, registry)
            examples = examples_for(router, batch_items, targets)
        else:
            idx = rng.choice(len(cache), size=min(preset.batch, len(cache)), replace=False)
            examples = [cache[i] for i in idx]
        frac = (time.time() - t0) / (preset.minutes * 60) if preset.minutes else 0.0
        lr = cosine_lr(preset.lr, step, preset.steps, preset.warmup, frac)
        for g in opt.param_groups:
            g["lr"] = lr
        heads.progress = max(frac, step / preset.steps)
        losses = signal_losses(heads, targets.sam, examples, preset, synergy)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append((step, losses["total"].item()))
        done = step + 1
        if step % 100 == 0:
            log(f"step {step} " + " ".join(f"{k} {float(v):.3f}" for k, v in losses.items())
                + f" lr {lr:.1e} ({time.time() - t0:.0f} s)")  # fmt: skip
        if preset.minutes and time.time() - t0 > preset.minutes * 60:
            break
    heads.eval().save(out, fp16=True)
    if preset.end_to_end:
        router.save_pretrained(out if synergy else work / "router", fp16=True)
    if preset.tune_decoder:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in targets.sam.mask_decoder.state_dict().items()},
                  str(out / "sam_mask_decoder.safetensors"))  # fmt: skip
    _plot(history, out / ("signals-loss.png" if synergy else "loss.png"))
    record = {"stage": "signals", "preset": preset_name, **asdict(preset), "synergy": synergy,
              "steps_done": done, "wall_time_s": round(time.time() - t0, 1),
              "cached_examples": len(cache),
              "final_loss_mean_50": float(np.mean([v for _, v in history[-50:]]))}  # fmt: skip
    (out / ("signals-train.json" if synergy else "train.json")).write_text(
        json.dumps(record, indent=2)
    )
    return out
