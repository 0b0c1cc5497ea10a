"""Builders the worker loop needs: tokenizer, model, batch planner, collate, task sampler,
the end-of-run evaluation and the progress line. Plain Python/torch, no Ray.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import torch

from multi_task_kobart.config import ExperimentConfig
from multi_task_kobart.training import dist
from multi_task_kobart.training.streams import BatchPlanner, Collate, TaskRows


def load_worker_tokenizer(cfg: ExperimentConfig) -> Any:
    from multi_task_kobart.tokenizer import load_tokenizer

    return load_tokenizer(cfg.data.tokenizer)


def build_model(cfg: ExperimentConfig, tokenizer: Any | None = None) -> torch.nn.Module:
    """A fresh model from the preset, KoBART/BART weights, or a MultiTaskKoBART checkpoint."""
    from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig

    m = cfg.model
    overrides: dict[str, Any] = {"adapter_rank": m.adapter_rank, "router": m.router}
    if m.dropout is not None:
        overrides["dropout"] = m.dropout
    if m.pretrained and MultiTaskKoBARTConfig.is_saved_in(m.pretrained):
        model = MultiTaskKoBART.from_pretrained(m.pretrained)  # its own architecture wins
    elif m.pretrained:
        model = MultiTaskKoBART.from_bart(m.pretrained, **overrides)
    else:
        if tokenizer is None:
            raise ValueError("build_model needs the tokenizer (for vocab_size) when "
                             "model.pretrained is not set.")
        model = MultiTaskKoBART(MultiTaskKoBARTConfig.from_preset(m.preset, len(tokenizer), **overrides))
    _check_vocab(model, tokenizer)
    missing = [task for task in cfg.tasks if task not in model.config.tasks]
    if missing:
        raise ValueError(f"model.pretrained={m.pretrained!r} has no decoder for {missing}; "
                         f"it has {list(model.config.tasks)}.")
    if m.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model.train()


def _check_vocab(model: torch.nn.Module, tokenizer: Any | None) -> None:
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}; use the tokenizer the model was built for.")


def build_planner(cfg: ExperimentConfig) -> BatchPlanner:
    """Length-aware batches (``data.batching``) with the configured size and token budget.

    ``training.group_by_length=false`` sorts windows of a single batch, i.e. plain random batches.
    """
    from multi_task_kobart.data.batching import length_grouped_batches

    t = cfg.training
    window = None if t.group_by_length else t.batch_size

    def planner(lengths: list[tuple[int, int]], seed: int, epoch: int) -> list[list[int]]:
        return length_grouped_batches(lengths, t.batch_size, max_tokens=t.max_tokens, seed=seed,
                                      epoch=epoch, window=window)

    return planner


def build_collate(tokenizer: Any) -> Collate:
    from multi_task_kobart.data.batching import collate

    return functools.partial(collate, pad_id=tokenizer.pad_token_id)


def build_sampler(cfg: ExperimentConfig, train_rows: dict[str, TaskRows],
                  device: torch.device) -> Any:
    """The shared-seed task sampler; sizes are the global row counts (summed over ranks),
    so every rank builds the identical sampler."""
    from multi_task_kobart.data.sampling import TaskSampler

    local = [float(len(train_rows[task])) for task in cfg.tasks]
    sizes = dist.all_reduce_sum(local, device)
    return TaskSampler({task: int(n) for task, n in zip(cfg.tasks, sizes)}, cfg.data.sampling,
                       temperature=cfg.data.temperature, cap=cfg.data.sampling_cap,
                       weights=cfg.data.sampling_weights or None, seed=cfg.seed)


def read_split_rows(prepared_path: str | Path, split: str, tasks: list[str]) -> dict[str, list[dict]]:
    """Rows of one split per task (text, answers, ids) for the evaluation; absent tasks skipped."""
    from multi_task_kobart.data.loading import available_tasks, read_task_table

    present = available_tasks(prepared_path, split)
    return {task: read_task_table(prepared_path, split, task).to_pylist()
            for task in tasks if task in present}


def final_evaluation(engine: Any, prepared_path: str | Path) -> dict[str, Any] | None:
    """Rank 0: generate + score the held-out split; None when the split is absent."""
    from multi_task_kobart.evaluation import evaluate_model

    cfg = engine.cfg
    examples = {task: rows for task, rows in
                read_split_rows(prepared_path, cfg.evaluation.split, cfg.tasks).items() if rows}
    if not examples:
        dist.print0(f"[eval] no {cfg.evaluation.split!r} split in {prepared_path}; skipped")
        return None
    report = evaluate_model(
        engine.model, engine.tokenizer, examples, batch_size=cfg.evaluation.batch_size,
        generation_kwargs={"num_beams": cfg.evaluation.num_beams,
                           "max_new_tokens": cfg.evaluation.max_new_tokens},
        limit=cfg.evaluation.max_examples_per_task, progress=False,
        max_source_length=cfg.data.max_source_length, model_name=cfg.run_name)
    engine.model.train()
    flat = model_scores(report)
    dist.print0("[eval] " + " ".join(f"{k[5:]}={v:.2f}" for k, v in flat.items()))
    return {"report": report, "headline": flat}


def model_scores(report: dict[str, Any]) -> dict[str, float]:
    """``{"eval/<task>/<metric>": score}`` of the model (baselines left out), finite only."""
    flat = {}
    for task, section in report.get("tasks", {}).items():
        for name, value in section.get("metrics", {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                flat[f"eval/{task}/{name}"] = float(value)
    return flat


def format_progress(step: int, max_steps: int, task: str, metrics: dict[str, float]) -> str:
    """One readable progress line (rank 0 prints it)."""
    per_task = " ".join(f"{k.split('/', 1)[1][:5]}={v:.3f}" for k, v in metrics.items()
                        if k.startswith("train_loss/"))
    return (f"step {step:>6}/{max_steps} | task {task:<22} | loss {metrics.get('train_loss', float('nan')):.4f}"
            f" ({per_task}) | lr {metrics.get('lr', 0.0):.2e} | {metrics.get('tokens_per_s', 0.0):,.0f} tok/s"
            f" | {1000 * metrics.get('step_time_s', 0.0):.0f} ms/step")
