"""One trial of a sweep: its experiment config, the function trainable, and progress lines.

A trial is a full Ray Train run (``run_training``) of the base config with the trial's sampled
values, named ``<sweep>-<trial id>`` so that a retried trial finds its own checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from multi_task_kobart.config import ExperimentConfig
from multi_task_kobart.training.driver import run_training
from multi_task_kobart.training.worker import TRAIN_PLACEMENT_GROUP
from multi_task_kobart.tuning.objective import OBJECTIVE, Objective, ObjectiveReportCallback
from multi_task_kobart.tuning.space import SearchSpace


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs besides its sampled values (travels to the trial actors)."""

    base: dict[str, Any]  # the resolved experiment config (absolute paths)
    space: SearchSpace
    sweep_name: str
    train_storage: str  # where the trials' Train runs live
    tracking_uri: str | None
    parent_run_id: str | None
    objective: Objective
    step_callbacks: tuple[Any, ...] = ()
    prepared_path: str | None = None  # the sweep's prepared data, when no trial changes it

    def config(self, values: dict[str, Any], trial_id: str) -> ExperimentConfig:
        """The trial's experiment config: the base with ``values``, as an experiment, not a release."""
        raw = self.space.apply(self.base, values)
        raw["name"] = f"{self.sweep_name}-{trial_id}"  # a retry finds its run (and checkpoints)
        raw["run"]["storage_path"] = self.train_storage
        raw["evaluation"]["enabled"] = False
        raw["tracking"].update(log_model=False, registered_model_name=None, alias=None,
                               parent_run_id=self.parent_run_id, tracking_uri=self.tracking_uri)
        return ExperimentConfig.from_dict(raw)


def run_trial(values: dict[str, Any], spec: TrialSpec) -> None:
    """The function trainable: one full training run; Tune hears of it through the callback."""
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    run_training(spec.config(values, trial_id), step_callbacks=spec.step_callbacks,
                 run_callbacks=[ObjectiveReportCallback(spec.objective)], prepared_path=spec.prepared_path)


# --------------------------------------------------------------------------- progress


class SweepProgress(Callback):
    """One line per trial state change (a Tune callback, beside Tune's own status table)."""

    def __init__(self, space: SearchSpace, max_steps: int) -> None:
        self.space, self.max_steps = space, max_steps

    def _values(self, trial: Any) -> str:
        return " ".join(f"{key.split('.')[-1]}={_short(trial.config.get(key))}" for key in self.space.keys)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[sweep] trial {trial.trial_id} started: {self._values(trial)}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        step = result.get("step", 0)
        how = "finished" if step >= self.max_steps else f"stopped early at step {step}"
        print(f"[sweep] trial {trial.trial_id} {how}: {OBJECTIVE}={_short(result.get(OBJECTIVE))} "
              f"({_done(trials, trial) + 1}/{len(trials)} done)", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[sweep] trial {trial.trial_id} failed (no retries left): {trial.error_file}", flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[sweep] trial {trial.trial_id} crashed; retrying from its latest checkpoint", flush=True)


def _done(trials: list, current: Any) -> int:
    """Trials that ended before ``current`` did."""
    return sum(1 for trial in trials if trial is not current and trial.status in ("TERMINATED", "ERROR"))


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ReleaseTrainResources(Callback):
    """Removes an ended trial's Ray Train placement group (a Tune callback).

    A trial that Tune stops is killed with its Train run; Ray Train's clean-up of such a run asks
    the dashboard's state API whether the run's controller still lives, and without a dashboard
    (``include_dashboard=False``) it never learns, so the workers' CPUs stay reserved until the
    sweep's driver exits and later trials wait for them forever. Every report names the group
    (``train_placement_group``); when the trial ends, it is removed here.
    """

    def _release(self, trial: Any) -> None:
        from ray import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

        group = (trial.last_result or {}).get(TRAIN_PLACEMENT_GROUP)
        if not group or placement_group_table().get(group, {}).get("state") in (None, "REMOVED"):
            return
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(group))))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)
