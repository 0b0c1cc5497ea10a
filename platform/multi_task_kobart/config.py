"""Typed experiment configuration, loaded from YAML with ``--set key=value`` overrides.

One ``ExperimentConfig`` describes a whole training run: model, data, optimisation,
scaling, checkpoints, evaluation and tracking. As in litgpt's ``args.py``, every section is a
dataclass whose fields each carry a docstring (what the field does, and its unit), choice
fields are ``Literal`` types, and every section checks itself in ``__post_init__``, rejecting a
bad value with a message that names the key, the value and what is allowed. The loader
(:func:`load_config`) checks types and choices the same way before a section is built. The
resolved config is saved beside every checkpoint (``train_config.json``) and logged to
MLflow, so a run can always be reproduced from what it wrote; keys that an older version
wrote and this one retired (:data:`RETIRED_KEYS`) are accepted and dropped on load.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from multi_task_kobart.data.encodings import DEFAULT_ENCODING, check_encoding
from multi_task_kobart.data.reading import Split
from multi_task_kobart.data.sampling import SamplingStrategy
from multi_task_kobart.generation import DEFAULT_GENERATION, GenerationSettings
from multi_task_kobart.tasks import TASKS, validate_task

Preset = Literal["tiny", "small", "base"]
Strategy = Literal["simultaneous", "sequential", "two_stage"]
LossWeighting = Literal["static", "uncertainty"]
Precision = Literal["auto", "fp32", "bf16"]

# The allowed values of each choice, derived from its Literal (for messages and other modules).
PRESETS: tuple[str, ...] = get_args(Preset)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
LOSS_WEIGHTINGS: tuple[str, ...] = get_args(LossWeighting)
PRECISIONS: tuple[str, ...] = get_args(Precision)
SAMPLINGS: tuple[str, ...] = get_args(SamplingStrategy)
SPLITS: tuple[str, ...] = get_args(Split)

#: Keys an earlier version of this config had, mapped to why they went. A saved config
#: (``train_config.json`` beside an old checkpoint) may still hold them: they load, set to
#: null, and are dropped; any other value is refused, since it asked for something no longer done.
RETIRED_KEYS: dict[str, str] = {
    "training.fail_at_step": "it was a test-only fault-injection hook; tests now inject the "
                             "failure with a training callback",
}

# MLflow's rules for a registered-model alias: word characters and dashes, at most 255 of
# them, and neither "latest" nor "v<number>" (both name versions already).
_ALIAS = re.compile(r"[\w-]{1,255}")
_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)


def _check_choice(key: str, value: Any, hint: Any) -> None:
    """``value`` must be one of the values of the ``Literal`` type ``hint``."""
    allowed = get_args(hint)
    if not any(type(value) is type(option) and value == option for option in allowed):
        raise ValueError(f"{key}={value!r} is not valid; allowed: {', '.join(map(str, allowed))}.")


def _check_choices(section: Any, prefix: str) -> None:
    """Check every ``Literal`` field of a config section (also when built without the loader)."""
    hints = get_type_hints(type(section))
    for item in dataclasses.fields(section):
        if get_origin(hints[item.name]) is Literal:
            _check_choice(f"{prefix}.{item.name}", getattr(section, item.name), hints[item.name])


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} must be {bound}.")


def _check_text(name: str, value: str) -> None:
    if not value.strip():
        raise ValueError(f"{name}={value!r} must not be empty.")


def _check_task_weights(weights: dict[str, float], key: str) -> dict[str, float]:
    """Known task names and weights >= 0; ``key`` formats a task's config key for errors."""
    checked = {}
    for task, weight in weights.items():
        validate_task(task)
        name = key.format(task=task)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            weight = _to_float(weight, name)  # a dict's values escape _coerce's type checks
        _check_positive(name, weight, allow_zero=True)
        checked[task] = float(weight)
    return checked


@dataclass
class ModelConfig:
    """Which network to build and how."""

    preset: Preset = "tiny"
    """Architecture: "tiny" (2+2 layers, d_model 64), "small" (2+2 layers, d_model 128) or
    "base" (KoBART-base, 6+6 layers, d_model 768). A saved MultiTaskKoBART in ``pretrained``
    keeps its own architecture instead."""
    pretrained: str | None = None
    """Initial weights: a KoBART/BART directory or hub id, or a MultiTaskKoBART checkpoint
    directory; None trains from random initialisation."""
    adapter_rank: int = 0
    """Rank of the per-task LoRA adapters on the encoder (a count of dimensions); 0 = none."""
    dropout: float | None = None
    """Dropout probability in [0, 1) for the whole network; None keeps the preset's."""
    router: bool = True
    """Train the task-router head that predicts the task from the input (needed for task="auto")."""
    gradient_checkpointing: bool = False
    """Recompute activations during backward instead of storing them: less memory, more time."""

    def __post_init__(self) -> None:
        _check_choices(self, "model")
        _check_positive("model.adapter_rank", self.adapter_rank, allow_zero=True)
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout!r} must be in [0, 1).")


