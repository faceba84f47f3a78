"""Signal heads, the specialist-side losses and the signals stage on the real SmolLM2 (tiny
vision tower): shapes as the tools declare them, gradients from the specialists' losses into
the LoRA adapter, gradient reversal, and a smoke run of the stage that saves loadable heads."""

from __future__ import annotations

import math

import pytest
import torch
from switchboard.core import Registry
from switchboard.router.objects import ObjectProposer, box_iou, object_dim, pad_objects
from switchboard.router.signals import (
    SignalConfig,
    SignalHeads,
    dice_bce,
    grad_reverse,
    pointer_target,
    prompt_loss,
)
from switchboard.router.train_signals import (
    SIGNAL_PRESETS,
    SpecialistTargets,
    draw_signal_items,
    examples_for,
    signal_items,
    signal_losses,
    train_signals,
)
from switchboard.specialists import BUILTINS
from switchboard.world.requests import make_request


def _heads(**kw):
    reg = Registry(BUILTINS)
    return SignalHeads(SignalConfig.from_registry(reg, width=32, depth=1, **kw)), reg


def test_heads_output_the_shapes_the_tools_declare():
    heads, reg = _heads()
    assert set(heads.tool_names) == {"segment", "track", "edit"}
    for tool in heads.tool_names:
        spec = reg.cls(tool).signal
        h = torch.randn(3, spec.num_tokens, 576)
        objects = torch.rand(3, 5, object_dim(8))
        objects[..., 2:4] = objects[..., :2] + 0.1
        omask = torch.tensor([[True] * 5, [True, True] + [False] * 3, [False] * 5])
        text, words = torch.randn(3, 7, 576), torch.randn(3, 7, 576)
        for memory in (torch.randn(3, 256, 192), None):  # with an image, and without
            for extra in (
                {},
                {"text": text, "words": words, "objects": objects, "objects_mask": omask},
            ):
                out = heads(tool, h, memory, **extra)
                assert out.signal.shape == (3, spec.num_tokens, spec.dim)
                assert out.task_logits.shape == (3, 3) and out.box.shape == (3, 4)
                assert spec.check(out.signal[0].detach()) is not None
                if memory is not None:  # patches, then objects; masked objects get nothing
                    assert out.pointer.shape[1] == 256 + (5 if extra else 0)
                    if extra:
                        p = out.pointer.detach().softmax(-1)
                        assert float(p[1, 256 + 2 :].sum()) < 1e-3
                        assert float(p[2, 256:].sum()) < 1e-3
    with pytest.raises(ValueError, match="signal tokens"):
        heads("segment", torch.randn(1, 5, 576))
    with pytest.raises(KeyError):
        heads("detect", torch.randn(1, 2, 576))


def test_heads_save_and_load_the_same_function(tmp_path):
    heads, _ = _heads()
    heads.eval()
    h, m = torch.randn(2, 2, 576), torch.randn(2, 256, 192)
    heads.save(tmp_path)
    again = SignalHeads.load(tmp_path)
    assert SignalHeads.exists(tmp_path)
    torch.testing.assert_close(again("segment", h, m).signal, heads("segment", h, m).signal)


def test_relation_layer_is_order_free_and_ignores_masked_objects():
    from switchboard.router.signals import RelationLayer

    torch.manual_seed(0)
    rel = RelationLayer(16)
    x, boxes = torch.randn(1, 4, 16), torch.rand(1, 4, 4)
    boxes[..., 2:] = boxes[..., :2] + 0.1
    valid = torch.tensor([[True, True, True, False]])
    out = rel(x, boxes, valid)
    perm = torch.tensor([2, 0, 1, 3])
    torch.testing.assert_close(rel(x[:, perm], boxes[:, perm], valid)[0], out[0, perm])
    x2 = x.clone()
    x2[0, 3] += 5.0  # a padded slot changes nothing for the real objects
    torch.testing.assert_close(rel(x2, boxes, valid)[0, :3], out[0, :3])
    # The geometry is what relations read: moving one object changes the others' features.
    b2 = boxes.clone()
    b2[0, 0, [0, 2]] += 0.5
    assert not torch.allclose(rel(x, b2, valid)[0, 1], out[0, 1])


