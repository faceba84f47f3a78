"""Train the router on ShapeWorld, stage by stage.

    switchboard train router --stage vision --preset tiny   # our ViT on dense ShapeWorld labels
    switchboard train router --stage align  --preset tiny   # captions + patch-text contrast
    switchboard train router --stage ground --preset tiny   # boxes, regions, counts, frames
    switchboard train router --stage invoke --preset tiny   # requests → calls, step by step
    switchboard train router --stage invoke --preset smoke  # a few steps; what CI runs

Each stage starts from the previous stage's output folder (``runs/router/<stage>/model`` or
the committed ``trained_models/router-tiny``) when there is one, trains the LoRA adapters, the
new token rows, the projector, the region encoder and (in ``align`` and ``ground``) our vision
tower, and writes the router folder, ``loss.png`` and ``train.json``. Runs are resumable and
time-budgeted like the other recipes; the same script runs under ``accelerate launch`` for the
GPU preset (one process per device, gradients averaged by accelerate).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from switchboard.agent.tools import with_agent_tools
from switchboard.core import Registry
from switchboard.core.config import models_dir
from switchboard.world.language import attribute_expressions, best_name, questions
from switchboard.world.requests import TASK_WEIGHTS, make_request
from switchboard.world.scene import generate_scene
from switchboard.world.splits import SPLITS

from .data import (
    RENAME_SHARE,
    SYSTEM,
    TRAIN_NOUNS,
    Item,
    caption_for,
    draw_names,
    items_for,
    match_object,
    rename_text,
    scene_objects,
)
from .dialogue import conversation_share_items
from .model import RouterConfig, RouterModel
from .prompt import user_message

STAGES = ("vision", "align", "ground", "invoke")
LLM_STAGES = STAGES[1:]  # the stages that train through the LLM


@dataclass
class RouterPreset:
    steps: int
    batch: int = 8
    lr: float = 3e-4
    warmup: int = 20
    minutes: float = 0.0  # time budget; the cosine schedule anneals over it
    stage_minutes: dict[str, float] | None = None  # per-stage budgets overriding ``minutes``
    checkpoint_every: int = 50
    contrastive_weight: float = 0.5  # align stage
    llm: str = ""  # base LM override
    vit: dict[str, Any] | None = None  # ViT override for a fresh router
    from_committed: bool = True  # with no earlier stage in this run, start from router-tiny
    # Share of ``invoke`` items drawn from ``ground`` (rehearsal): invoke alone after ground
    # wears the grounding away, and a new vision tower needs both to be learnt together.
    ground_replay: float = 0.0
    # Share of ``invoke`` items drawn from scripted conversations (router/dialogue.py): one
    # step of one turn, with the earlier turns' words in front.
    conversation_share: float = 0.0
    # Extra weight on some tasks of the single-request draw (``world.requests.TASK_WEIGHTS``
    # times this); the tasks not named keep their weight.
    task_weights: dict[str, float] | None = None
    # Seeds the draw of each step's requests: a continuation of a run takes another one, so
    # its steps are not the same requests again.
    draw_seed: int = 17


PRESETS = {
    # Budgets on 2 CPU cores (~10 s per step of 8): the vision stage has its own preset in
    # router/pretrain.py; invoke, which the tool-call metrics measure, gets the most.
    "tiny": RouterPreset(
        steps=3000,
        minutes=45,
        stage_minutes={"align": 15, "ground": 20, "invoke": 40},
        ground_replay=0.35,
        conversation_share=0.25,
    ),
    # The whole recipe in one call of at most 9 minutes on one H100/H200 (``train_all``):
    # vision 1.5 min (router/pretrain.py), then align, ground and invoke (object list, renamed
    # vocabulary, grounding replayed) from a fresh router.
    "gpu": RouterPreset(
        steps=6000,
        batch=32,
        lr=2e-4,
        stage_minutes={"align": 1.0, "ground": 1.5, "invoke": 3.0},
        ground_replay=0.35,
        conversation_share=0.25,
        from_committed=False,
    ),
    # The object-list prompt taught to a trained router: invoke (with grounding replayed)
    # from the committed router-tiny, whose call format and vision tower carry over.
    "objects": RouterPreset(steps=3000, minutes=70, ground_replay=0.35),
    # Its continuation (the committed object-list router, trained on): a longer budget, the
    # same recipe; resumable like every preset.
    "objects-long": RouterPreset(steps=3000, minutes=100, ground_replay=0.35),
    # Conversations taught to the committed object-list router: a quarter of the invoke items
    # are turns of scripted conversations (follow-ups, corrections, undo/redo, thanks) with
    # the earlier turns in front; the rest as before, so single requests are kept.
    "conversations": RouterPreset(
        steps=3000, minutes=85, ground_replay=0.25, conversation_share=0.3
    ),
    # Its continuation, aimed at what the conversations run wore away or never reached:
    # tracking (a clip's "where does it go" was answered as a frame's "where is it", which
    # the grounding rehearsal teaches) and plans of two steps or over a group.
    "plans": RouterPreset(
        steps=3000,
        minutes=60,
        ground_replay=0.2,
        conversation_share=0.25,
        task_weights={"track": 3.0, "segment_recolor": 3.0, "recolor_all": 1.5, "remove_all": 1.5},
        draw_seed=29,
    ),
    # Video edits taught to the committed router: "make the star blue" with a clip is an edit
    # of the clip (the edit tool takes a video), not a track; the same words with an image
    # stay an image edit. Tracking is drawn more, so that it is kept apart.
    "video-edits": RouterPreset(
        steps=3000,
        minutes=40,
        ground_replay=0.2,
        conversation_share=0.2,
        task_weights={
            "video_recolor": 3.0,
            "video_remove": 3.0,
            "video_replace": 3.0,
            "track": 2.0,
        },  # fmt: skip
        draw_seed=31,
    ),
    "smoke": RouterPreset(
        steps=2,
        batch=2,
        warmup=1,
        checkpoint_every=1,
        vit={"image_size": 64, "patch_size": 16, "width": 32, "depth": 1, "heads": 2},
        from_committed=False,
        conversation_share=0.5,
    ),
}


# -- items per stage -------------------------------------------------------------------------
def _box_words(box: Any, size: int) -> str:
    """A box as words the LM can write: XYXY in 0..99 of the image side."""
    return "[" + ",".join(str(min(99, int(float(v) * 100 / size))) for v in box) + "]"


ABSENT_SHARE = 0.06  # invoke requests whose referent is named by a class the list lacks


def stage_items(
    stage: str, seed: int, registry: Registry, task_weights: dict[str, float] | None = None
) -> list[Item]:
    """The items of one training seed for ``stage`` (half of them with the detector's classes
    renamed, :data:`~switchboard.router.data.RENAME_SHARE`); ``task_weights`` scales the
    draw of an ``invoke`` request's task."""
    rng = np.random.default_rng([seed, 5])
    names = draw_names(rng) if rng.random() < RENAME_SHARE else None
    if stage == "invoke":
        absent = None
        if rng.random() < ABSENT_SHARE:
            taken = set((names or {}).values())
            free = [n for n in TRAIN_NOUNS if n not in taken]
            absent = free[int(rng.integers(len(free)))]
        task = None
        if task_weights:
            tasks = list(TASK_WEIGHTS)
            # A task off by default (weight 0: the video edits) is drawn at its preset weight.
            w = np.array([(TASK_WEIGHTS[t] or float(t in task_weights)) * task_weights.get(t, 1.0)
                          for t in tasks])  # fmt: skip
            task = tasks[int(np.random.default_rng([seed, 23]).choice(len(tasks), p=w / w.sum()))]
        return items_for(make_request(seed, "train", task), registry, names, absent)
    scene = generate_scene(seed)
    objects = scene_objects(scene.image, names)
    media = [scene.image], [None]
    system = {"role": "system", "content": SYSTEM}

    def qa(question: str, answer: str, task: str, regions: int = 0, box: Any = None) -> Item:
        user = {"role": "user", "content": user_message(question, True, objects, regions)}
        return Item(
            [system, user], *media, answer, task, answer=answer, objects=objects, ground_box=box
        )

    if stage == "align":
        text = caption_for(scene, objects, names)
        return [qa("Describe the image.", text, "caption")]
    if stage != "ground":
        raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
    kind = rng.choice(["refer", "region", "question", "video"], p=[0.35, 0.2, 0.35, 0.1])
    if kind == "video":
        item = video_where_item(seed, rng, names)
        if item is not None:
            return [item]
        kind = "refer"
    if kind == "question" or not scene.objects:
        q = questions(scene, rng)
        pick = q[int(rng.integers(len(q)))]
        return [qa(rename_text(pick.text, names), rename_text(pick.answer, names), "question")]
    i = int(rng.integers(len(scene.objects)))
    name = best_name(scene, scene.objects[i].id)
    if name is None:
        q = questions(scene, rng)[0]
        return [qa(rename_text(q.text, names), rename_text(q.answer, names), "question")]
    name = rename_text(name, names)
    if kind == "refer":
        k = match_object(objects, scene.boxes[i])
        where = f"#{k}" if k is not None else _box_words(scene.boxes[i], scene.image.shape[0])
        return [qa(f"Where is the {name}?", where, "ground", box=scene.boxes[i])]
    item = qa("What is this?", f"the {name}", "region", regions=1)
    item.regions = [scene.masks[i]]
    return [item]


