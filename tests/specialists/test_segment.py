"""segment on the committed tiny SAM: quality on held-out scenes, prompts, signals, errors."""

import cv2
import numpy as np
import pytest
import torch
from switchboard.core import Image, InvalidInputError
from switchboard.evals.metrics import mask_iou
from switchboard.evals.specialists import evaluate_segment
from switchboard.specialists.segment import clip_to_box, innermost_point
from switchboard.world import generate_scene
from switchboard.world.splits import split_seeds

# A fixed held-out sample (test seeds 0-11); the full eval (200 scenes) is in the model card.
# These thresholds guard the committed checkpoint (measured here: box 0.895, point 0.877 on
# this sample; 0.891 / 0.872 on the 200-scene test eval, targets 0.90 / 0.80).
N_SCENES = 12


def test_quality_on_held_out_scenes(segmenter):
    res = evaluate_segment(segmenter, "test", N_SCENES)
    assert res["objects"] >= 40
    assert res["box_mIoU"] >= 0.86, res
    assert res["point_mIoU"] >= 0.84, res


def test_negative_point_and_multimask(segmenter):
    scene = generate_scene(split_seeds("test", 1)[0] + 3)
    img = Image(pixels=scene.image)
    m = scene.masks[0]
    out = segmenter(img, {"points": [innermost_point(m)], "multimask": True})
    assert len(out.masks) == 3 and out.scores == sorted(out.scores, reverse=True)
    assert all(mk.shape == m.shape for mk in out.masks)
    # A negative click far from the object changes nothing important but is accepted.
    h, w = m.shape
    far = (0.5, 0.5) if not m[0, 0] else (w - 0.5, h - 0.5)
    out = segmenter(img, {"points": [innermost_point(m), far], "point_labels": [1, 0]})
    assert mask_iou(out.masks[0], m) > 0.5


