"""``train_func_per_worker``: the Ray Train worker (with driver.py, the only Ray code here).

Shape of one run, on every rank::

    config -> tokenizer, model, this rank's rows of every task (token ids, in memory)
    -> engine (build.py) -> resume from ray.train.get_checkpoint() if any
    -> for step in [start, max_steps): train; log / validate / checkpoint on schedule
    -> final validation, rank-0 evaluation on the held-out split, final checkpoint + report
    -> a WorkerResult (rank 0's is the run's result)

Rules that keep DDP and Ray Train happy: every rank runs the same steps and reaches the
same collectives (metric all-reduces, ``ray.train.report``) at the same points; only rank 0
writes checkpoints, prints and talks to MLflow.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import ray.train
import torch

from multi_task_kobart.config import EvaluationConfig, ExperimentConfig, TrackingConfig, TrainingConfig
from multi_task_kobart.training import dist
from multi_task_kobart.training.build import build_collate, build_engine, build_model, build_sampler
from multi_task_kobart.training.checkpoint import parameter_checksum, read_trainer_state, save_checkpoint
from multi_task_kobart.training.engine import TrainingEngine
from multi_task_kobart.training.metrics import format_progress, format_validation
from multi_task_kobart.training.streams import TaskRows

_READ_BATCH = 4096
#: The report key naming the worker group's placement group (hex id).
TRAIN_PLACEMENT_GROUP = "train_placement_group"


class StepCallback(Protocol):
    """Called on every rank before optimizer step ``step`` (0-based) runs.

    ``resumed`` tells whether this worker group started from a checkpoint. Callbacks
    travel to the workers pickled, so they must be picklable (module-level functions,
    ``functools.partial`` of them, or small objects).
    """

    def __call__(self, step: int, resumed: bool) -> None: ...


@dataclass
class WorkerResult:
    """What ``train_func_per_worker`` returns; rank 0's becomes the run's result."""

    metrics: dict[str, Any] = field(default_factory=dict)  # the final report's metrics
    evaluation: dict[str, float] | None = None  # held-out headline metrics (rank 0)
    mlflow_run_id: str | None = None
    registered_model: str | None = None  # models:/<name>@<alias>, when registered
    resumed_from_step: int | None = None  # None for a fresh start
    world_size: int = 1


# --------------------------------------------------------------------------- this rank's rows


def _to_rows(table: Any, task: str) -> TaskRows:
    return TaskRows(task, table.column("input_ids").to_pylist(), table.column("labels").to_pylist())


def _materialise(shard: Any, task: str) -> TaskRows:
    """This rank's rows of one in-memory dataset (every worker receives all of its rows).

    Rows are put back in their manifest order (``row_index``, added by the driver) and the
    rank keeps its slice by :func:`rank_row_range`: the same rows the large-data path reads
    from the shards, on every run, so a resumed run's data positions point at the same rows.
    """
    import pyarrow as pa

    from multi_task_kobart.data.loading import rank_row_range

    if shard is None:
        return TaskRows(task, [], [])
    batches = list(shard.iter_batches(batch_size=_READ_BATCH, batch_format="pyarrow"))
    if not batches:
        return TaskRows(task, [], [])
    table = pa.concat_tables(batches).sort_by("row_index")
    start, stop = rank_row_range(table.num_rows, dist.get_rank(), dist.get_world_size())
    return _to_rows(table.slice(start, stop - start), task)


def _read_from_shards(prepared_path: str, split: str, task: str) -> TaskRows:
    """This rank's rows of one dataset too large to ship whole: read from the Parquet shards
    (on storage every node sees), only the row groups of this rank's slice."""
    from multi_task_kobart.data.loading import available_tasks, read_rank_rows

    if task not in available_tasks(prepared_path, split):
        return TaskRows(task, [], [])
    table = read_rank_rows(prepared_path, split, task, dist.get_rank(), dist.get_world_size(),
                           columns=("input_ids", "labels"))
    return _to_rows(table, task)


