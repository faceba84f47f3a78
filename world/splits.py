"""Train/val/test splits by seed range: a seed belongs to exactly one split."""

from __future__ import annotations

SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_010_000),
    "test": (1_010_000, 1_020_000),
}


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    return split


def split_seeds(split: str, n: int, offset: int = 0) -> range:
    """``n`` consecutive seeds of ``split`` starting ``offset`` into its range."""
    lo, hi = SPLITS[check_split(split)]
    if lo + offset + n > hi:
        raise ValueError(f"split {split!r} has only {hi - lo} seeds")
    return range(lo + offset, lo + offset + n)


def split_of(seed: int) -> str:
    for name, (lo, hi) in SPLITS.items():
        if lo <= seed < hi:
            return name
    raise ValueError(f"seed {seed} is in no split")
