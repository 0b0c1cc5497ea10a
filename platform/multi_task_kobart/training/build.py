"""From config to parts: model, batching, task sampler, strategy, optimizer and the engine.

Every builder takes the config section it reads (not the whole experiment), so what a part
depends on is visible in its signature. :func:`build_engine` is the one place that reads
several sections and composes the :class:`TrainingEngine`. Plain Python/torch, no Ray.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import torch
from torch import nn

from multi_task_kobart.config import DataConfig, ExperimentConfig, ModelConfig, TrainingConfig
from multi_task_kobart.data.batching import collate, length_grouped_batches
from multi_task_kobart.data.sampling import TaskSampler
from multi_task_kobart.training import dist
from multi_task_kobart.training.engine import TrainingEngine
from multi_task_kobart.training.objective import TaskObjective, build_loss_weighting
from multi_task_kobart.training.schedule import cosine_with_warmup
from multi_task_kobart.training.strategies import Strategy
from multi_task_kobart.training.streams import BatchPlanner, BatchStream, Collate, TaskRows, fixed_batches

#: Parameters whose names contain one of these get no weight decay.
_NO_DECAY_HINTS = ("bias", "layer_norm", "layernorm", "norm.weight", "log_vars")
#: Stream seeds are spread apart per task so no two tasks shuffle alike.
_TASK_SEED_STRIDE = 7919


def build_model(m: ModelConfig, tasks: list[str], tokenizer: Any | None = None) -> nn.Module:
    """A fresh model from the preset, KoBART/BART weights, or a MultiTaskKoBART checkpoint."""
    from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig

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
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}; use the tokenizer the model was built for.")
    missing = [task for task in tasks if task not in model.config.tasks]
    if missing:
        raise ValueError(f"model.pretrained={m.pretrained!r} has no decoder for {missing}; "
                         f"it has {list(model.config.tasks)}.")
    if m.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model.train()


def build_planner(t: TrainingConfig) -> BatchPlanner:
    """Length-aware batches with the configured size and token budget.

    ``group_by_length=false`` sorts windows of a single batch, i.e. plain random batches.
    """
    window = None if t.group_by_length else t.batch_size

    def planner(lengths: list[tuple[int, int]], seed: int, epoch: int) -> list[list[int]]:
        return length_grouped_batches(lengths, t.batch_size, max_tokens=t.max_tokens, seed=seed,
                                      epoch=epoch, window=window)

    return planner


def build_collate(pad_id: int) -> Collate:
    return functools.partial(collate, pad_id=pad_id)


def build_sampler(d: DataConfig, manifest: Mapping[str, Any], tasks: list[str], seed: int,
                  state: Mapping[str, Any] | None = None) -> TaskSampler:
    """The shared-seed task sampler over the prepared train split's row counts (read from the
    manifest, so every rank builds the identical sampler without communicating), or the one
    saved in a checkpoint (``state``): a resumed run draws the task sequence it would have drawn."""
    if state:
        return TaskSampler.from_state_dict(state)
    return TaskSampler.from_manifest(manifest, "train", tasks, strategy=d.sampling,
                                     temperature=d.temperature, cap=d.sampling_cap,
                                     weights=d.sampling_weights or None, seed=seed)


def build_strategy(t: TrainingConfig, tasks: list[str], sampler: TaskSampler | None) -> Strategy:
    return Strategy(name=t.strategy, tasks=tuple(tasks), max_steps=t.max_steps,
                    grad_accum_steps=t.grad_accum_steps, sampler=sampler,
                    stage_one_steps=t.resolved_stage_one_steps if t.strategy == "two_stage" else 0,
                    freeze_encoder=t.freeze_encoder)


def build_optimizer(module: nn.Module, *, lr: float, weight_decay: float,
                    betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW over every parameter (frozen ones too: they are skipped while their grad is None,
    and a later unfreeze needs no new optimizer); no weight decay on biases, norms, loss weights."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        (no_decay if any(hint in name.lower() for hint in _NO_DECAY_HINTS) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (CPU and CUDA) updates all parameters of a group in one pass; the default
    # per-parameter loop costs ~0.3 s per step at KoBART-base size on a 2-core CPU.
    device = next(module.parameters()).device
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type in ("cpu", "cuda"))


def build_engine(cfg: ExperimentConfig, model: nn.Module, *, train_rows: dict[str, TaskRows],
                 valid_rows: dict[str, TaskRows], collate_fn: Collate, sampler: TaskSampler | None,
                 device: torch.device) -> TrainingEngine:
    """Compose the engine: objective, optimizer, schedule, strategy and the batch streams."""
    t = cfg.training
    weighting = build_loss_weighting(t.loss_weighting, cfg.tasks, t.task_weights)
    router_weight = t.router_loss_weight if cfg.model.router else 0.0
    objective = TaskObjective(model, weighting, router_weight, t.label_smoothing).to(device)
    optimizer = build_optimizer(objective, lr=t.lr, weight_decay=t.weight_decay, betas=t.betas)
    scheduler = cosine_with_warmup(optimizer, warmup_steps=t.warmup_steps, max_steps=t.max_steps,
                                   min_lr_ratio=t.min_lr_ratio)
    planner = build_planner(t)
    streams = {task: BatchStream(train_rows[task], planner, collate_fn,
                                 seed=cfg.seed + _TASK_SEED_STRIDE * i)
               for i, task in enumerate(cfg.tasks)}
    valid_batches = {task: fixed_batches(valid_rows[task], planner, collate_fn, cfg.seed, t.eval_batches)
                     for task in cfg.tasks if task in valid_rows}
    return TrainingEngine(objective, optimizer, scheduler, build_strategy(t, cfg.tasks, sampler),
                          streams, valid_batches, device=device, max_grad_norm=t.max_grad_norm,
                          autocast_dtype=dist.choose_autocast_dtype(device, t.precision))
