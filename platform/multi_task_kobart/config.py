"""Typed experiment configuration, loaded from YAML with ``--set key=value`` overrides.

One ``ExperimentConfig`` describes a whole training run: model, data, optimisation,
scaling, checkpoints, evaluation and tracking. Every section is a dataclass whose fields
carry a comment saying what they mean, and ``__post_init__`` rejects bad values with a
message naming the value and what is allowed (litgpt's ``args.py`` style). The resolved
config is saved beside every checkpoint (``train_config.json``) and logged to MLflow, so a
run can always be reproduced from what it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from multi_task_kobart.tasks import TASKS, validate_task

STRATEGIES = ("simultaneous", "sequential", "two_stage")
LOSS_WEIGHTINGS = ("static", "uncertainty")
SAMPLINGS = ("proportional", "uniform", "temperature", "round_robin", "weights")
PRECISIONS = ("auto", "fp32", "bf16")
PRESETS = ("tiny", "small", "base")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; allowed: {', '.join(allowed)}.")


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} must be {bound}.")


def _check_task_weights(weights: dict[str, float], key: str) -> dict[str, float]:
    """Known task names and weights >= 0; ``key`` formats a task's config key for errors."""
    for task, weight in weights.items():
        validate_task(task)
        _check_positive(key.format(task=task), weight, allow_zero=True)
    return {task: float(weight) for task, weight in weights.items()}


@dataclass
class ModelConfig:
    """Which network to build and how."""

    preset: str = "tiny"  # "tiny" (2+2 layers, d_model 64), "small" (2+2, d_model 128) or "base" (KoBART-base)
    pretrained: str | None = None  # KoBART/BART weights (dir or hub id) or a MultiTaskKoBART checkpoint dir
    adapter_rank: int = 0  # per-task LoRA rank on the encoder; 0 = no adapters
    dropout: float | None = None  # None keeps the preset's dropout
    router: bool = True  # train the task-router head (needed for task="auto")
    gradient_checkpointing: bool = False  # recompute activations in backward to save memory

    def __post_init__(self) -> None:
        _check_choice("model.preset", self.preset, PRESETS)
        _check_positive("model.adapter_rank", self.adapter_rank, allow_zero=True)
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout!r} must be in [0, 1).")


@dataclass
class DataConfig:
    """Where the examples come from and how they are tokenized and sampled."""

    source: str = "bundled"  # "bundled" corpus, or a file/dir of {task,input,target} records
    prepared_dir: str = "data/prepared/tiny"  # Parquet shards written by prepare_dataset
    tokenizer: str = "bundled"  # "bundled", a local dir / tokenizer.json, or a hub id
    max_source_length: int = 128  # source tokens incl. <s> and </s>
    max_target_length: int = 64  # label tokens incl. </s>
    valid_fraction: float = 0.05  # share of train rows held out for validation loss
    sampling: str = "proportional"  # task-sampling strategy for the simultaneous mix
    temperature: float = 2.0  # for sampling="temperature": p_task ~ n_task ** (1 / T)
    sampling_cap: int | None = None  # proportional/temperature: count at most this many rows per task
    sampling_weights: dict[str, float] = field(default_factory=dict)  # for sampling="weights"
    in_memory_max_rows: int = 2_000_000  # up to this many train+valid rows: in-memory Ray
    # Datasets, replicated to every worker and split by rank there (fast start-up); above
    # it, Ray Data streams the Parquet shards and splits them across workers.

    def __post_init__(self) -> None:
        _check_choice("data.sampling", self.sampling, SAMPLINGS)
        _check_positive("data.max_source_length", self.max_source_length)
        _check_positive("data.max_target_length", self.max_target_length)
        _check_positive("data.temperature", self.temperature)
        if self.sampling_cap is not None:
            _check_positive("data.sampling_cap", self.sampling_cap)
        self.sampling_weights = _check_task_weights(self.sampling_weights, "data.sampling_weights[{task!r}]")
        if self.sampling == "weights" and not any(self.sampling_weights.values()):
            raise ValueError("data.sampling='weights' needs data.sampling_weights, e.g. "
                             "{style_transfer: 2.0, qa_generation: 1.0} (missing tasks weigh 0).")
        _check_positive("data.in_memory_max_rows", self.in_memory_max_rows, allow_zero=True)
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"data.valid_fraction={self.valid_fraction!r} must be in (0, 1).")