def test_refer_pointer_counts_the_named_objects_before_each_one():
    """The ordinal module's soft count: with the subject matching squares only, the count of
    squares before each square from the left is its rank; the scores are order-free over the
    objects and padded objects get no score."""
    from switchboard.router.signals import ReferPointer

    torch.manual_seed(0)
    ref = ReferPointer(16)
    # Three squares at x = 0.1, 0.5, 0.8 and a circle at x = 0.3 (before two of them).
    xs = torch.tensor([0.5, 0.3, 0.1, 0.8, 0.0])
    boxes = torch.stack([xs, torch.full_like(xs, 0.4), xs + 0.05, torch.full_like(xs, 0.45)], -1)
    before = ReferPointer.before(boxes[None])[0]
    assert before[0, 2, 0] > 0 > before[2, 0, 0]  # object 2 comes before object 0 from the left
    assert before[2, 0, 1] > 0  # and object 0 before object 2 from the right
    valid = torch.tensor([[True, True, True, True, False]])
    objects, text = torch.randn(1, 5, 16), torch.randn(1, 6, 16)
    mask = torch.ones(1, 6, dtype=torch.bool)
    # Subject = "square": the key maps every object to its own feature; the text's subject
    # phrase reads one word that points at the square feature.
    square = torch.zeros(16)
    square[0] = 1.0
    objects[0, [0, 2, 3], :] = 8 * square
    objects[0, [1], :] = -8 * square
    with torch.no_grad():
        ref.key.weight.copy_(torch.eye(16))
        ref.key.bias.zero_()
        ref.attend.weight.zero_()
        ref.attend.bias.zero_()
        ref.phrase.weight.zero_()
        ref.phrase.bias.zero_()
        ref.phrase.bias[:16] = 8 * square  # the subject phrase (the first of four blocks)
        ref.module_weights.weight.zero_()
        ref.module_weights.bias.copy_(torch.tensor([-20.0, -20.0, 20.0]))  # ordinal
        ref.order.weight.zero_()
        ref.order.bias.fill_(-20.0)
        ref.order.bias[1] = 20.0  # side "left", rank 1: "the second square from the left"
    logits, weights, none = ref(text, mask, objects, boxes[None], valid)
    assert none is None  # no patch key: the patches are not scored here
    assert int(weights.argmax()) == 2
    assert int(logits[0, :4].argmax()) == 0  # the square at x = 0.5
    assert logits[0, 4] < -1e3
    perm = torch.tensor([3, 1, 0, 2, 4])
    again, _, _ = ref(text, mask, objects[:, perm], boxes[None, perm], valid)
    torch.testing.assert_close(again[0], logits[0, perm])


def test_the_subject_phrase_scores_the_patches_on_the_objects_scale():
    """With ``patches``, the subject phrase that scores the objects scores each patch through
    the patch key: a patch that looks like the named thing outscores the others by what the
    subject's match is worth, so a referent the detector missed can win over the objects."""
    from switchboard.router.signals import ReferPointer

    torch.manual_seed(0)
    ref = ReferPointer(16, patches=True)
    square = torch.zeros(16)
    square[0] = 1.0
    objects = -8 * square.expand(1, 2, 16).clone()  # two detected circles
    boxes = torch.tensor([[[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.7, 0.7]]])
    patches = torch.zeros(1, 4, 16)
    patches[0, 3] = 8 * square  # the missed square shows in patch 3
    text, mask = torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():
        for lin in (ref.key, ref.patch_key):
            lin.weight.copy_(torch.eye(16))
            lin.bias.zero_()
        ref.phrase.weight.zero_()
        ref.phrase.bias.zero_()
        ref.phrase.bias[:16] = 8 * square
        ref.module_weights.weight.zero_()
        ref.module_weights.bias.copy_(torch.tensor([20.0, -20.0, -20.0]))  # attribute only
    valid = torch.ones(1, 2, dtype=torch.bool)
    logits, _, on_patches = ref(text, mask, objects, boxes, valid, patches=patches)
    assert on_patches.shape == (1, 4) and int(on_patches.argmax()) == 3
    assert on_patches[0, 3] > logits.max()  # the missed square beats the detected circles
    # The same score as an attribute expression gives an object: the bias apart, a patch and
    # an object that look alike score alike.
    objects[0, 0] = 8 * square
    valid = torch.ones(1, 2, dtype=torch.bool)
    logits, _, on_patches = ref(text, mask, objects, boxes, valid, patches=patches)
    torch.testing.assert_close(on_patches[0, 3] - ref.scale * ref.patch_bias, logits[0, 0])


