"""Segment Anything builders and a predictor that also takes signal tokens.

``build_sam_tiny`` sits beside the library's ``sam_model_registry`` (ViT-B/L/H) in
``SAM_BUILDERS``, following the library's pattern: thin public builders over one private
``_build``. The tiny model is trained on ShapeWorld; the others load official checkpoints.

Signal tokens (``[K, 256]``, the router's hidden states projected by its signal head) are
appended to SAM's sparse prompt embeddings (the LISA pattern). Official SAM's prompt space is
256-d; a smaller model adds a linear ``signal_in`` projection into its own prompt width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamPredictor, sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from switchboard.kernels import postprocess_masks
from torch import nn
from torch.nn import functional as F

SIGNAL_DIM = 256  # official SAM's prompt embedding width: the space signals are declared in


class SignalSam(Sam):
    """SAM plus ``signal_in``: signal tokens ``[B, K, 256]`` → the prompt width."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        width = self.prompt_encoder.embed_dim
        self.signal_in: nn.Module = (
            nn.Identity() if width == SIGNAL_DIM else nn.Linear(SIGNAL_DIM, width)
        )

    def sparse_with_signal(self, sparse: torch.Tensor, signal: torch.Tensor | None) -> torch.Tensor:
        """Append projected signal tokens to sparse prompt embeddings ``[B, N, C]``."""
        if signal is None:
            return sparse
        sig = self.signal_in(signal.to(sparse.dtype))  # [B or 1, K, C]
        sig = sig.expand(sparse.shape[0], -1, -1)
        return torch.cat([sparse, sig], dim=1)

    def refine_sparse(self, sparse: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        """Add residual signal tokens ``[B or 1, 2, 256]`` to the box's two corner tokens (the
        last two of ``sparse`` ``[B, N, C]`` when a box is given): the text call's box stays
        the prompt and the signal moves it. The projection has no bias, so a zero residual
        leaves the box prompt exactly as it is."""
        k = signal.shape[-2]
        if k != 2 or sparse.shape[1] < 2:
            raise ValueError(f"a refining signal has 2 tokens (the box's corners), got {k}")
        proj = self.signal_in
        delta = (
            signal.to(sparse.dtype)
            if isinstance(proj, nn.Identity)
            else F.linear(signal.to(sparse.dtype), proj.weight)
        )
        head, corners = sparse[:, :-2], sparse[:, -2:]
        return torch.cat([head, corners + delta], dim=1)


class RelPosSdpaAttention(Attention):
    """SAM's encoder attention, same parameters and maths, through one fused
    ``scaled_dot_product_attention`` call: the decomposed relative-position terms become its
    additive mask instead of two broadcast adds and a separate softmax over the full
    ``[HW, HW]`` score matrix (those three passes were half the tiny encoder's CPU time).
    Measured on 1 core at 32x32 tokens, 6 heads: 63 -> 45 ms per global-attention block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
        bias = None
        if self.use_rel_pos:
            rq = q.reshape(-1, H, W, q.shape[-1])  # unscaled q, as in SAM
            rel_h = torch.einsum("bhwc,hkc->bhwk", rq, get_rel_pos(H, H, self.rel_pos_h))
            rel_w = torch.einsum("bhwc,wkc->bhwk", rq, get_rel_pos(W, W, self.rel_pos_w))
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(-1, H * W, H * W)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(out)


def use_sdpa_attention(encoder: ImageEncoderViT) -> ImageEncoderViT:
    """Switch every block of a SAM image encoder to :class:`RelPosSdpaAttention` in place
    (parameters and state-dict keys unchanged, so any checkpoint still loads)."""
    for blk in encoder.blocks:
        if type(blk.attn) is Attention:
            blk.attn.__class__ = RelPosSdpaAttention
    return encoder


class ConvStem(nn.Module):
    """Early convolutions in place of ViT's patchify layer (Xiao et al., 2021, "Early
    convolutions help transformers see better"): 3x3 stride-2 convs down to the patch stride,
    then a 1x1 projection. Output ``[B, H/p, W/p, C]`` like SAM's ``PatchEmbed``."""

    def __init__(self, embed_dim: int, patch_size: int, in_chans: int = 3) -> None:
        super().__init__()
        stages = int(math.log2(patch_size))
        if 2**stages != patch_size:
            raise ValueError(f"conv stem needs a power-of-two patch size, got {patch_size}")
        layers: list[nn.Module] = []
        c, width = in_chans, max(embed_dim // 2**stages, 8)
        for i in range(stages):
            w = width * 2**i
            layers += [
                nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(1, w),
                nn.GELU(),
            ]
            c = w
        layers.append(nn.Conv2d(c, embed_dim, 1))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # [B, C, h, w] -> [B, h, w, C]


def _build(
    *,
    encoder_depth: int,
    encoder_embed_dim: int,
    encoder_num_heads: int,
    encoder_global_attn_indexes: tuple[int, ...],
    img_size: int,
    patch_size: int,
    prompt_embed_dim: int,
    decoder_mlp_dim: int,
    decoder_heads: int,
    window_size: int,
    checkpoint: str | Path | None = None,
    conv_stem: bool = False,
) -> SignalSam:
    embed_size = img_size // patch_size
    sam = SignalSam(
        image_encoder=ImageEncoderViT(
            depth=encoder_depth,
            embed_dim=encoder_embed_dim,
            img_size=img_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=encoder_num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=encoder_global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(embed_size, embed_size),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_heads,
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=prompt_embed_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    use_sdpa_attention(sam.image_encoder)
    if conv_stem:
        sam.image_encoder.patch_embed = ConvStem(encoder_embed_dim, patch_size)
    if checkpoint is not None:
        load_sam_weights(sam, checkpoint)
    return sam.eval()


TINY_CONFIG: dict[str, Any] = {
    # 3 M parameters: a conv stem, then 4 ViT blocks of width 192 over a 32x32 grid (256 px
    # input); early convolutions learn edges far faster than an 8x8 patchify layer on CPU budgets.
    "encoder_depth": 4,
    "encoder_embed_dim": 192,
    "encoder_num_heads": 6,
    "encoder_global_attn_indexes": (1, 3),
    "img_size": 256,
    "patch_size": 8,
    "prompt_embed_dim": 128,
    "decoder_mlp_dim": 512,
    "decoder_heads": 4,
    "window_size": 8,
    "conv_stem": True,
}


def build_sam_tiny(checkpoint: str | Path | None = None, **overrides: Any) -> SignalSam:
    """The ShapeWorld-sized SAM (``TINY_CONFIG``), optionally loading weights."""
    return _build(**(TINY_CONFIG | overrides), checkpoint=checkpoint)


def _official(model_type: str, checkpoint: str | Path | None = None) -> SignalSam:
    """An official ViT-B/L/H SAM as a :class:`SignalSam` (signal_in is the identity)."""
    ref = sam_model_registry[model_type](checkpoint=None)
    sam = SignalSam(
        ref.image_encoder,
        ref.prompt_encoder,
        ref.mask_decoder,
        pixel_mean=ref.pixel_mean.flatten().tolist(),
        pixel_std=ref.pixel_std.flatten().tolist(),
    )
    use_sdpa_attention(sam.image_encoder)
    if checkpoint is not None:
        load_sam_weights(sam, checkpoint)
    return sam.eval()


SAM_BUILDERS = {
    "tiny": build_sam_tiny,
    "vit_b": partial(_official, "vit_b"),
    "vit_l": partial(_official, "vit_l"),
    "vit_h": partial(_official, "vit_h"),
}


def load_sam_weights(sam: SignalSam, checkpoint: str | Path) -> None:
    """Load an official ``.pth`` state dict or our ``.safetensors`` into ``sam``.

    Official checkpoints lack ``signal_in`` (the identity there); anything else missing or
    unexpected is an error, not a silent partial load.
    """
    path = Path(checkpoint)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = sam.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("signal_in.")]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path.name} does not fit: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


class SignalSamPredictor(SamPredictor):
    """``SamPredictor`` whose ``predict`` also takes signal tokens ``[K, 256]``. Masks are
    post-processed by :func:`switchboard.kernels.postprocess_masks` (``use_kernel``: None = the
    Triton kernel on a GPU, SAM's own upsampling otherwise)."""

    model: SignalSam
    use_kernel: bool | None = None

    @torch.no_grad()
    def embed_images(self, images: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, Any, Any]]:
        """Embed several same-sized HWC uint8 RGB images in one encoder batch (video frames);
        returns one ``(features, original_size, input_size)`` per image, for
        :meth:`use_embedding`."""
        if len(images) == 0:
            return []
        batch = np.stack([self.transform.apply_image(np.asarray(im)) for im in images])
        x = torch.as_tensor(batch, device=self.device).permute(0, 3, 1, 2).contiguous()
        feats = self.model.image_encoder(self.model.preprocess(x))
        original, inp = tuple(images[0].shape[:2]), tuple(x.shape[-2:])
        return [(feats[i : i + 1], original, inp) for i in range(len(images))]

    def use_embedding(self, embedding: tuple[torch.Tensor, Any, Any]) -> None:
        """Make an embedding from :meth:`embed_images` the current image."""
        self.reset_image()
        self.features, self.original_size, self.input_size = embedding
        self.is_image_set = True

    @torch.no_grad()
    def predict_with_signal(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        signal: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like ``SamPredictor.predict`` (coordinates in original-image pixels, XY / XYXY);
        returns masks ``[C, H, W]`` bool, scores ``[C]``, low-res logits ``[C, h, w]``."""
        if not self.is_image_set:
            raise RuntimeError("call set_image before predicting")
        dev = self.device
        coords = labels = boxes = masks = None
        if point_coords is not None:
            c = self.transform.apply_coords(np.asarray(point_coords, float), self.original_size)
            coords = torch.as_tensor(c, dtype=torch.float, device=dev)[None]
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=dev)[None]
        if box is not None:
            b = self.transform.apply_boxes(np.asarray(box, float)[None], self.original_size)
            boxes = torch.as_tensor(b, dtype=torch.float, device=dev)
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float, device=dev)[None]
        sparse, dense = self.model.prompt_encoder(
            points=(coords, labels) if coords is not None else None, boxes=boxes, masks=masks
        )
        sig = None if signal is None else signal.to(dev).float().reshape(1, -1, SIGNAL_DIM)
        if sig is not None and boxes is not None:
            # With a box (the text call's object) the signal refines it: a residual on the
            # box's tokens. Without one, the signal is the prompt.
            sparse = self.model.refine_sparse(sparse, sig)
        else:
            sparse = self.model.sparse_with_signal(sparse, sig)
        masks_out, iou, low_res = self._decode(sparse, dense, multimask_output)
        return masks_out[0], iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    def _decode(
        self, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """Run the mask decoder on the set image: masks ``[B, C, H, W]`` bool at the original
        size, IoU predictions ``[B, C]`` and low-res logits ``[B, C, h, w]``."""
        low_res, iou = self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        b, c = low_res.shape[:2]
        post = postprocess_masks(
            low_res.flatten(0, 1),
            self.model.image_encoder.img_size,
            self.input_size,
            self.original_size,
            self.model.mask_threshold,
            use_kernel=self.use_kernel,
        )
        masks = post.masks.reshape(b, c, *post.masks.shape[1:])
        return masks.cpu().numpy(), iou, low_res

    @torch.no_grad()
    def predict_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One mask per box for ``boxes`` ``[N, 4]`` (XYXY, original pixels) in a single
        decoder pass; returns masks ``[N, H, W]`` bool and scores ``[N]``."""
        if not self.is_image_set:
            raise RuntimeError("call set_image before predicting")
        b = self.transform.apply_boxes(np.asarray(boxes, float).reshape(-1, 4), self.original_size)
        sparse, dense = self.model.prompt_encoder(
            points=None, boxes=torch.as_tensor(b, dtype=torch.float, device=self.device), masks=None
        )
        masks, iou, _ = self._decode(sparse, dense, multimask=False)
        return masks[:, 0], iou[:, 0].cpu().numpy()
