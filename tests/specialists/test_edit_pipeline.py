"""edit's machinery without the trained weights: crop/paste geometry, description parsing, the
full-profile path on tiny random Stable Diffusion pipelines saved with ``save_pretrained``
(as diffusers' own tests build them), and the training smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from switchboard.core import Image, InvalidInputError, config
from switchboard.specialists.edit import (
    EditArgs,
    EditSpecialist,
    GenObject,
    assign_places,
    crop_window,
    feather,
    latent_block_mask,
    parse_description,
)
from switchboard.world import generate_scene
from switchboard.world.splits import split_seeds


@pytest.mark.parametrize(
    ("box", "h", "w"),
    [((0, 0, 5, 5), 256, 256), ((240, 250, 256, 256), 256, 256), ((10, 10, 300, 90), 100, 400)],
)
def test_crop_window_is_a_square_inside_the_image(box, h, w):
    x0, y0, side = crop_window(box, h, w)
    assert x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h
    assert side >= min(48, h, w)


def test_feather_is_zero_beyond_its_rim_and_one_inside():
    m = np.zeros((40, 40), bool)
    m[10:20, 10:20] = True
    a = feather(m, 2)
    assert (a[m] == 1).all()
    assert a[7:23, 7:23].max() == 1 and (a[:7] == 0).all() and (a[:, 23:] == 0).all()
    assert 0 < a[9, 15] < 1


def test_latent_block_mask_keeps_thin_regions():
    m = np.zeros((64, 64), bool)
    m[10, 3:60] = True  # one pixel high: vanishes if the pipeline samples the mask at 16x16
    b = latent_block_mask(m, 4)
    assert b[8:12].all(axis=0)[4:56].all() and not b[:8].any() and not b[12:].any()


def test_places_are_shapeworlds():
    """edit keeps its own copy of the 3x3 grid (specialists use world only to train and
    evaluate); it must stay the grid the model was trained and is judged on."""
    from switchboard.specialists.edit import PLACES
    from switchboard.world.edits import PLACES as WORLD_PLACES

    assert PLACES == WORLD_PLACES


def test_parse_description():
    objs = parse_description(
        "a red circle at the top left and a small blue star", ["red", "blue"], ["circle", "star"]
    )
    assert [(o.color, o.shape, o.place, o.size) for o in objs] == [
        ("red", "circle", "top left", "medium"),
        ("blue", "star", None, "small"),
    ]
    placed = assign_places(
        objs + parse_description("a red star, a blue star", ["red", "blue"], ["star"])
    )
    assert [o.place for o in placed] == ["top left", "center", "left", "right"]
    with pytest.raises(InvalidInputError, match="at most 9"):
        assign_places([GenObject(shape="star", color="red")] * 10)
    with pytest.raises(InvalidInputError, match="colour and a shape"):
        parse_description("a red thing", ["red"], ["circle"])


def test_args_reject_bad_boxes_and_places():
    with pytest.raises(ValueError, match="XYXY"):
        EditArgs(op="add", box=(10, 10, 5, 20))
    with pytest.raises(ValueError, match="unknown place"):
        EditArgs(op="add", place="upstairs")


# -- full profile: Stable Diffusion pipelines in the official layout --------------------------
def _tiny_clip(folder):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    enc = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    return tok, enc


def _tiny_sd(folder, in_channels: int, cls_name: str):
    import diffusers
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    tok, enc = _tiny_clip(folder)
    vae = AutoencoderKL(
        block_out_channels=[32, 32],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=32,
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=[32, 64],
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    kw = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = getattr(diffusers, cls_name)(
        vae=vae,
        text_encoder=enc,
        tokenizer=tok,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1),
        **kw,
    )
    pipe.save_pretrained(str(folder / "pipe"))
    return folder / "pipe"


@pytest.fixture
def full_editor(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inpaint = _tiny_sd(tmp_path / "a", 9, "StableDiffusionInpaintPipeline")
    pix2pix = _tiny_sd(tmp_path / "b", 8, "StableDiffusionInstructPix2PixPipeline")
    monkeypatch.setenv("SWITCHBOARD_PROFILE", "full")
    monkeypatch.setenv("SWITCHBOARD_EDIT_WEIGHTS", str(inpaint))
    monkeypatch.setenv("SWITCHBOARD_EDIT_INSTRUCT_WEIGHTS", str(pix2pix))
    config.get_settings.cache_clear()
    try:
        yield EditSpecialist().load()
    finally:
        config.get_settings.cache_clear()


def test_full_profile_runs_stable_diffusion_by_text_and_by_signal(full_editor):
    scene = generate_scene(split_seeds("test", 1)[0])
    img = Image(pixels=scene.image)
    assert full_editor.work_size == 32 and full_editor.signal.num_tokens == 77
    region = scene.masks[0]
    out = full_editor(img, {"op": "recolor", "region": region, "color": "blue", "steps": 2})
    assert out.image.shape == scene.image.shape
    assert (out.image[~out.edit_mask] == scene.image[~out.edit_mask]).all()
    by_signal = full_editor(
        img,
        {"op": "recolor", "region": region, "color": "blue", "steps": 2},
        signal=torch.randn(77, 32),
    )
    assert not np.array_equal(by_signal.image, out.image)
    with pytest.raises(InvalidInputError, match="signal shape"):
        full_editor(img, {"op": "recolor", "region": region}, signal=torch.randn(8, 384))
    whole = full_editor(img, {"op": "recolor", "instruction": "make it blue", "steps": 2})
    assert whole.image.shape == scene.image.shape
    gen = full_editor(None, {"op": "generate", "prompt": "a red circle", "steps": 2})
    assert gen.image.shape == (256, 256, 3)
