"""ASHA on optimizer steps, with its rungs rebuilt when a sweep resumes.

Two things about Ray's ``ASHAScheduler`` shape this file:

- It measures progress in ``time_attr``. Tune's ``training_iteration`` restarts at 1 when a
  crashed trial is retried (the retry's Train run resumes at its checkpoint step, but Tune counts
  reports afresh), so rungs are placed on our ``step`` instead, which survives retries.
- Its recorded rung values are not part of Tune's saved experiment state: after
  ``Tuner.restore`` it starts empty, and the first resumed trial to reach a rung would pass it
  unopposed. :class:`ResumableASHA` replays the finished trials' saved results into the rungs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler

from multi_task_kobart.config import TrainingConfig


class ResumableASHA(ASHAScheduler):
    """``ASHAScheduler`` that re-records a restored trial's past results in its bracket."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        if trial.status != "TERMINATED":  # only restored, finished trials have results to replay
            return
        results = Path(trial.path, "result.json")
        if not results.is_file():
            return
        bracket = self._trial_info[trial.trial_id]
        for line in results.read_text().splitlines():
            row = json.loads(line)
            if self._time_attr in row and self._metric in row:
                bracket.on_result(trial, row[self._time_attr], self._metric_op * row[self._metric])


def build_asha(t: TrainingConfig, grace_validations: int, reduction_factor: int) -> ResumableASHA:
    """ASHA whose rungs sit at validation steps: the first after ``grace_validations`` of them."""
    every = min(t.eval_every, t.checkpoint_every)
    return ResumableASHA(time_attr="step", max_t=t.max_steps, grace_period=min(grace_validations * every, t.max_steps),
                         reduction_factor=reduction_factor)
