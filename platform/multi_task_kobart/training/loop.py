"""``train_func_per_worker``: the Ray Train worker loop (the only module that calls ``ray.train``).

Shape of one run, on every rank::

    config -> tokenizer, model, this rank's shard of every task (token ids, in memory)
    -> engine (DDP, optimizer, schedule) -> resume from ray.train.get_checkpoint() if any
    -> for step in [start, max_steps): train; log / validate / checkpoint on schedule
    -> final validation, rank-0 evaluation on the held-out split, final checkpoint + report

Rules that keep DDP and Ray Train happy: every rank runs the same steps and reaches the
same collectives (metric all-reduces, ``ray.train.report``) at the same points; only rank 0
writes checkpoints, prints and talks to MLflow.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import ray.train
import torch

from multi_task_kobart.config import ExperimentConfig
from multi_task_kobart.training import dist
from multi_task_kobart.training.checkpoint import parameter_checksum
from multi_task_kobart.training.engine import TrainingEngine
from multi_task_kobart.training.streams import TaskRows
from multi_task_kobart.training.worker_setup import (build_collate, build_model, build_planner,
                                                     build_sampler, final_evaluation,
                                                     format_progress, load_worker_tokenizer)

_READ_BATCH = 4096


class InjectedFailure(RuntimeError):
    """Raised by ``training.fail_at_step`` to exercise recovery from a worker crash."""


def _materialise(shard: Any, task: str, by_rank: bool) -> TaskRows:
    """This rank's rows of one dataset, read once into lists of token ids.

    ``by_rank``: the iterator yields every row (an in-memory dataset replicated to all
    workers); rows are ordered by their stable id and rank r keeps every world_size-th
    row from r, so the split is identical on every run and a resumed run's data position
    points at the same rows.
    """
    ids: list[str] = []
    input_ids: list[list[int]] = []
    labels: list[list[int]] = []
    if shard is not None:
        for batch in shard.iter_batches(batch_size=_READ_BATCH, batch_format="pyarrow"):
            ids.extend(batch.column("id").to_pylist())
            input_ids.extend(batch.column("input_ids").to_pylist())
            labels.extend(batch.column("labels").to_pylist())
    if by_rank and ids:
        order = sorted(range(len(ids)), key=ids.__getitem__)[dist.get_rank()::dist.get_world_size()]
        input_ids, labels = [input_ids[i] for i in order], [labels[i] for i in order]
    return TaskRows(task, input_ids, labels)


def _shard_or_none(name: str) -> Any:
    try:
        return ray.train.get_dataset_shard(name)
    except KeyError:  # e.g. a task without validation rows
        return None


def _materialise_all(tasks: list[str], by_rank: bool) -> tuple[dict[str, TaskRows], dict[str, TaskRows]]:
    """Train and valid rows of every task (read concurrently: each dataset is a separate
    Ray Data execution with its own start-up latency)."""
    names = [(split, task) for split in ("train", "valid") for task in tasks]
    shards = {name: _shard_or_none(f"{name[0]}_{name[1]}") for name in names}
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        rows = dict(zip(names, pool.map(lambda name: _materialise(shards[name], name[1], by_rank),
                                        names)))
    return ({task: rows["train", task] for task in tasks},
            {task: rows["valid", task] for task in tasks})


def _report(engine: TrainingEngine, metrics: dict[str, Any], step: int,
            after_save: Callable[[Path], None] | None = None) -> None:
    """Rank 0 writes a checkpoint into a temp dir and reports it; other ranks report None.

    ``after_save`` runs on rank 0 while the local copy still exists (final MLflow upload).
    """
    data_state = engine.gather_data_state()
    if not dist.is_rank0():
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="mtk-ckpt-") as tmp:
        engine.save(tmp, data_state, metrics)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=f"checkpoint_{step:07d}")
        if after_save is not None:
            after_save(Path(tmp))


def _log_train(engine: TrainingEngine, step: int, task: str) -> None:
    from multi_task_kobart import tracking

    metrics = engine.collect_train_metrics()  # a collective: every rank calls it
    dist.print0(format_progress(step, engine.cfg.training.max_steps, task, metrics))
    if dist.is_rank0():
        tracking.log_metrics(metrics, step=step)


def _log_valid(valid: dict[str, float], step: int) -> None:
    from multi_task_kobart import tracking

    if not dist.is_rank0():
        return
    per_task = " ".join(f"{k.split('/', 1)[1]}={v:.3f}" for k, v in valid.items() if "/" in k)
    dist.print0(f"[valid] step {step}: loss {valid.get('valid_loss', float('nan')):.4f} ({per_task})")
    tracking.log_metrics(valid, step=step)


def _maybe_fail(cfg: ExperimentConfig, step: int, resumed: bool) -> None:
    # Only a fresh start fails, so the automatic restart from a checkpoint gets through.
    if cfg.training.fail_at_step == step and not resumed:
        raise InjectedFailure(f"training.fail_at_step={step}: injected failure for testing")


def _run_steps(engine: TrainingEngine, start: int, resumed: bool) -> None:
    """Steps ``[start, max_steps)`` with periodic logging, validation and checkpoints."""
    t = engine.cfg.training
    for step in range(start, t.max_steps):
        _maybe_fail(engine.cfg, step, resumed)
        info = engine.train_step(step)
        done = step + 1
        if done % t.log_every == 0 or done == t.max_steps:
            _log_train(engine, done, info["tasks"][-1])
        if done == t.max_steps:
            break  # the final validation and checkpoint happen in _finish
        checkpoint_now = done % t.checkpoint_every == 0
        if checkpoint_now or done % t.eval_every == 0:
            valid = engine.validate()
            _log_valid(valid, done)
            if checkpoint_now:
                _report(engine, {"step": done, **valid}, done)


def _gather_checksums(engine: TrainingEngine) -> list[str]:
    """Every rank's parameter hash, so the driver can check that DDP kept them identical."""
    own = parameter_checksum(engine.model)
    if not dist.is_distributed():
        return [own]
    gathered: list[Any] = [None] * dist.get_world_size()
    torch.distributed.all_gather_object(gathered, own)
    return gathered