def test_gradient_reversal_flips_the_gradient_into_the_invariant_half():
    x = torch.randn(4, 8, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, -0.5))


def test_dice_bce_is_low_for_the_right_mask_and_high_for_the_wrong_one():
    t = torch.zeros(1, 16, 16)
    t[0, 4:10, 4:10] = 1
    good, bad = dice_bce(20 * (2 * t - 1), t), dice_bce(-20 * (2 * t - 1), t)
    assert good.item() < 0.01 and bad.item() > 10


def test_signal_items_carry_signal_tokens_and_ground_truth():
    reg = Registry(BUILTINS)
    seg = signal_items(make_request(3, "train", "segment"), reg)[0]
    assert seg.item.target.endswith("</call><sig_0><sig_1>") and seg.mask.any()
    recolor = signal_items(make_request(4, "train", "segment_recolor"), reg)
    assert [s.tool for s in recolor] == ["segment", "edit"]
    assert recolor[1].text.startswith("a ") and recolor[1].item.target.endswith("<sig_7>")
    assert {s.tool for s in draw_signal_items("train", 12, 0, reg)} == {"segment", "track", "edit"}


def test_object_memory_sees_the_scene_and_the_pointer_target_is_the_referent():
    """The detector's rows name the shapes and colours of a ShapeWorld scene; the pointer's
    target is the detection that matches the referent (a one-hot over the objects)."""
    from switchboard.specialists.colors import color_in_box
    from switchboard.world.scene import COLORS

    reg = Registry(BUILTINS)
    item = signal_items(make_request(3, "train", "segment"), reg)[0]
    image, mask = item.item.images[0], item.mask
    rows = ObjectProposer()(image)
    assert rows.shape[1] == object_dim(8) and 1 <= len(rows) <= 16
    assert ((rows[:, :4] >= 0) & (rows[:, :4] <= 1)).all() and (rows[:, 4] >= 0.25).all()
    assert torch.allclose(rows[:, 5:13].sum(-1), torch.ones(len(rows)))
    side = max(image.shape[:2])
    for r in rows:  # the rgb columns are the colour the text path names for that box
        name = color_in_box(image, tuple(float(v) * side for v in r[:4]))
        if name is not None:
            want = torch.tensor(COLORS[name], dtype=torch.float32) / 255
            assert (r[13:] - want).abs().max() < 0.25
    ys, xs = mask.nonzero()
    h, w = mask.shape
    box = torch.tensor([[xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]])
    objects, omask = pad_objects([rows], object_dim(8))
    low = torch.as_tensor(mask, dtype=torch.float32)[None]
    target = pointer_target(low, 256, objects, omask, box.float())
    assert target.shape == (1, 256 + len(rows)) and float(target.sum()) == pytest.approx(1.0)
    chosen = int(target[0, 256:].argmax())
    assert float(target[0, 256 + chosen]) == 1.0  # the detector found the referent
    assert float(box_iou(objects[0, chosen : chosen + 1, :4], box[0])) >= 0.5
    # Without objects the target is the referent's share of each patch.
    assert pointer_target(low, 256).shape == (1, 256)


def test_prompt_loss_is_lowest_for_the_referents_own_box_tokens():
    from switchboard.specialists.segment import build_segment_model

    sam = build_segment_model().eval()
    box = torch.tensor([[0.2, 0.3, 0.5, 0.6]])
    side = float(sam.image_encoder.img_size)
    tokens, _ = sam.prompt_encoder(points=None, boxes=box * side, masks=None)
    # The signal whose projection is SAM's box tokens (least squares through signal_in).
    lin = sam.signal_in
    sol = torch.linalg.lstsq(lin.weight, (tokens[0] - lin.bias).T).solution.T[None]
    right = prompt_loss(sam, sol.detach(), box)
    wrong = prompt_loss(sam, sol.detach(), torch.tensor([[0.6, 0.1, 0.9, 0.4]]))
    assert right.item() < 1e-3 < wrong.item()


