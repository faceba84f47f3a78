"""The one training loop every recipe runs (segment, edit, the router's stages and its vision
pretraining), and the loss plot they share.

:func:`fit` owns what is the same everywhere: the cosine schedule over steps or a time budget
(whichever runs out first, :func:`~switchboard.specialists.schedule.cosine_lr`), the
optimizer step with gradient clipping, the progress bar, and a resumable state file written
every ``checkpoint_every`` steps and at the end — the named modules' weights, the optimizer, the
step, the loss history and the time spent. A recipe gives it what differs: the loss of a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .schedule import cosine_lr


@dataclass
class Fitted:
    """What a :func:`fit` run did: ``(step, loss)`` per step, seconds spent (over every resume),
    the steps done in all, and the rate of the last step."""

    history: list[tuple[int, float]]
    elapsed: float
    steps_done: int
    last_lr: float

    def summary(self, last: int, prefix: str = "") -> dict[str, Any]:
        """The record's entries: steps done, wall time and the mean loss of the ``last`` steps."""
        tail = [v for _, v in self.history[-last:]]
        return {
            f"{prefix}steps_done": self.steps_done,
            f"{prefix}wall_time_s": round(self.elapsed, 1),
            f"{prefix}final_loss_mean_{last}": float(np.mean(tail)) if tail else None,
        }


def fit(
    desc: str,
    loss_at: Callable[[int], torch.Tensor],
    params: Sequence[torch.nn.Parameter],
    opt: torch.optim.Optimizer,
    *,
    steps: int,
    lr: float,
    warmup: int,
    minutes: float,
    checkpoint_every: int,
    state_path: Path,
    modules: dict[str, torch.nn.Module] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    skip_finished: bool = False,
    clip: float = 1.0,
) -> Fitted:
    """Train until ``steps`` or ``minutes`` (0: no time limit), resuming from ``state_path``.

    ``loss_at(step)`` returns the step's loss (its data drawn from the step number, so a resumed
    run draws what the uninterrupted one would). ``modules`` are saved in the state file under
    their names (and loaded from it on resume); ``on_checkpoint(step)`` saves anything else (the
    router saves itself as a folder). With ``skip_finished`` a run whose state says it ended is
    not run again."""
    modules = modules or {}
    start, history, elapsed = 0, [], 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        for name, module in modules.items():
            module.load_state_dict(state[name])
        opt.load_state_dict(state["opt"])
        start, history, elapsed = state["step"], state["history"], state["elapsed"]
        if skip_finished and state.get("done"):
            return Fitted(history, elapsed, start, cosine_lr(lr, start, steps, warmup, 1.0))

    def checkpoint(step: int, finished: bool = False) -> None:
        if on_checkpoint is not None:
            on_checkpoint(step)
        saved = {name: module.state_dict() for name, module in modules.items()}
        torch.save(
            {
                **saved,
                "opt": opt.state_dict(),
                "step": step,
                "history": history,
                "elapsed": elapsed,
                "done": finished,
            },
            state_path,
        )

    from tqdm import tqdm

    t0 = time.time() - elapsed
    done, rate = start, lr
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc)
    for step in bar:
        frac = (time.time() - t0) / (minutes * 60) if minutes else 0.0
        rate = cosine_lr(lr, step, steps, warmup, frac)
        for group in opt.param_groups:
            group["lr"] = rate
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        history.append((step, loss.item()))
        bar.set_postfix(loss=f"{history[-1][1]:.4f}", lr=f"{rate:.1e}")
        elapsed, done = time.time() - t0, step + 1
        if done % checkpoint_every == 0:
            checkpoint(done)
        if minutes and elapsed > minutes * 60:
            break
    checkpoint(done, finished=True)
    return Fitted(history, elapsed, done, rate)


def plot_losses(
    curves: dict[str, list[tuple[int, float]]], path: Path, log: bool = False, title: str = ""
) -> None:
    """One panel per curve: the loss per step, faint, and its running mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.5))
    for ax, (name, hist) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        if hist:
            s, v = zip(*hist, strict=True)
            k = max(1, len(v) // 50)
            ax.plot(s, v, lw=0.6, alpha=0.4)
            ax.plot(s[k - 1 :], np.convolve(v, np.ones(k) / k, mode="valid"), lw=1.5)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{title} {name} loss".strip())
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
