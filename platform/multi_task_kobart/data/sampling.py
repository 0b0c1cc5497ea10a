"""Which task a simultaneous-training step uses: proportional, temperature, uniform,
round-robin, or explicit weights.

``TaskSampler.task_for_step(step)`` is a pure function of ``(seed, step)``: every DDP rank
computes the same task for the same step without communicating, and resuming at step N
needs no saved random state (the checkpoint only stores the step). The per-step random
number comes from SplitMix64 written out here rather than from numpy or ``random``, so the
sequence cannot change under a library upgrade or differ between machines.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any, Literal, Mapping, get_args

from multi_task_kobart.tasks import TASKS, validate_task

#: How the simultaneous strategy mixes tasks (``data.sampling`` in the experiment config).
SamplingStrategy = Literal["proportional", "temperature", "uniform", "round_robin", "weights"]
STRATEGIES: tuple[str, ...] = get_args(SamplingStrategy)
_MASK64 = (1 << 64) - 1


def mixing_weights(sizes: Mapping[str, int], strategy: str = "proportional", *,
                   temperature: float = 2.0, cap: int | None = None,
                   weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Probability of each task per step (tasks with no examples or weight 0 are left out).

    proportional: p ~ min(n, cap); temperature: p ~ min(n, cap) ** (1 / T) (T=1 is
    proportional, large T approaches uniform; the cap stops one huge task from dominating,
    as in T5's examples-proportional mixing); uniform and round_robin: equal shares;
    weights: the given weights, normalised.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"sampling strategy {strategy!r} is not valid; allowed: {', '.join(STRATEGIES)}.")
    for task, size in sizes.items():
        validate_task(task)
        if size < 0:
            raise ValueError(f"task size for {task!r} is {size!r}; sizes must be >= 0.")
    present = [task for task in TASKS if sizes.get(task, 0) > 0]
    if not present:
        raise ValueError(f"no task has examples (sizes={dict(sizes)!r}); nothing to sample.")
    raw = _raw_weights(sizes, present, strategy, temperature, cap, weights)
    total = sum(raw.values())
    return {task: value / total for task, value in raw.items() if value > 0}


def _raw_weights(sizes: Mapping[str, int], present: list[str], strategy: str, temperature: float,
                 cap: int | None, weights: Mapping[str, float] | None) -> dict[str, float]:
    if cap is not None and cap < 1:
        raise ValueError(f"examples cap={cap!r} must be >= 1 (or None for no cap).")
    capped = {task: min(sizes[task], cap) if cap else sizes[task] for task in present}
    if strategy == "proportional":
        return {task: float(n) for task, n in capped.items()}
    if strategy == "temperature":
        if temperature <= 0:
            raise ValueError(f"temperature={temperature!r} must be > 0.")
        return {task: float(n) ** (1.0 / temperature) for task, n in capped.items()}
    if strategy in ("uniform", "round_robin"):
        return {task: 1.0 for task in present}
    return _explicit_weights(weights, present)


def _explicit_weights(weights: Mapping[str, float] | None, present: list[str]) -> dict[str, float]:
    if not weights:
        raise ValueError("strategy 'weights' needs weights={task: weight, ...}.")
    for task, weight in weights.items():
        validate_task(task)
        if weight < 0:
            raise ValueError(f"weight for {task!r} is {weight!r}; weights must be >= 0.")
        if weight > 0 and task not in present:
            raise ValueError(f"task {task!r} has weight {weight} but no examples; tasks with "
                             f"examples: {', '.join(present)}.")
    chosen = {task: float(weights.get(task, 0.0)) for task in present}
    if sum(chosen.values()) <= 0:
        raise ValueError(f"weights {dict(weights)!r} give every task with examples weight 0.")
    return chosen


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def step_uniform(seed: int, step: int) -> float:
    """A uniform number in [0, 1) that depends only on (seed, step)."""
    mixed = _splitmix64(_splitmix64(seed & _MASK64) ^ (step & _MASK64))
    return (mixed >> 11) / float(1 << 53)  # 53 bits: exactly representable as a float


class TaskSampler:
    """Deterministic task choice per training step (see the module docstring)."""

    def __init__(self, sizes: Mapping[str, int], strategy: str = "proportional", *,
                 temperature: float = 2.0, cap: int | None = None,
                 weights: Mapping[str, float] | None = None, seed: int = 0):
        for task in sizes:
            validate_task(task)
        self.sizes = {task: int(sizes[task]) for task in TASKS if task in sizes}
        self.strategy = strategy
        self.temperature = float(temperature)
        self.cap = cap
        self.weights = dict(weights) if weights else None
        self.seed = int(seed)
        self.probabilities = mixing_weights(self.sizes, strategy, temperature=temperature,
                                            cap=cap, weights=weights)
        self.tasks: tuple[str, ...] = tuple(self.probabilities)
        self._cumulative = _cumulative(list(self.probabilities.values()))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], split: str = "train",
                      tasks: list[str] | None = None, **kwargs: Any) -> "TaskSampler":
        """Sizes taken from a prepared dataset's manifest (``counts[split]``)."""
        counts = manifest["counts"].get(split, {})
        return cls({task: n for task, n in counts.items() if tasks is None or task in tasks}, **kwargs)

    def task_for_step(self, step: int) -> str:
        """The task of global step ``step`` (0-based); the same on every rank."""
        if step < 0:
            raise ValueError(f"step={step!r} must be >= 0.")
        if self.strategy == "round_robin":
            return self.tasks[step % len(self.tasks)]
        index = bisect.bisect_right(self._cumulative, step_uniform(self.seed, step))
        return self.tasks[min(index, len(self.tasks) - 1)]

    def tasks_for_steps(self, start: int, stop: int) -> list[str]:
        return [self.task_for_step(step) for step in range(start, stop)]

    def balance_report(self, n_steps: int, start: int = 0) -> dict[str, Any]:
        """Expected vs observed share of each task over steps ``[start, start + n_steps)``."""
        if n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r} must be >= 1.")
        observed = Counter(self.tasks_for_steps(start, start + n_steps))
        rows = {task: {"expected_fraction": p, "observed_fraction": observed[task] / n_steps,
                       "expected_steps": p * n_steps, "observed_steps": observed[task]}
                for task, p in self.probabilities.items()}
        worst = max(abs(r["expected_fraction"] - r["observed_fraction"]) for r in rows.values())
        return {"strategy": self.strategy, "seed": self.seed, "start": start, "n_steps": n_steps,
                "tasks": rows, "max_abs_error": worst}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this sampler (it keeps no per-step state)."""
        return {"sizes": dict(self.sizes), "strategy": self.strategy, "temperature": self.temperature,
                "cap": self.cap, "weights": self.weights, "seed": self.seed}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "TaskSampler":
        state = dict(state)
        return cls(state.pop("sizes"), **state)

    def __repr__(self) -> str:
        shares = ", ".join(f"{task}={p:.3f}" for task, p in self.probabilities.items())
        return f"TaskSampler({self.strategy}, seed={self.seed}: {shares})"


def _cumulative(probabilities: list[float]) -> list[float]:
    total, cumulative = 0.0, []
    for p in probabilities:
        total += p
        cumulative.append(total)
    cumulative[-1] = 1.0  # guard against rounding leaving a gap just below 1
    return cumulative


def format_balance(report: Mapping[str, Any]) -> str:
    """The balance report as a small table."""
    lines = [f"task mix over {report['n_steps']} steps ({report['strategy']}, seed {report['seed']}):",
             f"{'task':<24} {'expected':>9} {'observed':>9}"]
    for task, row in report["tasks"].items():
        lines.append(f"{task:<24} {row['expected_fraction']:>9.3f} {row['observed_fraction']:>9.3f}")
    lines.append(f"max |expected - observed| = {report['max_abs_error']:.4f}")
    return "\n".join(lines)