def _read_rows(tasks: list[str], prepared_path: str,
               in_memory: bool) -> tuple[dict[str, TaskRows], dict[str, TaskRows]]:
    """Train and valid rows of every task (read concurrently: each in-memory dataset is a
    separate Ray Data execution with its own start-up latency)."""
    names = [(split, task) for split in ("train", "valid") for task in tasks]

    def read(name: tuple[str, str]) -> TaskRows:
        split, task = name
        if in_memory:
            return _materialise(_shard_or_none(f"{split}_{task}"), task)
        return _read_from_shards(prepared_path, split, task)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        rows = dict(zip(names, pool.map(read, names)))
    train = {task: rows["train", task] for task in tasks}
    valid = {task: rows["valid", task] for task in tasks}
    source = "in-memory datasets" if in_memory else "Parquet shards"
    dist.print0(f"[data] {sum(map(len, train.values()))} train / {sum(map(len, valid.values()))} "
                f"valid rows on rank 0, read from {source} in {time.perf_counter() - started:.1f}s")
    return train, valid


def _shard_or_none(name: str) -> Any:
    try:
        return ray.train.get_dataset_shard(name)
    except KeyError:  # e.g. a task without validation rows
        return None


# --------------------------------------------------------------------------- setup


def _setup(cfg: ExperimentConfig, prepared_path: str, in_memory: bool,
           resume_dir: str | None) -> tuple[TrainingEngine, Any]:
    """Tokenizer, model, rows and the engine; the sampler comes from the checkpoint if any."""
    from multi_task_kobart.data.loading import manifest_hash
    from multi_task_kobart.data.prepare import read_manifest
    from multi_task_kobart.tokenizer import load_tokenizer

    device = dist.choose_device(cfg.scaling.use_gpu)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    model = build_model(cfg.model, cfg.tasks, tokenizer)
    train_rows, valid_rows = _read_rows(cfg.tasks, prepared_path, in_memory)
    saved_sampler = read_trainer_state(resume_dir).sampler if resume_dir else None
    sampler = build_sampler(cfg.data, read_manifest(prepared_path), cfg.tasks, cfg.seed, saved_sampler)
    engine = build_engine(cfg, model, train_rows=train_rows, valid_rows=valid_rows,
                          collate_fn=build_collate(tokenizer.pad_token_id), sampler=sampler,
                          device=device)
    engine.state.data_hash = manifest_hash(prepared_path)
    return engine, tokenizer


# --------------------------------------------------------------------------- logging


def _log_train(engine: TrainingEngine, step: int, max_steps: int, task: str) -> None:
    from multi_task_kobart import tracking

    metrics = engine.collect_train_metrics()  # a collective: every rank calls it
    dist.print0(format_progress(step, max_steps, task, metrics))
    if dist.is_rank0():
        tracking.log_metrics(metrics, step=step)


def _log_valid(valid: dict[str, float], step: int) -> None:
    from multi_task_kobart import tracking

    if dist.is_rank0():
        dist.print0(format_validation(step, valid))
        tracking.log_metrics(valid, step=step)


def _print_task_mix(engine: TrainingEngine, micro_steps: int) -> None:
    """Expected vs observed task shares of the run (simultaneous and two_stage mixing)."""
    from multi_task_kobart.data.sampling import format_balance

    sampler = engine.strategy.sampler
    if sampler is None or engine.strategy.name == "sequential" or len(engine.tasks) < 2:
        return
    dist.print0(format_balance(sampler.balance_report(micro_steps)))


# --------------------------------------------------------------------------- checkpoints


