"""The embedded default learns: a short 2-worker run on the bundled corpus lowers every
task's validation loss by at least 40%."""

from __future__ import annotations

import pytest
from conftest import CONFIGS

from multi_task_kobart.config import load_config
from multi_task_kobart.tasks import TASKS
from multi_task_kobart.training.driver import run_training

pytestmark = pytest.mark.slow

STEPS = 400


def test_short_run_lowers_every_tasks_validation_loss_by_40_percent(ray_session, tiny_overrides):
    cfg = load_config(CONFIGS / "tiny.yaml", [
        *tiny_overrides, "name=learning-test", f"training.max_steps={STEPS}",
        f"training.checkpoint_every={STEPS}", f"training.eval_every={STEPS}", "training.log_every=100",
        "evaluation.enabled=false", "tracking.enabled=false"])
    result = run_training(cfg)
    drops = {task: 1 - result.metrics[f"valid_loss/{task}"] / result.metrics[f"initial_valid_loss/{task}"]
             for task in TASKS}
    print("validation-loss drop per task:", {task: f"{drop:.0%}" for task, drop in drops.items()})
    assert all(drop >= 0.40 for drop in drops.values()), drops