@pytest.fixture(scope="module")
def smoke_router(smollm):
    from switchboard.router.train import PRESETS, build_router

    return build_router(PRESETS["smoke"], None)


def test_specialist_losses_reach_the_lora_adapter(smoke_router):
    """Mask BCE + Dice through SAM's decoder and the edit loss to MiniLM's tokens flow back
    through the heads into the LLM's LoRA weights and the <sig_k> embedding rows."""
    router = smoke_router.train()
    reg = Registry(BUILTINS)
    targets = SpecialistTargets()
    proposer = ObjectProposer()
    items = draw_signal_items("train", 6, 1, reg)
    cfg = SignalConfig.from_registry(
        reg,
        llm_dim=576,
        vision_dim=router.vision.width,
        grid=router.vision.grid,
        width=32,
        depth=1,
    )
    heads = SignalHeads(cfg)
    router.zero_grad(set_to_none=True)
    losses = signal_losses(
        heads,
        targets.sam,
        examples_for(router, items, targets, proposer),
        SIGNAL_PRESETS["smoke"],
        synergy=True,
    )
    assert losses["mask"].item() > 0 and losses["edit"].item() > 0
    losses["total"].backward()
    lora = {n: p.grad for n, p in router.llm.named_parameters() if "lora_" in n}
    assert lora and all(g is not None for g in lora.values())
    assert sum(float(g.abs().sum()) for g in lora.values()) > 0
    rows = [p.grad for n, p in router.llm.named_parameters() if "trainable_tokens" in n]
    assert rows and any(g is not None and float(g.abs().sum()) > 0 for g in rows)
    # SAM stays frozen: the specialist's weights get no gradient.
    assert all(p.grad is None for p in targets.sam.parameters())
    # The pointer-first phase: pointer and kind losses alone, no SAM in the step; they train
    # the modular pointer.
    heads.zero_grad(set_to_none=True)
    with torch.no_grad():
        examples = examples_for(router, items, targets, proposer)
    first = signal_losses(heads, None, examples, SIGNAL_PRESETS["smoke"], False, pointer_only=True)
    assert first["pointer"].item() > 0 and first["mask"].item() == 0 == first["edit"].item()
    first["total"].backward()
    assert any(
        p.grad is not None and float(p.grad.abs().sum()) > 0 for p in heads.refer.parameters()
    )


def test_the_signals_stage_trains_and_saves_loadable_heads(smoke_router, tmp_path):
    folder = smoke_router.save_pretrained(tmp_path / "router")
    logs: list[str] = []
    for synergy in (True, False):
        out = train_signals("smoke", synergy, folder, work=tmp_path / "work", log=logs.append)
        heads = SignalHeads.load(out)
        assert heads.config.synergy is synergy
        record = (out / ("signals-train.json" if synergy else "train.json")).read_text()
        assert math.isfinite(__import__("json").loads(record)["final_loss_mean_50"])
    assert (folder / "signals-nosynergy" / "signals.safetensors").is_file()
    # The location code and the pointer-first phase are trained once: the ablation starts
    # from the synergy run's starting point.
    assert sum(m.startswith("location code") for m in logs) == 1
    assert sum(m.startswith("heads start from") for m in logs) == 1


