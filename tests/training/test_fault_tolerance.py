"""Real 2-worker DDP runs (Ray Train V2, gloo on CPU, dropout on) under injected faults.

Three runs of the same 8-step experiment, which must end with bit-identical weights:

- ``reference``: uninterrupted, the data shipped to the workers in memory;
- ``killed``: one worker process is killed from this test with SIGKILL after the step-4
  checkpoint; Ray Train restarts the group from that checkpoint. This run also takes the
  large-data path (``data.in_memory_max_rows=0``: each worker reads its slice of the Parquet
  shards), so the equality also shows that both data paths give each rank the same rows;
- ``restarted``: the driver stops at step 5 (no retries left), its latest checkpoint is then
  truncated on disk, and the same command again falls back to the step-2 checkpoint and
  finishes.

Equal weights need everything a resume restores: weights, optimizer, schedule, data positions,
every rank's RNG states (dropout draws from them at every step) and the learned loss weights.
The experiment switches on what else a resume must get right, so each runs through the real
training path: the two_stage schedule (encoder frozen for 3 steps; the restarted run resumes
inside stage 1 and re-wraps DDP at the switch), LoRA adapters, gradient checkpointing and
uncertainty loss weighting. It starts from a 4-decoder checkpoint and trains three tasks, so
the fourth decoder must come out bit-identical. The killed run also carries the checks of a
normal DDP run: checkpoints in the library format, metrics, MLflow, the registered model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import CONFIGS
from training_helpers import FailOnceAt, WaitToBeKilled

from multi_task_kobart.config import ExperimentConfig, load_config
from multi_task_kobart.model import MultiTaskKoBART
from multi_task_kobart.training.checkpoint import parameter_checksum
from multi_task_kobart.training.driver import run_training
from multi_task_kobart.training.engine import ResumeError

pytestmark = pytest.mark.slow

STEPS, STAGE_ONE, KILL_AT, FAIL_AT = 8, 3, 5, 5
TRAINED, UNTOUCHED = ["style_transfer", "dialogue_summarization", "qa_generation"], "role_generation"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def initial(root) -> Path:
    """The starting checkpoint: the small preset with all four decoders, LoRA adapters of rank 4
    on the encoder (given random values: fresh ones are zero and would not show their training),
    and dropout 0.1."""
    import torch

    from multi_task_kobart.model import MultiTaskKoBARTConfig
    from multi_task_kobart.tokenizer import load_tokenizer

    torch.manual_seed(3)
    tokenizer = load_tokenizer()
    model = MultiTaskKoBART(MultiTaskKoBARTConfig.from_preset("small", len(tokenizer), dropout=0.1,
                                                              adapter_rank=4))
    with torch.no_grad():
        for param in model.adapters.parameters():
            param.normal_(0.0, 0.02)
    model.save_pretrained(root / "initial")
    return root / "initial"


def experiment(root: Path, prepared: Path, initial: Path, name: str, *overrides: str):
    return load_config(CONFIGS / "tiny.yaml", [
        f"name={name}", f"data.prepared_dir={prepared}", f"run.storage_path={root / 'runs'}",
        f"tracking.tracking_uri={root / 'mlflow'}", "tracking.registered_model_name=ddp-test-model",
        f"model.pretrained={initial}", "model.gradient_checkpointing=true", f"tasks={TRAINED}",
        "training.strategy=two_stage", f"training.stage_one_steps={STAGE_ONE}",
        "training.loss_weighting=uncertainty", f"training.max_steps={STEPS}", "training.warmup_steps=2",
        "training.grad_accum_steps=2", "training.batch_size=8", "training.log_every=2",
        "training.eval_every=4", "training.keep_checkpoints=10", "evaluation.enabled=false",
        "tracking.enabled=false", *overrides])


@pytest.fixture(scope="module")
def reference(ray_session, prepared_tiny, initial, root):
    return run_training(experiment(root, prepared_tiny, initial, "reference",
                                   f"training.checkpoint_every={STEPS}"))


class Killer(threading.Thread):
    """Waits for the worker's pid file, then SIGKILLs that process (as the OOM killer would)."""

    def __init__(self, pid_file: Path) -> None:
        super().__init__(daemon=True)
        self.pid_file, self.killed_at = pid_file, None

    def run(self) -> None:
        while not self.pid_file.exists():
            time.sleep(0.2)
        os.kill(int(self.pid_file.read_text()), signal.SIGKILL)
        self.killed_at = time.monotonic()


@pytest.fixture(scope="module")
def killed(ray_session, prepared_tiny, initial, root):
    cfg = experiment(root, prepared_tiny, initial, "ddp-test", "training.checkpoint_every=4", "run.max_failures=1",
                     "data.in_memory_max_rows=0", "tracking.enabled=true", "evaluation.enabled=true",
                     "evaluation.max_examples_per_task=4", "evaluation.max_new_tokens=8")
    killer = Killer(root / "rank1.pid")
    killer.start()
    result = run_training(cfg, step_callbacks=[WaitToBeKilled(KILL_AT, rank=1, pid_file=str(killer.pid_file))])
    assert killer.killed_at is not None, "the worker was never killed"
    print(f"\n[faults] worker killed; the run finished {time.monotonic() - killer.killed_at:.1f} s later "
          f"(restart from step {result.resumed_from_step} included)")
    return cfg, result


