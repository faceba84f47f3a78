"""Router evaluation on held-out phrasings (the test split's paraphrase templates).

Two rows on the same items: our trained router (constrained decoding), and the untuned base
model prompted with the tool descriptions and schemas (the prompt-only approach of HuggingGPT
and Visual ChatGPT: free generation, parsed afterwards; it sees the text only, as a text LLM).

Metrics: the call-or-words decision, tool selection, exact call match and argument accuracy
(arguments compared after validation, so defaults written or left out count the same), valid
calls, counting/attribute answers, and grounding (box IoU ≥ 0.5).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import numpy as np
import torch
from switchboard.core import HybridCall, MalformedCallError, Registry
from switchboard.evals.metrics import box_iou
from switchboard.router.codec import Reply, call_json, parse_reply
from switchboard.router.data import Item, items_for, match_object
from switchboard.router.prompt import OBJECT_REF
from switchboard.router.train import stage_items
from switchboard.world.requests import make_request
from switchboard.world.splits import split_seeds

MAX_MISSES = 80
BOX_WORDS = re.compile(r"\[(\d+),(\d+),(\d+),(\d+)\]")


def eval_items(split: str, n: int, registry: Registry) -> list[Item]:
    """Every step of ``n`` requests of ``split``, plus ``n // 4`` grounding questions."""
    items: list[Item] = []
    for seed in split_seeds(split, n):
        items += items_for(make_request(seed, split), registry)
    for seed in split_seeds(split, n // 4, offset=n):
        items += [it for it in stage_items("ground", seed, registry) if it.task == "ground"]
    return items


def grounded(item: Item, said: str) -> bool:
    """Whether a grounding answer points at the true box (IoU ≥ 0.5): ``#k`` is listed object
    k's box, ``[x1,y1,x2,y2]`` a box in hundredths of the image side."""
    m = OBJECT_REF.search(said)
    side = float(item.images[0].shape[0]) if item.images else 100.0
    box = None
    if m and item.objects and 1 <= int(m.group(1)) <= len(item.objects):
        box = item.objects[int(m.group(1)) - 1].xyxy
    elif (w := BOX_WORDS.search(said)) is not None:
        box = [float(v) * side / 100 for v in w.groups()]
    truth = item.ground_box
    if truth is None and (g := BOX_WORDS.search(item.target)) is not None:
        truth = [float(v) * side / 100 for v in g.groups()]
    if box is None or truth is None:
        return False
    a, b = np.array([box], float), np.array([truth], float)
    return bool(box_iou(a, b)[0, 0] >= 0.5)


def _norm_args(registry: Registry, call: HybridCall) -> dict[str, Any]:
    return json.loads(registry.cls(call.tool).parse_args(call.args).model_dump_json())


def _norm_text(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def _miss(item: Item, reply: Reply | None) -> dict[str, Any]:
    """An item the router got wrong: its task and step, what was said, wanted and got."""
    got = None
    if reply is not None:
        got = reply.prose + "".join(call_json(c.tool, c.args) for c in reply.calls)
    said = [m["content"] for m in item.messages if m["role"] == "user"] or [""]
    said = said[-1].replace("{media}", "")
    return {"task": item.task, "step": item.step, "said": said, "want": item.target, "got": got}


def score(items: list[Item], replies: list[Reply | None], registry: Registry) -> dict[str, Any]:
    """The router's replies to ``items`` scored: call decisions, tools, exact calls, arguments,
    answers and grounding, per task, with the first misses."""
    decision, tool, exact, valid, answers, ground = [], [], [], [], [], []
    ground_found: list[bool] = []
    ground_missed: list[bool] = []
    arg_hits = arg_total = 0
    by_task: dict[str, dict[str, list[bool]]] = {}
    misses: list[dict[str, Any]] = []

    def miss(item: Item, reply: Reply | None) -> None:
        if len(misses) < MAX_MISSES:
            misses.append(_miss(item, reply))

    for item, reply in zip(items, replies, strict=True):
        valid.append(reply is not None)
        calls = reply.calls if reply is not None else []
        if item.task == "ground":
            ok = grounded(item, reply.prose if reply else "")
            ground.append(ok)
            found = match_object(item.objects, item.ground_box) is not None
            (ground_found if found else ground_missed).append(ok)
            if not ok:
                miss(item, reply)
            continue
        decision.append(bool(calls) == bool(item.calls))
        if item.task == "question":
            said = reply.prose if reply is not None and not calls else ""
            answers.append(_norm_text(said) == _norm_text(item.answer or ""))
            if not answers[-1]:
                miss(item, reply)
        if not item.calls:
            if not decision[-1] and item.task != "question":
                miss(item, reply)
            continue
        want = item.calls[0]
        got = calls[0] if calls else None
        tool.append(got is not None and got.tool == want.tool)
        w = _norm_args(registry, want)
        g = _norm_args(registry, got) if got is not None and got.tool == want.tool else {}
        exact.append(bool(g) and g == w)
        if not exact[-1]:
            miss(item, reply)
        per = by_task.setdefault(item.task, {"tool": [], "exact": []})
        per["tool"].append(tool[-1])
        per["exact"].append(exact[-1])
        for key in want.args:
            arg_total += 1
            arg_hits += int(key in g and g[key] == w[key])

    def rate(v: list[bool]) -> float | None:
        return float(np.mean(v)) if v else None

    return {
        "items": len(items),
        "valid_calls": rate(valid),
        "decision": rate(decision),
        "tool_selection": rate(tool),
        "exact_call": rate(exact),
        "argument_accuracy": arg_hits / arg_total if arg_total else None,
        "answers": rate(answers),
        "grounding_iou50": rate(ground),
        # the referents the detector listed / missed (a missed one can only be boxed in words)
        "grounding_listed": rate(ground_found),
        "grounding_unlisted": rate(ground_missed),
        "n_ground_unlisted": len(ground_missed),
        "n_calls": len(tool),
        "n_questions": len(answers),
        "n_ground": len(ground),
        # Per request task (every call step of it): where the misses are.
        "by_task": {
            t: {"calls": len(v["tool"]), "tool": rate(v["tool"]), "exact": rate(v["exact"])}
            for t, v in sorted(by_task.items())
        },
        "misses": misses,  # the first MAX_MISSES items got wrong: what was said, wanted, got
    }


def evaluate_router(router: Any, split: str = "test", n: int = 200) -> dict[str, Any]:
    """Our trained router on ``n`` requests of ``split``."""
    items = eval_items(split, n, router.registry)
    replies: list[Reply | None] = []
    lat = []
    for item in items:
        t0 = time.perf_counter()
        try:
            reply, _ = router.route_item(item)
        except MalformedCallError:
            reply = None
        lat.append(time.perf_counter() - t0)
        replies.append(reply)
    res = score(items, replies, router.registry)
    res |= {"split": split, "model": "router-tiny", "route_ms_p50": 1000 * float(np.median(lat))}
    return res


# -- the prompt-only baseline ----------------------------------------------------------------
def tool_prompt(registry: Registry) -> str:
    """A system prompt describing every tool and its argument schema (HuggingGPT style)."""
    from switchboard.router.decoding import call_schema

    lines = [
        "You are an assistant that can call tools on the user's image or video.",
        'To call a tool, answer with <call>{"tool": NAME, "args": {...}}</call> and nothing '
        "else. If no tool is needed, answer in words.",
        "Tools:",
    ]
    schema = call_schema(registry)
    for alt in schema["anyOf"]:
        name = alt["properties"]["tool"]["const"]
        props = alt["properties"]["args"].get("properties", {})
        args = ", ".join(
            f"{k}: {v.get('description', v.get('type', 'value'))}" for k, v in props.items()
        )
        lines.append(f"- {name}: {registry.cls(name).description} Args: {args}")
    return "\n".join(lines)


class BaseModelRouter:
    """The untuned instruct model, prompted with the tool descriptions, free generation."""

    def __init__(self, registry: Registry, source: str | None = None) -> None:
        from switchboard.router.llm import load_llm

        self.registry = registry
        self.tokenizer, self.model = load_llm(source)
        self.system = tool_prompt(registry)

    @torch.no_grad()
    def route_item(self, item: Item, max_new_tokens: int = 96) -> tuple[Reply, str]:
        msgs = [{"role": "system", "content": self.system}] + [
            {**m, "content": m["content"].replace("{media}", "[image attached]\n")}
            for m in item.messages
            if m["role"] != "system"
        ]
        tok = self.tokenizer
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        out = self.model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id
        )
        text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        return parse_reply(_loose_calls(text), self.registry), text


def _loose_calls(text: str) -> str:
    """Give the baseline every benefit: keep only its call blocks when it wrote any, with the
    JSON re-serialized compactly (whitespace inside is not held against it)."""
    blocks = re.findall(r"<call>(.*?)</call>", text, flags=re.S)
    if not blocks:
        return text.replace("<call>", "").replace("</call>", "")
    out = []
    for b in blocks:
        try:
            out.append("<call>" + json.dumps(json.loads(b), separators=(",", ":")) + "</call>")
        except json.JSONDecodeError:
            out.append("<call>" + b + "</call>")
    return "".join(out)


def evaluate_base(registry: Registry, split: str = "test", n: int = 200) -> dict[str, Any]:
    base = BaseModelRouter(registry)
    items = eval_items(split, n, registry)
    replies: list[Reply | None] = []
    lat = []
    for item in items:
        t0 = time.perf_counter()
        try:
            reply, _ = base.route_item(item)
        except MalformedCallError:
            reply = None
        lat.append(time.perf_counter() - t0)
        replies.append(reply)
    res = score(items, replies, registry)
    res |= {
        "split": split,
        "model": "base (prompted)",
        "route_ms_p50": 1000 * float(np.median(lat)),
    }
    return res
