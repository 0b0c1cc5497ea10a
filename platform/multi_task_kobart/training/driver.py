"""The driver: prepare the data, assemble the ``TorchTrainer``, run it, return a typed result.

``run_training(cfg)`` is what ``jobs/train.py``, the demo (and Ray Tune trials) call. Ray
Train V2 semantics worth knowing:

- The run lives in ``<run.storage_path>/<name>``. Starting a run with a name that already
  has checkpoints there resumes from its latest one (the V2 controller restores its
  checkpoint snapshot; ``ray.train.get_checkpoint()`` returns it in every worker).
- ``FailureConfig(max_failures)`` restarts the worker group after a crash, again from
  the latest checkpoint. A run that runs out of retries raises ``TrainingFailedError``.
- ``CheckpointConfig`` keeps the K best checkpoints by ``valid_loss`` (plus the latest).
- Ray registers a checkpoint when its controller polls the workers' reports (every 2 s);
  the workers therefore also look in the run folder for a newer intact checkpoint than the
  one Ray hands them, and skip damaged ones (``worker._resume_directory``).

Relative paths in the config resolve against a root directory that the user chose
(``root``; ``jobs/train.py --root``, or ``MTK_ROOT_DIR``), by default the current directory.
Under ``ray job submit --working-dir .`` the current directory is Ray's temporary copy of
the working dir, which vanishes with the Ray session: there a relative path without a root
is refused, so checkpoints and prepared data never land somewhere that disappears.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from multi_task_kobart.config import ExperimentConfig
from multi_task_kobart.training.worker import StepCallback, WorkerResult

#: Paths in the config that workers must see as absolute (Ray Train V2 changes the
#: worker's working directory to the run folder).
_PATH_FIELDS = (("data", "prepared_dir"), ("data", "source"), ("data", "tokenizer"),
                ("model", "pretrained"), ("run", "storage_path"))
#: Paths that are always local folders (the others may also be hub ids or "bundled").
_FOLDER_FIELDS = (("data", "prepared_dir"), ("run", "storage_path"))
#: What workers need of the shards: the token ids.
_ROW_COLUMNS = ("input_ids", "labels")
#: The environment variable that names the root for relative paths.
ROOT_ENV = "MTK_ROOT_DIR"
#: Ray unpacks ``--working-dir`` uploads below this folder of its session directory.
_RAY_WORKING_DIR_MARK = os.path.join("runtime_resources", "working_dir_files")


@dataclass
class TrainingResult:
    """What a finished run hands back to the caller."""

    run_name: str
    run_path: str  # <storage_path>/<name>
    checkpoint_path: str | None  # the latest checkpoint (the final model)
    best_checkpoint_path: str | None  # lowest valid_loss among the kept checkpoints
    metrics: dict[str, Any] = field(default_factory=dict)  # final metrics (rank 0's report)
    evaluation: dict[str, float] | None = None  # held-out headline metrics
    mlflow_run_id: str | None = None
    registered_model: str | None = None  # e.g. models:/multi-task-kobart@candidate
    resumed_from_step: int | None = None
    world_size: int = 0
    prepared_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _inside_ray_working_dir(path: Path) -> bool:
    return _RAY_WORKING_DIR_MARK in str(path)


def resolve_root(root: str | Path | None = None) -> Path:
    """The folder relative config paths resolve against: ``root``, ``$MTK_ROOT_DIR``, or the cwd."""
    chosen = root or os.environ.get(ROOT_ENV)
    return Path(chosen).expanduser().resolve() if chosen else Path.cwd()


def resolve_paths(cfg: ExperimentConfig, root: str | Path | None = None) -> ExperimentConfig:
    """A copy of ``cfg`` whose local paths are absolute (hub ids and "bundled" untouched).

    Raises ``ValueError`` when a relative folder would resolve inside Ray's temporary copy of
    the working dir and no root was chosen.
    """
    base = resolve_root(root)
    explicit = bool(root or os.environ.get(ROOT_ENV))
    raw = cfg.to_dict()
    for section, key in _PATH_FIELDS:
        value = raw[section][key]
        if not value or value == "bundled" or "://" in value:
            continue
        candidate = Path(value).expanduser()
        if not candidate.is_absolute():
            if (section, key) in _FOLDER_FIELDS and not explicit and _inside_ray_working_dir(base):
                raise ValueError(
                    f"{section}.{key}={value!r} is relative and the job runs in Ray's temporary copy "
                    f"of the working dir ({base}), which is deleted with the Ray session. Pass "
                    f"--root <folder> (e.g. --root \"$PWD\" on the submitting machine) or set "
                    f"{ROOT_ENV}, or give {section}.{key} as an absolute path or URI.")
            candidate = base / candidate
        # A relative value that does not exist may be a hub id (owner/name): keep it.
        if (section, key) in _FOLDER_FIELDS or candidate.exists():
            raw[section][key] = str(candidate.resolve())
    if cfg.tracking.enabled:
        from multi_task_kobart import tracking

        raw["tracking"]["tracking_uri"] = tracking.resolve_tracking_uri(cfg.tracking.tracking_uri)
    return ExperimentConfig.from_dict(raw)


def prepare_data(cfg: ExperimentConfig) -> Any:
    """Prepare (or reuse) the Parquet shards for ``cfg.data``; returns the PreparedDataset."""
    from multi_task_kobart.data.prepare import prepare_from_config

    return prepare_from_config(cfg.data, seed=cfg.seed)


def build_datasets(cfg: ExperimentConfig, prepared_path: str | Path) -> tuple[dict[str, Any], bool]:
    """``{"train_<task>": ds, "valid_<task>": ds}`` in-memory Ray Datasets of token ids, and
    whether the data is small enough for them (else ``{}``, False).

    Up to ``data.in_memory_max_rows`` the driver reads the token-id columns itself and hands
    Ray in-memory Arrow blocks: every worker receives all rows (through the object store, so
    workers need no access to the prepared folder) and keeps its slice. Each Ray Data
    execution costs seconds of fixed start-up, which dominates a small run; a Parquet read
    would too. Larger data is not shipped at all: each worker reads its own slice of the
    shards (``worker._read_from_shards``), which must then be on storage every node sees.
    Both paths give every rank the same rows (``loading.rank_row_range``), and neither lets
    Ray Data decide who gets which row: ``streaming_split`` hands blocks to whichever worker
    asks first and cannot resume mid-epoch, so a resumed run could not continue exactly.
    """
    import pyarrow as pa
    import ray.data

    from multi_task_kobart.data.loading import available_tasks, read_task_table
    from multi_task_kobart.data.prepare import read_manifest

    missing = [task for task in cfg.tasks if task not in available_tasks(prepared_path, "train")]
    if missing:
        raise ValueError(f"prepared dataset {str(prepared_path)!r} has no train rows for {missing}; "
                         f"it has {available_tasks(prepared_path, 'train')}.")
    counts = read_manifest(prepared_path)["counts"]
    total = sum(counts.get(split, {}).get(task, 0) for split in ("train", "valid") for task in cfg.tasks)
    if total > cfg.data.in_memory_max_rows:
        return {}, False
    # Progress bars of these second-long reads only garble the training progress lines.
    ray.data.DataContext.get_current().enable_progress_bars = False
    datasets: dict[str, Any] = {}
    for split in ("train", "valid"):
        for task in (task for task in cfg.tasks if task in counts.get(split, {})):
            table = read_task_table(prepared_path, split, task, _ROW_COLUMNS)
            # The manifest order travels with the rows: a worker restores it before slicing.
            table = table.append_column("row_index", pa.array(range(table.num_rows), pa.int64()))
            datasets[f"{split}_{task}"] = ray.data.from_arrow(table)
    return datasets, True


def build_trainer(cfg: ExperimentConfig, prepared_path: str | Path,
                  step_callbacks: Sequence[StepCallback] = (), run_callbacks: Sequence[Any] = ()) -> Any:
    """The ``TorchTrainer`` for ``cfg`` (paths already resolved) over prepared data.

    ``step_callbacks`` run on every rank before each optimizer step (see ``worker.StepCallback``);
    ``run_callbacks`` are Ray Train callbacks of the run (e.g. Tune's report callback).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from multi_task_kobart.training import dist
    from multi_task_kobart.training.worker import train_func_per_worker

    s, t = cfg.scaling, cfg.training
    datasets, in_memory = build_datasets(cfg, prepared_path)
    resources = {"CPU": s.cpus_per_worker, **({"GPU": 1} if s.use_gpu else {})}
    run_config = ray.train.RunConfig(
        name=cfg.run_name, storage_path=cfg.run.storage_path,
        failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=t.keep_checkpoints, checkpoint_score_attribute="valid_loss",
            checkpoint_score_order="min"),
        callbacks=list(run_callbacks), worker_runtime_env={"env_vars": _worker_env(cfg)})
    return TorchTrainer(
        train_func_per_worker,
        train_loop_config={"experiment": cfg.to_dict(), "prepared_path": str(prepared_path),
                           "run_dir": run_directory(cfg), "in_memory": in_memory, "step_callbacks": list(step_callbacks)},
        scaling_config=ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu,
                                               resources_per_worker=resources),
        torch_config=TorchConfig(backend=dist.choose_backend(s.use_gpu)),
        run_config=run_config,
        datasets=datasets,
        # In-memory datasets go whole to every worker (no split coordinators to start).
        dataset_config=ray.train.DataConfig(datasets_to_split=[]))


