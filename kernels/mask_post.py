"""Mask post-processing in one pass: SAM's low-resolution mask logits → bool masks at the image's
size, with each mask's area and tight box.

SAM's own path (``Sam.postprocess_masks`` then ``> threshold``) upsamples the ``[N, h, w]`` logits
bilinearly to the padded ``S × S`` model input, crops the image's part ``input_size``, upsamples
again to ``original_size``, thresholds — writing two float tensors of ``N × S²`` and ``N × H × W``
on the way — and the caller then reduces the masks again for boxes and areas. The kernel computes
each output pixel directly from the 4 × 4 low-resolution logits under it (the two bilinear steps
composed, with PyTorch's ``align_corners=False`` source-index rule), thresholds it, writes one
byte, and reduces the tile's area and box with atomics. With ``pad == input_size ==
original_size`` it is one plain bilinear upsampling (e.g. 256 → 1024).

- :func:`postprocess_masks` — the entry point: kernel where :func:`supported` (a GPU), else the
  reference; ``use_kernel=True`` also runs it on the CPU under ``TRITON_INTERPRET=1``.
- :func:`postprocess_masks_reference` — plain torch: SAM's two ``F.interpolate`` + threshold.
- :class:`MaskPostprocess` — the module form.

Boxes are XYXY in pixels with an exclusive end (``core.results.mask_to_box``); an empty mask has
area 0 and the box ``(0, 0, 0, 0)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._guard import interpreting, triton_available

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_SIDE = 2**15  # box sentinels and int32 offsets stay in range


class PostprocessedMasks(NamedTuple):
    masks: torch.Tensor  # [N, H, W] bool
    areas: torch.Tensor  # [N] int64
    boxes: torch.Tensor  # [N, 4] int64 XYXY, exclusive end; zeros for an empty mask
    logits: torch.Tensor | None = None  # [N, H, W] float32, when asked for


def _sizes(low_res: torch.Tensor, pad: int, input_size, original_size):
    if low_res.dim() != 3:
        raise ValueError(f"low-res logits are [N, h, w], got {tuple(low_res.shape)}")
    hi, wi = (int(v) for v in input_size)
    ho, wo = (int(v) for v in original_size)
    if not (0 < hi <= pad and 0 < wi <= pad):
        raise ValueError(f"input_size {input_size} must lie inside the {pad}x{pad} padded input")
    if not (0 < ho <= MAX_SIDE and 0 < wo <= MAX_SIDE):
        raise ValueError(f"original_size {original_size} is out of range")
    return hi, wi, ho, wo


def _boxes_of(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, h, w = masks.shape
    areas = masks.flatten(1).sum(1)
    rows, cols = masks.any(2), masks.any(1)  # [N, H], [N, W]
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    big = max(h, w) + 1
    y1 = torch.where(rows, ys, big).min(1).values
    y2 = torch.where(rows, ys, -1).max(1).values + 1
    x1 = torch.where(cols, xs, big).min(1).values
    x2 = torch.where(cols, xs, -1).max(1).values + 1
    boxes = torch.stack([x1, y1, x2, y2], 1)
    boxes[areas == 0] = 0
    return areas.long(), boxes.long()


def postprocess_masks_reference(
    low_res: torch.Tensor,
    pad: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float = 0.0,
    return_logits: bool = False,
) -> PostprocessedMasks:
    """SAM's ``postprocess_masks`` (upsample to ``pad``², crop ``input_size``, upsample to
    ``original_size``) and ``> threshold``, then areas and boxes."""
    hi, wi, ho, wo = _sizes(low_res, pad, input_size, original_size)
    x = F.interpolate(low_res[:, None].float(), (pad, pad), mode="bilinear", align_corners=False)
    x = x[..., :hi, :wi]
    x = F.interpolate(x, (ho, wo), mode="bilinear", align_corners=False)[:, 0]
    masks = x > threshold
    areas, boxes = _boxes_of(masks)
    return PostprocessedMasks(masks, areas, boxes, x if return_logits else None)


def runnable(low_res: torch.Tensor) -> bool:
    """Whether the kernel can run on ``low_res``: Triton importable and the tensor on a GPU, or
    on the CPU under the interpreter; a supported dtype and shape."""
    if not triton_available():
        return False
    if low_res.device.type != "cuda" and not (low_res.device.type == "cpu" and interpreting()):
        return False
    return low_res.dim() == 3 and low_res.dtype in DTYPES and low_res.numel() > 0


def supported(low_res: torch.Tensor) -> bool:
    """The guard for using the kernel by default: :func:`runnable` on a GPU."""
    return runnable(low_res) and low_res.device.type == "cuda"


if triton_available():
    import triton
    import triton.language as tl

    @triton.jit
    def _source(o, scale, size):
        """PyTorch's bilinear source index (align_corners=False): the two neighbours and the
        weight of the second."""
        s = tl.maximum((o.to(tl.float32) + 0.5) * scale - 0.5, 0.0)
        i0 = s.to(tl.int32)  # s >= 0: truncation is floor
        i1 = tl.minimum(i0 + 1, size - 1)
        return i0, i1, s - i0.to(tl.float32)

    @triton.jit
    def _stage1(base, py, px, h, w, sh, sw):
        """The padded-input value at (py, px): bilinear over the low-res logits."""
        a0, a1, ly = _source(py, sh, h)
        b0, b1, lx = _source(px, sw, w)
        v00 = tl.load(base + a0 * w + b0).to(tl.float32)
        v01 = tl.load(base + a0 * w + b1).to(tl.float32)
        v10 = tl.load(base + a1 * w + b0).to(tl.float32)
        v11 = tl.load(base + a1 * w + b1).to(tl.float32)
        top = v00 + (v01 - v00) * lx
        bottom = v10 + (v11 - v10) * lx
        return top + (bottom - top) * ly

    @triton.jit
    def _postprocess_kernel(
        low_ptr,
        out_ptr,
        logits_ptr,
        area_ptr,
        box_ptr,
        h,
        w,
        hi,
        wi,
        ho,
        wo,
        sh,
        sw,  # stage 1 scales: h / pad, w / pad
        th,
        tw,  # stage 2 scales: hi / ho, wi / wo
        threshold,
        WRITE_LOGITS: tl.constexpr,
        BLOCK_Y: tl.constexpr,
        BLOCK_X: tl.constexpr,
    ):
        n = tl.program_id(0)
        oy = tl.program_id(1) * BLOCK_Y + tl.arange(0, BLOCK_Y)[:, None]
        ox = tl.program_id(2) * BLOCK_X + tl.arange(0, BLOCK_X)[None, :]
        inside = (oy < ho) & (ox < wo)
        oy_c = tl.minimum(oy, ho - 1)
        ox_c = tl.minimum(ox, wo - 1)
        base = low_ptr + n.to(tl.int64) * h * w
        y0, y1, ly = _source(oy_c, th, hi)
        x0, x1, lx = _source(ox_c, tw, wi)
        p00 = _stage1(base, y0, x0, h, w, sh, sw)
        p01 = _stage1(base, y0, x1, h, w, sh, sw)
        p10 = _stage1(base, y1, x0, h, w, sh, sw)
        p11 = _stage1(base, y1, x1, h, w, sh, sw)
        top = p00 + (p01 - p00) * lx
        bottom = p10 + (p11 - p10) * lx
        v = top + (bottom - top) * ly
        on = (v > threshold) & inside
        offset = n.to(tl.int64) * ho * wo + oy_c * wo + ox_c
        tl.store(out_ptr + offset, on.to(tl.int8), mask=inside)
        if WRITE_LOGITS:
            tl.store(logits_ptr + offset, v, mask=inside)
        count = tl.sum(tl.sum(on.to(tl.int32), 1), 0)
        if count > 0:
            big = 1 << 30
            tl.atomic_add(area_ptr + n, count)
            x_min = tl.min(tl.min(tl.where(on, ox_c, big), 1), 0)
            y_min = tl.min(tl.min(tl.where(on, oy_c, big), 1), 0)
            x_max = tl.max(tl.max(tl.where(on, ox_c + 1, 0), 1), 0)
            y_max = tl.max(tl.max(tl.where(on, oy_c + 1, 0), 1), 0)
            tl.atomic_min(box_ptr + n * 4 + 0, x_min)
            tl.atomic_min(box_ptr + n * 4 + 1, y_min)
            tl.atomic_max(box_ptr + n * 4 + 2, x_max)
            tl.atomic_max(box_ptr + n * 4 + 3, y_max)


def _kernel(low_res, pad, input_size, original_size, threshold, return_logits):
    hi, wi, ho, wo = _sizes(low_res, pad, input_size, original_size)
    n, h, w = low_res.shape
    low = low_res.contiguous()
    dev = low.device
    out = torch.empty((n, ho, wo), dtype=torch.int8, device=dev)
    logits = torch.empty((n, ho, wo), dtype=torch.float32, device=dev) if return_logits else out
    areas = torch.zeros(n, dtype=torch.int32, device=dev)
    boxes = torch.tensor([[1 << 30, 1 << 30, 0, 0]], dtype=torch.int32, device=dev).repeat(n, 1)
    by, bx = (16, 64) if not interpreting() else (64, 128)
    grid = (n, triton.cdiv(ho, by), triton.cdiv(wo, bx))
    _postprocess_kernel[grid](
        low,
        out,
        logits,
        areas,
        boxes,
        h,
        w,
        hi,
        wi,
        ho,
        wo,
        float(h) / pad,
        float(w) / pad,
        float(hi) / ho,
        float(wi) / wo,
        float(threshold),
        WRITE_LOGITS=return_logits,
        BLOCK_Y=by,
        BLOCK_X=bx,
    )
    boxes[areas == 0] = 0
    return PostprocessedMasks(
        out.view(torch.bool), areas.long(), boxes.long(), logits if return_logits else None
    )


def postprocess_masks(
    low_res: torch.Tensor,
    pad: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float = 0.0,
    return_logits: bool = False,
    use_kernel: bool | None = None,
) -> PostprocessedMasks:
    """Masks ``[N, H, W]`` bool at ``original_size`` from low-res logits ``[N, h, w]`` (SAM's
    ``pad`` = its encoder's input side, ``input_size`` = the resized image inside it), with
    areas and boxes. ``use_kernel``: None = the kernel on a GPU, else the reference."""
    if use_kernel is None:
        use_kernel = supported(low_res)
    elif use_kernel and not runnable(low_res):
        raise ValueError("the mask kernel cannot run on this tensor (see runnable())")
    fn = _kernel if use_kernel else postprocess_masks_reference
    return fn(low_res, pad, input_size, original_size, threshold, return_logits)


class MaskPostprocess(nn.Module):
    """:func:`postprocess_masks` as a module for one model input size ``pad``."""

    def __init__(self, pad: int, threshold: float = 0.0) -> None:
        super().__init__()
        self.pad, self.threshold = pad, threshold

    def forward(
        self, low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> PostprocessedMasks:
        return postprocess_masks(low_res, self.pad, input_size, original_size, self.threshold)
