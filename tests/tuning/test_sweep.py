"""One small real sweep (Ray Tune over Ray Train, CPU) serves every test here.

Four trials of the tiny model (1 worker each, one at a time, 24 steps, a validation every 6),
a grid over the learning rate with one deliberately bad rate, ASHA with ``grace_period=1``.
The sweep starts as a user would (``tune/sweep.py`` in a subprocess on the session's Ray) and
is interrupted with SIGINT after two trials; started again (in-process, with a crash injected
into the first training run that reaches step 9, and ``--train-best``), it runs the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from multi_task_kobart.config import load_config, load_config_dict
from multi_task_kobart.tuning.results import BEST_CONFIG, PLOT_PNG, RESULTS_CSV
from multi_task_kobart.tuning.space import parse_space
from multi_task_kobart.tuning.sweep import SweepSettings, run_sweep

from tuning_helpers import CrashOnce

ROOT = Path(__file__).resolve().parents[2]
NAME = "mini"
MAX_STEPS, EVERY, CRASH_STEP = 24, 6, 9
BAD_LR = 5.0
# The bad rate second: ASHA compares it with the first trial's validations at rung 1.
SPACE = {"training.lr": {"grid": [3.0e-3, BAD_LR, 2.0e-3, 1.0e-3]},
         "training.task_weights.style_transfer": {"uniform": [0.5, 2.0]}}
MODEL_NAME = "sweep-test-model"

pytestmark = pytest.mark.slow


def _overrides(tmp: Path, prepared: Path) -> list[str]:
    return [f"data.prepared_dir={prepared}", f"run.storage_path={tmp / 'runs'}",
            f"tracking.tracking_uri={tmp / 'mlflow'}", f"tracking.registered_model_name={MODEL_NAME}",
            "model.preset=tiny", "scaling.num_workers=1", f"training.max_steps={MAX_STEPS}",
            "training.batch_size=8", "training.warmup_steps=2", f"training.eval_every={EVERY}",
            f"training.checkpoint_every={EVERY}", f"training.log_every={EVERY}", "training.eval_batches=1",
            # A worker crash fails the Train run; Tune then retries the trial, whose Train run
            # (named from the trial id) resumes from its checkpoint.
            "run.max_failures=0",
            "evaluation.max_examples_per_task=4", "evaluation.batch_size=4", "evaluation.max_new_tokens=8"]


def _first_half(tmp: Path, overrides: list[str], space_file: Path, ray_address: str) -> tuple[list[str], str]:
    """``tune/sweep.py`` until two trials have ended, then SIGINT; returns their ids and the output."""
    command = [sys.executable, str(ROOT / "tune" / "sweep.py"), "--config", str(ROOT / "configs" / "tiny.yaml"),
               "--space", str(space_file), "--name", NAME, "--num-samples", "1", "--grace-period", "1",
               "--max-concurrent-trials", "1", "--set", *overrides]
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    ended, lines = [], []
    deadline = time.monotonic() + 400
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[sweep] trial ") and (" finished: " in line or " stopped early " in line):
            ended.append(line.split()[2])
            if len(ended) == 2:
                process.send_signal(signal.SIGINT)
                break
        if time.monotonic() > deadline:
            break
    lines.extend(process.stdout)  # the rest, until it exits
    process.wait(timeout=120)
    output = "".join(lines)
    assert len(ended) == 2, output[-4000:]
    assert process.returncode == 130, output[-4000:]
    return ended, output


@pytest.fixture(scope="module")
def sweep(ray_session, prepared_tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    overrides = _overrides(tmp, prepared_tiny)
    space_file = tmp / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    ended, output = _first_half(tmp, overrides, space_file, ray_session.get_runtime_context().gcs_address)
    resumed_at = time.time()
    base = load_config_dict(ROOT / "configs" / "tiny.yaml", overrides)
    settings = SweepSettings(name=NAME, num_samples=1, grace_period=1, max_concurrent_trials=1)
    marker = tmp / "crashed_run.txt"
    result = run_sweep(base, parse_space(SPACE, base, str(space_file)), settings,
                       step_callbacks=[CrashOnce(CRASH_STEP, str(marker))], train_best=True)
    return {"result": result, "first_half": ended, "first_output": output, "resumed_at": resumed_at,
            "marker": marker, "tmp": tmp}


def test_the_interrupted_sweep_resumes_with_only_the_remaining_trials(sweep):
    result, first_half = sweep["result"], sweep["first_half"]
    assert not result.interrupted and len(result.rows) == 4
    assert "interrupted" in sweep["first_output"]
    for row in result.rows:
        assert row.status == "TERMINATED"
        ran_after_resume = row.last_report_time > sweep["resumed_at"]
        assert ran_after_resume == (row.trial_id not in first_half), row


def test_asha_stops_the_bad_learning_rate_early_and_frees_its_workers(sweep, ray_session):
    rows = {row.params["training.lr"]: row for row in sweep["result"].rows}
    bad = rows[BAD_LR]
    assert bad.stopped_early and bad.step == EVERY  # stopped at its first validation
    assert bad.objective > max(row.objective for lr, row in rows.items() if lr != BAD_LR)
    finished = [row for row in rows.values() if not row.stopped_early]
    assert finished and all(row.step == MAX_STEPS for row in finished)
    # Every trial after the early stop ran, and no trial's Train workers hold CPUs now (the
    # session's Ray runs without a dashboard, where Ray Train's own clean-up cannot see that a
    # stopped trial's controller is gone: the sweep releases the placement group itself).
    deadline = time.monotonic() + 30
    while ray_session.available_resources().get("CPU", 0) < ray_session.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, ray_session.available_resources()
        time.sleep(0.5)


def test_a_crashed_trial_is_retried_and_resumes_from_its_checkpoint(sweep):
    crashed_run = sweep["marker"].read_text()
    assert crashed_run.startswith(f"{NAME}-")
    row = next(row for row in sweep["result"].rows if crashed_run == f"{NAME}-{row.trial_id}")
    # ASHA may still stop it at a later rung; it trained past the crash either way.
    assert row.status == "TERMINATED" and row.step > CRASH_STEP
    assert row.resumed_from_step == EVERY  # the checkpoint before the crash at step 9


def test_mlflow_holds_the_sweep_run_with_every_trial_run_as_its_child(sweep):
    from mlflow import MlflowClient

    result = sweep["result"]
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["mtk.kind"] == "sweep" and parent.info.status == "FINISHED"
    assert parent.data.tags["mtk.best_trial"] == result.best.trial_id
    assert parent.data.metrics["best_objective"] == pytest.approx(result.best.objective)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.info.run_name for run in children) == sorted(f"{NAME}-{row.trial_id}"
                                                                   for row in result.rows)
    early = {f"{NAME}-{row.trial_id}" for row in result.rows if row.stopped_early}
    for child in children:
        assert child.data.params["training.lr"] in {str(lr) for lr in SPACE["training.lr"]["grid"]}
        # Ended, even when Tune's stop killed the trial before its run could end itself.
        stopped = child.info.run_name in early
        assert child.info.status == ("KILLED" if stopped else "FINISHED")
        assert child.data.tags["mtk.stopped_early"] == str(stopped).lower()
        curve = client.get_metric_history(child.info.run_id, "valid_loss")
        assert len(curve) >= 2  # the initial validation and at least one more
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {RESULTS_CSV, PLOT_PNG, BEST_CONFIG} <= artifacts


def test_trials_register_nothing_and_the_best_config_trains_and_registers(sweep):
    from mlflow import MlflowClient

    result = sweep["result"]
    best_cfg = load_config(result.best_config_path)  # jobs/train.py --config takes it as it is
    assert best_cfg.training.lr == result.best.params["training.lr"] != BAD_LR
    assert best_cfg.evaluation.enabled and best_cfg.tracking.parent_run_id is None
    trained = result.best_training
    assert trained.metrics["step"] == MAX_STEPS and trained.evaluation
    assert trained.registered_model == f"models:/{MODEL_NAME}@candidate"
    versions = MlflowClient(result.tracking_uri).search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == 1  # the best run's, none from the trials


def test_the_results_table_lists_every_trial(sweep):
    import csv

    rows = list(csv.DictReader(open(Path(sweep["result"].experiment_path) / RESULTS_CSV)))
    assert len(rows) == 4 and {"trial_id", "training.lr", "objective", "stopped_early"} <= set(rows[0])
    assert sum(row["stopped_early"] == "True" for row in rows) >= 1