def _worker_env(cfg: ExperimentConfig) -> dict[str, str]:
    """Thread counts matching the CPUs each worker reserved (oversubscription is slow),
    and the offline switches of the driver."""
    threads = str(cfg.scaling.cpus_per_worker)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "MLFLOW_TRACKING_URI"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def init_ray(cfg: ExperimentConfig) -> None:
    """Connect to the cluster (``ray job submit`` sets RAY_ADDRESS) or start a local Ray.

    A local Ray gets at least two logical CPUs beyond what the training workers reserve:
    Ray Data reads and splits the Parquet shards with CPU tasks, and with every CPU held by
    a training worker it would wait forever ("Cluster resources are not enough").
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    needed = cfg.scaling.num_workers * cfg.scaling.cpus_per_worker + 2
    ray.init(num_cpus=max(os.cpu_count() or 1, needed))


def run_training(cfg: ExperimentConfig, *, root: str | Path | None = None,
                 step_callbacks: Sequence[StepCallback] = (),
                 run_callbacks: Sequence[Any] = (), prepared_path: str | Path | None = None) -> TrainingResult:
    """Prepare data, run the ``TorchTrainer`` and return a :class:`TrainingResult`.

    ``root``: the folder relative config paths resolve against (see :func:`resolve_paths`);
    the callbacks go to :func:`build_trainer`; ``prepared_path``: a dataset already prepared
    for ``cfg.data`` (a sweep prepares once for all its trials), else it is prepared here.
    """
    cfg = resolve_paths(cfg, root)
    init_ray(cfg)
    prepared_path = str(prepared_path or prepare_data(cfg).path)
    print(f"[paths] checkpoints: {Path(cfg.run.storage_path) / cfg.run_name}\n"
          f"[paths] prepared data: {prepared_path}\n"
          f"[paths] MLflow: {cfg.tracking.tracking_uri if cfg.tracking.enabled else 'off'}", flush=True)
    check_run_resumable(cfg, prepared_path)
    result = build_trainer(cfg, prepared_path, step_callbacks, run_callbacks).fit()
    return _summarise(cfg, result, prepared_path)


def run_directory(cfg: ExperimentConfig) -> str:
    """``<run.storage_path>/<name>``: where Ray Train keeps the run's checkpoints (path or URI)."""
    return f"{cfg.run.storage_path.rstrip('/')}/{cfg.run_name}"


