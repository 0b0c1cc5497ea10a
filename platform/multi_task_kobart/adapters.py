"""Small task-specific parts that sit beside the shared encoder: LoRA adapters and the router.

``EncoderLoRA`` keeps one low-rank pair (A, B) per task on every encoder self-attention
``q_proj`` and ``v_proj``. The pairs live in their own module and are applied through forward
hooks, so the encoder's own parameter names stay exactly those of a BART encoder (loading BART
weights and exporting a plain ``BartForConditionalGeneration`` need no renaming). Which task's
pair is applied is chosen beforehand with ``activate(task)``, like peft's ``set_adapter``.

``RouterHead`` classifies an input into one of the model's tasks from the attention-masked mean
of the encoder states.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

#: The encoder projections that get adapters (the choice of the LoRA paper for attention).
LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")


class LoRAPair(nn.Module):
    """``x -> B(A(x)) * scaling``; B starts at zero so a fresh adapter changes nothing."""

    def __init__(self, in_features: int, out_features: int, rank: int, scaling: float) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.empty(out_features, rank))
        self.scaling = scaling

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # peft's initialisation: A like an nn.Linear, B zero.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(hidden_states, self.lora_A), self.lora_B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The (out, in) matrix to add to the base weight so the pair is merged into it."""
        return (self.lora_B @ self.lora_A) * self.scaling


class _LoRAHook:
    """Forward hook adding the active task's pair to one projection's output.

    A small class rather than a closure so that ``copy.deepcopy`` and pickling of the model
    re-point the hook at the copied adapters.
    """

    def __init__(self, lora: EncoderLoRA, key: str) -> None:
        self.lora = lora
        self.key = key

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...],
                 output: torch.Tensor) -> torch.Tensor:
        task = self.lora.active_task
        if task is None:
            return output
        return output + self.lora.tasks[task][self.key](inputs[0])


class EncoderLoRA(nn.Module):
    """Per-task LoRA pairs for the self-attention ``q_proj``/``v_proj`` of a ``BartEncoder``."""

    def __init__(self, num_layers: int, d_model: int, tasks: tuple[str, ...], rank: int,
                 alpha: float) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        #: encoder-relative module names, e.g. "layers.0.self_attn.q_proj"
        self.targets = [f"layers.{i}.self_attn.{proj}" for i in range(num_layers) for proj in LORA_TARGETS]
        scaling = alpha / rank
        self.tasks = nn.ModuleDict({
            task: nn.ModuleDict({_key(t): LoRAPair(d_model, d_model, rank, scaling) for t in self.targets})
            for task in tasks
        })
        self.active_task: str | None = None

    def reset_parameters(self) -> None:
        for pair in self.tasks.modules():
            if isinstance(pair, LoRAPair):
                pair.reset_parameters()

    def attach(self, encoder: nn.Module) -> None:
        """Hook every target projection of ``encoder`` (call once per encoder)."""
        for target in self.targets:
            encoder.get_submodule(target).register_forward_hook(_LoRAHook(self, _key(target)))

    @contextmanager
    def activate(self, task: str | None) -> Iterator[None]:
        """Apply ``task``'s adapters (``None``: the bare encoder) inside the block."""
        if task is not None and task not in self.tasks:
            raise ValueError(f"No adapter for task {task!r}; adapters exist for {list(self.tasks)}")
        previous, self.active_task = self.active_task, task
        try:
            yield
        finally:
            self.active_task = previous

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.tasks[task].parameters())

    @torch.no_grad()
    def merged_deltas(self, task: str) -> dict[str, torch.Tensor]:
        """``{"layers.0.self_attn.q_proj.weight": delta, ...}`` to add to the encoder's weights."""
        return {f"{t}.weight": self.tasks[task][_key(t)].delta_weight() for t in self.targets}


def _key(target: str) -> str:
    # ModuleDict keys cannot contain dots.
    return target.replace(".", "_")


class TaskAwareCheckpoint:
    """Activation checkpointing that replays a layer with the adapter that was active in forward.

    Non-reentrant checkpointing recomputes a layer during backward. By then the model may have
    run another task (one forward per task, one backward for the sum), so the adapter choice is
    captured at forward time and restored for the replay.
    """

    def __init__(self, lora: EncoderLoRA | None) -> None:
        self.lora = lora

    def __call__(self, function: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
        if self.lora is None:
            return checkpoint(function, *args, use_reentrant=False)
        task = self.lora.active_task

        def replay(*inner: torch.Tensor) -> torch.Tensor:
            with self.lora.activate(task):
                return function(*inner)

        return checkpoint(replay, *args, use_reentrant=False)


class RouterHead(nn.Module):
    """Task classifier on the attention-masked mean of the encoder states.

    It reads detached states: routing is a side objective and must not pull the shared encoder
    away from what the decoders need. ``hidden_dim=0`` gives a single linear layer.
    """

    def __init__(self, d_model: int, num_tasks: int, hidden_dim: int = 0) -> None:
        super().__init__()
        if hidden_dim > 0:
            self.net: nn.Module = nn.Sequential(nn.Linear(d_model, hidden_dim), nn.GELU(),
                                                nn.Linear(hidden_dim, num_tasks))
        else:
            self.net = nn.Linear(d_model, num_tasks)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        hidden_states = hidden_states.detach()  # (batch, seq, d_model)
        if attention_mask is None:
            pooled = hidden_states.mean(dim=1)
        else:
            mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # (batch, seq, 1)
            pooled = (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.net(pooled)  # (batch, num_tasks)
