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


def _spoiled(detector, op: str, spoil) -> tuple:
    """The first held-out ``op`` pair whose true edit passes the stricter judge and whose true
    after-image, spoiled by ``spoil(pair)``, the detector judge still passes — and that image."""
    for seed in split_seeds("test", 20):
        pair = generate_edit(seed, op)
        if not strict_edit(detector, pair, pair.after.image)["ok"]:
            continue
        image = spoil(pair)
        if judge_edit(detector, pair, image)[0]:
            return pair, image
    pytest.fail(f"no held-out {op} whose spoiled edit the detector judge passes")


def test_a_recolour_that_lost_its_outline_fails(detector):
    """The object's grown box filled with the new colour: the detector still finds that
    colour there, the outline is gone."""

    def blob(pair):
        image = pair.after.image.copy()
        image[_box_of(pair.before.masks[pair.before.index(pair.target)], 2)] = COLORS[
            pair.params["color"]
        ]
        return image

    pair, image = _spoiled(detector, "recolor", blob)
    res = strict_edit(detector, pair, image)
    assert not res["ok"] and res["shape_iou"] < 0.9, res


def test_a_removal_with_a_ghost_fails(detector):
    """A third of the object's colour left over the true background: no detection there any
    more, but the pixels are not the background."""

    def ghost(pair):
        mask = pair.before.masks[pair.before.index(pair.target)]
        image = pair.after.image.copy()
        mixed = 0.7 * pair.after.image[mask] + 0.3 * pair.before.image[mask]
        image[mask] = mixed.round().astype(np.uint8)
        return image

    pair, image = _spoiled(detector, "remove", ghost)
    res = strict_edit(detector, pair, image)
    assert not res["ok"] and res["psnr"] < 28.0, res


def test_an_addition_that_damaged_a_neighbour_fails(detector):
    """The new object drawn right, and the left half of the largest other object painted
    grey: the detector judge passes it, this one not."""

    def damage(pair):
        new = pair.after.index(pair.params["id"])
        others = [i for i in range(len(pair.after.objects)) if i != new]
        mask = pair.after.masks[max(others, key=lambda j: pair.after.masks[j].sum())]
        ys, xs = _box_of(mask)
        half = np.zeros_like(mask)
        half[ys, xs.start : (xs.start + xs.stop) // 2] = True
        image = pair.after.image.copy()
        image[mask & half] = 128
        return image

    pair, image = _spoiled(detector, "add", damage)
    res = strict_edit(detector, pair, image)
    assert not res["ok"] and res["others_iou"] < 0.95, res
