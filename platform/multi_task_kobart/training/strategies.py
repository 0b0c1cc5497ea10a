"""Training strategies from the design document: which task each micro-step trains, and
which parameters are frozen at each step.

- ``simultaneous``: tasks are mixed; a shared-seed ``TaskSampler`` picks the task of every
  micro-step, so all DDP ranks agree without communicating.
- ``sequential``: the step range is split into equal consecutive blocks, one per task, in
  the configured order (task 1, then 2, 3, 4).
- ``two_stage``: stage 1 freezes the shared encoder and embeddings and trains the decoders
  (and router); stage 2 unfreezes everything. Tasks are mixed in both stages.

"Train one task's decoder alone" is ``tasks: [that_task]`` with any strategy, optionally
with ``training.freeze_encoder: true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import nn

from multi_task_kobart.config import STRATEGIES


class TaskSchedule(Protocol):
    """Anything that maps a global step number to a task name, identically on every rank."""

    def task_for_step(self, step: int) -> str: ...


@dataclass(frozen=True)
class Strategy:
    """A strategy resolved for one run (pure functions of the step number)."""

    name: str
    tasks: tuple[str, ...]
    max_steps: int
    grad_accum_steps: int
    sampler: TaskSchedule | None = None  # used by simultaneous and two_stage
    stage_one_steps: int = 0  # two_stage only
    freeze_encoder: bool = False  # keep the encoder frozen in every stage

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ValueError(f"strategy {self.name!r} is not known; allowed: {', '.join(STRATEGIES)}.")
        if self.name != "sequential" and self.sampler is None and len(self.tasks) > 1:
            raise ValueError(f"strategy {self.name!r} mixes {len(self.tasks)} tasks and needs a sampler.")

    def task_for(self, step: int, micro_step: int = 0) -> str:
        """Task of micro-step ``micro_step`` (0-based) within optimizer step ``step``."""
        if not 0 <= micro_step < self.grad_accum_steps:
            raise ValueError(f"micro_step={micro_step} must be in [0, {self.grad_accum_steps}).")
        if self.name == "sequential":
            return sequential_task(step, self.tasks, self.max_steps)
        if len(self.tasks) == 1:
            return self.tasks[0]
        return self.sampler.task_for_step(step * self.grad_accum_steps + micro_step)

    def stage_for(self, step: int) -> int:
        """1 while two_stage's encoder is frozen, else 2 (other strategies are always 2)."""
        if self.name == "two_stage" and step < self.stage_one_steps:
            return 1
        return 2

    def encoder_frozen(self, step: int) -> bool:
        return self.freeze_encoder or self.stage_for(step) == 1


def sequential_task(step: int, tasks: tuple[str, ...] | list[str], max_steps: int) -> str:
    """The task whose block contains ``step`` when ``max_steps`` is split evenly, in order."""
    if not 0 <= step < max_steps:
        raise ValueError(f"step={step} must be in [0, max_steps={max_steps}).")
    return tasks[min(step * len(tasks) // max_steps, len(tasks) - 1)]


def apply_freezing(model: nn.Module, frozen: bool) -> bool:
    """Freeze or unfreeze the shared encoder + embeddings; returns True if anything changed.

    The caller must re-wrap DDP when this returns True, because DDP decides at
    construction which parameters it synchronises (those with ``requires_grad``).
    """
    currently_frozen = not any(p.requires_grad for p in model.encoder_parameters())
    if currently_frozen == frozen:
        return False
    if frozen:
        model.freeze_encoder()
    else:
        model.unfreeze_encoder()
    return True
