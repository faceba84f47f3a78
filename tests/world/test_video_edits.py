import numpy as np
import pytest
from switchboard.world import EDIT_OPS, apply_edit, generate_edit, generate_scene, generate_video
from switchboard.world.scene import Background, ShapeObject, render


def test_video_is_deterministic_and_consistent():
    a, b = generate_video(5), generate_video(5)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    t, n = a.present.shape
    assert a.frames.shape[0] == t == a.masks.shape[0] and a.masks.shape[1] == n
    for ti in range(t):
        assert (a.masks[ti].sum(axis=0) <= 1).all()
        for k in range(n):
            if a.present[ti, k]:
                ys, xs = np.nonzero(a.masks[ti, k])
                assert tuple(a.boxes[ti, k]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_videos_have_motion_entering_leaving_and_occlusion():
    motions, entered, left, occluded = set(), False, False, False
    for seed in range(40):
        clip = generate_video(seed)
        motions |= set(clip.motions)
        for k, motion in enumerate(clip.motions):
            p = clip.present[:, k]
            entered |= motion == "enter" and not p[0] and p[-1]
            left |= motion == "leave" and p[0] and not p[-1]
        for t in range(clip.num_frames):
            full = clip.masks[t].sum(axis=(1, 2))
            occluded |= bool(len(full) > 1 and (clip.masks[t].any(axis=0).sum() < full.sum() + 1))
        # Objects move: the first present object's box changes over the clip.
        k = int(np.argmax(clip.present[0])) if clip.present[0].any() else None
        if k is not None and clip.present[-1, k]:
            assert not np.array_equal(clip.boxes[0, k], clip.boxes[-1, k])
    assert motions == {"bounce", "enter", "leave"} and entered and left and occluded


@pytest.mark.parametrize("op", EDIT_OPS)
@pytest.mark.parametrize("seed", range(8))
def test_edit_pairs_differ_only_inside_the_edit_mask(op, seed):
    pair = generate_edit(seed, op)
    changed = (pair.before.image != pair.after.image).any(axis=2)
    assert changed.any(), "an edit must change something"
    assert not (changed & ~pair.edit_mask).any()
    np.testing.assert_array_equal(
        pair.before.image[~pair.edit_mask], pair.after.image[~pair.edit_mask]
    )


def test_edits_do_what_they_say():
    rng = np.random.default_rng(0)
    sc = generate_scene(11)
    target = sc.objects[-1].id
    assert (
        apply_edit(sc, "recolor", target, {"color": "cyan"}, rng).after.objects[-1].color == "cyan"
    )
    assert all(o.id != target for o in apply_edit(sc, "remove", target, {}, rng).after.objects)
    added = apply_edit(
        sc,
        "add",
        None,
        {"shape": "star", "color": "red", "size": "small", "place": "top left"},
        rng,
    )
    new = added.after.objects[-1]
    assert (new.shape, new.color) == ("star", "red") and new.x < 256 / 3 and new.y < 256 / 3
    assert (
        apply_edit(sc, "replace", target, {"shape": "heart"}, rng).after.objects[-1].shape
        == "heart"
    )


def test_removing_an_occluder_reveals_what_is_below():
    bg = Background("plain", 0, (128, 128, 128))
    sc = render(
        [
            ShapeObject(0, "square", "red", "large", 100, 100, 40),
            ShapeObject(1, "circle", "blue", "medium", 130, 100, 30),
        ],
        bg,
        256,
    )
    pair = apply_edit(sc, "remove", 1, {}, np.random.default_rng(0))
    hidden = sc.full_masks[0] & sc.full_masks[1]
    assert pair.after.masks[0][hidden].all()
    assert (pair.after.image[hidden][:, 0] > 150).all()  # now red
