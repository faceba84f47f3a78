"""Time and peak memory of our Triton kernels against torch, on whatever device is present.

    python benchmarks/bench_kernels.py            # a GPU if there is one, else the CPU
    python benchmarks/bench_kernels.py --check    # on a GPU: also assert issue 9's targets

(``switchboard bench`` runs :func:`run` on this machine's device as its ``kernels`` section.)

On a GPU (the one prepared script for every GPU check; a few minutes on an H100):
- **fused linear + cross-entropy** at tokens = 8192, d = 576, vocab = 49152 (SmolLM2's), bf16:
  forward + backward, kernel vs torch (``F.linear`` → fp32 logits → ``F.cross_entropy``). Loss
  and gradients checked against torch first. Targets: peak memory ≤ 1/3 of torch's, speed ≥ 1.0×.
- **mask post-processing** of 64 masks 256 → 1024 px (and SAM's real case: 256 → 1024 padded,
  crop, → a 1500 × 1125 photo), kernel vs torch eager (SAM's interpolations + threshold + boxes
  and areas). Masks checked equal first. Target ≥ 3×. Reported as % of the memory-bandwidth
  roofline: the bytes the kernel must move (logits in, one byte per mask pixel out) at the
  device's measured copy bandwidth.
- **signal projection**: the signal heads' output MLP (Linear → GELU → Linear, per tool) at
  training shapes, against the whole signal-head step — the most a fused MLP kernel could save.

On the CPU the kernels only run under Triton's interpreter (correctness, not speed): the torch
paths are timed, and the signal-projection share is measured.
``main`` writes ``runs/bench/kernels-<device>.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import typer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> dict[str, float]:
    """p50 / min milliseconds and the peak memory above the start (GPU only) of ``fn``."""
    fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    out = {"p50_ms": sorted(times)[len(times) // 2], "min_ms": min(times)}
    if device.type == "cuda":
        out["peak_mib"] = (torch.cuda.max_memory_allocated() - start) / 2**20
    return out


def copy_bandwidth(device: torch.device) -> float | None:
    """Measured device-to-device copy bandwidth in GB/s (read + write), the practical roofline."""
    if device.type != "cuda":
        return None
    x = torch.empty(2**28, dtype=torch.float32, device=device)  # 1 GiB
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), device, 10)
    return 2 * x.numel() * 4 / (t["min_ms"] / 1000) / 1e9


def bench_linear_ce(device, tokens, d, vocab, dtype, repeats, check):
    from switchboard.kernels import linear_cross_entropy, linear_cross_entropy_reference

    g = torch.Generator(device="cpu").manual_seed(0)
    h0 = (torch.randn(tokens, d, generator=g) / d**0.25).to(device, dtype)
    w0 = (torch.randn(vocab, d, generator=g) / d**0.25).to(device, dtype)
    y = torch.randint(0, vocab, (tokens,), generator=g).to(device)
    y[::7] = -100

    def step(fn, **kw):
        h = h0.detach().requires_grad_()
        w = w0.detach().requires_grad_()
        loss = fn(h, w, y, **kw)
        loss.backward()
        return loss.detach(), h.grad, w.grad

    out = {"shape": {"tokens": tokens, "d": d, "vocab": vocab, "dtype": str(dtype)}}
    out["torch"] = timed(lambda: step(linear_cross_entropy_reference), device, repeats)
    if device.type == "cuda":
        ref = step(linear_cross_entropy_reference)
        ours = step(linear_cross_entropy, use_kernel=True)
        out["max_abs_diff"] = {
            name: float((a.float() - b.float()).abs().max())
            for name, a, b in zip(("loss", "grad_h", "grad_w"), ours, ref, strict=True)
        }
        torch.testing.assert_close(ours[0], ref[0], rtol=2e-2, atol=2e-2)
        out["kernel"] = timed(lambda: step(linear_cross_entropy, use_kernel=True), device, repeats)
        out["speedup"] = out["torch"]["p50_ms"] / out["kernel"]["p50_ms"]
        out["memory_ratio"] = out["kernel"]["peak_mib"] / out["torch"]["peak_mib"]
        if check:
            assert out["memory_ratio"] <= 1 / 3, f"peak memory {out['memory_ratio']:.2f} of torch's"
            assert out["speedup"] >= 1.0, f"speed {out['speedup']:.2f}x torch"
    return out


def bench_masks(device, n, low, pad, input_size, original, repeats, check, bandwidth):
    from switchboard.kernels import postprocess_masks, postprocess_masks_reference

    g = torch.Generator(device="cpu").manual_seed(0)
    logits = F.avg_pool2d(torch.randn(n, 1, low + 2, low + 2, generator=g) * 6, 3, 1)[:, 0]
    logits = logits.to(device)
    out = {"shape": {"masks": n, "low": low, "pad": pad, "input": input_size,
                     "original": original}}  # fmt: skip
    out["torch"] = timed(
        lambda: postprocess_masks_reference(logits, pad, input_size, original), device, repeats
    )
    if device.type == "cuda":
        ref = postprocess_masks_reference(logits, pad, input_size, original)
        ours = postprocess_masks(logits, pad, input_size, original, use_kernel=True)
        out["differing_pixels"] = int((ours.masks != ref.masks).sum())
        assert out["differing_pixels"] <= n * 4, out["differing_pixels"]
        out["kernel"] = timed(
            lambda: postprocess_masks(logits, pad, input_size, original, use_kernel=True),
            device,
            repeats,
        )
        out["speedup"] = out["torch"]["p50_ms"] / out["kernel"]["p50_ms"]
        moved = logits.numel() * 4 + n * original[0] * original[1]  # bytes in + bytes out
        achieved = moved / (out["kernel"]["min_ms"] / 1000) / 1e9
        out["kernel"]["gb_per_s"] = achieved
        if bandwidth:
            out["kernel"]["roofline_pct"] = 100 * achieved / bandwidth
        if check:
            assert out["speedup"] >= 3.0, f"mask post-processing {out['speedup']:.2f}x torch"
    return out


def bench_signal_projection(device, repeats):
    """The output MLPs against the whole signal-head forward + backward, at training shapes."""
    from switchboard.router.signals import SignalConfig, SignalHeads

    cfg = SignalConfig(tools={"segment": (4, 256), "edit": (4, 384)})
    heads = SignalHeads(cfg).to(device)
    batch, k = 8, cfg.max_tokens
    width = 2 * (cfg.width // 2) + cfg.width
    x = torch.randn(batch * k, width, device=device, requires_grad=True)

    def mlps():
        loss = sum(m(x).square().mean() for m in heads.out.values())
        loss.backward()

    total_params = sum(p.numel() for p in heads.parameters())
    mlp_params = sum(p.numel() for p in heads.out.parameters())
    return {
        "rows": batch * k,
        "width": width,
        "output_mlps": timed(mlps, device, repeats),
        "mlp_share_of_head_parameters": mlp_params / total_params,
    }


def run(
    device: str = "auto", repeats: int = 10, check: bool = False, tokens: int | None = None
) -> dict[str, Any]:
    """Every kernel benchmark on ``device`` ("auto": a GPU if there is one); ``check`` asserts
    issue 9's targets (GPU)."""
    dev = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else "cpu"
        if device == "auto"
        else device
    )
    gpu = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if gpu else "cpu"
    bandwidth = copy_bandwidth(dev)
    tokens = tokens or (8192 if gpu else 1024)
    res = {"device": name, "copy_gb_per_s": bandwidth, "torch": torch.__version__}
    dtype = torch.bfloat16 if gpu else torch.float32
    n = 64 if gpu else 8
    res["linear_ce"] = bench_linear_ce(dev, tokens, 576, 49152, dtype, repeats, check)
    res["masks_256_to_1024"] = bench_masks(
        dev, n, 256, 1024, (1024, 1024), (1024, 1024), repeats, check, bandwidth
    )
    res["masks_sam_photo"] = bench_masks(
        dev, n, 256, 1024, (1024, 768), (1500, 1125), repeats, False, bandwidth
    )
    res["signal_projection"] = bench_signal_projection(dev, repeats)
    if not gpu:
        res["note"] = (
            "No GPU: the kernels run here only under Triton's interpreter (tested for "
            "correctness, not timed); torch's paths are timed"
        )
    return res


def _bench(
    device: str = typer.Option("auto", help='"auto": a GPU if there is one, else the CPU.'),
    repeats: int = typer.Option(10, min=1),
    check: bool = typer.Option(False, "--check", help="Assert the targets (GPU)."),
    tokens: int | None = typer.Option(None, help="Default 8192 on a GPU, 1024 on the CPU."),
) -> None:
    """Our Triton kernels against torch on this machine's device; writes
    runs/bench/kernels-<device>.json."""
    res = run(device, repeats, check, tokens)
    gpu = res["device"] != "cpu"
    out = Path("runs") / "bench" / f"kernels-{'gpu' if gpu else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(_bench)
    app(args=argv)


if __name__ == "__main__":
    main()