class _Checkpointer:
    """Writes full checkpoints on rank 0 and reports them to Ray Train (all ranks report)."""

    def __init__(self, cfg: ExperimentConfig, engine: TrainingEngine, tokenizer: Any) -> None:
        self.cfg, self.engine, self.tokenizer = cfg, engine, tokenizer
        # Every report names the worker group's placement group: a Tune sweep releases it when
        # the trial ends (Ray's own clean-up of a killed run needs the dashboard's state API).
        group = ray.util.get_current_placement_group()
        self.extras = {TRAIN_PLACEMENT_GROUP: group.id.hex()} if group is not None else {}

    def report_metrics(self, metrics: dict[str, Any]) -> None:
        """Report metrics without a checkpoint (every rank; Ray Tune trials see rank 0's)."""
        ray.train.report({**metrics, **self.extras}, checkpoint=None)

    def report(self, metrics: dict[str, Any], step: int,
               after_save: Callable[[Path], None] | None = None) -> None:
        """Rank 0 writes a checkpoint into a temp dir and reports it; other ranks report None.

        ``after_save`` runs on rank 0 while the local copy still exists (final MLflow upload).
        """
        data_state, rng_states = self.engine.gather_rank_states()  # a collective
        reported = {**metrics, **self.extras}
        if not dist.is_rank0():
            ray.train.report(reported, checkpoint=None)
            return
        engine = self.engine
        with tempfile.TemporaryDirectory(prefix="mtk-ckpt-") as tmp:
            save_checkpoint(tmp, model=engine.model, state=engine.checkpoint_state(data_state, metrics),
                            config=self.cfg.to_dict(), tokenizer=self.tokenizer,
                            optimizer=engine.optimizer, scheduler=engine.scheduler,
                            rng_states=rng_states)
            ray.train.report(reported, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"checkpoint_{step:07d}")
            if after_save is not None:
                after_save(Path(tmp))


# --------------------------------------------------------------------------- the loop


def _run_steps(t: TrainingConfig, engine: TrainingEngine, checkpointer: _Checkpointer,
               start: int, resumed: bool, callbacks: list[StepCallback]) -> None:
    """Steps ``[start, max_steps)`` with periodic logging, validation and checkpoints."""
    # Every report of a resumed run says where it resumed (a retried Tune trial shows it).
    resume_info = {"resumed_from_step": start} if resumed else {}
    for step in range(start, t.max_steps):
        for callback in callbacks:
            callback(step, resumed)
        info = engine.train_step(step)
        done = step + 1
        if done % t.log_every == 0 or done == t.max_steps:
            _log_train(engine, done, t.max_steps, info.tasks[-1])
        if done == t.max_steps:
            break  # the final validation and checkpoint happen in _finish
        checkpoint_now = done % t.checkpoint_every == 0
        if checkpoint_now or done % t.eval_every == 0:
            valid = engine.validate()
            _log_valid(valid, done)
            # Every validation is reported (a Tune scheduler acts on these); with a checkpoint
            # when one is due.
            if checkpoint_now:
                checkpointer.report({"step": done, **valid, **resume_info}, done)
            else:
                checkpointer.report_metrics({"step": done, **valid, **resume_info})


def _gather_fingerprints(engine: TrainingEngine) -> dict[str, list[str]]:
    """Every rank's parameter hash and task trace (the hash of the task of every micro-step
    it ran), so the driver can check that DDP kept the weights identical and that all ranks
    drew the same task sequence."""
    own = (parameter_checksum(engine.model), engine.state.task_trace)
    gathered: list[Any] = [own]
    if dist.is_distributed():
        gathered = [None] * dist.get_world_size()
        torch.distributed.all_gather_object(gathered, own)
    return {"param_checksums": [checksum for checksum, _ in gathered],
            "task_traces": [trace for _, trace in gathered]}


def _held_out_evaluation(e: EvaluationConfig, model: torch.nn.Module, tokenizer: Any,
                         prepared_path: str, tasks: list[str], *, max_source_length: int,
                         model_name: str) -> dict[str, Any] | None:
    """Rank 0: generate + score the held-out split; None when the split is absent."""
    from multi_task_kobart.evaluation import evaluate_model, load_examples

    try:
        examples = load_examples(prepared_path, split=e.split, tasks=tasks).by_task
    except ValueError:
        dist.print0(f"[eval] no {e.split!r} rows in {prepared_path}; skipped")
        return None
    report = evaluate_model(model, tokenizer, examples, batch_size=e.batch_size,
                            generation_kwargs=e.generation().kwargs(),
                            limit=e.max_examples_per_task, progress=False,
                            max_source_length=max_source_length, model_name=model_name)
    model.train()
    return report


def _headline(report: dict[str, Any]) -> dict[str, float]:
    """``{"eval/<task>/<metric>": score}`` of the model (baselines left out), finite only."""
    return {f"eval/{task}/{name}": float(value)
            for task, section in report.get("tasks", {}).items()
            for name, value in section.get("metrics", {}).items()
            if isinstance(value, (int, float)) and math.isfinite(value)}


