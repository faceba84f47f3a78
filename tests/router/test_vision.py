import numpy as np
import pytest
import torch
from switchboard.core.errors import InvalidInputError
from switchboard.router.vision import (
    FrameEmbedding,
    HFVisionTower,
    Projector,
    RegionEncoder,
    ShapeViT,
    ViTConfig,
    region_from,
    sample_frames,
    to_pixels,
)

SMALL = ViTConfig(image_size=64, patch_size=16, width=32, depth=1, heads=2)


def test_vit_projector_shapes():
    vit = ShapeViT(SMALL)
    px = to_pixels(np.zeros((2, 80, 80, 3), np.uint8), SMALL.image_size)
    feats = vit(px)
    assert feats.shape == (2, 16, 32)
    proj = Projector(32, 48, grid=4, pool=2)
    assert proj(feats).shape == (2, proj.num_tokens, 48) and proj.num_tokens == 4


def test_region_xy_order():
    # A region in the top-right corner: x large, y small, in the box and in the pooled patches.
    mask = np.zeros((64, 128), bool)
    mask[0:16, 96:128] = True
    m, box = region_from(64, 128, mask=mask)
    assert box.tolist() == pytest.approx([0.75, 0.0, 1.0, 0.25])
    w = RegionEncoder.mask_weights(torch.from_numpy(m)[None], grid=4)[0].reshape(4, 4)
    assert w[0, 3] > 0.9  # row 0 (top), column 3 (right)
    _, box = region_from(64, 128, box=(96, 0, 128, 16))
    assert box.tolist() == pytest.approx([0.75, 0.0, 1.0, 0.25])
    m, _ = region_from(64, 128, point=(120, 4))
    ys, xs = np.nonzero(m)
    assert xs.mean() > 100 and ys.mean() < 10


def test_region_encoder_depends_on_where():
    torch.manual_seed(0)
    enc = RegionEncoder(32, 48)
    feats = torch.randn(2, 16, 32)
    a, ba = region_from(64, 64, box=(0, 0, 16, 16))
    b, bb = region_from(64, 64, box=(48, 48, 64, 64))
    masks = torch.from_numpy(np.stack([a, b]))
    boxes = torch.from_numpy(np.stack([ba, bb]))
    out = enc(torch.stack([feats[0], feats[0]]), masks, boxes, grid=4)
    assert out.shape == (2, 48) and not torch.allclose(out[0], out[1])


def test_bad_regions_and_frames():
    with pytest.raises(InvalidInputError):
        region_from(64, 64, mask=np.zeros((64, 64), bool))
    with pytest.raises(InvalidInputError):
        region_from(64, 64, mask=np.ones((32, 64), bool))
    with pytest.raises(InvalidInputError):
        region_from(64, 64, box=(10, 10, 5, 20))
    with pytest.raises(InvalidInputError):
        region_from(64, 64, point=(70, 3))
    with pytest.raises(InvalidInputError):
        region_from(64, 64)
    with pytest.raises(InvalidInputError):
        to_pixels(np.zeros((8, 8), np.uint8), 64)
    with pytest.raises(InvalidInputError):
        FrameEmbedding(8, max_frames=4)(torch.zeros(2, 8), 4)
    assert sample_frames(3, 8) == [0, 1, 2]
    assert sample_frames(30, 4) == [0, 10, 19, 29]
    with pytest.raises(InvalidInputError):
        sample_frames(0, 4)


def test_hf_vision_tower(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    CLIPVisionModel(cfg).save_pretrained(tmp_path)
    tower = HFVisionTower(str(tmp_path))
    feats = tower(to_pixels(np.zeros((1, 40, 40, 3), np.uint8), tower.image_size))
    assert feats.shape == (1, 16, 24) and tower.grid == 4 and tower.width == 24


def test_unknown_stem_is_refused():
    with pytest.raises(ValueError, match="stem"):
        ShapeViT(ViTConfig(image_size=64, width=32, depth=1, heads=2, stem="cnn"))


def test_detector_stem_is_our_detector_frozen():
    """The detector stem computes exactly the committed detector's P4 features, keeps them
    frozen (no gradient, batch norms in eval under ``train()``) and trains its own parts."""
    from switchboard.core.config import models_dir
    from switchboard.specialists.detect import load_yolo

    folder = models_dir() / "detect-tiny"
    cfg = ViTConfig(image_size=64, patch_size=16, width=32, depth=1, heads=2, stem="detector")
    vit = ShapeViT(cfg)
    vit.patch.load_detector(folder)
    px = to_pixels(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), np.uint8), 64)
    net = load_yolo(folder, fuse=False).model.eval()
    seen = {}
    net.model[vit.patch.p4].register_forward_hook(lambda m, i, o: seen.setdefault("p4", o))
    with torch.no_grad():
        net(px)
        _, p4 = vit.patch._detector(px)
    torch.testing.assert_close(p4, seen["p4"], rtol=1e-4, atol=1e-4)
    vit.train()
    assert not vit.patch.layers.training and vit.patch.own.training
    feats = vit(px)
    assert feats.shape == (2, 16, 32)
    feats.square().mean().backward()
    assert all(p.grad is None for p in vit.patch.layers.parameters())
    assert vit.patch.mix.weight.grad is not None and vit.patch.own[0].weight.grad is not None
    with pytest.raises(FileNotFoundError):
        vit.patch.load_detector(folder / "missing")
