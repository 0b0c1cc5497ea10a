"""Every MLflow call of the project uses the resolved store, never MLflow's ``./mlflow.db`` fallback.

An MLflow call made in a process that has not been pointed at a store (a fresh job process, a
demo reading back its run) silently creates an empty ``mlflow.db`` in the cwd and then finds
nothing there; one such file was once committed at the repository root. Each step below starts
from that state (no global URI, no MLFLOW_TRACKING_URI), runs in an empty cwd, and the cwd must
stay empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import mlflow
from mlflow import MlflowClient

from multi_task_kobart import tracking
from multi_task_kobart.config import TrackingConfig
from multi_task_kobart.serving import PYFUNC_MODEL_PATH


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _forget_store(monkeypatch) -> None:
    """The state of a fresh process: MLflow knows no store at all."""
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


def test_the_hazard_is_real(empty_cwd, monkeypatch) -> None:
    """MLflow's own fallback does create a store in the cwd: what the next test guards against."""
    _forget_store(monkeypatch)
    MlflowClient().search_experiments()
    assert (empty_cwd / "mlflow.db").is_file()


def test_no_project_call_creates_a_store_in_the_cwd(empty_cwd, tmp_path, monkeypatch, tiny_checkpoint,
                                                     demo_module) -> None:
    from multi_task_kobart.evaluation.job import main as evaluate_main
    from multi_task_kobart.training.driver import TrainingResult

    store = tracking.normalize_tracking_uri(tmp_path / "store")
    note = tmp_path / "report.md"
    note.write_text("| metric | model |\n")
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"task": "style_transfer", "input": "빨리 와", "target": "빨리 와 주세요."},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    steps = []

    def step(name: str) -> None:
        steps.append((name, sorted(os.listdir(empty_cwd))))
        _forget_store(monkeypatch)

    _forget_store(monkeypatch)
    with tracking.start_run(TrackingConfig(tracking_uri=store, experiment_name="where"), "train") as run:
        tracking.log_metrics({"loss": 1.0}, step=1)
        tracking.log_artifact(note, "evaluation")
        tracking.log_and_register_model(tiny_checkpoint, python_model=PYFUNC_MODEL_PATH,
                                         registered_model_name="mtk-where")
    run_id = run.info.run_id
    step("start_run + log_and_register_model")
    tracking.log_report({"eval/x/f1": 50.0}, [note], artifact_path="more", run_id=run_id,
                        tracking_uri=store)
    step("log_report to a run id")
    table = demo_module.evaluation_table(
        TrainingResult(run_name="where", run_path=str(tmp_path), checkpoint_path=str(tiny_checkpoint),
                       best_checkpoint_path=None, mlflow_run_id=run_id), store)
    assert table.startswith("| metric")
    step("demo evaluation_table")
    local = tracking.resolve_model_dir("models:/mtk-where@candidate", tracking_uri=store,
                                       dst_dir=tmp_path / "download")
    assert (local / "config.json").is_file()
    step("resolve_model_dir models:/")
    model = tracking.load_pyfunc_model("models:/mtk-where@candidate", tracking_uri=store)
    assert len(model.predict([{"task": "style_transfer", "input": "빨리 와"}],
                             params={"max_new_tokens": 2})) == 1
    step("load_pyfunc_model + predict")
    for target in (["--mlflow-run-id", run_id], ["--mlflow-experiment", "evaluations"]):
        evaluate_main(["--model", "models:/mtk-where@candidate", "--data", str(seed),
                       "--max-new-tokens", "2", "--out", str(tmp_path / "eval"), "--no-progress",
                       "--tracking-uri", store, *target])
        step(f"evaluation job {target[0]}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # the store named by the environment only
    assert tracking.download_run_artifact(run_id, "more/report.md").read_text().startswith("| metric")
    step("download_run_artifact via MLFLOW_TRACKING_URI")

    assert [name for name, files in steps if files] == [], steps
    metrics = MlflowClient(tracking_uri=store).get_run(run_id).data.metrics
    assert metrics["eval/x/f1"] == 50.0 and "eval/style_transfer/bleu" in metrics
