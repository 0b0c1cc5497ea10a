"""Helpers for the training tests: a tiny model, synthetic token rows, an injected crash."""

from __future__ import annotations

import functools
import random
import sys
from dataclasses import dataclass

import ray.cloudpickle
import torch

from multi_task_kobart.config import ExperimentConfig
from multi_task_kobart.data.batching import collate
from multi_task_kobart.data.sampling import TaskSampler
from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig
from multi_task_kobart.tasks import TASKS
from multi_task_kobart.training.build import build_engine
from multi_task_kobart.training.engine import TrainingEngine
from multi_task_kobart.training.streams import TaskRows

VOCAB = 64


def synthetic_rows(task: str, n: int, seed: int = 0) -> TaskRows:
    """Rows whose target is a task-specific shift of the source tokens (learnable, tiny)."""
    rng = random.Random(f"{seed}:{task}")
    shift = TASKS.index(task) + 1
    inputs, labels = [], []
    for _ in range(n):
        tokens = [rng.randint(7, VOCAB - 1) for _ in range(rng.randint(3, 10))]
        inputs.append([0, *tokens, 1])
        labels.append([7 + (t - 7 + shift) % (VOCAB - 7) for t in tokens] + [1])
    return TaskRows(task, inputs, labels)


def tiny_model(seed: int = 0, **overrides) -> MultiTaskKoBART:
    torch.manual_seed(seed)
    return MultiTaskKoBART(MultiTaskKoBARTConfig.tiny(VOCAB, dropout=0.0, **overrides)).train()


def make_config(**training) -> ExperimentConfig:
    tasks = training.pop("tasks", list(TASKS))
    defaults = {"max_steps": 20, "batch_size": 8, "warmup_steps": 2, "lr": 3e-3, "eval_batches": 2}
    return ExperimentConfig.from_dict({"tasks": tasks, "training": {**defaults, **training}})


def make_engine(cfg: ExperimentConfig, model: MultiTaskKoBART | None = None) -> TrainingEngine:
    """A single-process engine over synthetic rows (what a Ray worker builds, minus Ray)."""
    model = model or tiny_model(cfg.seed)
    train = {task: synthetic_rows(task, 64) for task in cfg.tasks}
    valid = {task: synthetic_rows(task, 16, seed=1) for task in cfg.tasks}
    sampler = TaskSampler({task: 64 for task in cfg.tasks}, "uniform", seed=cfg.seed)
    return build_engine(cfg, model, train_rows=train, valid_rows=valid,
                        collate_fn=functools.partial(collate, pad_id=3), sampler=sampler,
                        device=torch.device("cpu"))


def batch_of(task: str, n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    rows = synthetic_rows(task, n, seed)
    return collate(rows.rows(range(n)), pad_id=3)


def snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def unchanged(before: list[torch.Tensor], params) -> bool:
    return all(torch.equal(a, b.detach()) for a, b in zip(before, params))


class InjectedFailure(RuntimeError):
    """The crash :class:`FailOnceAt` raises inside a training worker."""


@dataclass(frozen=True)
class FailOnceAt:
    """A step callback that crashes every worker at ``step`` of a fresh start (never after a
    resume, so Ray's restart from the latest checkpoint gets through)."""

    step: int

    def __call__(self, step: int, resumed: bool) -> None:
        if step == self.step and not resumed:
            raise InjectedFailure(f"injected failure at step {step} (test callback)")


@dataclass(frozen=True)
class WaitToBeKilled:
    """A step callback that, on a fresh start, stops worker ``rank`` before ``step`` and writes
    its process id to ``pid_file``, so that the test kills it from outside (``os.kill``) the way
    a node loses a process: no exception, no clean-up. Raises if nobody kills it in time."""

    step: int
    rank: int
    pid_file: str
    timeout_s: float = 120.0

    def __call__(self, step: int, resumed: bool) -> None:
        import os
        import time

        from multi_task_kobart.training import dist

        if step != self.step or resumed or dist.get_rank() != self.rank:
            return
        partial = f"{self.pid_file}.tmp"
        with open(partial, "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(partial, self.pid_file)
        time.sleep(self.timeout_s)
        raise InjectedFailure(f"worker {self.rank} was not killed within {self.timeout_s} s")


# Ray pickles the callback to send it to the workers, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
