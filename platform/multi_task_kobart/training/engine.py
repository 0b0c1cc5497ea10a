"""The per-rank training engine: one optimizer step, validation, and the state to resume.

Plain torch (``torch.distributed`` only, no Ray), so every behaviour of the loop (task
choice, freezing, accumulation, validation, checkpoint round trips) is testable in one
process. The engine is composed from parts that ``build.py`` makes out of the config; the
Ray worker (``worker.py``) drives it.

One optimizer step reads top to bottom in :meth:`TrainingEngine.train_step`: the strategy
names the task of each micro-batch, that task's stream yields the batch, :func:`train_step`
runs forward + backward through the objective, :func:`optimizer_step` clips and steps.

DDP notes (why the code looks the way it does):
- All ranks pick the same task per micro-step from the shared-seed strategy, so a step
  runs one decoder everywhere and the other decoders are unused on every rank; DDP is
  built with ``find_unused_parameters=True`` and leaves their gradients ``None``.
- Gradient accumulation runs the non-final micro-steps under ``no_sync()``.
- DDP records which parameters need gradients when it is built, so when the strategy
  freezes or unfreezes the encoder the module is wrapped again (same step on all ranks).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from multi_task_kobart.model import token_cross_entropy
from multi_task_kobart.tokenizer import LABEL_PAD
from multi_task_kobart.training import dist
from multi_task_kobart.training.checkpoint import (TrainerState, capture_rng_state, load_training_state,
                                                   read_rng_states, read_trainer_state, restore_rng_state)
from multi_task_kobart.training.metrics import TrainMetricsWindow
from multi_task_kobart.training.objective import TaskObjective
from multi_task_kobart.training.strategies import Strategy, apply_freezing
from multi_task_kobart.training.streams import BatchStream, move_to

Batch = dict[str, torch.Tensor]


class ResumeError(ValueError):
    """A checkpoint cannot continue this run as configured (other world size, other data)."""


# --------------------------------------------------------------------------- one step


@dataclass
class StepResult:
    """What one micro-batch forward/backward produced (all detached)."""

    loss: torch.Tensor  # the weighted loss that was back-propagated (before loss_scale)
    n_tokens: int  # target tokens (labels != LABEL_PAD)
    nll: float | None = None  # unweighted mean token NLL of the task decoder
    router_loss: float | None = None


def _forward(model: nn.Module, batch: Batch, task: str) -> dict | object:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 labels=batch["labels"], task=task)


def _field(outputs: object, name: str) -> torch.Tensor | None:
    """A field of a TaskObjective's dict or of a model output object."""
    if isinstance(outputs, dict):
        return outputs.get(name)
    return getattr(outputs, name, None)


def train_step(model: nn.Module, batch: Batch, task: str, *, loss_scale: float = 1.0,
               autocast_dtype: torch.dtype | None = None) -> StepResult:
    """Forward + backward of one micro-batch of ``task``.

    ``model`` is a ``TaskObjective`` (possibly DDP-wrapped) or a bare ``MultiTaskKoBART``.
    ``loss_scale`` divides the loss for gradient accumulation (1 / accumulation steps).
    Gradients accumulate into ``.grad``; the optimizer step is :func:`optimizer_step`.
    """
    with dist.autocast(batch["input_ids"].device, autocast_dtype):
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
def eval_step(model: nn.Module, batch: Batch, task: str, *,
              autocast_dtype: torch.dtype | None = None) -> tuple[float, int]:
    """Summed token NLL and number of target tokens of one batch under ``task``'s decoder.

    Takes the bare ``MultiTaskKoBART`` (not the DDP wrapper: evaluation must not trigger
    DDP's gradient synchronisation bookkeeping).
    """
    if isinstance(model, TaskObjective):
        model = model.model
    with dist.autocast(batch["input_ids"].device, autocast_dtype):
        outputs = _forward(model, batch, task)
    labels = batch["labels"]
    nll = token_cross_entropy(_field(outputs, "logits"), labels, reduction="sum")
    return float(nll), int((labels != LABEL_PAD).sum())


