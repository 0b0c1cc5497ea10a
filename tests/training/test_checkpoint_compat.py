"""Checkpoints carry a format version, and those written before versions existed still load.

``tests/fixtures/checkpoint_v0`` was written by the code of commit c4ef5b3 (see the fixtures'
README): weights, tokenizer, trainer state without ``format_version`` and a train config with the
retired ``training.fail_at_step`` key. Its ``optimizer.pt`` / ``scheduler.pt`` (plain
``torch.save``'d state dicts, a format the version bump did not touch) are not committed: pickles
are run outputs, so :func:`v0_checkpoint` writes them from one step on the fixture's own model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from training_helpers import make_config, make_engine

from multi_task_kobart.config import ExperimentConfig
from multi_task_kobart.model import MultiTaskKoBART
from multi_task_kobart.training.build import build_sampler
from multi_task_kobart.training.checkpoint import (FORMAT_VERSION, OPTIMIZER, SCHEDULER, TRAINER_STATE,
                                                   load_training_state, read_trainer_state,
                                                   save_checkpoint, verify_checkpoint)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V0 = FIXTURES / "checkpoint_v0"


def test_a_version_0_checkpoint_reads_as_version_0():
    state = read_trainer_state(V0)
    assert state.format_version == 0
    assert state.step == 1 and state.sampler is None
    assert state.data_state["0"]["style_transfer"] == {"epoch": 0, "position": 1}


@pytest.fixture
def v0_checkpoint(tmp_path) -> Path:
    """A copy of the fixture with the optimizer and scheduler state of one step added."""
    copy = tmp_path / "checkpoint_v0"
    shutil.copytree(V0, copy)
    engine = make_engine(make_config(max_steps=4, warmup_steps=1), MultiTaskKoBART.from_pretrained(V0))
    engine.train_step(0)
    torch.save(engine.optimizer.state_dict(), copy / OPTIMIZER)
    torch.save(engine.scheduler.state_dict(), copy / SCHEDULER)
    return copy


def test_a_version_0_checkpoint_resumes_into_todays_engine(v0_checkpoint):
    """Weights, optimizer moments, schedule and the train config of the old format load."""
    raw = json.loads((v0_checkpoint / "train_config.json").read_text())
    assert "fail_at_step" in raw["training"]  # the retired test hook is in the old file ...
    cfg = ExperimentConfig.from_dict(raw)  # ... and is dropped on load, not an error
    model = MultiTaskKoBART.from_pretrained(v0_checkpoint)
    engine = make_engine(make_config(max_steps=4, warmup_steps=1), model)
    state = load_training_state(v0_checkpoint, model=engine.model, optimizer=engine.optimizer,
                                scheduler=engine.scheduler)
    assert cfg.run_name == "fixture-v0" and state.step == 1
    assert engine.scheduler.last_epoch == 1
    moments = [s["exp_avg"] for s in engine.optimizer.state.values() if "exp_avg" in s]
    assert moments and any(m.abs().sum() > 0 for m in moments)  # AdamW state came back
    engine.train_step(1)  # and training goes on from it


def test_a_version_0_checkpoint_has_no_checksums_and_passes_verification():
    verify_checkpoint(V0)  # nothing to compare against: not an error


def test_new_checkpoints_carry_the_version_and_the_sampler(tmp_path):
    engine = make_engine(make_config(max_steps=4, warmup_steps=1))
    engine.train_step(0)
    save_checkpoint(tmp_path, model=engine.model, state=engine.checkpoint_state({}, {}))
    raw = json.loads((tmp_path / TRAINER_STATE).read_text())
    assert raw["format_version"] == FORMAT_VERSION == 2
    state = read_trainer_state(tmp_path)
    assert state.sampler == engine.strategy.sampler.state_dict()
    # The resumed run rebuilds the very sampler it saved, whatever the data says now.
    cfg = make_config(max_steps=4)
    rebuilt = build_sampler(cfg.data, {"counts": {"train": {"style_transfer": 1}}}, cfg.tasks,
                            seed=99, state=state.sampler)
    assert rebuilt.tasks_for_steps(0, 50) == engine.strategy.sampler.tasks_for_steps(0, 50)


def test_a_checkpoint_from_a_newer_version_is_refused(tmp_path):
    shutil.copytree(V0, tmp_path / "c")
    path = tmp_path / "c" / TRAINER_STATE
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match=f"format_version={FORMAT_VERSION + 1} is newer"):
        read_trainer_state(tmp_path / "c")


def test_a_model_registered_before_the_change_still_loads_and_answers(tmp_path):
    """Log the old checkpoint with the pyfunc code of its time, as the registry holds it."""
    import mlflow
    import pandas as pd

    from multi_task_kobart import tracking
    from multi_task_kobart.config import TrackingConfig

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking.start_run(TrackingConfig(tracking_uri=store, experiment_name="compat"), "v0"):
        version = tracking.log_and_register_model(V0, python_model=FIXTURES / "mlflow_pyfunc_v0.py",
                                                  registered_model_name="compat-v0", alias="old")
    assert int(version.version) == 1
    loaded = mlflow.pyfunc.load_model("models:/compat-v0@old")
    answers = loaded.predict(pd.DataFrame({"task": ["style_transfer", "qa_generation"],
                                           "input": ["빨리 와", "질문: 서울의 인구는?"]}),
                             params={"max_new_tokens": 4})
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # The registered model resolves back to a checkpoint with the fixture's exact weights.
    local = tracking.resolve_model_dir("models:/compat-v0@old", tracking_uri=store,
                                       dst_dir=tmp_path / "download")
    expected = MultiTaskKoBART.from_pretrained(V0).state_dict()
    assert all(torch.equal(tensor, expected[name])
               for name, tensor in MultiTaskKoBART.from_pretrained(local).state_dict().items())
