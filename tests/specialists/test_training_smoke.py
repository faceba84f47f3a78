"""A few real training steps of each recipe, end to end, into a temporary folder."""

import json

from switchboard.core import Image
from switchboard.world import generate_scene


def test_segment_training_smoke_writes_a_loadable_checkpoint(tmp_path):
    from switchboard.specialists.segment import SegmentSpecialist
    from switchboard.specialists.train_segment import train

    out = train("smoke", out=tmp_path / "seg", work=tmp_path / "work")
    card = json.loads((out / "train.json").read_text())
    assert card["steps_done"] == 3 and (out / "loss.png").is_file()
    seg = SegmentSpecialist(weights=out)
    masks = seg(Image(pixels=generate_scene(0).image), {"box": (10, 10, 120, 120)})
    assert masks.masks[0].shape == (256, 256)
    # Resuming a finished run does no more steps and keeps the result.
    assert (
        json.loads(
            (
                train("smoke", out=tmp_path / "seg2", work=tmp_path / "work") / "train.json"
            ).read_text()
        )["steps_done"]
        == 3
    )


def test_detect_training_smoke_writes_a_loadable_checkpoint(tmp_path):
    from switchboard.specialists.detect import DetectSpecialist
    from switchboard.specialists.train_detect import train

    out = train("smoke", out=tmp_path / "det", work=tmp_path / "work")
    assert (out / "model.safetensors").is_file() and (out / "loss.png").is_file()
    det = DetectSpecialist(weights=out).load()
    assert det.class_names[0] == "circle"
    assert det(Image(pixels=generate_scene(0).image), {}).kind == "boxes"


def test_edit_training_smoke_writes_a_loadable_pipeline(tmp_path):
    from switchboard.specialists.edit import EditSpecialist
    from switchboard.specialists.train_edit import train

    out = train("smoke", out=tmp_path / "edit", work=tmp_path / "work")
    record = json.loads((out / "train.json").read_text())
    assert record["vae_steps_done"] == 2 and record["unet_steps_done"] == 2
    assert (out / "model_index.json").is_file() and (out / "loss.png").is_file()
    scene = generate_scene(0)
    editor = EditSpecialist(weights=out)
    res = editor(
        Image(pixels=scene.image), {"op": "recolor", "region": scene.masks[0], "color": "blue"}
    )
    assert res.image.shape == scene.image.shape
    assert (res.image[~res.edit_mask] == scene.image[~res.edit_mask]).all()


def test_edit_continuation_keeps_the_latent_space_and_moves_the_decoder(tmp_path):
    """tiny-long style presets continue a run: the VAE encoder (the UNet's latent space) stays
    bit-identical, the decoder and the UNet keep training from the earlier weights."""
    import torch
    from switchboard.specialists.train_edit import train

    work = tmp_path / "work"
    first = train("smoke", out=tmp_path / "a", work=work)
    second = train("smoke-long", out=tmp_path / "b", work=work)
    record = json.loads((second / "train.json").read_text())
    assert record["init"] == "smoke" and record["init_unet_steps"] == 2
    assert not (work / "smoke-long" / "data.npz").exists()  # the earlier run's data is reused

    def vae(folder):
        from safetensors.torch import load_file

        return load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")

    a, b = vae(first), vae(second)
    for k in a:
        if k.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))


def test_edit_conditioning_cache_matches_minilm(tmp_path):
    """The GPU preset trains from a cache of MiniLM's conditioning (no MiniLM there): the cache
    holds exactly what MiniLM gives, for every description an item can carry, and "" too."""
    import pytest
    import torch
    from switchboard.specialists.train_edit import (
        all_descriptions,
        conditioning,
        write_cond_cache,
    )

    cache = write_cond_cache(tmp_path / "cond.pt")
    texts = [*all_descriptions()[::7], ""]
    assert torch.allclose(conditioning(texts, cache), conditioning(texts, None), atol=1e-5)
    with pytest.raises(KeyError, match="no conditioning"):
        conditioning(["a mauve blob"], cache)