# --------------------------------------------------------------------------- the engine


@dataclass
class StepInfo:
    """What :meth:`TrainingEngine.train_step` did: the task of each micro-batch, lr, norm."""

    tasks: list[str]
    lr: float
    grad_norm: float


class TrainingEngine:
    """One rank's training state and the operations on it (no Ray, no files but checkpoints).

    Built by :func:`multi_task_kobart.training.build.build_engine`; tests build it from
    parts directly.
    """

    def __init__(self, objective: TaskObjective, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, strategy: Strategy,
                 streams: dict[str, BatchStream], valid_batches: dict[str, list[Batch]], *,
                 device: torch.device, max_grad_norm: float | None,
                 autocast_dtype: torch.dtype | None = None) -> None:
        self.objective, self.model = objective, objective.model
        self.optimizer, self.scheduler, self.strategy = optimizer, scheduler, strategy
        self.streams, self.valid_batches = streams, valid_batches
        self.tasks = list(strategy.tasks)
        self.device, self.max_grad_norm, self.autocast_dtype = device, max_grad_norm, autocast_dtype
        self.state = TrainerState(world_size=dist.get_world_size())
        self.module: nn.Module = objective
        self._window = TrainMetricsWindow()
        apply_freezing(self.model, strategy.encoder_frozen(0))
        self._wrap()

    def _wrap(self) -> None:
        """(Re)build the DDP wrapper around the objective (identity without a process group)."""
        if not dist.is_distributed():
            self.module = self.objective
            return
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.module = DistributedDataParallel(self.objective, device_ids=device_ids,
                                              find_unused_parameters=True)

    def _sync_context(self, last_micro_step: bool) -> contextlib.AbstractContextManager:
        if last_micro_step or not isinstance(self.module, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.module.no_sync()

    def train_step(self, step: int) -> StepInfo:
        """One optimizer step (``strategy.grad_accum_steps`` micro-batches)."""
        if apply_freezing(self.model, self.strategy.encoder_frozen(step)):
            self._wrap()
        self.objective.train()
        accum = self.strategy.grad_accum_steps
        tasks = []
        for micro in range(accum):
            task = self.strategy.task_for(step, micro)
            batch = move_to(self.streams[task].next_batch(), self.device)
            with self._sync_context(micro == accum - 1):
                result = train_step(self.module, batch, task, loss_scale=1.0 / accum,
                                    autocast_dtype=self.autocast_dtype)
            self._window.add(task, result.nll, result.n_tokens,
                             int(batch["attention_mask"].sum()) + result.n_tokens)
            tasks.append(task)
            self.state.task_trace = hashlib.sha256(f"{self.state.task_trace}|{task}".encode()).hexdigest()
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = optimizer_step(self.module, self.optimizer, self.scheduler, self.max_grad_norm)
        self.state.step = step + 1
        self.state.stage = self.strategy.stage_for(step)
        self._window.end_step(grad_norm)
        return StepInfo(tasks=tasks, lr=lr, grad_norm=grad_norm)

    def collect_train_metrics(self) -> dict[str, float]:
        """Train metrics since the last call, summed over ranks (a collective: all ranks call)."""
        return self._window.reduce(self.tasks, self.device, self.scheduler.get_last_lr()[0],
                                   self.objective.weighting.current_weights())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Per-task validation loss (token-weighted mean NLL over all ranks) and their mean."""
        self.objective.eval()
        sums = []
        for task in self.tasks:
            nll, tokens = 0.0, 0
            for batch in self.valid_batches.get(task, []):
                batch_nll, batch_tokens = eval_step(self.model, move_to(batch, self.device), task,
                                                    autocast_dtype=self.autocast_dtype)
                nll, tokens = nll + batch_nll, tokens + batch_tokens
            sums.extend([nll, float(tokens)])
        totals = dist.all_reduce_sum(sums, self.device)
        self.objective.train()
        metrics = {f"valid_loss/{task}": totals[2 * i] / totals[2 * i + 1]
                   for i, task in enumerate(self.tasks) if totals[2 * i + 1] > 0}
        metrics["valid_loss"] = sum(metrics.values()) / len(metrics) if metrics else float("nan")
        return metrics

    # ------------------------------------------------------------------ resume state

    def gather_rank_states(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every rank's stream positions and RNG states, gathered on all ranks (a collective)."""
        local = ({task: stream.state_dict() for task, stream in self.streams.items()}, capture_rng_state())
        if not dist.is_distributed():
            gathered: list[Any] = [local]
        else:
            gathered = [None] * dist.get_world_size()
            torch.distributed.all_gather_object(gathered, local)
        return ({str(rank): data for rank, (data, _) in enumerate(gathered)},
                {str(rank): rng for rank, (_, rng) in enumerate(gathered)})

    def checkpoint_state(self, data_state: dict[str, Any], metrics: dict[str, Any]) -> TrainerState:
        """The :class:`TrainerState` to save now (after :meth:`gather_rank_states`)."""
        self.state.data_state = data_state
        self.state.metrics = dict(metrics)
        log_vars = getattr(self.objective.weighting, "log_vars", None)
        self.state.loss_log_vars = log_vars.detach().cpu().tolist() if log_vars is not None else None
        sampler = self.strategy.sampler
        self.state.sampler = sampler.state_dict() if hasattr(sampler, "state_dict") else None
        return self.state

    def restore(self, directory: str, data_hash: str | None = None) -> TrainerState:
        """Load weights, optimizer, scheduler, loss weights, this rank's data position and RNGs.

        Refuses (:class:`ResumeError`) a checkpoint written by another number of workers (each
        rank's data position belongs to that rank's share of the rows: a different split would
        drop or repeat rows) or over other prepared data (``data_hash`` differs).
        """
        check_resumable(directory, dist.get_world_size(), data_hash)
        state = load_training_state(directory, model=self.model, optimizer=self.optimizer,
                                    scheduler=self.scheduler)
        log_vars = getattr(self.objective.weighting, "log_vars", None)
        if log_vars is not None and state.loss_log_vars is not None:
            with torch.no_grad():
                log_vars.copy_(torch.tensor(state.loss_log_vars, dtype=log_vars.dtype))
        rank = str(dist.get_rank())
        for task, position in state.data_state.get(rank, {}).items():
            if task in self.streams:
                self.streams[task].load_state_dict(position)
        self.state = state
        self.state.world_size = dist.get_world_size()
        self.state.data_hash = data_hash or state.data_hash
        if apply_freezing(self.model, self.strategy.encoder_frozen(state.step)):
            self._wrap()
        rng = read_rng_states(directory).get(rank)
        if rng is not None:  # last: nothing above may draw a random number after this
            restore_rng_state(rng)
        return state


def check_resumable(directory: str, world_size: int, data_hash: str | None) -> TrainerState:
    """The checkpoint's state if a run of ``world_size`` workers over data ``data_hash`` can
    continue it; :class:`ResumeError` saying why not otherwise."""
    state = read_trainer_state(directory)
    if state.data_state and state.world_size != world_size:
        raise ResumeError(
            f"checkpoint {directory} (step {state.step}) was written by {state.world_size} workers; "
            f"this run has {world_size}. Each worker's data position belongs to its own share of "
            f"the rows, so resuming with another count would drop or repeat data. Resume with "
            f"scaling.num_workers={state.world_size}, or start a new run (--set name=...) from its "
            f"weights with --set model.pretrained={directory}.")
    if data_hash and state.data_hash and state.data_hash != data_hash:
        raise ResumeError(
            f"checkpoint {directory} (step {state.step}) was trained on prepared data with manifest "
            f"hash {state.data_hash[:12]}, but the prepared data now hashes to {data_hash[:12]}: the "
            "data changed under the run, so its saved positions would point at other rows. Start a "
            "new run (--set name=...), or point data.prepared_dir back at the original data.")
    return state