def video_where_item(
    seed: int, rng: np.random.Generator, names: dict[str, str] | None = None
) -> Item | None:
    """ "Where is the X in frame k?" over the sampled frames of a clip → the box at frame k
    (the object list is the first frame's: objects move, so the answer is the box in words)."""
    from switchboard.world.requests import generate_scene_from_clip
    from switchboard.world.video import generate_video

    from .data import VIDEO_FRAMES
    from .vision import sample_frames

    clip = generate_video(seed)
    idx = sample_frames(clip.num_frames, VIDEO_FRAMES)
    k = int(rng.integers(len(idx)))
    t = idx[k]
    here = [n for n in range(len(clip.objects)) if clip.present[t, n]]
    if not here:
        return None
    n = here[int(rng.integers(len(here)))]
    first = generate_scene_from_clip(clip)
    names_of = attribute_expressions(first, first.index(clip.objects[n].id))  # positions move
    if not names_of:
        return None
    name = rename_text(names_of[0].text, names)
    box = _box_words(clip.boxes[t, n], clip.size)
    frames = [clip.frames[i] for i in idx]
    objects = scene_objects(frames[0], names)
    question = f"Where is the {name} in frame {k}?"
    user = {"role": "user", "content": user_message(question, True, objects, 0)}
    return Item(
        [{"role": "system", "content": SYSTEM}, user],
        frames,
        list(range(len(idx))),
        box,
        "ground",
        answer=box,
        objects=objects,
        ground_box=clip.boxes[t, n],
    )