def _finish(cfg: ExperimentConfig, engine: TrainingEngine, checkpointer: _Checkpointer,
            tokenizer: Any, prepared_path: str, tracked: bool, resumed_from: int | None) -> WorkerResult:
    """Final validation, evaluation (rank 0), final checkpoint + report, MLflow model."""
    step = engine.state.step
    valid = engine.validate()
    _log_valid(valid, step)
    initial = {f"initial_{k}": v for k, v in engine.state.initial_metrics.items()}
    metrics: dict[str, Any] = {"step": step, **valid, **initial,
                               **_gather_fingerprints(engine)}
    if resumed_from is not None:
        metrics["resumed_from_step"] = resumed_from
    result = WorkerResult(world_size=dist.get_world_size())
    if dist.is_rank0() and cfg.evaluation.enabled:
        report = _held_out_evaluation(cfg.evaluation, engine.model, tokenizer, prepared_path,
                                      cfg.tasks, max_source_length=cfg.data.max_source_length,
                                      model_name=cfg.run_name)
        if report is not None:
            result.evaluation = _headline(report)
            metrics.update(result.evaluation)
            dist.print0("[eval] " + " ".join(f"{k[5:]}={v:.2f}" for k, v in result.evaluation.items()))
            if tracked:
                _log_evaluation(report, step)

    def register(directory: Path) -> None:
        if tracked:
            result.registered_model = _register_final_model(cfg.tracking, directory)

    checkpointer.report(metrics, step, after_save=register)
    _print_task_mix(engine, cfg.training.max_steps * cfg.training.grad_accum_steps)
    result.metrics = metrics
    return result


def _log_evaluation(report: dict[str, Any], step: int) -> None:
    from multi_task_kobart.evaluation.report import log_report_to_mlflow, write_report

    with tempfile.TemporaryDirectory(prefix="mtk-eval-") as tmp:
        log_report_to_mlflow(report, write_report(report, tmp), step=step)


def _register_final_model(t: TrackingConfig, checkpoint_dir: Path) -> str | None:
    """Log the final model directory and register it under ``tracking.alias``."""
    from multi_task_kobart import tracking
    from multi_task_kobart.serving import PYFUNC_MODEL_PATH

    if not (t.log_model and t.registered_model_name):
        return None
    version = tracking.log_and_register_model(checkpoint_dir, python_model=PYFUNC_MODEL_PATH,
                                              registered_model_name=t.registered_model_name,
                                              alias=t.alias)
    suffix = f"@{t.alias}" if t.alias else f"/{version.version}"
    dist.print0(f"registered models:/{t.registered_model_name}{suffix} (version {version.version})")
    return f"models:/{t.registered_model_name}{suffix}"


def _tracking_run(cfg: ExperimentConfig, run_id: str | None) -> contextlib.AbstractContextManager:
    """The rank-0 MLflow run (the same run again after a resume); a null context elsewhere."""
    if not dist.is_rank0() or not cfg.tracking.enabled:
        return contextlib.nullcontext()
    from multi_task_kobart import tracking

    parent = cfg.tracking.parent_run_id
    if run_id is None and parent:
        # A retried Tune trial that crashed before its first checkpoint continues its own run.
        run_id = tracking.find_child_run(cfg.tracking, parent, cfg.run_name)
    params = None if run_id else cfg.to_dict()  # params are immutable in MLflow: log once
    return tracking.start_run(cfg.tracking, cfg.run_name, params, run_id=run_id,
                              parent_run_id=None if run_id else parent,
                              tags={"mtk.strategy": cfg.training.strategy})


