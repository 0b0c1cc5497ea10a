"""Plain-torch training and evaluation steps (no Ray here, so tests need no cluster).

``TaskObjective`` bundles the model with the loss weighting and the router loss into one
``nn.Module``. DDP wraps that module, not the bare model, because DDP only averages the
gradients of parameters it wraps and only sees the autograd graph of what its own
``forward`` returns: the learned loss weights and the router must be inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from multi_task_kobart.training.dist import autocast
from multi_task_kobart.training.losses import StaticTaskWeights

LABEL_PAD = -100


@dataclass
class StepResult:
    """What one micro-batch forward/backward produced (all detached)."""

    loss: torch.Tensor  # the weighted loss that was back-propagated (before loss_scale)
    n_tokens: int  # target tokens (labels != -100)
    nll: float | None = None  # unweighted mean token NLL of the task decoder
    router_loss: float | None = None


class TaskObjective(nn.Module):
    """``model`` + task loss weighting + router cross-entropy, as one differentiable module."""

    def __init__(self, model: nn.Module, weighting: StaticTaskWeights,
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
        loss = self.weighting(task, self._task_loss(outputs, labels, nll))
        router_loss = self._router_loss(outputs, task)
        if router_loss is not None:
            loss = loss + self.router_loss_weight * router_loss
        else:
            router_loss = nll.new_zeros(())
        return {"loss": loss, "nll": nll.detach(), "router_loss": router_loss.detach()}

    def _task_loss(self, outputs: object, labels: torch.Tensor, nll: torch.Tensor) -> torch.Tensor:
        """The decoder loss to optimise: the NLL, or its label-smoothed version.

        Smoothing keeps the model from betting everything on one token; on targets it
        cannot know (facts about unseen entities) that bounds the validation NLL.
        """
        if self.label_smoothing == 0.0:
            return nll
        logits = outputs.logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=LABEL_PAD, label_smoothing=self.label_smoothing)

    def _router_loss(self, outputs: object, task: str) -> torch.Tensor | None:
        """Cross-entropy of the router against this batch's task (every row has that task)."""
        router_logits = getattr(outputs, "router_logits", None)
        if router_logits is None or self.router_loss_weight == 0.0:
            return None
        target = torch.full((router_logits.shape[0],), self.model_tasks.index(task),
                            dtype=torch.long, device=router_logits.device)
        return F.cross_entropy(router_logits.float(), target)


def _forward(model: nn.Module, batch: dict[str, torch.Tensor], task: str) -> dict | object:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 labels=batch["labels"], task=task)


def _field(outputs: object, name: str) -> torch.Tensor | None:
    if isinstance(outputs, dict):
        return outputs.get(name)
    return getattr(outputs, name, None)


def train_step(model: nn.Module, batch: dict[str, torch.Tensor], task: str, *,
               loss_scale: float = 1.0, autocast_dtype: torch.dtype | None = None) -> StepResult:
    """Forward + backward of one micro-batch of ``task``.

    ``model`` is a ``TaskObjective`` (possibly DDP-wrapped) or a bare ``MultiTaskKoBART``.
    ``loss_scale`` divides the loss for gradient accumulation (1 / accumulation steps).
    Gradients accumulate into ``.grad``; the optimizer step is :func:`optimizer_step`.
    """
    device = batch["input_ids"].device
    with autocast(device, autocast_dtype):
        outputs = _forward(model, batch, task)
    loss = _field(outputs, "loss")
    if loss is None:
        raise ValueError(f"model returned no loss for task {task!r}; the batch needs 'labels'.")
    (loss * loss_scale).backward()
    nll, router_loss = _field(outputs, "nll"), _field(outputs, "router_loss")
    return StepResult(
        loss=loss.detach(),
        n_tokens=int((batch["labels"] != LABEL_PAD).sum()),
        nll=float(nll) if nll is not None else float(loss.detach()),
        router_loss=float(router_loss) if router_loss is not None else None,
    )


def clip_and_norm(parameters: list[nn.Parameter], max_grad_norm: float | None) -> float:
    """Total gradient norm (clipped to ``max_grad_norm`` when given)."""
    grads = [p for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if max_grad_norm is None:
        return float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad.detach().float()) for p in grads])))
    return float(torch.nn.utils.clip_grad_norm_(grads, max_grad_norm))


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None,
                   max_grad_norm: float | None) -> float:
    """Clip, step the optimizer and scheduler, clear gradients; returns the pre-clip grad norm.

    Gradients are set to ``None`` (not zero) so that parameters a step did not touch (other
    tasks' decoders) are skipped by AdamW entirely: no weight decay, no momentum drift.
    """
    grad_norm = clip_and_norm(list(model.parameters()), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


@torch.no_grad()
def eval_step(model: nn.Module, batch: dict[str, torch.Tensor], task: str, *,
              autocast_dtype: torch.dtype | None = None) -> tuple[float, int]:
    """Summed token NLL and number of target tokens of one batch under ``task``'s decoder.

    Takes the bare ``MultiTaskKoBART`` (not the DDP wrapper: evaluation must not trigger
    DDP's gradient synchronisation bookkeeping).
    """
    if isinstance(model, TaskObjective):
        model = model.model
    device = batch["input_ids"].device
    with autocast(device, autocast_dtype):
        outputs = _forward(model, batch, task)
    labels = batch["labels"]
    n_tokens = int((labels != LABEL_PAD).sum())
    logits = _field(outputs, "logits").float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                          ignore_index=LABEL_PAD, reduction="sum")
    return float(nll), n_tokens
