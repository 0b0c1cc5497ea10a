"""`make demo` (jobs/demo.py) end to end at a tiny size: it must print what the README shows.

Not a speed test: a few training steps on the tiny preset, two held-out rows per task. What is
checked is that every stage produced its output: the evaluation table read back from MLflow, the
registered model with its alias, and an answer for each of the user's example inputs.
"""

from __future__ import annotations

import re

import pytest
from mlflow import MlflowClient

from multi_task_kobart import tracking
from multi_task_kobart.generation import DEFAULT_GENERATION
from multi_task_kobart.tasks import EXAMPLE_INPUTS, TASKS

pytestmark = pytest.mark.slow


def test_demo_prints_table_registered_model_and_answers(demo_module, ray_session, prepared_tiny,
                                                        tmp_path, capsys) -> None:
    store = tracking.normalize_tracking_uri(tmp_path / "mlflow")
    code = demo_module.main([
        "--config", "configs/tiny.yaml", "--set", "model.preset=tiny", "training.max_steps=4",
        "training.warmup_steps=1", "training.log_every=2", "training.eval_every=4",
        "training.checkpoint_every=4", "training.batch_size=8", "training.eval_batches=1",
        "evaluation.max_examples_per_task=2", "evaluation.batch_size=8",
        f"data.prepared_dir={prepared_tiny}", f"run.storage_path={tmp_path / 'runs'}",
        f"tracking.tracking_uri={store}", "tracking.registered_model_name=demo-smoke"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]

    for task in TASKS:  # the held-out table, read back from the MLflow run
        assert f"## {task} (n=2)" in out, out[-3000:]
    registered = re.search(r"registered in MLflow as (models:/demo-smoke@candidate) \(run (\w+)\)", out)
    assert registered, out[-3000:]
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias("demo-smoke", "candidate")
    assert version.run_id == registered.group(2)

    examples = out.split("=== the user's example inputs ===", 1)[1]
    assert f"decoding: {DEFAULT_GENERATION}" in examples
    for task, texts in EXAMPLE_INPUTS.items():
        for text in texts:
            answer = re.search(rf"\[{task}\] {re.escape(text)}\n    -> (.*)\n    \(router with task='auto' "
                               rf"picks: (\w+)\)", examples)
            assert answer, f"no answer printed for [{task}] {text}:\n{examples}"
            assert answer.group(2) in TASKS
