"""Learning-rate schedule: linear warmup, then cosine decay to a floor.

The factor is a pure function of the step so that a resumed run (which restores the
scheduler's ``last_epoch``) and a test can both compute the exact learning rate.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def cosine_factor(step: int, *, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Warmup starts at 1/(warmup_steps) rather than 0 so the very first step already
    moves the weights; after warmup the factor follows half a cosine from 1 down to
    ``min_lr_ratio`` at ``max_steps`` and stays there.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, max_steps: int, min_lr_ratio: float
) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`cosine_factor` to every parameter group."""
    if warmup_steps > max_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must not exceed max_steps={max_steps}.")

    def factor(step: int) -> float:
        return cosine_factor(step, warmup_steps=warmup_steps, max_steps=max_steps,
                             min_lr_ratio=min_lr_ratio)

    return LambdaLR(optimizer, factor)