def _finish(engine: TrainingEngine, prepared_path: str | None, tracked: bool) -> dict[str, Any]:
    """Final validation, evaluation (rank 0), final checkpoint + report, MLflow model."""
    cfg, step = engine.cfg, engine.state.step
    valid = engine.validate()
    _log_valid(valid, step)
    initial = {f"initial_{k}": v for k, v in engine.state.initial_metrics.items()}
    metrics: dict[str, Any] = {"step": step, **valid, **initial,
                               "param_checksums": _gather_checksums(engine)}
    outcome: dict[str, Any] = {"evaluation": None, "registered_model": None}
    if dist.is_rank0() and cfg.evaluation.enabled and prepared_path:
        evaluation = final_evaluation(engine, prepared_path)
        if evaluation is not None:
            metrics.update(evaluation["headline"])
            outcome["evaluation"] = evaluation
            if tracked:
                _log_evaluation(evaluation["report"], step)

    def register(directory: Path) -> None:
        if tracked:
            outcome["registered_model"] = _register_final_model(cfg, directory)

    _report(engine, metrics, step, after_save=register)
    outcome["metrics"] = metrics
    if outcome["evaluation"] is not None:
        outcome["evaluation"] = outcome["evaluation"]["headline"]  # the full report is in MLflow
    return outcome


def _log_evaluation(report: dict[str, Any], step: int) -> None:
    from multi_task_kobart.evaluation.report import log_report_to_mlflow, write_report

    with tempfile.TemporaryDirectory(prefix="mtk-eval-") as tmp:
        log_report_to_mlflow(report, write_report(report, tmp), step=step)