# -- tokenization and loss -------------------------------------------------------------------
def encode(router: RouterModel, item: Item) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, labels) for an item: the loss covers the target and the end token only."""
    tok = router.tokenizer
    video = any(t is not None for t in item.frame_index)
    prompt = router.chat_prompt(item.messages, len(item.images), video)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    t_ids = tok(item.target + tok.eos_token, add_special_tokens=False)["input_ids"]
    ids = torch.tensor(p_ids + t_ids)
    labels = torch.tensor([-100] * len(p_ids) + t_ids)
    return ids, labels


def batch_loss(
    router: RouterModel, items: list[Item], contrastive_weight: float = 0.0
) -> torch.Tensor:
    from .model import Region

    embeds, labels = [], []
    for item in items:
        ids, lab = encode(router, item)
        regions = [Region.of(*m.shape, mask=m) for m in item.regions]
        embeds.append(
            router.embed(ids, item.images, regions, item.frame_index or None, objects=item.objects)[
                0
            ]
        )
        labels.append(lab)
    n = max(len(e) for e in embeds)
    d = embeds[0].shape[-1]
    x = torch.zeros(len(items), n, d)
    y = torch.full((len(items), n), -100, dtype=torch.long)
    mask = torch.zeros(len(items), n, dtype=torch.long)
    for b, (e, lab) in enumerate(zip(embeds, labels, strict=True)):
        x[b, : len(e)], y[b, : len(lab)], mask[b, : len(e)] = e, lab, 1
    loss = lm_loss(router, x, mask, y)
    if contrastive_weight > 0:
        loss = loss + contrastive_weight * contrastive_loss(router, items)
    return loss


def lm_loss(
    router: RouterModel,
    x: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    fused: bool | None = None,
) -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions, with the vocabulary projection
    computed only at the positions some row of the batch has a label for: the prompt (system
    text, image tokens) is most of each sequence and its 49k-way logits would be thrown away.
    The projection and the loss are :func:`switchboard.kernels.linear_cross_entropy` — the
    fused Triton kernel (no ``[tokens × vocab]`` logits) where its guard passes (a GPU, or the
    CPU interpreter), else the plain-torch reference; ``fused`` forces one or the other. Same
    value as the model's own ``labels=`` loss."""
    from switchboard.kernels import linear_cross_entropy

    keep = torch.nonzero((labels[:, 1:] != -100).any(0)).squeeze(1)
    base = router.llm.get_base_model()
    hidden = base.model(inputs_embeds=x, attention_mask=mask).last_hidden_state[:, keep]
    head = router.llm.get_output_embeddings()  # (peft's trainable new-token rows merged in)
    target = labels[:, keep + 1].flatten()
    return linear_cross_entropy(hidden.flatten(0, 1), head.weight, target, use_kernel=fused)