def check_run_resumable(cfg: ExperimentConfig, prepared_path: str | Path) -> None:
    """Refuse, before any worker starts, to resume a run that cannot continue as configured.

    A run folder with checkpoints is resumed by Ray from its latest one; this checks the
    newest intact checkpoint against the worker count and the prepared data (the workers
    check again, also on remote storage, which this driver-side look does not list).
    Raises ``engine.ResumeError`` with the reason and what to change.
    """
    from multi_task_kobart.data.loading import manifest_hash
    from multi_task_kobart.training.checkpoint import CorruptCheckpointError, verify_checkpoint
    from multi_task_kobart.training.engine import check_resumable

    run_dir = Path(cfg.run.storage_path) / cfg.run_name
    if "://" in cfg.run.storage_path or not run_dir.is_dir():
        return
    for checkpoint in sorted((p for p in run_dir.glob("checkpoint_*") if p.is_dir()), reverse=True):
        try:
            verify_checkpoint(checkpoint)
        except CorruptCheckpointError:
            continue  # the workers fall back past it and say so
        check_resumable(str(checkpoint), cfg.scaling.num_workers, manifest_hash(prepared_path))
        return


def _summarise(cfg: ExperimentConfig, result: Any, prepared_path: str) -> TrainingResult:
    outcome: WorkerResult = result.return_value
    best = None
    if result.best_checkpoints:
        best = min(result.best_checkpoints,
                   key=lambda pair: pair[1].get("valid_loss", float("inf")))[0]
    return TrainingResult(
        run_name=cfg.run_name, run_path=str(result.path),
        checkpoint_path=result.checkpoint.path if result.checkpoint else None,
        best_checkpoint_path=best.path if best is not None else None,
        metrics=dict(outcome.metrics), evaluation=outcome.evaluation,
        mlflow_run_id=outcome.mlflow_run_id, registered_model=outcome.registered_model,
        resumed_from_step=outcome.resumed_from_step, world_size=outcome.world_size,
        prepared_path=prepared_path)
