"""The stricter edit judge (evals.specialists.strict_edit) on held-out ShapeWorld edit pairs:
the true after-images pass it, and the three failures users saw fail it while the detector
judge passes them — a recolour that lost its outline, a removal that left a ghost, an
addition that damaged its neighbour."""

import numpy as np
import pytest
from switchboard.core.vocabulary import COLORS
from switchboard.evals.specialists import judge_edit, strict_edit
from switchboard.world.edits import EDIT_OPS, generate_edit
from switchboard.world.splits import split_seeds


@pytest.fixture(scope="module")
def detector():
    from switchboard.specialists import default_registry

    return default_registry().get("detect").load()


@pytest.mark.parametrize("op", EDIT_OPS)
def test_the_true_edit_passes_wherever_the_detector_sees_it(detector, op):
    for seed in split_seeds("test", 8):
        pair = generate_edit(seed, op)
        res = strict_edit(detector, pair, pair.after.image)
        assert res["ok"] == res["found"], (seed, res)  # the new checks never fail the truth
        if op in ("recolor", "remove"):
            assert res["ok"], (seed, res)


def _box_of(mask: np.ndarray, grow: int = 0) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    return slice(max(ys.min() - grow, 0), ys.max() + 1 + grow), slice(
        max(xs.min() - grow, 0), xs.max() + 1 + grow
    )


def test_a_recolour_that_lost_its_outline_fails(detector):
    """The object's grown box filled with the new colour: the detector still finds that
    colour there, the outline is gone."""
    pair = next(
        p
        for p in (generate_edit(s, "recolor") for s in split_seeds("test", 20))
        if strict_edit(detector, p, p.after.image)["ok"]
    )
    mask = pair.before.masks[pair.before.index(pair.target)]
    blob = pair.after.image.copy()
    blob[_box_of(mask, 2)] = COLORS[pair.params["color"]]
    assert judge_edit(detector, pair, blob)[0]
    res = strict_edit(detector, pair, blob)
    assert not res["ok"] and res["shape_iou"] < 0.9, res


def test_a_removal_with_a_ghost_fails(detector):
    """A third of the object's colour left over the true background: no detection there any
    more, but the pixels are not the background."""
    for seed in split_seeds("test", 20):
        pair = generate_edit(seed, "remove")
        mask = pair.before.masks[pair.before.index(pair.target)]
        ghost = pair.after.image.copy()
        mixed = 0.7 * pair.after.image[mask] + 0.3 * pair.before.image[mask]
        ghost[mask] = mixed.round().astype(np.uint8)
        if judge_edit(detector, pair, ghost)[0]:
            break
    else:
        pytest.fail("no held-out removal whose ghost the detector judge passes")
    res = strict_edit(detector, pair, ghost)
    assert not res["ok"] and res["psnr"] < 28.0, res


def test_an_addition_that_damaged_a_neighbour_fails(detector):
    """The new object drawn right, and half of another object painted over with the
    background's pixels from the scene before: the detector judge passes it, this one not."""
    for seed in split_seeds("test", 20):
        pair = generate_edit(seed, "add")
        if not strict_edit(detector, pair, pair.after.image)["ok"]:
            continue
        new = pair.after.index(pair.params["id"])
        others = [i for i in range(len(pair.after.objects)) if i != new]
        i = max(others, key=lambda j: pair.after.masks[j].sum())
        mask = pair.after.masks[i]
        ys, xs = _box_of(mask)
        half = np.zeros_like(mask)
        half[ys, xs.start : (xs.start + xs.stop) // 2] = True
        damaged = pair.after.image.copy()
        damaged[mask & half] = 128
        if judge_edit(detector, pair, damaged)[0]:
            break
    else:
        pytest.fail("no held-out addition to damage")
    res = strict_edit(detector, pair, damaged)
    assert not res["ok"] and res["others_iou"] < 0.95, res
