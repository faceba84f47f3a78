"""The fused linear + cross-entropy kernel, run by Triton's CPU interpreter, against the plain-torch
reference: the loss and both gradients over odd shapes, three dtypes, ignore_index, both
reductions, several chunks, the all-ignored edge case, and the guard's fallback."""

from __future__ import annotations

import pytest
import torch
from switchboard.kernels import linear_ce
from switchboard.kernels.linear_ce import (
    LinearCrossEntropy,
    linear_cross_entropy,
    linear_cross_entropy_reference,
    runnable,
    supported,
)


def test_the_interpreter_is_on():
    """tests/conftest.py sets TRITON_INTERPRET=1 before triton is imported (triton comes with
    torch): every kernel test below really runs the kernel."""
    assert runnable(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))


# (loss, gradient) tolerances: fp32 is exact up to summation order; half types round the logits
# (and the gradient over them) to 8 or 11 bits.
TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 3e-2), torch.float16: (3e-3, 5e-3)}


def _inputs(rows, d, vocab, dtype, ignored=0.25, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(rows, d, generator=g) / d**0.25).to(dtype)
    w = (torch.randn(vocab, d, generator=g) / d**0.25).to(dtype)
    y = torch.randint(0, vocab, (rows,), generator=g)
    y[torch.rand(rows, generator=g) < ignored] = -100
    return h, w, y


def _run(fn, h, w, y, **kw):
    h = h.detach().clone().requires_grad_()
    w = w.detach().clone().requires_grad_()
    loss = fn(h, w, y, **kw)
    (loss * 1.7).backward()  # a grad_output other than 1
    return loss.detach().float(), h.grad.float(), w.grad.float()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("rows,d,vocab", [(1, 8, 5), (7, 16, 33), (37, 24, 130), (50, 40, 1001)])
def test_matches_the_reference(rows, d, vocab, dtype, reduction):
    h, w, y = _inputs(rows, d, vocab, dtype)
    if (y == -100).all():
        y[0] = 1
    ours = _run(linear_cross_entropy, h, w, y, reduction=reduction, use_kernel=True)
    ref = _run(linear_cross_entropy_reference, h, w, y, reduction=reduction)
    loss_tol, grad_tol = TOL[dtype]
    torch.testing.assert_close(ours[0], ref[0], rtol=loss_tol, atol=loss_tol)
    scale = max(ref[1].abs().max().item(), 1e-6)
    torch.testing.assert_close(ours[1], ref[1], rtol=grad_tol, atol=grad_tol * scale)
    scale = max(ref[2].abs().max().item(), 1e-6)
    torch.testing.assert_close(ours[2], ref[2], rtol=grad_tol, atol=grad_tol * scale)


def test_many_chunks_give_the_same_result(monkeypatch):
    h, w, y = _inputs(45, 16, 257, torch.float32, seed=3)
    whole = _run(linear_cross_entropy, h, w, y, use_kernel=True)
    monkeypatch.setenv("SWITCHBOARD_CE_CHUNK", "4")  # 12 chunks, the last one short
    chunked = _run(linear_cross_entropy, h, w, y, use_kernel=True)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_ignored_rows_get_no_gradient_and_all_ignored_is_nan():
    h, w, y = _inputs(9, 8, 17, torch.float32, ignored=0.0)
    y[[1, 4, 8]] = -100
    _, gh, _ = _run(linear_cross_entropy, h, w, y, use_kernel=True)
    assert gh[[1, 4, 8]].abs().max() == 0 and gh[[0, 2]].abs().max() > 0
    y[:] = -100
    loss, gh, gw = _run(linear_cross_entropy, h, w, y, use_kernel=True)
    ref = linear_cross_entropy_reference(h, w, y)
    assert torch.isnan(loss) and torch.isnan(ref)
    assert gh.abs().max() == 0 and gw.abs().max() == 0
    loss_sum = linear_cross_entropy(h, w, y, reduction="sum", use_kernel=True)
    assert loss_sum.item() == 0.0


def test_a_custom_ignore_index_and_the_module_form():
    h, w, y = _inputs(11, 8, 19, torch.float32, ignored=0.0)
    y[[0, 5]] = 7  # class 7 is ignored here
    module = LinearCrossEntropy(ignore_index=7, reduction="sum")
    ours = linear_cross_entropy(h, w, y, ignore_index=7, reduction="sum", use_kernel=True)
    ref = linear_cross_entropy_reference(h, w, y, ignore_index=7, reduction="sum")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(module(h, w, y), ref, rtol=1e-5, atol=1e-5)  # CPU: the reference


def test_the_guard_falls_back_to_the_reference(monkeypatch):
    h, w, y = _inputs(5, 8, 11, torch.float32)
    assert runnable(h, w, y) and not supported(h, w, y)  # the CPU: runnable only interpreted
    assert not runnable(h, w.double(), y)  # dtypes differ
    assert not runnable(h[None], w, y)  # not 2-D
    assert not runnable(h, w, y.float())  # targets are not integers
    with pytest.raises(ValueError, match="cannot run"):
        linear_cross_entropy(h, w.double(), y, use_kernel=True)
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(h, w, y, reduction="none")
    monkeypatch.setattr(linear_ce, "triton_available", lambda: False)
    assert not runnable(h, w, y)
    torch.testing.assert_close(
        linear_cross_entropy(h, w, y), linear_cross_entropy_reference(h, w, y)
    )