def _register_final_model(cfg: ExperimentConfig, checkpoint_dir: Path) -> str | None:
    """Log the final model directory and register it under ``tracking.alias``."""
    from multi_task_kobart import tracking

    t = cfg.tracking
    if not (t.log_model and t.registered_model_name):
        return None
    version = tracking.log_and_register_model(checkpoint_dir, registered_model_name=t.registered_model_name,
                                              alias=t.alias)
    suffix = f"@{t.alias}" if t.alias else f"/{version.version}"
    dist.print0(f"registered models:/{t.registered_model_name}{suffix} (version {version.version})")
    return f"models:/{t.registered_model_name}{suffix}"


def _tracking_run(cfg: ExperimentConfig, run_id: str | None) -> contextlib.AbstractContextManager:
    """The rank-0 MLflow run (the same run again after a resume); a null context elsewhere."""
    if not dist.is_rank0() or not cfg.tracking.enabled:
        return contextlib.nullcontext()
    from multi_task_kobart import tracking

    params = None if run_id else cfg.to_dict()  # params are immutable in MLflow: log once
    return tracking.start_run(cfg.tracking, cfg.run_name, params, run_id=run_id,
                              tags={"mtk.strategy": cfg.training.strategy})


def _build_engine(cfg: ExperimentConfig, shard_by_rank: bool) -> TrainingEngine:
    device = dist.choose_device(cfg.scaling.use_gpu)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tokenizer = load_worker_tokenizer(cfg)
    model = build_model(cfg, tokenizer)
    started = time.perf_counter()
    train_rows, valid_rows = _materialise_all(cfg.tasks, shard_by_rank)
    dist.print0(f"[data] {sum(map(len, train_rows.values()))} train / "
                f"{sum(map(len, valid_rows.values()))} valid rows on rank 0, read in "
                f"{time.perf_counter() - started:.1f}s")
    return TrainingEngine(cfg, model, train_rows=train_rows, valid_rows=valid_rows,
                          planner=build_planner(cfg), collate=build_collate(tokenizer),
                          sampler=build_sampler(cfg, train_rows, device), device=device,
                          tokenizer=tokenizer)


def train_func_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point. ``config``: ``{"experiment": ExperimentConfig.to_dict(),
    "prepared_path": <prepared dataset folder, for the held-out evaluation>,
    "shard_by_rank": <True when every worker receives whole in-memory datasets>}``."""
    cfg = ExperimentConfig.from_dict(config["experiment"])
    torch.manual_seed(cfg.seed)
    engine = _build_engine(cfg, bool(config.get("shard_by_rank", False)))
    checkpoint = ray.train.get_checkpoint()
    resumed = checkpoint is not None
    if resumed:
        with checkpoint.as_directory() as directory:
            engine.restore(directory)
        dist.print0(f"resumed from step {engine.state.step} ({checkpoint.path})")
    else:
        engine.state.initial_metrics = engine.validate()
    start = engine.state.step
    if start >= cfg.training.max_steps:  # a finished run started again under the same name
        dist.print0(f"run {cfg.run_name!r} already finished at step {start}; nothing to do")
        return {"metrics": engine.state.metrics, "evaluation": None, "registered_model": None,
                "mlflow_run_id": engine.state.mlflow_run_id, "world_size": dist.get_world_size(),
                "resumed_from_step": start}
    with _tracking_run(cfg, engine.state.mlflow_run_id) as run:
        if run is not None:
            engine.state.mlflow_run_id = run.info.run_id
        if not resumed:
            _log_valid(engine.state.initial_metrics, 0)
        _run_steps(engine, start, resumed)
        outcome = _finish(engine, config.get("prepared_path"), tracked=run is not None)
    outcome.update({"mlflow_run_id": engine.state.mlflow_run_id, "world_size": dist.get_world_size(),
                    "resumed_from_step": start if resumed else None})
    return outcome
