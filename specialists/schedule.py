"""The learning-rate schedule every training recipe here uses."""

from __future__ import annotations

import math


def cosine_lr(base: float, step: int, steps: int, warmup: int, frac_time: float = 0.0) -> float:
    """Linear warmup, then cosine decay to 5 % of ``base``. ``frac_time`` is the share of a time
    budget already spent: the decay follows whichever runs out first, steps or time, so a run
    stopped by its time limit still ends at a low rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(max((step - warmup) / max(steps - warmup, 1), frac_time), 1.0)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