@dataclass
class DataConfig:
    """Where the examples come from and how they are tokenized and sampled."""

    source: str = "bundled"
    """"bundled" (the generated Korean corpus), or a file or folder of {task, input, target}
    records (JSONL, JSON, CSV/TSV or Parquet)."""
    prepared_dir: str = "data/prepared/tiny"
    """Folder that ``prepare_dataset`` writes the tokenized Parquet shards into and training reads."""
    encoding: str = DEFAULT_ENCODING
    """Text encoding of the source's JSONL/JSON/CSV/TSV files, e.g. "cp949" for Korean files
    saved by older Windows tools (Parquet, hub datasets and the bundled corpus ignore it)."""
    tokenizer: str = "bundled"
    """"bundled" (the offline 6k-token BPE), a local folder or tokenizer.json, or a hub id."""
    max_source_length: int = 128
    """Longest source kept, in tokens including <s> and </s>; longer inputs are truncated."""
    max_target_length: int = 64
    """Longest label sequence kept, in tokens including </s>; longer targets are truncated."""
    valid_fraction: float = 0.05
    """Share (0-1) of each task's train rows held out for validation loss, when the source
    has no valid split of its own."""
    sampling: SamplingStrategy = "proportional"
    """How the simultaneous strategy picks each step's task: "proportional" to row counts,
    "temperature" (p ~ n ** (1/T)), "uniform", "round_robin", or explicit "weights"."""
    temperature: float = 2.0
    """T of sampling="temperature" (unitless, > 0): 1 is proportional, large T nears uniform."""
    sampling_cap: int | None = None
    """proportional/temperature: count at most this many rows per task; None = no cap."""
    sampling_weights: dict[str, float] = field(default_factory=dict)
    """sampling="weights": relative weight per task name (normalised; missing tasks weigh 0)."""
    in_memory_max_rows: int = 2_000_000
    """Up to this many train+valid rows, the data is loaded as in-memory Ray Datasets,
    replicated to every worker and split by rank there (fast start-up); above it, Ray Data
    streams the Parquet shards and splits them across workers. 0 always streams."""

    def __post_init__(self) -> None:
        _check_choices(self, "data")
        check_encoding(self.encoding, "data.encoding")
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

    strategy: Strategy = "simultaneous"
    """"simultaneous" (tasks mixed step by step), "sequential" (one task after another) or
    "two_stage" (decoders only with the encoder frozen, then everything)."""
    max_steps: int = 300
    """Length of the run in optimizer steps; every rank runs exactly this many."""
    batch_size: int = 16
    """Examples per micro-batch per worker (an upper bound when max_tokens is set)."""
    max_tokens: int | None = None
    """Optional budget per micro-batch, in padded source + target tokens; None = no budget."""
    group_by_length: bool = True
    """Batch rows of similar length together (little padding); false: plain random batches."""
    grad_accum_steps: int = 1
    """Micro-batches whose gradients are summed into one optimizer step."""
    lr: float = 1e-3
    """Peak learning rate (per unit gradient), reached after warmup."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay per step, as a fraction of lr (biases and norms get none)."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW decay rates of the first and second moment estimates."""
    warmup_steps: int = 20
    """Optimizer steps of linear warmup from 0 to lr, before the cosine decay."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction (0-1) of lr, reached by the cosine at max_steps."""
    max_grad_norm: float | None = 1.0
    """Clip the global L2 norm of the gradients to this value; None disables clipping."""
    stage_one_steps: int | None = None
    """two_stage: optimizer steps of the frozen-encoder stage; None = max_steps // 2."""
    freeze_encoder: bool = False
    """Keep the shared encoder and embeddings frozen for the whole run."""
    loss_weighting: LossWeighting = "static"
    """How task losses are combined: "static" (task_weights) or "uncertainty" (learned
    per-task weights, Kendall et al. 2018)."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """loss_weighting="static": loss multiplier per task name; missing tasks weigh 1.0."""
    router_loss_weight: float = 0.1
    """Multiplier of the router's cross-entropy added to every step's loss (0 = untrained router)."""
    label_smoothing: float = 0.0
    """Probability mass in [0, 1) spread over the vocabulary in the decoder loss (0 = plain NLL)."""
    precision: Precision = "auto"
    """"auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32", or "bf16" (autocast on CUDA only)."""
    log_every: int = 10
    """Print and log training metrics every this many optimizer steps."""
    eval_every: int = 100
    """Compute the validation loss every this many optimizer steps (and at the end)."""
    eval_batches: int | None = 8
    """Validation micro-batches per task per rank at each validation; None = all of them."""
    checkpoint_every: int = 100
    """Save a checkpoint every this many optimizer steps (and at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept: the K best by validation loss (the latest is always kept too)."""

    def __post_init__(self) -> None:
        _check_choices(self, "training")
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
    """Ray Train workers (DDP ranks), each one process."""
    use_gpu: bool = False
    """Give every worker one GPU (NCCL, bf16 autocast); false: CPU workers over gloo, fp32."""
    cpus_per_worker: int = 1
    """CPU cores reserved per worker; also its number of torch threads."""

    def __post_init__(self) -> None:
        _check_positive("scaling.num_workers", self.num_workers)
        _check_positive("scaling.cpus_per_worker", self.cpus_per_worker)


@dataclass
class RunConfig:
    """Where results go and how failures are handled."""

    storage_path: str = "runs"
    """Ray Train storage folder (or URI); the run's checkpoints go to <storage_path>/<name>."""
    max_failures: int = 0
    """Worker-group crashes to recover from, each from the latest checkpoint; -1 = no limit."""

    def __post_init__(self) -> None:
        if self.max_failures < -1:
            raise ValueError(f"run.max_failures={self.max_failures!r} must be -1 (infinite) or >= 0.")


@dataclass
class EvaluationConfig:
    """The end-of-run evaluation on a prepared split, and how the model decodes there."""

    enabled: bool = True
    """Evaluate the final model when training ends (on rank 0) and log the report."""
    split: Split = "test"
    """Prepared split evaluated: "train", "valid" or "test" (held out from training)."""
    max_examples_per_task: int | None = 50
    """Rows evaluated per task (the first N of the split); None = the whole split."""
    batch_size: int = 32
    """Examples per generate() call."""
    num_beams: int = DEFAULT_GENERATION.num_beams
    """Beam width of the decoding; 1 is greedy."""
    max_new_tokens: int = DEFAULT_GENERATION.max_new_tokens
    """Most tokens generated per answer (after the decoder start token)."""
    no_repeat_ngram_size: int = DEFAULT_GENERATION.no_repeat_ngram_size
    """No n-gram of this many tokens appears twice in an answer; 0 turns the rule off."""
    repetition_penalty: float = DEFAULT_GENERATION.repetition_penalty
    """Divisor (> 0) of the logits of tokens already generated; 1.0 = no penalty."""

    def __post_init__(self) -> None:
        _check_choices(self, "evaluation")
        if self.max_examples_per_task is not None:
            _check_positive("evaluation.max_examples_per_task", self.max_examples_per_task)
        for name in ("batch_size", "num_beams", "max_new_tokens"):
            _check_positive(f"evaluation.{name}", getattr(self, name))
        _check_positive("evaluation.no_repeat_ngram_size", self.no_repeat_ngram_size, allow_zero=True)
        _check_positive("evaluation.repetition_penalty", self.repetition_penalty)

    def generation(self) -> GenerationSettings:
        """The decoding settings of this section, as every generating caller takes them."""
        return GenerationSettings(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                  no_repeat_ngram_size=self.no_repeat_ngram_size,
                                  repetition_penalty=self.repetition_penalty)


@dataclass
class TrackingConfig:
    """MLflow tracking (rank 0 only)."""

    enabled: bool = True
    """Log params, metrics and artifacts of the run to MLflow."""
    tracking_uri: str | None = None
    """MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else the project's local store."""
    experiment_name: str = "multi-task-kobart"
    """MLflow experiment the run is logged under (created when missing)."""
    registered_model_name: str | None = "multi-task-kobart"
    """Registry name the final model is registered under; None skips registration."""
    alias: str | None = "candidate"
    """Registry alias moved to the newly registered version (models:/<name>@<alias>);
    None registers the version without an alias."""
    log_model: bool = True
    """Upload the final model directory as an artifact (and register it, if a name is set)."""
    parent_run_id: str | None = None
    """MLflow run this run is nested under (``tune/sweep.py`` sets it to the sweep's run)."""

    def __post_init__(self) -> None:
        _check_text("tracking.experiment_name", self.experiment_name)
        if len(self.experiment_name) > 500:
            raise ValueError(f"tracking.experiment_name={self.experiment_name[:40]!r}... is "
                             f"{len(self.experiment_name)} characters; MLflow allows 500.")
        if self.registered_model_name is not None:
            _check_text("tracking.registered_model_name", self.registered_model_name)
            if "/" in self.registered_model_name or ":" in self.registered_model_name:
                raise ValueError(f"tracking.registered_model_name={self.registered_model_name!r} "
                                 "must not contain '/' or ':' (MLflow model URIs use them).")
        if self.alias is None:
            return
        if not _ALIAS.fullmatch(self.alias):
            raise ValueError(f"tracking.alias={self.alias!r} must be 1-255 letters, digits, "
                             "underscores (_) or dashes (-); null registers without an alias.")
        if _RESERVED_ALIAS.fullmatch(self.alias):
            raise ValueError(f"tracking.alias={self.alias!r} is reserved by MLflow ('latest' and "
                             "'v<number>' name versions); choose another, e.g. 'candidate'.")


@dataclass
class ExperimentConfig:
    """Everything one training run needs; ``name`` doubles as the Ray Train run name."""

    name: str | None = None
    """Run name; starting a run whose name exists resumes it from its latest checkpoint.
    None derives one from the preset and strategy (see ``run_name``)."""
    seed: int = 0
    """Seed of everything random: initialisation, data split and order, task sampling."""
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    """Tasks trained (each gets a decoder), kept in canonical order."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network to build: preset, initial weights, adapters, router (ModelConfig)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Examples: source, tokenizer, length limits and task mixing (DataConfig)."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Optimisation, strategy and the validation/checkpoint cadence (TrainingConfig)."""
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    """Ray Train workers and the resources of each (ScalingConfig)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Where results are stored and how crashes are recovered (RunConfig)."""
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    """The end-of-run evaluation and its decoding settings (EvaluationConfig)."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow tracking and model registration (TrackingConfig)."""

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
    raw = _drop_retired(raw, prefix)
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


def _drop_retired(raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``raw`` without the retired keys of this section; a retired key may only be null."""
    kept = dict(raw)
    for name, value in raw.items():
        reason = RETIRED_KEYS.get(prefix + name)
        if reason is None:
            continue
        if value is not None:
            raise ValueError(f"{prefix}{name}={value!r} is no longer a config setting ({reason}); "
                             "remove it from the config.")
        del kept[name]
    return kept


def _describe(hint: Any) -> str:
    """A type hint as a message shows it: ``int``, ``one of tiny, small, base``, ..."""
    if get_origin(hint) is Literal:
        return f"one of {', '.join(map(str, get_args(hint)))}"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Light type coercion (YAML ints for floats, lists for tuples) with clear errors."""
    origin, args = get_origin(hint), get_args(hint)
    is_union = origin in (Union, types.UnionType)
    if value is None:
        if is_union and type(None) in args:
            return None
        raise ValueError(f"{key}=None is not allowed; expected {_describe(hint)}.")
    if is_union:  # Optional[X]: coerce to X
        hint = next(arg for arg in args if arg is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        _check_choice(key, value, hint)
        return value
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
        set_value(raw, ".".join(keys), _parse_yaml(text, f"override {item!r}") if text.strip() else None)
    return raw


def _parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load``; a syntax error becomes a one-line ``ValueError`` naming ``where``
    (PyYAML's own message spans several lines and names no file)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{where} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}.") from None


def set_value(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Set ``raw["a"]["b"]["c"] = value`` for ``dotted="a.b.c"``, creating missing sections."""
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"config key {dotted!r}: {key!r} is not a section.")
    node[keys[-1]] = value
    return raw


def load_config_dict(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """A YAML config (None = all defaults) with overrides applied, as a nested dict, not yet validated."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist.")
        raw = _parse_yaml(path.read_text(), f"config file {str(path)!r}") or {}
    return apply_overrides(raw, list(overrides or []))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (None = all defaults), apply overrides, validate."""
    return ExperimentConfig.from_dict(load_config_dict(path, overrides))
