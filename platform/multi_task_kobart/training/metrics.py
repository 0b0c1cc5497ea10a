"""Training metrics between two log points, summed over ranks, and the progress line.

The window adds up per-task ``loss x tokens`` and token counts locally, and turns them into
token-weighted means only after an all-reduce, so the logged loss is the loss over every
rank's tokens (a mean of per-rank means would weigh a rank with short rows too much).
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from multi_task_kobart.training import dist


class TrainMetricsWindow:
    """Per-task sums between two log points (loss x tokens, tokens, all tokens, time)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.nll: dict[str, float] = defaultdict(float)
        self.tokens: dict[str, int] = defaultdict(int)
        self.all_tokens, self.steps, self.grad_norm = 0, 0, 0.0
        self.started = time.perf_counter()

    def add(self, task: str, nll: float, n_tokens: int, all_tokens: int) -> None:
        """One micro-batch: its mean NLL over ``n_tokens`` targets, ``all_tokens`` source+target."""
        self.nll[task] += nll * n_tokens
        self.tokens[task] += n_tokens
        self.all_tokens += all_tokens

    def end_step(self, grad_norm: float) -> None:
        self.steps += 1
        self.grad_norm = grad_norm

    def reduce(self, tasks: list[str], device: torch.device, lr: float,
               weights: dict[str, float]) -> dict[str, float]:
        """Metrics over all ranks since the last reset (a collective: every rank calls it)."""
        values = [x for t in tasks for x in (self.nll[t], float(self.tokens[t]))]
        totals = dist.all_reduce_sum(values + [float(self.all_tokens)], device)
        seconds = max(time.perf_counter() - self.started, 1e-9)
        metrics = {"lr": lr, "grad_norm": self.grad_norm, "tokens_per_s": totals[-1] / seconds,
                   "step_time_s": seconds / max(self.steps, 1)}
        for i, task in enumerate(tasks):
            if totals[2 * i + 1] > 0:
                metrics[f"train_loss/{task}"] = totals[2 * i] / totals[2 * i + 1]
        seen = [metrics[k] for k in metrics if k.startswith("train_loss/")]
        if seen:
            metrics["train_loss"] = sum(seen) / len(seen)
        metrics.update({f"loss_weight/{task}": w for task, w in weights.items()})
        self.reset()
        return metrics


def format_progress(step: int, max_steps: int, task: str, metrics: dict[str, float]) -> str:
    """One readable progress line (rank 0 prints it)."""
    per_task = " ".join(f"{k.split('/', 1)[1][:5]}={v:.3f}" for k, v in metrics.items()
                        if k.startswith("train_loss/"))
    return (f"step {step:>6}/{max_steps} | task {task:<22} | loss {metrics.get('train_loss', float('nan')):.4f}"
            f" ({per_task}) | lr {metrics.get('lr', 0.0):.2e} | {metrics.get('tokens_per_s', 0.0):,.0f} tok/s"
            f" | {1000 * metrics.get('step_time_s', 0.0):.0f} ms/step")


def format_validation(step: int, valid: dict[str, float]) -> str:
    """The validation line: mean loss and each task's."""
    per_task = " ".join(f"{k.split('/', 1)[1]}={v:.3f}" for k, v in valid.items() if "/" in k)
    return f"[valid] step {step}: loss {valid.get('valid_loss', float('nan')):.4f} ({per_task})"
