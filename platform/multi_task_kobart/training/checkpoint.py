"""Checkpoint I/O in the library's own directory format (no Ray in here).

A checkpoint directory holds::

    model.safetensors, config.json   MultiTaskKoBART.save_pretrained (loadable on its own)
    tokenizer.json (+ HF files)      the tokenizer the model was trained with
    train_config.json                the resolved ExperimentConfig
    trainer_state.json               format version, step, stage, data positions, task sampler,
                                     loss weights, metrics, MLflow run id, prepared-data hash
    rng_state.json                   every rank's python / numpy / torch (/ CUDA) RNG states
    optimizer.pt, scheduler.pt       torch.save'd state dicts, loaded with weights_only=True
    checksums.json                   size and SHA-256 of every other file, written last

Everything but the ``.pt`` files and the RNG states is enough to serve or evaluate the model;
those make a resumed run continue exactly where it stopped, down to its dropout masks.

Versions of the format (``trainer_state.json``'s ``format_version``):

- 0: no ``format_version`` key (checkpoints written before versions existed);
- 1: adds ``format_version`` and the task sampler's state (``sampler``);
- 2: adds ``checksums.json``, ``rng_state.json``, ``data_hash`` and ``task_trace``.

Older versions load; a newer one is refused with a message, never half-read. A version 2+
checkpoint whose files do not match ``checksums.json`` (a copy cut short, a disk error) is
refused with :class:`CorruptCheckpointError` naming the file; the worker then falls back to the
run's previous checkpoint.

Only ``torch.load(weights_only=True, map_location=...)`` reads the ``.pt`` files: a pickle that
asks for any other Python object is refused before it runs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
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
RNG_STATE = "rng_state.json"
CHECKSUMS = "checksums.json"
#: The version this code writes; it reads every version up to this one.
FORMAT_VERSION = 2


class CorruptCheckpointError(ValueError):
    """A checkpoint's files do not match its ``checksums.json`` (or a listed file is missing)."""


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
    data_hash: str | None = None  # SHA-256 of the prepared data's manifest.json (format 2+)
    task_trace: str = ""  # running hash of every micro-step's task on this rank (format 2+)
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
    rng_states: dict[str, Any] | None = None,
) -> Path:
    """Write a full checkpoint of ``model`` (a bare MultiTaskKoBART) into ``directory``.

    ``rng_states``: ``{rank: capture_rng_state()}`` of every rank. ``checksums.json`` is
    written last, so a checkpoint cut short before it is also detected (no checksum file in
    a version 2 checkpoint is an error).
    """
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
    if rng_states is not None:
        (directory / RNG_STATE).write_text(json.dumps(rng_states))
    write_checksums(directory)
    return directory


# --------------------------------------------------------------------------- integrity


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Record the size and SHA-256 of every file below ``directory`` in ``checksums.json``."""
    directory = Path(directory)
    files = sorted(path for path in directory.rglob("*") if path.is_file() and path.name != CHECKSUMS)
    table = {str(path.relative_to(directory)): {"size": path.stat().st_size, "sha256": _file_digest(path)}
             for path in files}
    (directory / CHECKSUMS).write_text(json.dumps(table, indent=1))
    return table


def verify_checkpoint(directory: str | Path) -> None:
    """Raise :class:`CorruptCheckpointError` unless every file listed in ``checksums.json`` is
    present with its recorded size and hash. Checkpoints older than format 2 have no checksums
    and pass (there is nothing to compare against)."""
    directory = Path(directory)
    listing = directory / CHECKSUMS
    if not listing.is_file():
        try:
            version = read_trainer_state(directory).format_version
        except (OSError, ValueError) as error:  # a missing or half-written trainer_state.json
            raise CorruptCheckpointError(f"{str(directory)!r} is not a readable checkpoint: {error}") from error
        if version >= 2:
            raise CorruptCheckpointError(f"{str(directory)!r}: {CHECKSUMS} is missing (the checkpoint "
                                         "was cut short while being written).")
        return
    try:
        expected_files = json.loads(listing.read_text())
    except ValueError as error:
        raise CorruptCheckpointError(f"{str(listing)!r} is not valid JSON: {error}") from error
    for name, expected in expected_files.items():
        path = directory / name
        if not path.is_file():
            raise CorruptCheckpointError(f"{str(path)!r} is missing from the checkpoint.")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CorruptCheckpointError(f"{str(path)!r} is {size} bytes, {expected['size']} were "
                                         "written: the file is truncated or was replaced.")
        if _file_digest(path) != expected["sha256"]:
            raise CorruptCheckpointError(f"{str(path)!r} does not match its SHA-256 in {CHECKSUMS}: "
                                         "the file is corrupted.")


# --------------------------------------------------------------------------- random states


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch CPU (and CUDA) RNG states, as JSON-able values."""
    import numpy as np

    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode()
                         for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` captured (CUDA states only where CUDA runs)."""
    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_bytes_tensor(s) for s in state["cuda"]])


def _bytes_tensor(encoded: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(encoded)), dtype=torch.uint8)


def read_rng_states(directory: str | Path) -> dict[str, Any]:
    """``{rank: state}`` saved with the checkpoint (empty for checkpoints before format 2)."""
    path = Path(directory) / RNG_STATE
    return json.loads(path.read_text()) if path.is_file() else {}


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
        optimizer.load_state_dict(load_tensors(directory / OPTIMIZER))
    if scheduler is not None and (directory / SCHEDULER).is_file():
        scheduler.load_state_dict(load_tensors(directory / SCHEDULER))
    return state


def load_tensors(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers, onto the CPU.

    ``weights_only=True`` refuses any pickle that would construct another Python object (the
    usual way a crafted checkpoint runs code); the error names the file.
    """
    import pickle

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise CorruptCheckpointError(f"{str(path)!r} holds objects other than tensors and plain "
                                     f"containers; refused to unpickle it ({error}).") from error


def parameter_checksum(model: nn.Module) -> str:
    """SHA-256 over all parameters and buffers (name, dtype, shape, bytes), rank-comparable."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()
