"""Fused linear + cross-entropy: the loss and gradients of ``CE(h @ W.T, y)`` without the
``[tokens × vocab]`` logits.

The tokens go through in chunks. For each chunk the logits are one matmul (cuBLAS). One Triton
program per row then reads that row once for the online max / log-sum-exp and the target's logit,
and writes the row's gradient ``(softmax − onehot) · scale`` over the logits in place. Two more
matmuls turn that into the chunk's share of ``dh`` and ``dW``. The backward pass only scales the
stored gradients by the incoming ``grad_output``. Peak extra memory is one chunk of logits
(``chunk × vocab``) instead of all of them (and their fp32 copy and their gradient).

- :func:`linear_cross_entropy` — the entry point (torch API: ``reduction``, ``ignore_index``).
  It uses the kernel when :func:`supported` says so and the plain-torch reference otherwise.
- :class:`LinearCrossEntropy` — the module form (``nn.CrossEntropyLoss`` over a linear layer).
- :func:`linear_cross_entropy_reference` — plain torch (materializes the fp32 logits).

Inputs may be fp32, bf16 or fp16; the softmax and the loss accumulate in fp32, and the gradients
come back in the inputs' dtypes.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ._guard import interpreting, triton_available

IGNORE_INDEX = -100
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def linear_cross_entropy_reference(
    h: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """``F.cross_entropy((h @ weight.T).float(), target)``: the definition the kernel matches."""
    logits = (h @ weight.T).float()
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)


def supported(h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> bool:
    """The guard for using the kernel by default: Triton importable, the tensors on one GPU,
    supported dtypes and shapes. (On the CPU the reference runs; ``use_kernel=True`` runs the
    kernel there under Triton's interpreter, for the tests.)"""
    return runnable(h, weight, target) and h.device.type == "cuda"


def runnable(h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether the kernel can run on these tensors at all: on a GPU, or on the CPU under the
    interpreter (``TRITON_INTERPRET=1``)."""
    if not triton_available():
        return False
    if len({h.device, weight.device, target.device}) != 1:
        return False
    if h.device.type != "cuda" and not (h.device.type == "cpu" and interpreting()):
        return False
    return (
        h.dim() == 2
        and weight.dim() == 2
        and target.dim() == 1
        and h.shape[0] == target.shape[0]
        and h.shape[1] == weight.shape[1]
        and h.dtype in DTYPES
        and weight.dtype == h.dtype
        and target.dtype in (torch.int64, torch.int32)
        and weight.shape[0] > 0
    )


if triton_available():
    import triton
    import triton.language as tl

    @triton.jit
    def _ce_rows_kernel(
        logits_ptr,  # [rows, vocab], overwritten with the gradient
        stride,
        target_ptr,
        loss_ptr,  # fp32 [rows]
        vocab,
        ignore_index,
        scale,  # the gradient's scale (1 / valid tokens for the mean, 1 for the sum)
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * stride
        y = tl.load(target_ptr + row).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        if y == ignore_index:
            for start in range(0, vocab, BLOCK):
                idx = start + cols
                tl.store(
                    base + idx,
                    tl.zeros([BLOCK], tl.float32).to(base.dtype.element_ty),
                    mask=idx < vocab,
                )
            tl.store(loss_ptr + row, 0.0)
        else:
            m = tl.full([], float("-inf"), tl.float32)
            s = tl.full([], 0.0, tl.float32)
            for start in range(0, vocab, BLOCK):  # online max and sum of exp
                idx = start + cols
                x = tl.load(base + idx, mask=idx < vocab, other=float("-inf")).to(tl.float32)
                m_new = tl.maximum(m, tl.max(x, 0))
                s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
                m = m_new
            lse = m + tl.log(s)
            x_y = tl.load(base + y).to(tl.float32)
            tl.store(loss_ptr + row, lse - x_y)
            for start in range(0, vocab, BLOCK):  # d loss / d logits, in place
                idx = start + cols
                x = tl.load(base + idx, mask=idx < vocab, other=0.0).to(tl.float32)
                g = tl.exp(x - lse) - tl.where(idx == y, 1.0, 0.0)
                tl.store(base + idx, (g * scale).to(base.dtype.element_ty), mask=idx < vocab)


def _block(vocab: int) -> int:
    cap = 1024 if not interpreting() else 4096  # the interpreter is faster with fewer, wider blocks
    return min(cap, triton.next_power_of_2(vocab))


def _chunk_rows(rows: int, vocab: int) -> int:
    """Rows per chunk: ~64 M logits (128 MB in bf16; 1365 rows of SmolLM2's 49 152), so each
    matmul is large enough for the tensor cores while the chunk stays far below torch's
    full-logits peak. ``SWITCHBOARD_CE_CHUNK`` overrides it."""
    chunk = int(os.environ.get("SWITCHBOARD_CE_CHUNK", "0")) or max(1, min(8192, 2**26 // vocab))
    return max(1, min(rows, chunk))


def _forward(h, weight, target, ignore_index, reduction):
    rows, _ = h.shape
    vocab = weight.shape[0]
    valid = int((target != ignore_index).sum())
    scale = 1.0 / max(valid, 1) if reduction == "mean" else 1.0
    loss_rows = torch.empty(rows, dtype=torch.float32, device=h.device)
    grad_h = torch.empty_like(h)
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device)  # fp32 sum
    chunk = _chunk_rows(rows, vocab)
    block = _block(vocab)
    for start in range(0, rows, chunk):
        end = min(rows, start + chunk)
        hc = h[start:end]
        logits = hc @ weight.T  # [chunk, vocab] in the inputs' dtype (fp32 accumulate)
        _ce_rows_kernel[(end - start,)](
            logits,
            logits.stride(0),
            target[start:end].contiguous(),
            loss_rows[start:end],
            vocab,
            ignore_index,
            scale,
            BLOCK=block,
        )
        grad_h[start:end] = logits @ weight
        grad_w += logits.T @ hc  # one rounding per chunk, summed in fp32
    if reduction == "mean":  # no valid token: NaN, as F.cross_entropy gives
        loss = loss_rows.sum() / valid if valid else loss_rows.sum() * math.nan
    else:
        loss = loss_rows.sum()
    return loss, grad_h, grad_w.to(weight.dtype)


class _LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, target, ignore_index, reduction):
        loss, grad_h, grad_w = _forward(
            h.contiguous(), weight.contiguous(), target, ignore_index, reduction
        )
        ctx.save_for_backward(grad_h, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, grad_w = ctx.saved_tensors
        g = grad_output.detach()
        return grad_h * g.to(grad_h.dtype), grad_w * g.to(grad_w.dtype), None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    use_kernel: bool | None = None,
) -> torch.Tensor:
    """``CE(h @ weight.T, target)`` for ``h`` ``[tokens, d]``, ``weight`` ``[vocab, d]``.
    ``use_kernel``: None = the kernel when :func:`supported` (a GPU), else the reference;
    True = the kernel (a GPU, or the CPU interpreter); False = the reference."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if use_kernel is None:
        use_kernel = supported(h, weight, target)
    elif use_kernel and not runnable(h, weight, target):
        raise ValueError("the fused kernel cannot run on these tensors (see runnable())")
    if not use_kernel:
        return linear_cross_entropy_reference(h, weight, target, ignore_index, reduction)
    return _LinearCrossEntropyFunction.apply(h, weight, target, ignore_index, reduction)


class LinearCrossEntropy(nn.Module):
    """``nn.CrossEntropyLoss`` of a bias-free linear layer's output, fused (``forward(h,
    weight, target)``)."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, reduction: str = "mean") -> None:
        super().__init__()
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(h, weight, target, self.ignore_index, self.reduction)
