"""Training items from scripted conversations (:mod:`switchboard.world.conversations`).

Each turn of a conversation becomes the items :func:`~.data.items_for` makes of a request —
one per call and one for the words after them — with the conversation so far in front, as the
agent hands it to the router when it reads earlier turns (``Agent(history_turns=N)``): each
earlier turn's user words and the agent's reply words. The replies are written by the agent's
own :func:`~switchboard.agent.reply.describe_call` from the true results, so the router learns
from exactly what it will read: "I segmented the small red circle (#3) — mask 1." is where
"now make it yellow" finds its object.

What each kind of turn teaches: a pronoun or "that one" edit names the object by its index
only (its words are in the history, not in the request); a correction or a new topic is a
fresh call on the words said; a question about the conversation ("what colour was it
before?", "how many did you find?") is answered in a word from the history; thanks and
greetings get words and never a call, with a picture at hand or not; "undo" and "redo" call
the agent's ``history`` tool.
"""

from __future__ import annotations

from typing import Any

from switchboard.core import HybridCall, Registry
from switchboard.world.conversations import Conversation, ConvTurn
from switchboard.world.requests import CHAT_ANSWER, Intent

from .codec import format_reply
from .data import DONE, SYSTEM, Item, call_for, match_object, observe, ordered_args, scene_objects
from .prompt import user_message

THANKS_ANSWER = "You're welcome! Tell me if you want anything else changed."


def _calls(t: ConvTurn, objects: Any, registry: Registry) -> list[tuple[HybridCall, list[int]]]:
    """The turn's calls with the object ids each concerns (none: it is answered in words)."""
    scene = t.scene
    assert scene is not None
    k = None
    if t.targets and t.expect in ("mask", "edit"):
        k = match_object(objects, scene.boxes[scene.index(t.targets[0])])
    if t.expect == "mask":
        call = call_for(Intent("segment", list(t.targets), t.ref), registry, k)
    elif t.expect == "edit" and t.ref is not None:
        call = call_for(Intent(t.task, list(t.targets), t.ref, dict(t.params)), registry, k)
    elif t.expect == "edit":  # "it", "that one": the object by its index alone
        o = scene.objects[scene.index(t.targets[0])]
        args: dict[str, Any] = {"op": t.task, **t.params}
        if k is not None:
            args["object"] = k
        else:  # the detector missed it: the words the earlier turn's reply would have used
            args["target"] = f"{o.size} {o.color} {o.shape}"
        call = HybridCall(tool="edit", args=ordered_args(registry.cls("edit"), args))
    elif t.expect == "boxes":
        call = call_for(Intent("detect", list(t.targets), t.ref, dict(t.params)), registry)
    elif t.expect in ("undo", "redo"):
        call = HybridCall(tool="history", args={"op": t.expect})
    else:
        return []
    if call is None:
        raise ValueError(f"no registered tool serves a {t.kind!r} turn")
    return [(call, list(t.targets))]


def _words(t: ConvTurn) -> str:
    if t.expect == "answer":
        return str(t.answer)
    return THANKS_ANSWER if t.kind == "thanks" else CHAT_ANSWER


def _reply(call: HybridCall, t: ConvTurn, objects: Any, k_ids: list[int]) -> str:
    """What the agent says after the call (from the true result), as the history shows it."""
    from switchboard.agent.reply import describe_call
    from switchboard.core.results import Boxes, ImageOut, Masks, Text

    scene = t.scene
    assert scene is not None
    if call.tool == "segment":
        result: Any = Masks(masks=[scene.masks[scene.index(k_ids[0])]], scores=[1.0])
    elif call.tool == "detect":
        idx = [scene.index(i) for i in k_ids]
        result = Boxes(
            xyxy=[tuple(float(v) for v in scene.boxes[i]) for i in idx],
            labels=[scene.objects[i].shape for i in idx],
            scores=[1.0] * len(idx),
        )
    elif call.tool == "edit":
        result = ImageOut(image=scene.image)
    else:
        result = Text(text="done")
    args = dict(call.args)
    if args.get("object") is not None:  # what the agent resolves an index to
        args["box"] = [float(v) for v in objects[int(args["object"]) - 1].xyxy]
    done = {"tool": call.tool, "args": args, "status": "ok", "result": result, "error": None}
    return describe_call(done, objects)


def items_for_conversation(conv: Conversation, registry: Registry) -> list[Item]:
    """Every step of every turn of ``conv`` as an :class:`~.data.Item`, each with the earlier
    turns' words in front. ``registry`` gains the agent's own tools (undo is one) if it lacks
    them, as the agent's registry has them."""
    from switchboard.agent.tools import with_agent_tools

    with_agent_tools(registry)
    history: list[dict[str, str]] = []
    out: list[Item] = []
    for t in conv.turns:
        scene = t.scene
        assert scene is not None
        images = [scene.image]
        objects = scene_objects(scene.image)
        user = {"role": "user", "content": user_message(t.text, True, objects, 0)}
        messages = [{"role": "system", "content": SYSTEM}, *history, user]

        def item(
            msgs: list[dict[str, str]],
            target: str,
            _t: ConvTurn = t,
            _images: list = images,
            _objects: Any = objects,
            **kw: Any,
        ) -> Item:
            return Item(
                list(msgs),
                _images,
                [None],
                target,
                f"conversation:{_t.kind}",
                objects=_objects,
                **kw,
            )

        calls = _calls(t, objects, registry)
        if not calls:
            words = _words(t)
            out.append(item(messages, words, answer=words))
            history += [
                {"role": "user", "content": t.text},
                {"role": "assistant", "content": words},
            ]
            continue
        said = []
        for step, (call, ids) in enumerate(calls):
            target = format_reply("", [call], registry, with_signals=False)
            out.append(item(messages, target, step=step, calls=[call]))
            seen = observe(call, scene, ids, objects)
            messages = [*messages, {"role": "assistant", "content": target},
                        {"role": "user", "content": seen}]  # fmt: skip
            said.append(_reply(call, t, objects, ids))
        out.append(item(messages, DONE, step=len(calls), answer=DONE))
        history += [
            {"role": "user", "content": t.text},
            {"role": "assistant", "content": " ".join(said)},
        ]
    return out


def conversation_share_items(seed: int, registry: Registry) -> list[Item]:
    """The items of the train-split conversation drawn by ``seed``."""
    from switchboard.world.conversations import make_conversation

    return items_for_conversation(make_conversation(seed, "train"), registry)
