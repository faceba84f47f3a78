"""The committed router-tiny's signal heads on a fixed held-out set (test-split requests): the
tool gets a tensor of its declared shape, the text call stays valid, and the hybrid call (the
text call's box refined by the signal, or the signal alone where the call names no object)
segments the referent at least as well as the text call, on the referents the detector found
and on those it missed.

Thresholds sit under what these items measured with the committed heads (numbers beside them);
`switchboard eval signals --split test` measures the same paths on 360 items."""

from __future__ import annotations

import numpy as np
import pytest
from switchboard.core import Image
from switchboard.core.config import models_dir
from switchboard.evals.metrics import mask_iou
from switchboard.router.signals import SignalHeads

N, N_MISSED = 12, 4  # four of each expression kind, then referents the detector missed
# Measured with the committed heads on these 14 items: text 0.521, hybrid 0.575; on the 4
# referents the detector missed text 0.000, hybrid 0.191 (the signal, read on the subject
# phrase's committed patch blob, finds one of them: 0.762). The refining gate is nearly
# closed (-0.02): on the found referents hybrid equals text.

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
    items = _segment_items("test", N, N_MISSED, reg)
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


def test_the_hybrid_call_segments_as_well_as_the_text_call_and_finds_what_it_missed(routed):
    from switchboard.agent.graph import signal_fits
    from switchboard.evals.signals import _as_agent, _safe

    reg, results = routed
    seg, det = reg.get("segment"), reg.get("detect")
    text, hybrid, missed = [], [], []
    for it, reply, _ in results:
        call = next((c for c in reply.calls if c.tool == "segment"), None)
        t = h = 0.0
        if call is not None:
            image = Image(pixels=it.item.images[0])
            args = _as_agent(call.args, it.item, det)
            by_text = _safe(seg, image, args)
            t = mask_iou(by_text.masks[0], it.mask) if by_text else 0.0
            h = t
            if signal_fits(call.args, args):
                by_both = _safe(seg, image, args, signal=call.signal)
                h = mask_iou(by_both.masks[0], it.mask) if by_both else 0.0
        text.append(t)
        hybrid.append(h)
        missed.append(it.missed)
    text, hybrid, missed = np.array(text), np.array(hybrid), np.array(missed)
    assert missed.sum() >= N_MISSED
    assert hybrid.mean() >= text.mean() + 0.04, (hybrid, text)  # refining never costs
    assert hybrid[missed].mean() >= text[missed].mean() + 0.15, (hybrid[missed], text[missed])