def test_decoding_reads_the_states_training_reads(smoke_router):
    """The states the decoder keeps while writing a call (prefill + one feed per step) are
    the states a teacher-forced pass over the same sequence gives, and the text span the heads
    read ends right before the first <sig_k>."""
    import numpy as np
    from switchboard.router.decoding import ConstrainedDecoder
    from switchboard.router.signals import router_text_span

    router = smoke_router.eval()
    reg = Registry({"segment": BUILTINS["segment"]})  # the grammar allows segment only
    dec = ConstrainedDecoder(
        router.tokenizer, reg, router.llm.get_input_embeddings().weight.shape[0]
    )
    msgs = [{"role": "user", "content": "{media}segment the red circle"}]
    text = router.chat_prompt(msgs, 1) + "<call>"
    ids = router.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    image = np.zeros((64, 64, 3), np.uint8)
    with torch.no_grad():
        emb = router.embed(ids, [image])
        out = dec.generate(router.llm, emb, max_new_tokens=60, with_signals=True, in_call=True)
        seq = ids[0].tolist() + out.token_ids
        full = router.llm(
            inputs_embeds=router.embed(torch.tensor([seq]), [image]), output_hidden_states=True
        ).hidden_states[-1][0]
    assert out.states.shape == full.shape
    torch.testing.assert_close(out.states, full, atol=2e-3, rtol=1e-3)
    first = out.signal_positions[0]
    assert seq[first] == router.tokenizer.convert_tokens_to_ids("<sig_0>")
    span = router_text_span(router, seq, first)
    assert span.stop == first and seq[span.start - 1] == router.image_id


def test_refinement_starts_as_the_text_path_and_its_gate_learns(tmp_path):
    """A hybrid call's signal refines the text call's prompt: at initialisation the residual is
    exactly zero (the gate starts closed, so untrained heads leave the text path as it is);
    with an anchor the heads read the object it names; the refined mask loss reaches the gate."""
    import numpy as np
    from switchboard.router.train_signals import Example, anchors_of, refine_losses
    from switchboard.world.scene import generate_scene

    heads, _ = _heads()
    targets = SpecialistTargets()
    proposer = ObjectProposer()
    scene = generate_scene(7)
    rows = proposer(scene.image)
    side = float(max(scene.image.shape[:2]))
    boxes = torch.tensor(scene.boxes / side, dtype=torch.float32)
    k = int(np.argmax([float(box_iou(rows[:, :4], b).max()) for b in boxes]))  # a found one
    emb = targets.image_embedding(scene.image)
    ex = Example(
        "segment",
        torch.randn(2, 576),
        torch.randn(256, 192),
        torch.randn(6, 576),
        torch.randn(6, 576),
        rows,
        emb,
        targets.low_res(scene.masks[k], 4 * emb.shape[-1]),
        boxes[k],
        kind="attribute",
    )
    from switchboard.router.train_signals import head_inputs

    inputs = head_inputs(heads, [ex])
    anchor, found = anchors_of(inputs["objects"], inputs["objects_mask"], ex.box[None])
    assert bool(found[0])
    out = heads("segment", **inputs, refine=True, anchor=anchor)
    assert out.signal.shape == (1, 2, 256) and float(out.signal.abs().max()) == 0.0
    torch.testing.assert_close(out.box, anchor)  # the anchor is the box the heads read
    edit = heads("edit", torch.randn(1, 8, 576), refine=True)
    assert float(edit.signal.abs().max()) == 0.0
    with pytest.raises(ValueError, match="refining head"):
        heads("track", torch.randn(1, 2, 576), refine=True)
    loss = refine_losses(heads, targets.sam, "segment", [ex], inputs, ex.mask[None], ex.box[None])
    loss[0].sum().backward()
    assert float(heads.refine_gate["segment"].grad.abs()) > 0
    # Heads saved before refinement existed load with no refining head (the text path).
    heads.save(tmp_path)
    import json

    raw = json.loads((tmp_path / "signals.json").read_text())
    raw.pop("refined")
    (tmp_path / "signals.json").write_text(json.dumps(raw))
    from safetensors.torch import load_file, save_file

    state = {k: v for k, v in load_file(str(tmp_path / "signals.safetensors")).items()
             if not k.startswith("refine_")}  # fmt: skip
    save_file(state, str(tmp_path / "signals.safetensors"))
    old = SignalHeads.load(tmp_path)
    assert not old.refine_out
    assert torch.isfinite(old("segment", torch.randn(1, 2, 576)).signal).all()