def test_mask_prompt_recovers_the_object(segmenter):
    scene = generate_scene(split_seeds("test", 1)[0] + 4)
    img = Image(pixels=scene.image)
    k = int(np.argmax(scene.masks.sum(axis=(1, 2))))
    # A sloppy free-hand region: the object grown by 4 px all round.
    rough = cv2.dilate(scene.masks[k].astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    out = segmenter(img, {"mask": rough})
    assert mask_iou(out.masks[0], scene.masks[k]) > 0.5  # measured 0.58 (committed checkpoint)


def test_a_signal_refines_a_box_and_alone_is_the_prompt(segmenter):
    """With a box (the text call's object) the signal is a residual on the box's corner
    tokens: zero leaves the box prompt exactly as it is, anything else reaches the decoder.
    Without a box the signal tokens are the prompt."""
    scene = generate_scene(split_seeds("test", 1)[0])
    img = Image(pixels=scene.image)
    box = tuple(float(v) for v in scene.boxes[0])
    plain = segmenter.predictor
    segmenter.set_image(scene.image)
    a = plain.predict_with_signal(box=np.array(box), multimask_output=False)[2]
    zero = plain.predict_with_signal(
        box=np.array(box), signal=torch.zeros(2, 256), multimask_output=False
    )[2]
    assert np.array_equal(a, zero), "a zero residual must leave the box prompt unchanged"
    b = plain.predict_with_signal(
        box=np.array(box), signal=torch.randn(2, 256) * 5, multimask_output=False
    )[2]
    assert a.shape == b.shape and not np.allclose(a, b), "signal tokens must reach the decoder"
    by_box = segmenter(img, {"box": box})
    with_zero = segmenter(img, {"box": box}, signal=torch.zeros(2, 256))
    assert np.array_equal(by_box.masks[0], with_zero.masks[0])
    out = segmenter(img, {}, signal=torch.zeros(1, 2, 256))  # signal alone is a valid prompt
    assert len(out.masks) == 1
    with pytest.raises(InvalidInputError, match="signal shape"):
        segmenter(img, {"box": box}, signal=torch.zeros(3, 256))


def test_image_embedding_is_computed_once_per_image(segmenter, monkeypatch):
    scene = generate_scene(split_seeds("test", 1)[0] + 1)
    img = Image(pixels=scene.image)
    segmenter(img, {"box": tuple(float(v) for v in scene.boxes[0])})
    calls = []
    enc = segmenter.predictor.model.image_encoder
    monkeypatch.setattr(enc, "forward", lambda *a, **k: calls.append(1))
    for box in scene.boxes:
        segmenter(img, {"box": tuple(float(v) for v in box)})
    assert calls == []


@pytest.mark.parametrize(
    "args,match",
    [
        ({"box": (10, 10, 5, 40)}, "XYXY"),
        ({"box": (-5, 0, 40, 40)}, "outside"),
        ({"box": (0, 0, 400, 40)}, "outside"),
        ({"points": [(300, 10)]}, "outside"),
        ({"points": [(10, 10)], "point_labels": [3]}, "labels"),
        ({}, "needs a prompt"),
        ({"mask": np.zeros((256, 256), bool)}, "non-empty"),
    ],
)
def test_bad_prompts_raise_typed_errors(segmenter, args, match):
    img = Image(pixels=generate_scene(1).image)
    with pytest.raises(InvalidInputError, match=match):
        segmenter(img, args)


def test_referring_expression_target(segmenter):
    from switchboard.world.language import best_name

    hits = []
    for seed in split_seeds("test", 6):
        scene = generate_scene(seed)
        for o in scene.objects:
            name = best_name(scene, o.id)
            if name:
                try:
                    out = segmenter(Image(pixels=scene.image), {"target": name})
                except InvalidInputError:  # the detector missed the object: a failure, scored 0
                    hits.append(0.0)
                    continue
                hits.append(mask_iou(out.masks[0], scene.masks[scene.index(o.id)]))
    assert len(hits) >= 10 and np.mean(hits) >= 0.8, hits  # measured 0.87


def test_batched_boxes_match_one_box_at_a_time(segmenter):
    """Track decodes every box of a frame in one pass; it must equal prompting box by box."""
    scene = generate_scene(split_seeds("test", 1)[0] + 2)
    segmenter.set_image(scene.image)
    batched, scores = segmenter.predictor.predict_boxes(scene.boxes)
    assert batched.shape == (len(scene.boxes), *scene.image.shape[:2]) and scores.shape == (
        len(scene.boxes),
    )
    for box, m in zip(scene.boxes, batched, strict=True):
        one = segmenter.predictor.predict_with_signal(box=box, multimask_output=False)[0][0]
        assert (one != m).mean() < 1e-3


def test_batched_frame_embeddings_match_one_image_at_a_time(segmenter):
    """Track embeds video frames in batches; each must equal embedding that frame alone."""
    scenes = [generate_scene(s) for s in split_seeds("test", 3)]
    embs = segmenter.predictor.embed_images([s.image for s in scenes])
    for scene, emb in zip(scenes, embs, strict=True):
        segmenter.set_image(scene.image)
        alone = segmenter.predictor.features
        assert torch.allclose(emb[0], alone, atol=1e-4)
        segmenter.predictor.use_embedding(emb)
        got, _ = segmenter.predictor.predict_boxes(scene.boxes)
        segmenter.forget_image()
        segmenter.set_image(scene.image)
        want, _ = segmenter.predictor.predict_boxes(scene.boxes)
        assert (got != want).mean() < 1e-3
    assert segmenter.predictor.embed_images([]) == []


def test_a_box_prompted_mask_stays_in_its_box(segmenter):
    """A mask that leaks onto the neighbour is cut at the box (widened by 2%): on a scene with
    the prompt box drawn tight around one object, no mask pixel lies far outside it."""
    leak = np.zeros((1, 50, 50), bool)
    leak[0, 10:40, 10:40] = True
    kept = clip_to_box(leak, np.array([10.0, 10.0, 20.0, 20.0]))
    ys, xs = kept[0].nonzero()
    assert xs.min() == 10 and xs.max() < 23 and ys.max() < 23  # 2 px of slack at this size
    scene = generate_scene(split_seeds("test", 3)[2])
    for box in scene.boxes:
        (mask,) = segmenter(Image(pixels=scene.image), {"box": [float(v) for v in box]}).masks
        ys, xs = mask.nonzero()
        if len(xs):
            x1, y1, x2, y2 = box
            slack = max(2.0, 0.02 * max(x2 - x1, y2 - y1)) + 1
            assert xs.min() >= x1 - slack and xs.max() <= x2 + slack, (box, xs.min(), xs.max())
            assert ys.min() >= y1 - slack and ys.max() <= y2 + slack
