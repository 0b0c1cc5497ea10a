"""Strategies on the real engine (single process): which task each step trains, what is frozen."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from training_helpers import make_config, make_engine, snapshot, unchanged

from multi_task_kobart.data.sampling import TaskSampler
from multi_task_kobart.tasks import TASKS
from multi_task_kobart.training.strategies import Strategy, sequential_task


def test_sequential_splits_the_step_range_into_blocks_in_task_order():
    tasks = [sequential_task(step, TASKS, 10) for step in range(10)]
    assert tasks == ["style_transfer"] * 3 + ["dialogue_summarization"] * 2 + \
        ["role_generation"] * 3 + ["qa_generation"] * 2
    with pytest.raises(ValueError, match="step=10 must be in"):
        sequential_task(10, TASKS, 10)


def test_sequential_step_touches_only_the_current_tasks_decoder():
    engine = make_engine(make_config(strategy="sequential", max_steps=8))
    model = engine.model
    decoders = {task: snapshot(model.get_decoder_parameters(task)) for task in TASKS}
    for step in range(2):  # steps 0-1 belong to the first task
        assert engine.train_step(step).tasks == ["style_transfer"]
    assert not unchanged(decoders["style_transfer"], model.get_decoder_parameters("style_transfer"))
    for task in TASKS[1:]:
        assert unchanged(decoders[task], model.get_decoder_parameters(task)), task


def test_simultaneous_follows_the_shared_seed_sampler_per_micro_step():
    sampler = TaskSampler({task: 10 for task in TASKS}, "uniform", seed=3)
    strategy = Strategy("simultaneous", TASKS, max_steps=100, grad_accum_steps=2, sampler=sampler)
    picks = [strategy.task_for(step, micro) for step in range(100) for micro in range(2)]
    assert picks == [sampler.task_for_step(i) for i in range(200)]  # same on every rank
    assert set(Counter(picks)) == set(TASKS)
    with pytest.raises(ValueError, match="micro_step=2"):
        strategy.task_for(0, 2)


def test_two_stage_stage_one_leaves_the_encoder_bit_identical():
    engine = make_engine(make_config(strategy="two_stage", max_steps=6, stage_one_steps=3))
    model = engine.model
    encoder = snapshot(model.encoder_parameters())
    shared = model.shared.weight.detach().clone()
    decoders = snapshot(p for task in TASKS for p in model.get_decoder_parameters(task))
    for step in range(3):
        engine.train_step(step)
        assert engine.state.stage == 1
    assert unchanged(encoder, model.encoder_parameters())
    assert torch.equal(shared, model.shared.weight)  # tied embedding/LM head frozen too
    assert not unchanged(decoders, (p for task in TASKS for p in model.get_decoder_parameters(task)))
    engine.train_step(3)  # stage two: everything trains
    assert engine.state.stage == 2
    assert all(p.requires_grad for p in model.encoder_parameters())
    assert not unchanged(encoder, model.encoder_parameters())


def test_one_decoder_alone_with_a_frozen_encoder():
    engine = make_engine(make_config(tasks=["qa_generation"], freeze_encoder=True, max_steps=4))
    model = engine.model
    encoder = snapshot(model.encoder_parameters())
    others = {task: snapshot(model.get_decoder_parameters(task)) for task in TASKS[:3]}
    qa = snapshot(model.get_decoder_parameters("qa_generation"))
    for step in range(4):
        assert engine.train_step(step).tasks == ["qa_generation"]
    assert unchanged(encoder, model.encoder_parameters())
    assert all(unchanged(before, model.get_decoder_parameters(t)) for t, before in others.items())
    assert not unchanged(qa, model.get_decoder_parameters("qa_generation"))


def test_task_weights_change_the_loss_as_configured():
    weights = {"style_transfer": 1.0, "dialogue_summarization": 1.5, "role_generation": 1.2,
               "qa_generation": 1.0}
    engine = make_engine(make_config(task_weights=weights, router_loss_weight=0.0))
    for task, weight in weights.items():
        batch = engine.streams[task].next_batch()
        out = engine.objective(batch["input_ids"], batch["attention_mask"], batch["labels"], task)
        assert out["loss"].item() == pytest.approx(weight * out["nll"].item(), rel=1e-6)


def test_uncertainty_weighting_trains_its_log_variances_in_the_engine():
    engine = make_engine(make_config(loss_weighting="uncertainty", max_steps=5))
    for step in range(5):
        engine.train_step(step)
    log_vars = engine.objective.weighting.log_vars
    assert torch.count_nonzero(log_vars.detach()) > 0
    metrics = engine.collect_train_metrics()
    assert set(f"loss_weight/{task}" for task in TASKS) <= set(metrics)


def test_validation_reports_per_task_loss_and_their_mean():
    engine = make_engine(make_config())
    valid = engine.validate()
    per_task = [valid[f"valid_loss/{task}"] for task in TASKS]
    assert valid["valid_loss"] == pytest.approx(sum(per_task) / 4)
    assert all(3.0 < v < 5.0 for v in per_task)  # ~ln(64) for an untrained tiny model