def contrastive_loss(router: RouterModel, items: list[Item]) -> torch.Tensor:
    """Patch-token / text contrast (align): the mean projected image token of each image
    against the mean embedding of its caption's tokens, InfoNCE both ways over the batch."""
    imgs = [it.images[0] for it in items if it.images]
    if len(imgs) < 2:
        return torch.zeros(())
    tok = router.tokenizer
    emb = router.llm.get_input_embeddings()
    vis = router.projector(router.encode_images(imgs)).mean(1)
    txt = torch.stack(
        [
            emb(torch.tensor(tok(it.target, add_special_tokens=False)["input_ids"])).mean(0)
            for it in items
            if it.images
        ]
    )
    logits = F.normalize(vis, dim=-1) @ F.normalize(txt, dim=-1).T / 0.07
    target = torch.arange(len(imgs))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# -- the loop --------------------------------------------------------------------------------
def draw_batch(stage: str, step: int, preset: RouterPreset, registry: Registry) -> list[Item]:
    """The training items of ``step``: one random step of each drawn train-split request (or
    scene); in ``invoke``, a ``ground_replay`` share comes from ``ground``."""
    lo, _ = SPLITS["train"]
    rng = np.random.default_rng([step, preset.draw_seed])
    items: list[Item] = []
    while len(items) < preset.batch:
        seed = lo + int(rng.integers(0, 900_000))
        replay = stage == "invoke" and rng.random() < preset.ground_replay
        talk = stage == "invoke" and not replay and rng.random() < preset.conversation_share
        if talk:
            found = conversation_share_items(seed, registry)
        else:
            found = stage_items("ground" if replay else stage, seed, registry, preset.task_weights)
        items.append(found[int(rng.integers(len(found)))])
    return items


def previous_stage(stage: str, work: Path, committed: bool = True) -> Path | None:
    """The folder to start ``stage`` from: the earlier stage's run, else the committed model."""
    k = STAGES.index(stage)
    for earlier in reversed(STAGES[:k]):
        cand = work / earlier / "model"
        if (cand / "router.json").is_file():
            return cand
    folder = models_dir() / "router-tiny"
    return folder if committed and (folder / "router.json").is_file() else None