def test_the_pointed_box_spans_the_patches_the_pointer_spreads_over():
    """Weights spread evenly over a 4 × 2 block of patches point at that block's box (not one
    cell at its centre); weights on an object point at the object's box; a mix is the mix."""
    g2 = 64  # an 8 × 8 grid: cells 0.125 wide
    cells = SignalHeads.cell_boxes(g2)[None]
    obj = torch.tensor([[[0.6, 0.1, 0.9, 0.3]]])
    boxes = torch.cat([cells, obj], 1)
    attn = torch.zeros(1, g2 + 1)
    for r in (2, 3):
        for c in (1, 2, 3, 4):
            attn[0, r * 8 + c] = 1 / 8
    block = torch.tensor([[0.125, 0.25, 0.625, 0.5]])
    torch.testing.assert_close(SignalHeads.pointed_box(attn, boxes, g2), block, atol=0.02, rtol=0)
    on_obj = torch.zeros(1, g2 + 1)
    on_obj[0, -1] = 1.0
    torch.testing.assert_close(SignalHeads.pointed_box(on_obj, boxes, g2), obj[0])
    mixed = SignalHeads.pointed_box(0.5 * attn + 0.5 * on_obj, boxes, g2)
    torch.testing.assert_close(mixed, 0.5 * SignalHeads.pointed_box(attn, boxes, g2) + 0.5 * obj[0])


def test_the_committed_box_is_the_blob_around_the_subjects_top_patch():
    """Two blobs on an 8 × 8 grid: the box covers the stronger blob's cells (its weaker
    neighbours above the fraction included, a far weaker cell left out), never the other blob
    or a box between them; a batch commits per item; without a text call's box and with the
    subject phrase, the signal's location code reads the committed box."""
    g2 = 64
    logits = torch.full((2, g2), -10.0)
    for r, c, v in [(2, 1, 3.0), (2, 2, 3.0), (3, 1, 2.5), (3, 2, 2.5), (4, 2, 0.0)]:
        logits[0, r * 8 + c] = v  # the strong blob: rows 2–3, columns 1–2 (row 4 far weaker)
    for r, c in [(6, 6), (6, 7)]:
        logits[0, r * 8 + c] = 2.0  # a second, weaker blob far away
    logits[1, 5 * 8 + 5] = 4.0  # a one-cell referent
    box = SignalHeads.committed_box(logits)
    torch.testing.assert_close(box[0], torch.tensor([0.125, 0.25, 0.375, 0.5]))
    torch.testing.assert_close(box[1], torch.tensor([0.625, 0.625, 0.75, 0.75]))
    heads = SignalHeads(SignalConfig(tools={"segment": (2, 256)}, grid=8))
    assert heads.config.commit_box and heads.config.patch_subject
    out = heads(
        "segment",
        torch.randn(1, 2, 576),
        memory=torch.randn(1, g2, 192),
        text=torch.randn(1, 5, 576),
        words=torch.randn(1, 5, 576),
        objects=torch.randn(1, 3, heads.obj_dim),
        objects_mask=torch.ones(1, 3, dtype=torch.bool),
    )
    torch.testing.assert_close(out.committed, SignalHeads.committed_box(out.patches))
    assert not torch.equal(out.committed, out.box)  # the soft box stays for the box loss


def test_heads_saved_beside_a_base_keep_only_what_differs(tmp_path):
    """An ablation saved with ``base`` (the heads one folder up) leaves out the tensors equal
    to base's and loads them from there: the same weights, a smaller file."""
    cfg = SignalConfig(tools={"segment": (2, 16)}, llm_dim=32, width=32, depth=1)
    torch.manual_seed(0)
    base = SignalHeads(cfg).eval()
    base.save(tmp_path, fp16=True)
    other = SignalHeads(cfg).eval()
    other.load_state_dict(base.state_dict())
    with torch.no_grad():
        other.in_proj.weight.add_(1.0)
    other.save(tmp_path / "ablation", fp16=True, base=tmp_path)
    whole = tmp_path / "whole"
    other.save(whole, fp16=True)
    small = (tmp_path / "ablation" / "signals.safetensors").stat().st_size
    assert small < (whole / "signals.safetensors").stat().st_size
    got, want = (
        SignalHeads.load(tmp_path / "ablation").state_dict(),
        SignalHeads.load(whole).state_dict(),
    )
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