@dataclass
class TrainingConfig:
    """Optimisation, strategy and the cadence of validation and checkpoints."""

    strategy: str = "simultaneous"  # simultaneous | sequential | two_stage
    max_steps: int = 300  # optimizer steps; every rank runs exactly this many
    batch_size: int = 16  # examples per micro-batch per worker (upper bound)
    max_tokens: int | None = None  # optional token budget per micro-batch (padded source+target)
    group_by_length: bool = True  # length-sorted batches (little padding); false: plain random batches
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 20  # linear warmup, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    max_grad_norm: float | None = 1.0  # None disables clipping
    stage_one_steps: int | None = None  # two_stage: frozen-encoder steps (default max_steps // 2)
    freeze_encoder: bool = False  # keep the shared encoder + embeddings frozen the whole run
    loss_weighting: str = "static"  # static (task_weights) | uncertainty (learned, Kendall et al.)
    task_weights: dict[str, float] = field(default_factory=dict)  # missing tasks weigh 1.0
    router_loss_weight: float = 0.1  # router cross-entropy added to every step
    label_smoothing: float = 0.0  # label smoothing of the decoder loss (0 = plain NLL)
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    log_every: int = 10
    eval_every: int = 100  # validation loss every N steps (and at the end)
    eval_batches: int | None = 8  # validation micro-batches per task per rank (None = all)
    checkpoint_every: int = 100  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2  # K best by validation loss (the latest is always kept too)
    fail_at_step: int | None = None  # testing hook: crash once at this step on a fresh start

    def __post_init__(self) -> None:
        _check_choice("training.strategy", self.strategy, STRATEGIES)
        _check_choice("training.loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        _check_choice("training.precision", self.precision, PRECISIONS)
        for name in ("max_steps", "batch_size", "grad_accum_steps", "log_every",
                     "eval_every", "checkpoint_every", "keep_checkpoints"):
            _check_positive(f"training.{name}", getattr(self, name))
        _check_positive("training.lr", self.lr)
        _check_positive("training.warmup_steps", self.warmup_steps, allow_zero=True)
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"training.warmup_steps={self.warmup_steps} must not exceed "
                             f"training.max_steps={self.max_steps}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"training.label_smoothing={self.label_smoothing!r} must be in [0, 1).")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"training.min_lr_ratio={self.min_lr_ratio!r} must be in [0, 1].")
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives a list
        self.task_weights = _check_task_weights(self.task_weights, "training.task_weights.{task}")
        if self.stage_one_steps is not None and not 0 <= self.stage_one_steps <= self.max_steps:
            raise ValueError(f"training.stage_one_steps={self.stage_one_steps!r} must be in "
                             f"[0, max_steps={self.max_steps}].")

    @property
    def resolved_stage_one_steps(self) -> int:
        """Steps of two_stage's frozen-encoder stage (half the run unless set)."""
        return self.max_steps // 2 if self.stage_one_steps is None else self.stage_one_steps


@dataclass
class ScalingConfig:
    """How many Ray Train workers and what each one gets."""

    num_workers: int = 2
    use_gpu: bool = False  # one GPU per worker; NCCL + bf16 autocast when true
    cpus_per_worker: int = 1

    def __post_init__(self) -> None:
        _check_positive("scaling.num_workers", self.num_workers)
        _check_positive("scaling.cpus_per_worker", self.cpus_per_worker)


@dataclass
class RunConfig:
    """Where results go and how failures are handled."""

    storage_path: str = "runs"  # Ray Train storage (relative paths are under the current dir)
    max_failures: int = 0  # worker crashes to recover from (from the latest checkpoint)

    def __post_init__(self) -> None:
        if self.max_failures < -1:
            raise ValueError(f"run.max_failures={self.max_failures!r} must be -1 (infinite) or >= 0.")


@dataclass
class EvaluationConfig:
    """The end-of-run evaluation on the held-out split."""

    enabled: bool = True
    split: str = "test"
    max_examples_per_task: int | None = 50  # None = the whole split
    batch_size: int = 32
    num_beams: int = 1
    max_new_tokens: int = 48


@dataclass
class TrackingConfig:
    """MLflow tracking (rank 0 only)."""

    enabled: bool = True
    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else a local store (./mlruns)
    experiment_name: str = "multi-task-kobart"
    registered_model_name: str | None = "multi-task-kobart"  # None skips registration
    alias: str = "candidate"
    log_model: bool = True  # upload the final model directory as an artifact


@dataclass
class ExperimentConfig:
    """Everything one training run needs; ``name`` doubles as the Ray Train run name."""

    name: str | None = None  # same name => resume from its latest checkpoint
    seed: int = 0
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError(f"tasks={self.tasks!r} must name at least one of {', '.join(TASKS)}.")
        for task in self.tasks:
            validate_task(task)
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks={self.tasks!r} lists a task twice.")
        # Keep the canonical order so the sequential strategy and logs are stable.
        self.tasks = [task for task in TASKS if task in self.tasks]

    @property
    def run_name(self) -> str:
        """The Ray Train run name: ``name`` or one derived from the model and strategy."""
        return self.name or f"mtk-{self.model.preset}-{self.training.strategy}"

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-serialisable)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ExperimentConfig":
        """Build (and validate) a config from a nested dict; unknown keys are errors."""
        return _build(cls, raw, prefix="")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> "ExperimentConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, recursing into nested sections."""
    if not isinstance(raw, dict):
        raise ValueError(f"config section {prefix or '<root>'!r} must be a mapping, got {raw!r}.")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}; "
                         f"allowed under {prefix or '<root>'!r}: {names}.")
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Light type coercion (YAML ints for floats, lists for tuples) with clear errors."""
    origin, args = get_origin(hint), get_args(hint)
    is_union = origin in (Union, types.UnionType)
    if value is None:
        if is_union and type(None) in args:
            return None
        raise ValueError(f"{key}=None is not allowed; expected {hint}.")
    if is_union:  # Optional[X]: coerce to X
        hint = next(arg for arg in args if arg is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if hint is float:
        return _to_float(value, key)
    if hint in (int, bool, str) and not isinstance(value, hint):
        raise ValueError(f"{key}={value!r} must be of type {hint.__name__}.")
    if hint is int and isinstance(value, bool):
        raise ValueError(f"{key}={value!r} must be an integer, not a boolean.")
    if origin in (list, tuple) and not isinstance(value, (list, tuple)):
        raise ValueError(f"{key}={value!r} must be a list.")
    if origin is dict and not isinstance(value, dict):
        raise ValueError(f"{key}={value!r} must be a mapping.")
    return value


def _to_float(value: Any, key: str) -> float:
    # YAML reads "3e-4" (no dot) as a string, so numeric strings are accepted here.
    if isinstance(value, bool):
        raise ValueError(f"{key}={value!r} must be a number, not a boolean.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} must be a number.") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. training.lr=3e-4).")
        dotted, text = item.split("=", 1)
        keys = [key for key in dotted.strip().split(".") if key]
        if not keys:
            raise ValueError(f"override {item!r} has an empty key.")
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section.")
        node[keys[-1]] = yaml.safe_load(text) if text.strip() else None
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (None = all defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist.")
        raw = yaml.safe_load(path.read_text()) or {}
    return ExperimentConfig.from_dict(apply_overrides(raw, list(overrides or [])))
