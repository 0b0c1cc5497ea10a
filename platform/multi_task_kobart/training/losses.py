"""Combining per-task losses: static weights from the config, or learned uncertainty.

Both weightings are ``nn.Module``s with the same call, ``weighting(task, loss)``, so the
training step does not care which one is active. The learned variant keeps one
log-variance parameter per task (Kendall, Gal & Cipolla, 2018, "Multi-Task Learning Using
Uncertainty to Weigh Losses"): a task whose loss stays high raises its variance, which
lowers its weight, while the ``+ s_t`` term stops every variance from growing forever.
Its parameters live inside the DDP-wrapped module, so their gradients are averaged
across ranks like any other parameter.
"""

from __future__ import annotations

import torch
from torch import nn

from multi_task_kobart.tasks import validate_task


class StaticTaskWeights(nn.Module):
    """``loss_t * w_t`` with fixed weights; tasks not listed weigh 1.0."""

    def __init__(self, tasks: list[str], weights: dict[str, float] | None = None) -> None:
        super().__init__()
        weights = dict(weights or {})
        for task in weights:
            if task not in tasks:
                raise ValueError(f"task weight given for {task!r}, which is not trained; "
                                 f"trained tasks: {tasks}.")
        self.tasks = list(tasks)
        self.weights = {task: float(weights.get(task, 1.0)) for task in tasks}

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.weights[self._check(task)]

    def current_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def _check(self, task: str) -> str:
        if task not in self.weights:
            raise ValueError(f"task {validate_task(task)!r} is not trained; trained: {self.tasks}.")
        return task


class UncertaintyWeighting(StaticTaskWeights):
    """Learned weighting: ``exp(-s_t) * loss_t + s_t`` with ``s_t = log sigma_t^2``.

    ``s_t`` starts at 0 (weight 1, like the static default). The effective weight
    ``exp(-s_t)`` settles near ``1 / loss_t``, which balances tasks whose losses live on
    different scales.
    """

    def __init__(self, tasks: list[str]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(tasks)))

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        log_var = self.log_vars[self.tasks.index(self._check(task))]
        return torch.exp(-log_var) * loss + log_var

    def current_weights(self) -> dict[str, float]:
        weights = torch.exp(-self.log_vars.detach().float()).tolist()
        return dict(zip(self.tasks, weights))


def build_loss_weighting(kind: str, tasks: list[str], weights: dict[str, float] | None) -> StaticTaskWeights:
    """``"static"`` -> :class:`StaticTaskWeights`, ``"uncertainty"`` -> :class:`UncertaintyWeighting`.

    Weights of tasks that this run does not train are ignored, so a profile listing all
    four weights still works with ``tasks: [one_task]``.
    """
    if kind == "static":
        return StaticTaskWeights(tasks, {t: w for t, w in (weights or {}).items() if t in tasks})
    if kind == "uncertainty":
        return UncertaintyWeighting(tasks)
    raise ValueError(f"loss weighting {kind!r} is not known; allowed: static, uncertainty.")