@contextlib.contextmanager
def _resume_directory(checkpoint: Any, run_dir: str) -> Iterator[str | None]:
    """A local copy of the newest intact checkpoint of the run, or None for a fresh start.

    Candidates are Ray's latest checkpoint and every ``checkpoint_<step>`` folder in the run
    folder, newest step first. The folder matters twice: Ray registers a checkpoint only once
    its controller has polled every worker's report (every 2 s), so a worker killed right after
    rank 0 wrote one leaves it on disk but unknown to Ray; and a checkpoint whose files fail
    their checksums (a copy cut short, a disk error) is skipped for the one before it. The
    folder used is printed; with none intact the run stops and says so.
    """
    from multi_task_kobart.training.checkpoint import CorruptCheckpointError, verify_checkpoint

    problems = []
    for candidate in _checkpoints_newest_first(checkpoint, run_dir):
        with candidate.as_directory() as directory:
            try:
                verify_checkpoint(directory)
            except CorruptCheckpointError as error:
                problems.append(str(error))
                dist.print0(f"[resume] skipping {candidate.path}: {error}")
                continue
            if checkpoint is None or candidate.path != checkpoint.path:
                dist.print0(f"[resume] resuming from {candidate.path} (Ray's latest: "
                            f"{checkpoint.path if checkpoint else 'none'})")
            yield directory
            return
    if problems:
        raise CorruptCheckpointError("no intact checkpoint to resume from: " + "; ".join(problems))
    yield None


def _checkpoints_newest_first(checkpoint: Any, run_dir: str) -> list[Any]:
    """Ray's checkpoint (if any) and the run folder's ``checkpoint_*`` folders, newest first."""
    import posixpath

    import pyarrow.fs

    if "://" in run_dir:
        fs, path = pyarrow.fs.FileSystem.from_uri(run_dir)
    else:
        fs, path = pyarrow.fs.LocalFileSystem(), run_dir
    found = {}
    if fs.get_file_info(path).type == pyarrow.fs.FileType.Directory:
        for info in fs.get_file_info(pyarrow.fs.FileSelector(path)):
            if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_"):
                found[info.base_name] = ray.train.Checkpoint(posixpath.join(path, info.base_name), filesystem=fs)
    if checkpoint is not None:
        found[posixpath.basename(checkpoint.path)] = checkpoint
    return [found[name] for name in sorted(found, reverse=True)]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch: a fresh run draws the same numbers every time (a resumed
    one restores the saved states instead)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_func_per_worker(config: dict[str, Any]) -> WorkerResult:
    """Ray Train entry point. ``config``: ``{"experiment": ExperimentConfig.to_dict(),
    "prepared_path": <prepared dataset folder>, "run_dir": <the run's folder or URI>, "in_memory":
    <True when every worker receives whole in-memory datasets, False when each reads its rows
    from the shards>, "step_callbacks": [StepCallback, ...]}``."""
    cfg = ExperimentConfig.from_dict(config["experiment"])
    prepared_path = config["prepared_path"]
    seed_everything(cfg.seed)
    with _resume_directory(ray.train.get_checkpoint(), config["run_dir"]) as resume_dir:
        resumed = resume_dir is not None
        engine, tokenizer = _setup(cfg, prepared_path, bool(config.get("in_memory")), resume_dir)
        if resumed:
            engine.restore(resume_dir, data_hash=engine.state.data_hash)
            dist.print0(f"resumed from step {engine.state.step}")
    if not resumed:
        engine.state.initial_metrics = engine.validate()
    start = engine.state.step
    if start >= cfg.training.max_steps:  # a finished run started again under the same name
        dist.print0(f"run {cfg.run_name!r} already finished at step {start}; nothing to do")
        return WorkerResult(metrics=engine.state.metrics, mlflow_run_id=engine.state.mlflow_run_id,
                            resumed_from_step=start, world_size=dist.get_world_size())
    checkpointer = _Checkpointer(cfg, engine, tokenizer)
    with _tracking_run(cfg, engine.state.mlflow_run_id) as run:
        if run is not None:
            engine.state.mlflow_run_id = run.info.run_id
        if not resumed:
            _log_valid(engine.state.initial_metrics, 0)
        _run_steps(cfg.training, engine, checkpointer, start, resumed,
                   list(config.get("step_callbacks") or []))
        result = _finish(cfg, engine, checkpointer, tokenizer, prepared_path, tracked=run is not None,
                         resumed_from=start if resumed else None)
    result.mlflow_run_id = engine.state.mlflow_run_id
    result.resumed_from_step = start if resumed else None
    return result