def build_router(preset: RouterPreset, start: Path | None) -> RouterModel:
    if start is not None:
        return RouterModel.from_pretrained(start, trainable=True)
    cfg = RouterConfig(llm=preset.llm)
    if preset.vit:
        cfg.vit = dict(preset.vit)
    return RouterModel.create(cfg)


def train(
    stage: str,
    preset_name: str = "tiny",
    registry: Registry | None = None,
    out: Path | None = None,
    work: Path = Path("runs/router"),
) -> Path:
    from switchboard.specialists import default_registry
    from switchboard.specialists.training import fit

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
    preset = PRESETS[preset_name]
    registry = with_agent_tools(registry or default_registry())
    run = work / stage
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state_path = run / "state.pt"
    start = run / "model" if (run / "model" / "router.json").is_file() else None
    router = build_router(preset, start or previous_stage(stage, work, preset.from_committed))
    router.train()
    if stage == "vision":  # the tower alone, with dense heads (router/pretrain.py)
        from .pretrain import pretrain_vision

        done_vision = pretrain_vision(router, preset_name, run)
        router.save_pretrained(run / "model")
        _plot(done_vision["history"], run / "loss.png")
        if out is not None:
            router.save_pretrained(out)
        return out or run / "model"
    if stage == "invoke":  # the vision tower is settled by then; only what reads it trains
        router.vision.requires_grad_(False)
    params = [p for p in router.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=0.0)
    if start is None:  # a state without its model folder is stale: start over
        state_path.unlink(missing_ok=True)
    cw = preset.contrastive_weight if stage == "align" else 0.0

    def loss_at(step: int) -> torch.Tensor:
        return batch_loss(router, draw_batch(stage, step, preset, registry), cw)

    fitted = fit(
        stage,
        loss_at,
        params,
        opt,
        steps=preset.steps,
        lr=preset.lr,
        warmup=preset.warmup,
        minutes=(preset.stage_minutes or {}).get(stage, preset.minutes),
        checkpoint_every=preset.checkpoint_every,
        state_path=state_path,
        on_checkpoint=lambda _: router.save_pretrained(run / "model"),
    )
    history, lo = fitted.history, SPLITS["train"][0]
    out = out or (models_dir() / "router-tiny" if stage == "invoke" else run / "model")
    if out != run / "model":
        router.save_pretrained(out, fp16=True)
        _plot(history, out / "loss.png")
    _plot(history, run / "loss.png")
    record = {
        "stage": stage,
        "preset": preset_name,
        **asdict(preset),
        **fitted.summary(20),
        "train_seed_range": [lo, lo + 900_000],
        "tools": registry.names(),
    }
    (run / "train.json").write_text(json.dumps(record, indent=2))
    if out != run / "model":
        stages = {
            s: json.loads((work / s / "train.json").read_text())
            for s in STAGES
            if (work / s / "train.json").is_file()
        }
        (out / "train.json").write_text(json.dumps(stages, indent=2))
    return out


def train_all(
    preset_name: str = "gpu",
    registry: Registry | None = None,
    out: Path | None = None,
    work: Path = Path("runs/router"),
) -> Path:
    """The whole router recipe, each stage from the last: vision, align, ground, invoke (the
    object list and the renamed vocabulary are in invoke's items). With the ``gpu`` preset it
    fits one 9-minute call on one H100/H200; ``out`` (default ``trained_models/router-tiny``)
    is the folder to commit. Each stage resumes from ``work/<stage>`` like :func:`train`."""
    for stage in STAGES[:-1]:
        train(stage, preset_name, registry, work=work)
    return train("invoke", preset_name, registry, out=out, work=work)


def _plot(history: list[tuple[int, float]], path: Path) -> None:
    from switchboard.specialists.training import plot_losses

    plot_losses({"": history}, path)
