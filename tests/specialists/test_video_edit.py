"""Video edits: the world's ground-truth pairs, the temporal background, the object's path, and
the editor on held-out clips (keep region byte-identical on every frame, frames passing the
stricter judge). The whole evaluation (30 clips per op) is ``switchboard eval edit --video``."""

from __future__ import annotations

import numpy as np
import pytest
from switchboard.core import InvalidInputError, Video, VideoOut
from switchboard.core.results import Track
from switchboard.evals.specialists import evaluate_video_edit
from switchboard.specialists.video_edit import ObjectPath, flicker, temporal_background
from switchboard.world.scene import render_background
from switchboard.world.video import VIDEO_EDIT_OPS, apply_video_edit, generate_video_edit


@pytest.mark.parametrize("op", VIDEO_EDIT_OPS)
def test_video_edit_pairs_differ_only_inside_the_edit_masks(op):
    pair = generate_video_edit(123, op)
    differ = (pair.before.frames != pair.after.frames).any(-1)
    assert differ.any()
    assert not (differ & ~pair.edit_masks).any()
    ids = [o.id for o in pair.after.objects]
    assert (pair.target in ids) == (op != "remove")
    if op == "recolor":
        assert pair.after.objects[ids.index(pair.target)].color == pair.params["color"]


def test_an_unknown_object_or_op_is_refused():
    pair = generate_video_edit(5, "remove")
    with pytest.raises(ValueError, match="no object"):
        apply_video_edit(pair.before, "remove", 99, {})
    with pytest.raises(ValueError, match="video edits are"):
        generate_video_edit(5, "move")


def test_the_temporal_background_is_the_true_background_where_any_frame_shows_it():
    pair = generate_video_edit(321, "remove")
    clip = pair.before
    i = [o.id for o in clip.objects].index(pair.target)
    holes = clip.masks.any(1)  # every object masked out: what is left is background
    bg, known = temporal_background(clip.frames, holes)
    truth = render_background(clip.background, clip.size)
    seen = known & clip.masks[:, i].any(0)
    assert seen.sum() > 100
    assert (bg[seen] == truth[seen]).all()


def test_the_path_follows_the_object_from_one_mask_by_its_appearance():
    pair = generate_video_edit(777, "recolor")
    clip = pair.before
    i = [o.id for o in clip.objects].index(pair.target)
    # Only frame 0 is tracked: the path finds it on the others by matching its pixels.
    track = Track(track_id=1, frames=[0], xyxy=[tuple(clip.boxes[0, i])], masks=[clip.masks[0, i]])
    path = ObjectPath(clip.frames, track)
    ious = []
    for t in range(clip.num_frames):
        if clip.present[t, i]:
            m, g = path.masks[t], clip.masks[t, i]
            ious.append((m & g).sum() / max((m | g).sum(), 1))
    assert np.mean(ious) >= 0.9, ious


def test_flicker_is_zero_for_a_still_region_and_grows_with_change():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    masks = np.ones((3, 8, 8), bool)
    assert flicker(frames, masks) == 0.0
    frames[1] = 10
    assert flicker(frames, masks) == pytest.approx(10.0)


@pytest.fixture(scope="module")
def editor(registry):
    return registry.get("edit").load()


def test_video_edits_on_held_out_clips(editor, detector):
    """Two test-split clips per op: the keep region byte-identical on every frame, and the
    share of frames passing the stricter judge near what the full evaluation measures."""
    res = evaluate_video_edit(editor, detector, "test", n=2, steps=10)
    assert res["keep_region_identical"]
    # Measured (2026-12-06): recolour 1.00, remove 0.688, replace 0.969 of the frames.
    assert res["recolor_frames_passed"] >= 0.95, res
    assert res["remove_frames_passed"] >= 0.65, res
    assert res["replace_frames_passed"] >= 0.93, res
    assert res["recolor_flicker"] <= 1.2 * res["recolor_flicker_truth"], res


def test_a_video_edit_returns_every_frame_at_the_input_fps(editor):
    pair = generate_video_edit(2024, "recolor")
    clip = pair.before
    i = [o.id for o in clip.objects].index(pair.target)
    box = tuple(float(v) for v in clip.boxes[0, i])
    args = {"op": "recolor", "box": box, "color": pair.params["color"], "steps": 4}
    out = editor(Video(frames=clip.frames, fps=12.0), args)
    assert isinstance(out, VideoOut)
    assert out.frames.shape == clip.frames.shape and out.fps == 12.0
    assert len(out.edit_masks) == clip.num_frames and out.edited_frames >= 8
    again = VideoOut.model_validate_json(out.model_dump_json())
    assert (again.frames == out.frames).all()
    assert all((a == b).all() for a, b in zip(again.edit_masks, out.edit_masks, strict=True))


def test_bad_video_edits_are_typed_errors(editor):
    clip = generate_video_edit(9, "recolor").before
    video = Video(frames=clip.frames, fps=8.0)
    for args, words in (
        (
            {"op": "add", "color": "red", "shape": "star", "place": "center"},
            "does not take a video",
        ),
        ({"op": "move", "box": (1, 1, 30, 30), "place": "center"}, "does not take a video"),
        ({"op": "recolor", "box": (1, 1, 30, 30)}, "needs a colour"),
        ({"op": "recolor", "color": "red", "box": (1, 1, 30, 30), "frame": 99}, "past the last"),
        ({"op": "remove", "box": (1, 1, 900, 30)}, "not XYXY inside"),
        ({"op": "remove"}, "needs a region, a box or a target"),
    ):
        with pytest.raises(InvalidInputError, match=words):
            editor(video, args)
    with pytest.raises(InvalidInputError, match="at least 2 frames"):
        editor(Video(frames=clip.frames[:1], fps=8.0), {"op": "remove", "box": (1, 1, 30, 30)})
