"""ShapeWorld edit pairs: recolour, remove, add, move and replace, with exact edit masks.

``apply_edit`` re-renders the scene with the change on the same background, so the before and
after images differ only where a changed object was or now is visible: ``edit_mask`` is that
union, and every pixel outside it is byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from switchboard.core.vocabulary import PLACES

from .language import best_name
from .scene import (
    COLOR_NAMES,
    SHAPES,
    SIZE_NAMES,
    Scene,
    generate_scene,
    is_valid,
    sample_object,
    with_objects,
)

EDIT_OPS = ("recolor", "remove", "add", "move", "replace")


class EditError(ValueError):
    """The requested edit cannot be made on this scene (e.g. no room to add an object)."""


@dataclass
class EditPair:
    op: str
    before: Scene
    after: Scene
    target: int | None  # object id edited (None for "add": the new object is ``params["id"]``)
    params: dict[str, Any]
    edit_mask: np.ndarray = field(repr=False)


def place_of(x: float, y: float, size: int) -> str:
    col, row = min(int(3 * x / size), 2), min(int(3 * y / size), 2)
    return next(name for name, cell in PLACES.items() if cell == (col, row))


def _point_in(
    place: str, size: int, radius: float, rng: np.random.Generator
) -> tuple[float, float]:
    col, row = PLACES[place]
    cell = size / 3
    pad = radius * 1.15 + 2
    lo_x, hi_x = max(col * cell, pad), min((col + 1) * cell, size - pad)
    lo_y, hi_y = max(row * cell, pad), min((row + 1) * cell, size - pad)
    # The centre stays in the named cell; large shapes may overlap its borders.
    x = rng.uniform(lo_x, hi_x) if hi_x > lo_x else (col + 0.5) * cell
    y = rng.uniform(lo_y, hi_y) if hi_y > lo_y else (row + 0.5) * cell
    return float(x), float(y)


def apply_edit(
    scene: Scene,
    op: str,
    target: int | None,
    params: dict[str, Any],
    rng: np.random.Generator,
    tries: int = 20,
) -> EditPair:
    """Apply one edit. ``params``: recolor {color}; add {shape, color, size, place};
    move {place}; replace {shape, color?}; remove {}. Placement is drawn from ``rng``."""
    objects = list(scene.objects)
    changed: list[int] = []
    if op == "add":
        new_id = max((o.id for o in objects), default=-1) + 1
        for _ in range(tries):
            obj = sample_object(
                rng,
                new_id,
                scene.size,
                shape=params["shape"],
                color=params["color"],
                size_name=params["size"],
            )
            x, y = _point_in(params["place"], scene.size, obj.radius, rng)
            after = with_objects(scene, [*objects, replace(obj, x=x, y=y)])
            if is_valid(after):
                break
        else:
            raise EditError(f"no room to add a {params['shape']} in the {params['place']}")
        params = {**params, "id": new_id}
        changed = [new_id]
    else:
        if target is None:
            raise EditError(f"{op} needs a target object")
        i = scene.index(target)
        o = objects[i]
        changed = [target]
        if op == "recolor":
            objects[i] = replace(o, color=params["color"])
        elif op == "remove":
            objects.pop(i)
        elif op == "replace":
            objects[i] = replace(
                o,
                shape=params["shape"],
                color=params.get("color") or o.color,
                angle=0.0 if params["shape"] == "circle" else o.angle,
            )
        elif op != "move":
            raise EditError(f"unknown edit {op!r}; expected one of {EDIT_OPS}")
        if op == "move":
            for _ in range(tries):
                x, y = _point_in(params["place"], scene.size, o.radius, rng)
                objects[i] = replace(o, x=x, y=y)
                after = with_objects(scene, objects)
                if is_valid(after):
                    break
            else:
                raise EditError(f"no room to move object {target} to the {params['place']}")
        else:
            after = with_objects(scene, objects)
            if not is_valid(after):
                raise EditError(f"{op} would hide another object")
    edit_mask = np.zeros((scene.size, scene.size), dtype=bool)
    for obj_id in changed:
        for s in (scene, after):
            if any(o.id == obj_id for o in s.objects):
                edit_mask |= s.masks[s.index(obj_id)]
    return EditPair(op, scene, after, None if op == "add" else target, params, edit_mask)


def sample_edit_params(
    scene: Scene, op: str, target: int | None, rng: np.random.Generator
) -> dict[str, Any]:
    """Random parameters for ``op`` that actually change the scene."""

    def pick(options: tuple[str, ...], exclude: str | None = None) -> str:
        choices = [c for c in options if c != exclude]
        return choices[int(rng.integers(len(choices)))]

    o = scene.objects[scene.index(target)] if target is not None else None
    if op == "recolor":
        return {"color": pick(COLOR_NAMES, o.color if o else None)}
    if op == "add":
        return {
            "shape": pick(SHAPES),
            "color": pick(COLOR_NAMES),
            "size": pick(SIZE_NAMES),
            "place": pick(tuple(PLACES)),
        }
    if op == "move":
        here = place_of(o.x, o.y, scene.size) if o else None
        return {"place": pick(tuple(PLACES), here)}
    if op == "replace":
        return {"shape": pick(SHAPES, o.shape if o else None)}
    return {}


def generate_edit(seed: int, op: str | None = None, size: int = 256) -> EditPair:
    """A random edit pair, deterministic by ``seed``; the target has a referring expression."""
    rng = np.random.default_rng([seed, 7])
    op = op or EDIT_OPS[int(rng.integers(len(EDIT_OPS)))]
    for attempt in range(50):
        scene = generate_scene(seed + attempt * 7919, size=size, max_objects=6)
        named = [o.id for o in scene.objects if best_name(scene, o.id)]
        if op != "add" and not named:
            continue
        target = None if op == "add" else named[int(rng.integers(len(named)))]
        try:
            return apply_edit(scene, op, target, sample_edit_params(scene, op, target, rng), rng)
        except EditError:
            continue
    raise EditError(f"could not make a {op} edit from seed {seed}")
