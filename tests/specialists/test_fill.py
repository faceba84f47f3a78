"""Removal by filling the hole from the image's own background, and recolouring inside the
object's mask (specialists/fill.py), on ShapeWorld scenes the thresholds were not tuned on
(tuned on scenes 5000-5079; these are 6000-6059)."""

from __future__ import annotations

import numpy as np
from switchboard.core.vocabulary import COLORS
from switchboard.evals.metrics import psnr
from switchboard.specialists.colors import color_labels
from switchboard.specialists.fill import fill_from_surroundings, fill_smooth, recolor_within
from switchboard.world.edits import apply_edit
from switchboard.world.scene import generate_scene

SEEDS = range(6000, 6060)
# Measured on these 60 removals: 29 holes matched a patch of their own background nearby
# (stripes, checkers, gradients, plain walls; noise backgrounds mostly do not match and go to
# the model), 28 of the 29 restored the true background at >= 28 dB (the stricter judge's bar).


def test_a_removed_objects_hole_is_filled_from_its_own_background():
    rng = np.random.default_rng(0)
    copied = []
    for seed in SEEDS:
        scene = generate_scene(seed)
        oid = scene.objects[0].id
        i = scene.index(oid)
        truth = apply_edit(scene, "remove", oid, {}, rng).after.image
        filled = fill_from_surroundings(scene.image, scene.masks[i])
        if filled is None:
            continue
        out, written = filled
        assert written[scene.masks[i]].all()  # the whole object went
        assert (out[~written] == scene.image[~written]).all()  # nothing else was touched
        copied.append(psnr(out, truth, scene.masks[i]))
    assert len(copied) >= 27, len(copied)
    assert np.mean(np.array(copied) >= 28) >= 0.93, sorted(copied)


def test_a_hole_no_patch_matches_is_filled_by_the_smooth_surface_around_it():
    """The holes of the same 60 scenes that no patch matched (noise over slow shading, and
    textures): the surface fill takes the smooth backgrounds and refuses the textured ones.
    Measured: 23 taken, 19 of them >= 28 dB (the rest 26.6-27.9, and one striped 14.8); 7 of
    the 8 striped or checked holes refused."""
    rng = np.random.default_rng(0)
    taken, refused_textures = [], 0
    for seed in SEEDS:
        scene = generate_scene(seed)
        oid = scene.objects[0].id
        i = scene.index(oid)
        truth = apply_edit(scene, "remove", oid, {}, rng).after.image
        if fill_from_surroundings(scene.image, scene.masks[i]) is not None:
            continue
        filled = fill_smooth(scene.image, scene.masks[i])
        textured = scene.background.kind in ("stripes", "checker")
        if filled is None:
            refused_textures += textured
            continue
        out, written = filled
        assert written[scene.masks[i]].all() and (out[~written] == scene.image[~written]).all()
        taken.append(psnr(out, truth, scene.masks[i]))
    assert len(taken) >= 22, len(taken)
    assert np.mean(np.array(taken) >= 28) >= 0.8, sorted(taken)
    assert refused_textures >= 7


def test_a_gradient_comes_back_under_an_object_that_touched_a_neighbour():
    """A neighbour touching the hole is outlying for the surface (RANSAC), not averaged in."""
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    bg = np.clip(90 + 0.3 * xx + 0.15 * yy, 0, 255)[..., None].repeat(3, 2).astype(np.uint8)
    image = bg.copy()
    hole = (yy - 64) ** 2 + (xx - 60) ** 2 <= 20**2
    image[hole] = COLORS["red"]
    image[50:80, 78:100] = COLORS["green"]  # the neighbour, overlapping the hole's rim
    hole &= ~((yy >= 50) & (yy < 80) & (xx >= 78) & (xx < 100))
    filled = fill_smooth(image, hole)
    assert filled is not None
    out, written = filled
    assert psnr(out, bg, hole) >= 45
    assert (out[50:80, 81:100] == COLORS["green"]).all()  # the neighbour kept its pixels


def test_a_striped_background_is_not_taken_for_a_smooth_one():
    yy, xx = np.mgrid[0:128, 0:128]
    image = np.where((xx // 9) % 2 == 0, 150, 126)[..., None].repeat(3, 2).astype(np.uint8)
    hole = (yy - 64) ** 2 + (xx - 64) ** 2 <= 18**2
    image[hole] = COLORS["blue"]
    assert fill_smooth(image, hole) is None


def test_a_hole_nothing_in_the_image_matches_is_left_to_the_model():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)  # no background repeats
    hole = np.zeros((128, 128), bool)
    hole[50:70, 40:64] = True
    assert fill_from_surroundings(image, hole) is None


def test_a_recolour_keeps_the_outline_whatever_shape_the_model_painted():
    """What the issue saw: asked for a blue cross, the model painted a blue blob and gave the
    arms back to the background. The object becomes blue exactly inside its own mask, with its
    shading, and no other pixel changes."""
    scene = next(
        s for s in map(generate_scene, range(60))
        if s.objects[0].shape == "cross" and s.objects[0].color != "blue"
    )  # fmt: skip
    i = scene.index(scene.objects[0].id)
    mask = scene.masks[i]
    painted = scene.image.copy()
    painted[mask] = np.median(scene.image[~scene.masks.any(0)], axis=0)  # arms: background
    ys, xs = np.nonzero(mask)
    cy, cx, r = int(ys.mean()), int(xs.mean()), max(2, int((ys.max() - ys.min()) / 5))
    blob = np.zeros_like(mask)
    blob[cy - r : cy + r + 1, cx - r : cx + r + 1] = True
    painted[blob & mask] = COLORS["blue"]  # the blob: the centre of the cross only
    assert (blob & mask).sum() < 0.6 * mask.sum()
    out = recolor_within(scene.image, mask, painted)
    assert (out[~mask] == scene.image[~mask]).all()
    blue = color_labels(out) == list(COLORS).index("blue")
    iou = (blue & mask).sum() / (blue | mask).sum()
    assert iou >= 0.97, iou
    assert out[mask].std(axis=0).max() > 0.5  # the shading is kept, not a flat fill
