"""Checkpoint I/O in the library's own directory format (no Ray in here).

A checkpoint directory holds::

    model.safetensors, config.json   MultiTaskKoBART.save_pretrained (loadable on its own)
    tokenizer.json (+ HF files)      the tokenizer the model was trained with
    train_config.json                the resolved ExperimentConfig
    trainer_state.json               format version, step, stage, data positions, task sampler,
                                     loss weights, metrics, MLflow run id
    optimizer.pt, scheduler.pt       torch.save'd state dicts, loaded with weights_only=True

Everything but the two ``.pt`` files is enough to serve or evaluate the model; those two
make a resumed run continue exactly where it stopped.

Versions of the format (``trainer_state.json``'s ``format_version``):

- 0: no ``format_version`` key (checkpoints written before versions existed);
- 1: adds ``format_version`` and the task sampler's state (``sampler``).

Older versions load; a newer one is refused with a message, never half-read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multi_task_kobart.model import WEIGHTS_NAME

TRAINER_STATE = "trainer_state.json"
TRAIN_CONFIG = "train_config.json"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
#: The version this code writes; it reads every version up to this one.
FORMAT_VERSION = 1


@dataclass
class TrainerState:
    """Where a run stands: enough, with the weights and optimizer, to resume it."""

    step: int = 0  # optimizer steps completed
    stage: int = 2  # two_stage's current stage (1 = encoder frozen)
    data_state: dict[str, Any] = field(default_factory=dict)  # per-task batch-stream positions
    loss_log_vars: list[float] | None = None  # uncertainty weighting parameters
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics at this step
    initial_metrics: dict[str, float] = field(default_factory=dict)  # validation before step 1
    best_valid_loss: float | None = None
    mlflow_run_id: str | None = None
    world_size: int = 1
    sampler: dict[str, Any] | None = None  # TaskSampler.state_dict() (format 1+)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainerState":
        """Read any format version up to :data:`FORMAT_VERSION` (a missing version is 0)."""
        version = int(raw.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise ValueError(f"checkpoint format_version={version} is newer than this code reads "
                             f"(up to {FORMAT_VERSION}); upgrade multi-task-kobart to load it.")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{key: value for key, value in raw.items() if key in known},
                      "format_version": version})


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    state: TrainerState,
    config: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
) -> Path:
    """Write a full checkpoint of ``model`` (a bare MultiTaskKoBART) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if config is not None:
        (directory / TRAIN_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (directory / TRAINER_STATE).write_text(
        json.dumps({**state.to_dict(), "format_version": FORMAT_VERSION}, indent=2))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), directory / OPTIMIZER)
    if scheduler is not None:
        torch.save(scheduler.state_dict(), directory / SCHEDULER)
    return directory


def read_trainer_state(directory: str | Path) -> TrainerState:
    """The ``trainer_state.json`` of a checkpoint directory."""
    path = Path(directory) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: {str(directory)!r} is not a training "
                                "checkpoint (expected the files written by save_checkpoint).")
    return TrainerState.from_dict(json.loads(path.read_text()))


def load_training_state(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
) -> TrainerState:
    """Load weights, optimizer and scheduler state from ``directory`` into live objects.

    Weights are copied into the existing ``model`` in place (strictly: a missing tensor or a
    shape mismatch is an error), so the caller's optimizer keeps pointing at the same
    parameter objects.
    """
    from safetensors.torch import load_model

    directory = Path(directory)
    state = read_trainer_state(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{str(weights)!r} is missing: not a complete checkpoint.")
    load_model(model, str(weights), strict=True, device=str(next(model.parameters()).device))
    if optimizer is not None and (directory / OPTIMIZER).is_file():
        optimizer.load_state_dict(torch.load(directory / OPTIMIZER, weights_only=True,
                                             map_location="cpu"))
    if scheduler is not None and (directory / SCHEDULER).is_file():
        scheduler.load_state_dict(torch.load(directory / SCHEDULER, weights_only=True))
    return state


def parameter_checksum(model: nn.Module) -> str:
    """SHA-256 over all parameters and buffers (name, dtype, shape, bytes), rank-comparable."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()
