"""edit on the committed tiny latent-diffusion model: keep region, held-out quality, signal path
and bad input. The full eval (40 held-out edits per kind) is in the model card."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from switchboard.core import Image, InvalidInputError
from switchboard.evals.specialists import evaluate_edit
from switchboard.specialists import default_registry
from switchboard.specialists.edit import EditSpecialist, describe
from switchboard.world.edits import generate_edit
from switchboard.world.splits import split_seeds

OPS = ("recolor", "remove", "add", "replace", "move")


@pytest.fixture(scope="module")
def editor():
    return EditSpecialist().load()


@pytest.fixture(scope="module")
def detector():
    return default_registry().get("detect").load()


def _args(pair, op):
    before = pair.before
    if op == "add":
        obj = pair.after.objects[pair.after.index(pair.params["id"])]
        return {"op": op, "color": obj.color, "shape": obj.shape, "place": pair.params["place"]}
    args = {"op": op, "region": before.masks[before.index(pair.target)], "steps": 10}
    if op == "recolor":
        args["color"] = pair.params["color"]
    elif op == "replace":
        args["shape"] = pair.params["shape"]
    elif op == "move":
        args["place"] = pair.params["place"]
    return args


@pytest.mark.parametrize("op", OPS)
def test_pixels_outside_the_edit_region_are_byte_identical(editor, op):
    pair = generate_edit(split_seeds("test", 1)[0] + 5, op)
    before = pair.before.image
    out = editor(Image(pixels=before), _args(pair, op))
    assert out.image.shape == before.shape and out.image.dtype == np.uint8
    outside = ~out.edit_mask
    assert outside.any() and (out.image[outside] == before[outside]).all()
    assert (out.image[out.edit_mask] != before[out.edit_mask]).any()


def test_edit_success_on_held_out_pairs(editor, detector):
    res = evaluate_edit(editor, detector, "test", n=8, steps=20)
    assert res["keep_region_identical"]
    # The committed model on these 8 held-out pairs per kind (seeded, so fixed), judged by the
    # detector and pixel colour: recolour 8/8, remove 6/8, add 6/8, replace 7/8, move 8/8,
    # generate 6/8. Region PSNR: recolour 32.1 (the model's colour inside the object's own
    # outline), remove 27.4 (holes filled from the background: a patch, else a smooth surface;
    # two of the 8 removed objects hid most of another, which the truth shows), add 17.1,
    # replace 17.4 dB; leaving the image unedited scores 8.0 / 10.1. The stricter judge:
    # recolour 8/8 (outline IoU 1.000), remove 4/8, move 4/8 (the object's own pixels in free
    # space), replace 4/8, the other objects' pixels kept around additions (worst IoU per
    # edit, mean) 0.971.
    # The 40-per-kind test numbers are in docs/editing.md.
    for kind in ("recolor", "remove", "add", "replace", "move"):
        assert res[f"{kind}_success"] >= 0.75, kind
    assert res["generate_success"] >= 0.625
    assert res["recolor_region_psnr"] >= 28
    assert res["remove_region_psnr"] >= 24
    assert res["add_region_psnr"] >= 15
    assert res["replace_region_psnr"] >= 15
    assert res["recolor_strict_success"] >= 0.875 and res["recolor_shape_iou"] >= 0.98
    assert res["remove_strict_success"] >= 0.5 and res["move_strict_success"] >= 0.5
    assert res["replace_strict_success"] >= 0.5
    assert res["add_others_iou"] >= 0.95


def test_the_signal_is_a_residual_on_the_descriptions_tokens(editor):
    """The router's edit signal refines the text call: it is added to the MiniLM tokens of the
    description the edit paints. A zero residual reproduces the text-conditioned edit exactly;
    the residual from one description to another paints the other."""
    pair = generate_edit(split_seeds("test", 1)[0] + 6, "recolor")
    img = Image(pixels=pair.before.image)
    shape = pair.before.objects[pair.before.index(pair.target)].shape
    args = {**_args(pair, "recolor"), "color": "blue", "shape": shape}
    by_text = editor(img, args)
    zero = torch.zeros(8, 384)
    assert np.array_equal(editor(img, args, signal=zero).image, by_text.image)
    blue, red = editor.conditioner([describe("blue", shape), describe("red", shape)])
    to_red = editor(img, args, signal=red - blue).image.astype(int)
    red_by_text = editor(img, {**args, "color": "red"}).image.astype(int)
    assert np.abs(to_red - red_by_text).max() <= 2  # blue + (red - blue) is red up to rounding
    inside = by_text.edit_mask
    assert np.abs(to_red - by_text.image.astype(int))[inside].mean() > 20  # red, not blue


def test_bad_input_is_a_typed_error(editor):
    pair = generate_edit(split_seeds("test", 1)[0] + 7, "recolor")
    img = Image(pixels=pair.before.image)
    mask = pair.before.masks[0]
    cases = [
        ({"op": "recolor", "region": np.zeros_like(mask), "color": "red"}, "empty"),
        ({"op": "recolor", "region": mask[:100], "color": "red"}, "region mask is"),
        ({"op": "recolor", "region": mask, "color": "mauve"}, "unknown color 'mauve'"),
        ({"op": "add", "shape": "blob", "color": "red", "place": "top"}, "unknown shape 'blob'"),
        ({"op": "add", "shape": "star", "color": "red"}, "needs a place"),
        ({"op": "add", "shape": "star", "color": "red", "box": (200, 10, 300, 60)}, "inside"),
        ({"op": "remove"}, "needs a region"),
        ({"op": "generate"}, "needs a prompt"),
        ({"op": "generate", "prompt": "a red thing"}, "colour and a shape"),
        ({"op": "recolor", "region": mask, "color": "red", "box": (5, 5, 1, 1)}, "XYXY"),
    ]
    for args, match in cases:
        with pytest.raises(InvalidInputError, match=match):
            editor(img, args)
    with pytest.raises(InvalidInputError, match="signal shape"):
        editor(img, {"op": "recolor", "region": mask}, signal=torch.zeros(2, 256))
    with pytest.raises(InvalidInputError, match="needs an image"):
        editor(None, {"op": "remove", "region": mask})
    with pytest.raises(InvalidInputError, match="full profile"):
        editor(img, {"op": "recolor", "instruction": "make everything blue"})


def test_a_move_goes_to_free_space_in_its_place():
    from switchboard.specialists.edit import free_spot

    mask = np.zeros((90, 90), bool)
    mask[5:15, 5:15] = True
    occupied = np.zeros((90, 90), bool)
    occupied[:, :60] = True  # the right third alone is free
    dx, dy = free_spot(mask, occupied, (0, 0, 90, 90))
    assert not (occupied & np.roll(np.roll(mask, dy, 0), dx, 1)).any()
    # the left-middle cell is full: the least-covered spot there, its centre inside the cell
    dx, dy = free_spot(mask, occupied, (0, 30, 30, 60))
    assert 0 <= 10 + dx <= 30 and 30 <= 10 + dy <= 60


def test_a_moved_object_keeps_its_look_and_paints_over_no_other_object(editor):
    pair = next(
        p for p in (generate_edit(s, "move") for s in split_seeds("test", 12)[4:])
        if len(p.before.objects) >= 3
    )  # fmt: skip
    before = pair.before
    i = before.index(pair.target)
    out = editor(Image(pixels=before.image), _args(pair, "move"))
    old = before.masks[i]
    grown = cv2.dilate(old.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    new = out.edit_mask & ~grown
    assert new.sum() >= 0.5 * old.sum()
    # its own pixels (a move changes where, not what): the same colours
    assert np.abs(np.median(out.image[new], 0) - np.median(before.image[old], 0)).max() <= 2
    for j in range(len(before.objects)):
        if j != i:  # every other object's pixels (off the old object's rim) kept
            kept = before.masks[j] & ~grown
            assert (out.image[kept] == before.image[kept]).all(), before.objects[j]


def test_shift_moves_and_clips():
    from switchboard.specialists.video_edit import shift

    m = np.zeros((5, 6), bool)
    m[1:3, 1:4] = True
    moved = shift(m, 2, 1, m.shape)
    assert moved.sum() == m.sum() and moved[2:4, 3:6].all()
    clipped = shift(m, -3, -2, m.shape)  # only the top-left cell stays inside
    assert clipped.sum() == 1 and clipped[0, 0]
