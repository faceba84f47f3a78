"""The fused relative-position attention is SAM's attention, forward and backward."""

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention
from switchboard.specialists.sam import RelPosSdpaAttention, build_sam_tiny


@pytest.mark.parametrize(("h", "w", "heads", "batch"), [(8, 8, 6, 3), (5, 7, 2, 2), (14, 14, 4, 1)])
def test_sdpa_attention_matches_sam_attention(h, w, heads, batch):
    torch.manual_seed(0)
    ref = Attention(48, heads, use_rel_pos=True, input_size=(h, w))
    torch.nn.init.normal_(ref.rel_pos_h, std=0.5)
    torch.nn.init.normal_(ref.rel_pos_w, std=0.5)
    fast = RelPosSdpaAttention(48, heads, use_rel_pos=True, input_size=(h, w))
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(batch, h, w, 48, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y = ref(x), fast(x2)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    g = torch.randn_like(y)
    y_ref.backward(g)
    y.backward(g)
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-5, rtol=1e-4)
    for (name, p_ref), p in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_encoder_output_unchanged_by_the_swap():
    torch.manual_seed(0)
    sam = build_sam_tiny()
    assert all(type(b.attn) is RelPosSdpaAttention for b in sam.image_encoder.blocks)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        fast = sam.image_encoder(x)
        for b in sam.image_encoder.blocks:
            b.attn.__class__ = Attention
        ref = sam.image_encoder(x)
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
