"""What a sweep minimises: the unweighted per-task validation losses, aggregated by a rule.

The weighted training loss is no objective: a trial that halves every task weight halves its
loss without learning anything. The per-task validation losses (``valid_loss/<task>``, the
token-weighted NLL that the engine all-reduces over every rank before it reports) are
comparable across trials whatever weights they train with; ``mean`` averages them, ``worst``
takes the highest (for users who need every task to be good, not the average).

Ray Train hands Tune rank 0's report only; since the losses are all-reduced first, rank 0's
values are the whole run's. :class:`ObjectiveReportCallback` adds the objective to that report.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Literal

from ray.tune.integration.ray_train import TuneReportCallback

#: The key Tune's scheduler, searcher and ``get_best_result`` read.
OBJECTIVE = "objective"
Rule = Literal["mean", "worst"]
RULES: dict[str, Any] = {"mean": statistics.fmean, "worst": max}


@dataclass(frozen=True)
class Objective:
    """``rule`` over ``valid_loss/<task>`` of ``tasks``; lower is better."""

    tasks: tuple[str, ...]
    rule: Rule = "mean"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"objective rule {self.rule!r} is unknown; allowed: {', '.join(RULES)}.")

    def score(self, metrics: dict[str, Any]) -> float | None:
        """The objective of one report; None when the report has no validation losses.

        A diverged run (NaN or infinite loss) scores +inf: schedulers compare with ``<``,
        and NaN would compare false and keep the run alive.
        """
        losses = [metrics.get(f"valid_loss/{task}") for task in self.tasks]
        if any(loss is None for loss in losses):
            return None
        if not all(math.isfinite(loss) for loss in losses):
            return math.inf
        return float(RULES[self.rule](losses))

    def annotate(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """``metrics`` plus ``objective`` (when it can be scored)."""
        score = self.score(metrics)
        return metrics if score is None else {**metrics, OBJECTIVE: score}


class ObjectiveReportCallback(TuneReportCallback):
    """Ray's ``TuneReportCallback`` (rank 0's metrics to Tune) with the objective added."""

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.objective = objective

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        rank0 = self.objective.annotate(dict(metrics[0]))
        super().after_report(run_context, [rank0, *metrics[1:]], checkpoint)
