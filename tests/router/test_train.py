"""A few steps of every router stage on the real SmolLM2 (tiny vision tower): each stage starts
from the one before, and the result loads and still routes through the constrained decoder."""

from __future__ import annotations

import json
import math

import numpy as np
from switchboard.core import Registry
from switchboard.router.codec import parse_reply
from switchboard.router.data import items_for
from switchboard.router.model import RouterModel
from switchboard.router.train import LLM_STAGES, STAGES, batch_loss, encode, stage_items, train_all
from switchboard.specialists import BUILTINS
from switchboard.world.requests import make_request


def test_items_follow_the_registry():
    full, no_detect = Registry(BUILTINS), Registry({"segment": BUILTINS["segment"]})
    req = make_request(7, "train", "detect")
    assert items_for(req, full)[0].calls[0].tool == "detect"
    # Without a detector the router is taught to say so instead of calling something else.
    item = items_for(req, no_detect)[0]
    assert not item.calls and "no tool" in item.target
    for stage in LLM_STAGES:
        assert stage_items(stage, 123, full)


def test_every_stage_trains_a_few_steps(smollm, tmp_path):
    """``train_all`` (``switchboard train router --stage all``: the gpu preset's one-call
    recipe) runs every stage in order, each from the last, and writes the folder to commit."""
    reg = Registry(BUILTINS)
    final = train_all("smoke", reg, out=tmp_path / "final", work=tmp_path / "runs")
    outs = [tmp_path / "runs" / s / "model" for s in STAGES[:-1]] + [final]
    for out in outs:
        assert (out / "router.json").is_file() and (out / "adapter").is_dir()
    assert set(json.loads((final / "train.json").read_text())) == set(STAGES)
    router = RouterModel.from_pretrained(outs[-1])
    items = stage_items("invoke", 99, reg)
    ids, labels = encode(router, items[0])
    assert (labels != -100).sum() > 0 and len(ids) == len(labels)
    assert math.isfinite(batch_loss(router, items[:2]).item())
    # The trained router decodes a valid call when one is opened.
    from switchboard.router.decoding import ConstrainedDecoder

    dec = ConstrainedDecoder(
        router.tokenizer, reg, router.llm.get_input_embeddings().weight.shape[0]
    )
    tok = router.tokenizer
    text = tok.apply_chat_template(
        items[0].messages[:2], add_generation_prompt=True, tokenize=False
    )
    text = text.replace("{media}", router.image_placeholder()) + "<call>"
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    emb = router.embed(
        ids, items[0].images[:1] or [np.zeros((64, 64, 3), np.uint8)], objects=items[0].objects
    )
    out = dec.generate(router.llm, emb, max_new_tokens=60, in_call=True)
    parse_reply("<call>" + out.text, reg)


def _padded(router, items):
    """Token ids, attention mask and labels of ``items`` as one right-padded batch."""
    import torch

    encoded = [encode(router, it) for it in items]
    n = max(len(i) for i, _ in encoded)
    ids = torch.zeros(len(items), n, dtype=torch.long)
    y = torch.full((len(items), n), -100)
    mask = torch.zeros(len(items), n, dtype=torch.long)
    for b, (i, lab) in enumerate(encoded):
        ids[b, : len(i)], y[b, : len(lab)], mask[b, : len(i)] = i, lab, 1
    return ids, mask, y


def test_loss_on_labelled_positions_only_equals_the_full_loss(smollm, tmp_path):
    """The training loss projects to the vocabulary only where a label is; it must equal the
    model's own full-logits loss on a padded batch of unequal items."""
    import torch
    from switchboard.router.train import PRESETS, build_router, lm_loss

    reg = Registry(BUILTINS)
    router = build_router(PRESETS["smoke"], None).eval()
    items = stage_items("invoke", 5, reg)[:1] + stage_items("ground", 6, reg)[:1]
    ids, mask, y = _padded(router, items)
    x = router.llm.get_input_embeddings()(ids)
    with torch.no_grad():
        full = router(inputs_embeds=x, attention_mask=mask, labels=y).loss
        ours = lm_loss(router, x, mask, y)
    assert torch.allclose(full, ours, atol=1e-5), (full, ours)


def test_the_fused_kernel_trains_the_router_as_the_reference_does(smollm):
    """The training loss through the Triton kernel (CPU interpreter) and through plain torch:
    the same loss and the same gradients on every trainable parameter (LoRA, new token rows)."""
    import torch
    from switchboard.router.train import PRESETS, build_router, lm_loss

    reg = Registry(BUILTINS)
    router = build_router(PRESETS["smoke"], None).train()
    items = stage_items("invoke", 7, reg)[:1] + stage_items("ground", 8, reg)[:1]
    ids, mask, y = _padded(router, items)
    params = {k: p for k, p in router.named_parameters() if p.requires_grad}
    results = []
    for fused in (False, True):
        router.zero_grad()
        x = router.llm.get_input_embeddings()(ids)
        loss = lm_loss(router, x, mask, y, fused=fused)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in params.items() if p.grad is not None}
        results.append((loss.detach(), grads))
    (ref_loss, ref), (ker_loss, ker) = results
    torch.testing.assert_close(ker_loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert ref.keys() == ker.keys() and len(ref) > 10
    for k in ref:
        scale = ref[k].abs().max().item() or 1.0
        torch.testing.assert_close(ker[k], ref[k], rtol=1e-4, atol=1e-4 * scale, msg=k)


def test_invoke_rehearses_ground_items_at_the_preset_share():
    from dataclasses import replace

    from switchboard.router.train import PRESETS, draw_batch

    reg = Registry(BUILTINS)
    preset = replace(PRESETS["tiny"], batch=40)
    assert preset.ground_replay > 0
    batches = [draw_batch("invoke", step, preset, reg) for step in range(3)]
    items = [it for batch in batches for it in batch]
    ground = sum(it.task in ("ground", "region", "question") and not it.calls for it in items)
    assert 0.15 < ground / len(items) < 0.6  # share ~0.35 (questions from requests count too)
    off = replace(preset, ground_replay=0.0)
    items = draw_batch("invoke", 0, off, reg)
    assert not any(it.task in ("ground", "region") for it in items)
    # The same step draws the same items (resumable runs): step 2 again, after other draws.
    again = draw_batch("invoke", 2, preset, reg)
    assert [it.target for it in again] == [it.target for it in batches[2]]
