"""The training objective: each task's loss, how tasks are weighted, and the router loss.

``TaskObjective`` bundles the model with a task weighting and the router cross-entropy
into one ``nn.Module``. DDP wraps that module, not the bare model, because DDP only
averages the gradients of parameters it wraps and only sees the autograd graph of what
its own ``forward`` returns: learned loss weights and the router must be inside it.

Two weightings share one call, ``weighting(task, loss)``:

- :class:`StaticTaskWeights`: ``w_t * loss_t`` with weights from the config.
- :class:`UncertaintyWeighting`: ``exp(-s_t) * loss_t + s_t`` with one learned
  log-variance ``s_t = log sigma_t^2`` per task (Kendall, Gal & Cipolla, 2018, "Multi-Task
  Learning Using Uncertainty to Weigh Losses"). A task whose loss stays high raises its
  variance, which lowers its weight, while the ``+ s_t`` term stops every variance from
  growing forever. Its parameters live inside the DDP-wrapped module, so their gradients
  are averaged across ranks like any other parameter.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from multi_task_kobart.model import token_cross_entropy
from multi_task_kobart.tasks import validate_task


class TaskWeighting(Protocol):
    """``weighting(task, loss) -> weighted loss`` plus the weights in force, for logging."""

    def __call__(self, task: str, loss: torch.Tensor) -> torch.Tensor: ...

    def current_weights(self) -> dict[str, float]: ...


def _position(tasks: list[str], task: str) -> int:
    """Index of ``task`` among the trained ``tasks``, with an error naming both."""
    if task not in tasks:
        raise ValueError(f"task {validate_task(task)!r} is not trained; trained: {tasks}.")
    return tasks.index(task)


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
        self.weights = {task: float(weights.get(task, 1.0)) for task in self.tasks}

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.weights[self.tasks[_position(self.tasks, task)]]

    def current_weights(self) -> dict[str, float]:
        return dict(self.weights)


class UncertaintyWeighting(nn.Module):
    """Learned weighting ``exp(-s_t) * loss_t + s_t`` (see the module docstring).

    ``s_t`` starts at 0 (weight 1, like the static default). The effective weight
    ``exp(-s_t)`` settles near ``1 / loss_t``, which balances tasks whose losses live on
    different scales.
    """

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        log_var = self.log_vars[_position(self.tasks, task)]
        return torch.exp(-log_var) * loss + log_var

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, torch.exp(-self.log_vars.detach().float()).tolist()))


def build_loss_weighting(kind: str, tasks: list[str], weights: dict[str, float] | None) -> nn.Module:
    """``"static"`` -> :class:`StaticTaskWeights`, ``"uncertainty"`` -> :class:`UncertaintyWeighting`.

    Weights of tasks that this run does not train are ignored, so a profile listing all
    four weights still works with ``tasks: [one_task]``.
    """
    if kind == "static":
        return StaticTaskWeights(tasks, {t: w for t, w in (weights or {}).items() if t in tasks})
    if kind == "uncertainty":
        return UncertaintyWeighting(tasks)
    raise ValueError(f"loss weighting {kind!r} is not known; allowed: static, uncertainty.")


class TaskObjective(nn.Module):
    """``model`` + task loss weighting + router cross-entropy, as one differentiable module."""

    def __init__(self, model: nn.Module, weighting: nn.Module,
                 router_loss_weight: float = 0.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.weighting = weighting
        self.router_loss_weight = float(router_loss_weight)
        self.label_smoothing = float(label_smoothing)
        self.model_tasks = list(model.config.tasks)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             labels=labels, task=task)
        nll = outputs.loss
        loss = self.weighting(task, self._task_loss(outputs.logits, labels, nll))
        router_loss = self._router_loss(outputs.router_logits, task)
        if router_loss is not None:
            loss = loss + self.router_loss_weight * router_loss
        else:
            router_loss = nll.new_zeros(())
        return {"loss": loss, "nll": nll.detach(), "router_loss": router_loss.detach()}

    def _task_loss(self, logits: torch.Tensor, labels: torch.Tensor, nll: torch.Tensor) -> torch.Tensor:
        """The decoder loss to optimise: the NLL, or its label-smoothed version.

        Smoothing keeps the model from betting everything on one token; on targets it
        cannot know (facts about unseen entities) that bounds the validation NLL.
        """
        if self.label_smoothing == 0.0:
            return nll
        return token_cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def _router_loss(self, router_logits: torch.Tensor | None, task: str) -> torch.Tensor | None:
        """Cross-entropy of the router against this batch's task (every row has that task)."""
        if router_logits is None or self.router_loss_weight == 0.0:
            return None
        target = torch.full((router_logits.shape[0],), self.model_tasks.index(task),
                            dtype=torch.long, device=router_logits.device)
        return F.cross_entropy(router_logits.float(), target)
