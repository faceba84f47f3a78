"""The full-size path: an official-format SAM checkpoint (a plain ``state_dict`` ``.pth``)."""

import numpy as np
import torch
from segment_anything import sam_model_registry
from switchboard.core import Image, config
from switchboard.specialists.segment import SegmentSpecialist


def test_official_vit_b_checkpoint_loads_and_segments(tmp_path, monkeypatch):
    torch.manual_seed(0)
    ref = sam_model_registry["vit_b"](checkpoint=None)
    path = tmp_path / "sam_vit_b_test.pth"
    torch.save(ref.state_dict(), path)  # exactly how the official checkpoints are stored
    monkeypatch.setenv("SWITCHBOARD_PROFILE", "full")
    monkeypatch.setenv("SWITCHBOARD_SAM_CHECKPOINT", str(path))
    monkeypatch.setenv("SWITCHBOARD_SAM_MODEL_TYPE", "vit_b")
    config.get_settings.cache_clear()
    try:
        seg = SegmentSpecialist().load()
        sam = seg.predictor.model
        assert sam.image_encoder.img_size == 1024 and isinstance(sam.signal_in, torch.nn.Identity)
        for (k, v), (k2, v2) in zip(
            sam.state_dict().items(), ref.state_dict().items(), strict=True
        ):
            assert k == k2 and torch.equal(v, v2)
        img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        out = seg(Image(pixels=img), {"box": (10, 10, 90, 100)}, signal=torch.zeros(2, 256))
        assert out.masks[0].shape == (120, 160)
    finally:
        config.get_settings.cache_clear()


def test_tiny_builder_variants_run():
    from switchboard.specialists.sam import ConvStem, build_sam_tiny

    for conv_stem in (False, True):
        sam = build_sam_tiny(conv_stem=conv_stem)
        assert isinstance(sam.image_encoder.patch_embed, ConvStem) == conv_stem
        emb = sam.image_encoder(torch.zeros(1, 3, 256, 256))
        assert emb.shape == (1, 128, 32, 32)
        assert isinstance(sam.signal_in, torch.nn.Linear)
