"""A real 2-worker DDP run (Ray Train V2, gloo on CPU) with an injected worker crash.

One short run checks, at once: both ranks finish with identical weights (each rank hashes
its parameters; the hashes are gathered into the final report), FailureConfig brings the
crashed worker group back from the latest checkpoint, the checkpoints are in our format
and load with ``MultiTaskKoBART.from_pretrained``, and MLflow got the run and the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONFIGS
from training_helpers import FailOnceAt

from multi_task_kobart.config import load_config
from multi_task_kobart.model import MultiTaskKoBART
from multi_task_kobart.tasks import TASKS
from multi_task_kobart.training.checkpoint import parameter_checksum
from multi_task_kobart.training.driver import run_training

pytestmark = pytest.mark.slow

STEPS, CHECKPOINT_EVERY, FAIL_AT = 8, 4, 5


@pytest.fixture(scope="module")
def ddp_run(ray_session, prepared_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    cfg = load_config(CONFIGS / "tiny.yaml", [
        "name=ddp-test", f"data.prepared_dir={prepared_tiny}", f"run.storage_path={root / 'runs'}",
        f"tracking.tracking_uri={root / 'mlflow'}", "tracking.registered_model_name=ddp-test-model",
        f"training.max_steps={STEPS}", "training.warmup_steps=2", "training.grad_accum_steps=2",
        "training.batch_size=8", f"training.checkpoint_every={CHECKPOINT_EVERY}", "training.log_every=2",
        "training.eval_every=4", "training.keep_checkpoints=1",
        "run.max_failures=1", "evaluation.max_examples_per_task=4", "evaluation.max_new_tokens=8"])
    return cfg, run_training(cfg, step_callbacks=[FailOnceAt(FAIL_AT)])


def test_both_ranks_finish_with_identical_weights(ddp_run):
    _, result = ddp_run
    assert result.world_size == 2
    checksums = result.metrics["param_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert result.metrics["step"] == STEPS


def test_a_crashed_worker_group_resumes_from_the_latest_checkpoint(ddp_run):
    _, result = ddp_run
    assert result.resumed_from_step == CHECKPOINT_EVERY  # crashed at step 5, resumed after step 4


def test_checkpoint_is_in_the_library_format_and_loads(ddp_run):
    _, result = ddp_run
    checkpoint = Path(result.checkpoint_path)
    assert checkpoint.name == f"checkpoint_{STEPS:07d}"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_config.json",
            "trainer_state.json", "optimizer.pt", "scheduler.pt"} <= names
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == STEPS and state["world_size"] == 2
    assert set(state["data_state"]) == {"0", "1"}  # both ranks' data positions
    model = MultiTaskKoBART.from_pretrained(checkpoint)
    assert parameter_checksum(model) == result.metrics["param_checksums"][0]
    # K=1 best by valid_loss, plus the latest, are kept; older ones were deleted.
    kept = sorted(p.name for p in Path(result.run_path).glob("checkpoint_*"))
    assert 1 <= len(kept) <= 2 and checkpoint.name in kept


def test_validation_and_evaluation_metrics_are_reported(ddp_run):
    _, result = ddp_run
    for task in TASKS:
        assert result.metrics[f"valid_loss/{task}"] > 0
        assert result.metrics[f"initial_valid_loss/{task}"] > 0
    assert "eval/qa_generation/f1" in result.evaluation
    assert "eval/style_transfer/perplexity" in result.metrics


def test_mlflow_has_the_run_params_metrics_and_registered_model(ddp_run):
    from mlflow import MlflowClient

    from multi_task_kobart.tracking import resolve_tracking_uri

    cfg, result = ddp_run
    client = MlflowClient(tracking_uri=resolve_tracking_uri(cfg.tracking.tracking_uri),
                          registry_uri=resolve_tracking_uri(cfg.tracking.tracking_uri))
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["training.strategy"] == "simultaneous"
    assert run.data.params["training.grad_accum_steps"] == "2"
    for key in ("train_loss/style_transfer", "valid_loss/qa_generation", "lr", "tokens_per_s",
                "step_time_s"):
        assert key in run.data.metrics, key
    version = client.get_model_version_by_alias("ddp-test-model", "candidate")
    assert version.run_id == result.mlflow_run_id
    assert result.registered_model == "models:/ddp-test-model@candidate"
