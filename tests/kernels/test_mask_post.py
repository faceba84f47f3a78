"""The mask post-processing kernel, run by Triton's CPU interpreter, against SAM's own path (two
bilinear upsamplings, a crop, a threshold) and against the real segment specialist: logits,
masks, areas and boxes over odd sizes, crops, down- and up-sampling, three dtypes, thresholds,
empty masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from switchboard.core.results import mask_to_box
from switchboard.kernels import mask_post
from switchboard.kernels.mask_post import (
    postprocess_masks,
    postprocess_masks_reference,
    runnable,
    supported,
)

# (masks, low-res h, w, pad, input_size, original_size)
CASES = [
    (1, 8, 8, 32, (32, 32), (32, 32)),  # one plain upsampling, x4
    (3, 16, 16, 64, (64, 48), (90, 67)),  # crop, then odd upsampling
    (2, 16, 16, 64, (40, 64), (30, 48)),  # crop, then downsampling
    (5, 7, 9, 20, (20, 13), (41, 27)),  # non-square low-res grid
]
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-5, torch.float16: 1e-5}  # inputs are upcast


def _low_res(n, h, w, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(
        torch.randn(n, 1, h + 2, w + 2, generator=g) * 6, 3, stride=1
    )[:, 0]
    return smooth.to(dtype)


def test_the_interpreter_is_on():
    assert runnable(torch.zeros(1, 2, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", CASES)
def test_matches_sams_postprocessing(case, dtype):
    n, h, w, pad, inp, out = case
    low = _low_res(n, h, w, dtype)
    ours = postprocess_masks(low, pad, inp, out, return_logits=True, use_kernel=True)
    ref = postprocess_masks_reference(low, pad, inp, out, return_logits=True)
    assert ours.masks.shape == ref.masks.shape == (n, *out) and ours.masks.dtype == torch.bool
    torch.testing.assert_close(ours.logits, ref.logits, rtol=TOL[dtype], atol=TOL[dtype])
    differ = ours.masks != ref.masks  # only where the logit is on the threshold itself
    assert (ref.logits[differ].abs() < 1e-5).all()
    assert 0 < ref.masks.float().mean() < 1  # the cases have both sides of the threshold
    for k in range(n):  # areas and boxes of the kernel's own masks
        m = ours.masks[k].numpy()
        assert ours.areas[k].item() == m.sum()
        assert tuple(ours.boxes[k].tolist()) == tuple(int(v) for v in mask_to_box(m))
    if not differ.any():
        assert torch.equal(ours.areas, ref.areas) and torch.equal(ours.boxes, ref.boxes)


def test_threshold_and_empty_masks():
    low = _low_res(3, 10, 10, torch.float32, seed=4)
    low[1] = -5.0  # nothing on
    ours = postprocess_masks(low, 40, (40, 40), (40, 40), threshold=1.5, use_kernel=True)
    ref = postprocess_masks_reference(low, 40, (40, 40), (40, 40), threshold=1.5)
    assert torch.equal(ours.masks, ref.masks)
    assert ours.areas[1] == 0 and ours.boxes[1].tolist() == [0, 0, 0, 0]
    assert torch.equal(ours.areas, ref.areas) and torch.equal(ours.boxes, ref.boxes)


def test_bad_sizes_and_the_guard(monkeypatch):
    low = _low_res(1, 4, 4, torch.float32)
    with pytest.raises(ValueError, match="inside"):
        postprocess_masks(low, 16, (20, 16), (16, 16), use_kernel=True)
    with pytest.raises(ValueError, match=r"\[N, h, w\]"):
        postprocess_masks(low[0], 16, (16, 16), (16, 16))
    assert runnable(low) and not supported(low)  # the CPU: the reference by default
    assert not runnable(low.double()) and not runnable(low[:0])
    monkeypatch.setattr(mask_post, "triton_available", lambda: False)
    with pytest.raises(ValueError, match="cannot run"):
        postprocess_masks(low, 16, (16, 16), (16, 16), use_kernel=True)


def test_the_segment_specialist_gives_the_same_masks_through_the_kernel(scene):
    """Real SAM (our trained tiny checkpoint) on a ShapeWorld scene: box prompts decoded once,
    post-processed by SAM's own path and by the kernel."""
    from switchboard.specialists.segment import SegmentSpecialist

    seg = SegmentSpecialist()
    seg.load()
    predictor = seg.predictor
    predictor.set_image(scene.image, image_format="RGB")
    boxes = np.asarray(scene.boxes, float)
    predictor.use_kernel = False
    ref, ref_scores = predictor.predict_boxes(boxes)
    predictor.use_kernel = True
    ours, our_scores = predictor.predict_boxes(boxes)
    assert ours.shape == ref.shape == (len(boxes), *scene.image.shape[:2])
    assert (ours != ref).sum() <= 2, (ours != ref).sum()  # ties on the threshold at most
    np.testing.assert_array_equal(our_scores, ref_scores)
