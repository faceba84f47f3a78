"""The committed router-tiny's signal heads on a fixed held-out set (test-split requests): the
router's signal alone, through the segment specialist, finds the referent; the tool gets a
tensor of its declared shape; and the text-only path still works on the same call.

Thresholds sit under what `switchboard eval signals --split test` measured (see
trained_models/router-tiny/README.md), with room for the smaller sample."""

from __future__ import annotations

import numpy as np
import pytest
from switchboard.core import Image
from switchboard.core.config import models_dir
from switchboard.evals.metrics import mask_iou
from switchboard.router.signals import SignalHeads

N = 12  # four of each expression kind
# Measured: 0.358 on these 12 items, 0.337 on the 90 of `switchboard eval signals` (the first
# heads, patch pointer only: 0.125 / 0.144; untrained heads: 0.02). The target (0.85,
# ahead of text-only's 0.572) is NOT met yet; the floor guards what the committed heads do, it
# is not the goal.
HYBRID_MIOU = 0.2

pytestmark = pytest.mark.skipif(
    not SignalHeads.exists(models_dir() / "router-tiny"),
    reason="trained_models/router-tiny has no signal heads",
)


@pytest.fixture(scope="module")
def routed(smollm):
    from switchboard.evals.signals import _segment_items
    from switchboard.router.inference import Router
    from switchboard.specialists import default_registry

    reg = default_registry()
    router = Router.load(registry=reg)
    items = _segment_items("test", N, reg)
    return reg, [(it, *router.route_item(it.item, with_signals=True)) for it in items]


def test_signals_have_the_declared_shape_and_the_text_call_is_unchanged(routed):
    reg, results = routed
    for _, reply, decoded in results:
        for call in reply.calls:
            spec = reg.cls(call.tool).signal
            if spec is not None:
                assert tuple(call.signal.shape) == (spec.num_tokens, spec.dim)
            reg.cls(call.tool).Args.model_validate(call.args)  # the text call stays valid
        assert decoded.features is not None


def test_the_signal_alone_segments_the_referent(routed):
    reg, results = routed
    seg = reg.get("segment")
    ious = []
    for it, reply, _ in results:
        call = next((c for c in reply.calls if c.tool == "segment"), None)
        if call is None:
            ious.append(0.0)
            continue
        masks = seg(Image(pixels=it.item.images[0]), {}, signal=call.signal)
        ious.append(mask_iou(masks.masks[0], it.mask))
    assert float(np.mean(ious)) >= HYBRID_MIOU, ious
