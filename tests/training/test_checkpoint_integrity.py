"""Checkpoints resume exactly (RNG states included), detect damage, refuse what they cannot
continue, and never unpickle more than tensors. Single process, no Ray: the real-process versions
of these faults (a killed worker, a corrupted latest checkpoint) are in test_fault_tolerance.py."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from training_helpers import VOCAB, make_config, make_engine

from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig
from multi_task_kobart.training.checkpoint import (CHECKSUMS, OPTIMIZER, RNG_STATE, CorruptCheckpointError,
                                                   capture_rng_state, load_training_state,
                                                   parameter_checksum, restore_rng_state,
                                                   save_checkpoint, verify_checkpoint)
from multi_task_kobart.training.engine import ResumeError, TrainingEngine

STEPS, SAVE_AT = 6, 3


def dropout_model(seed: int) -> MultiTaskKoBART:
    """Dropout on (as in the base preset): the run depends on the torch RNG at every step."""
    torch.manual_seed(seed)
    return MultiTaskKoBART(MultiTaskKoBARTConfig.tiny(VOCAB, dropout=0.3)).train()


def save(engine: TrainingEngine, directory) -> None:
    data, rng = engine.gather_rank_states()
    save_checkpoint(directory, model=engine.model, state=engine.checkpoint_state(data, {}),
                    optimizer=engine.optimizer, scheduler=engine.scheduler, rng_states=rng)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An uninterrupted run of STEPS steps, and its checkpoint after SAVE_AT of them."""
    cfg = make_config(max_steps=STEPS)
    engine = make_engine(cfg, dropout_model(0))
    directory = tmp_path_factory.mktemp("ckpt")
    for step in range(STEPS):
        if step == SAVE_AT:
            save(engine, directory)
        engine.train_step(step)
    return cfg, directory, parameter_checksum(engine.model)


def resume(cfg, directory) -> str:
    engine = make_engine(cfg, dropout_model(123))  # other initial weights and RNG position
    engine.restore(str(directory))
    for step in range(engine.state.step, STEPS):
        engine.train_step(step)
    return parameter_checksum(engine.model)


def test_a_resumed_run_with_dropout_is_bit_identical_to_the_uninterrupted_one(run):
    cfg, directory, expected = run
    assert resume(cfg, directory) == expected


def test_without_the_saved_rng_states_the_resumed_run_differs(run, tmp_path):
    """The control: dropout really draws random numbers, so the RNG states are what made it exact."""
    cfg, directory, expected = run
    copy = shutil.copytree(directory, tmp_path / "copy")
    (copy / RNG_STATE).unlink()
    assert resume(cfg, copy) != expected


def test_rng_states_round_trip_for_python_numpy_and_torch():
    import random

    import numpy as np

    saved = json.loads(json.dumps(capture_rng_state()))  # what the checkpoint file holds
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


@pytest.fixture
def checkpoint(run, tmp_path):
    return shutil.copytree(run[1], tmp_path / "checkpoint_0000003")


def test_an_intact_checkpoint_lists_every_file_with_size_and_hash(checkpoint):
    listed = json.loads((checkpoint / CHECKSUMS).read_text())
    assert set(listed) == {p.name for p in checkpoint.iterdir()} - {CHECKSUMS}
    verify_checkpoint(checkpoint)


def test_a_truncated_weights_file_is_detected_by_size(checkpoint):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpointError, match=r"model.safetensors' is 1000 bytes, \d+ were written"):
        verify_checkpoint(checkpoint)


def test_a_flipped_byte_is_detected_by_hash(checkpoint):
    path = checkpoint / OPTIMIZER
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="optimizer.pt' does not match its SHA-256"):
        verify_checkpoint(checkpoint)


def test_a_checkpoint_cut_short_before_its_checksums_is_detected(checkpoint):
    (checkpoint / CHECKSUMS).unlink()
    with pytest.raises(CorruptCheckpointError, match="checksums.json is missing"):
        verify_checkpoint(checkpoint)


class _Exploit:
    """What a crafted checkpoint smuggles in: unpickling it would call ``open`` on our file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_pickle_in_optimizer_pt_is_refused_before_it_runs(checkpoint, tmp_path):
    target = tmp_path / "pwned"
    torch.save({"state": {}, "param_groups": [], "x": _Exploit(str(target))}, checkpoint / OPTIMIZER)
    engine = make_engine(make_config(max_steps=STEPS), dropout_model(0))
    with pytest.raises(CorruptCheckpointError, match="optimizer.pt' holds objects other than tensors"):
        load_training_state(checkpoint, model=engine.model, optimizer=engine.optimizer)
    assert not target.exists()  # refused before anything ran


def test_resuming_with_another_worker_count_is_refused(checkpoint):
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    (checkpoint / "trainer_state.json").write_text(json.dumps({**state, "world_size": 2}))
    engine = make_engine(make_config(max_steps=STEPS), dropout_model(0))
    with pytest.raises(ResumeError, match="written by 2 workers; this run has 1.*scaling.num_workers=2"):
        engine.restore(str(checkpoint))


def test_resuming_over_changed_prepared_data_is_refused(checkpoint):
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    (checkpoint / "trainer_state.json").write_text(json.dumps({**state, "data_hash": "a" * 64}))
    engine = make_engine(make_config(max_steps=STEPS), dropout_model(0))
    with pytest.raises(ResumeError, match="manifest hash aaaaaaaaaaaa.*now hashes to bbbbbbbbbbbb"):
        engine.restore(str(checkpoint), data_hash="b" * 64)
    engine.restore(str(checkpoint), data_hash="a" * 64)  # the same data resumes
    assert engine.state.step == SAVE_AT
