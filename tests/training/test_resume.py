"""A run stopped after a checkpoint and started again under the same name continues there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONFIGS
from training_helpers import FailOnceAt

from multi_task_kobart.config import load_config
from multi_task_kobart.training.driver import run_training

pytestmark = pytest.mark.slow


def test_restart_with_the_same_name_resumes_from_the_latest_checkpoint(ray_session, tiny_overrides):
    overrides = [*tiny_overrides, "name=resume-test", "training.max_steps=6", "training.warmup_steps=1",
                 "training.batch_size=8", "training.checkpoint_every=3", "training.eval_every=3",
                 "training.log_every=3", "run.max_failures=0", "evaluation.enabled=false",
                 "tracking.enabled=false"]
    # First attempt: killed at step 4, after the step-3 checkpoint, with no retries left.
    with pytest.raises(Exception, match="injected failure at step 4"):
        run_training(load_config(CONFIGS / "tiny.yaml", overrides), step_callbacks=[FailOnceAt(4)])
    run_dir = Path(tiny_overrides[1].split("=", 1)[1]) / "resume-test"
    assert [p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()] == ["checkpoint_0000003"]

    result = run_training(load_config(CONFIGS / "tiny.yaml", overrides))
    assert result.resumed_from_step == 3
    assert result.metrics["step"] == 6
    assert Path(result.checkpoint_path).name == "checkpoint_0000006"
    state = json.loads((Path(result.checkpoint_path) / "trainer_state.json").read_text())
    assert state["step"] == 6
    # The first attempt's validation before step 1 survives the restart.
    assert "initial_valid_loss" in result.metrics