def test_both_ranks_finish_with_identical_weights_and_task_sequences(killed):
    _, result = killed
    assert result.world_size == 2 and result.metrics["step"] == STEPS
    checksums, traces = result.metrics["param_checksums"], result.metrics["task_traces"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert len(traces) == 2 and traces[0] == traces[1] and traces[0]


def test_a_killed_worker_resumes_and_ends_bit_identical_to_the_uninterrupted_run(killed, reference):
    _, result = killed
    assert result.resumed_from_step == 4  # killed before step 5, after the step-4 checkpoint
    assert result.metrics["param_checksums"] == reference.metrics["param_checksums"]
    assert result.metrics["task_traces"] == reference.metrics["task_traces"]
    assert result.metrics["valid_loss"] == reference.metrics["valid_loss"]


def test_stage_one_froze_the_encoder_and_the_untrained_decoder_never_moved(killed, initial):
    """Checked on the saved weights: the step-4 checkpoint is after the stage switch, so compare
    the encoder at the end against the start (it trained) and the fourth decoder (it did not)."""
    from safetensors.torch import load_file

    _, result = killed
    start = load_file(initial / "model.safetensors")
    end = load_file(Path(result.checkpoint_path) / "model.safetensors")
    untouched = [name for name in start
                 if name.startswith((f"decoders.{UNTOUCHED}.", f"adapters.tasks.{UNTOUCHED}."))]
    assert untouched and all(start[name].equal(end[name]) for name in untouched)
    trained = [name for name in start if name.startswith("decoders.style_transfer.")]
    assert any(not start[name].equal(end[name]) for name in trained)
    encoder = [name for name in start if name.startswith("encoder.")]
    assert any(not start[name].equal(end[name]) for name in encoder)  # stage 2 trained it
    assert any(not start[name].equal(end[name]) for name in start if name.startswith("adapters."))


@pytest.fixture(scope="module")
def restarted(ray_session, prepared_tiny, initial, root):
    cfg = experiment(root, prepared_tiny, initial, "restart-test", "training.checkpoint_every=2", "run.max_failures=0")
    with pytest.raises(Exception, match=f"injected failure at step {FAIL_AT}"):
        run_training(cfg, step_callbacks=[FailOnceAt(FAIL_AT)])
    run_dir = root / "runs" / "restart-test"
    assert sorted(p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()) == ["checkpoint_0000002", "checkpoint_0000004"]
    weights = run_dir / "checkpoint_0000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    return cfg, run_training(cfg)


def test_a_driver_restart_skips_a_truncated_checkpoint_and_ends_bit_identical(restarted, reference):
    _, result = restarted
    assert result.resumed_from_step == 2  # the truncated step-4 checkpoint was passed over
    assert result.metrics["param_checksums"] == reference.metrics["param_checksums"]
    assert "initial_valid_loss" in result.metrics  # the first attempt's validation survives


def test_the_encoder_stayed_frozen_through_stage_one(restarted, initial, root):
    from safetensors.torch import load_file

    start = load_file(initial / "model.safetensors")
    at_step_2 = load_file(root / "runs" / "restart-test" / "checkpoint_0000002" / "model.safetensors")
    encoder = [name for name in start if name.startswith(("encoder.", "shared."))]
    assert encoder and all(start[name].equal(at_step_2[name]) for name in encoder)


def test_resuming_with_another_worker_count_is_refused_before_workers_start(restarted):
    cfg, _ = restarted
    raw = cfg.to_dict()
    raw["scaling"]["num_workers"] = 1
    with pytest.raises(ResumeError, match="written by 2 workers; this run has 1"):
        run_training(ExperimentConfig.from_dict(raw))


def test_resuming_over_changed_prepared_data_is_refused(restarted, prepared_tiny, tmp_path):
    cfg, _ = restarted
    changed = shutil.copytree(prepared_tiny, tmp_path / "prepared", symlinks=True)
    manifest = next(changed.rglob("manifest.json"))
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "note": "edited"}))
    raw = cfg.to_dict()
    raw["data"]["prepared_dir"] = str(changed)
    with pytest.raises(ResumeError, match="the data changed under the run"):
        run_training(ExperimentConfig.from_dict(raw))


# ------------------------------------------------ the killed run is also a complete DDP run


def test_checkpoint_is_in_the_library_format_and_loads(killed):
    _, result = killed
    checkpoint = Path(result.checkpoint_path)
    assert checkpoint.name == f"checkpoint_{STEPS:07d}"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_config.json", "trainer_state.json",
            "optimizer.pt", "scheduler.pt", "rng_state.json", "checksums.json"} <= names
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == STEPS and state["world_size"] == 2 and len(state["data_hash"]) == 64
    assert set(state["data_state"]) == set(json.loads((checkpoint / "rng_state.json").read_text())) == {"0", "1"}
    model = MultiTaskKoBART.from_pretrained(checkpoint)
    assert parameter_checksum(model) == result.metrics["param_checksums"][0]


def test_validation_and_evaluation_metrics_are_reported(killed):
    _, result = killed
    for task in TRAINED:
        assert result.metrics[f"valid_loss/{task}"] > 0
        assert result.metrics[f"initial_valid_loss/{task}"] > 0
    assert "eval/qa_generation/f1" in result.evaluation
    assert "eval/style_transfer/perplexity" in result.metrics


def test_mlflow_has_the_run_params_metrics_and_registered_model(killed):
    from mlflow import MlflowClient

    from multi_task_kobart.tracking import resolve_tracking_uri

    cfg, result = killed
    client = MlflowClient(tracking_uri=resolve_tracking_uri(cfg.tracking.tracking_uri),
                          registry_uri=resolve_tracking_uri(cfg.tracking.tracking_uri))
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["training.strategy"] == "two_stage"
    assert run.data.params["training.grad_accum_steps"] == "2"
    for key in ("train_loss/style_transfer", "valid_loss/qa_generation", "lr", "tokens_per_s", "step_time_s"):
        assert key in run.data.metrics, key
    version = client.get_model_version_by_alias("ddp-test-model", "candidate")
    assert version.run_id == result.mlflow_run_id
    assert result.registered_model == "models:/ddp-test-model@candidate"
