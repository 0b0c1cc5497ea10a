"""Plain-torch step functions, loss weighting, LR schedule and checkpoint I/O (no Ray)."""

from __future__ import annotations

import math

import pytest
import torch
from training_helpers import batch_of, make_config, make_engine, snapshot, tiny_model, unchanged

from multi_task_kobart.model import MultiTaskKoBART
from multi_task_kobart.training.checkpoint import (TrainerState, load_training_state,
                                                   parameter_checksum, read_trainer_state,
                                                   save_checkpoint)
from multi_task_kobart.training.engine import eval_step, optimizer_step, train_step
from multi_task_kobart.training.objective import StaticTaskWeights, TaskObjective, UncertaintyWeighting
from multi_task_kobart.training.schedule import cosine_factor, cosine_with_warmup

TASK = "style_transfer"


def test_train_step_backprops_the_task_loss_and_counts_target_tokens():
    model = tiny_model()
    batch = batch_of(TASK)
    result = train_step(model, batch, TASK)
    expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"], task=TASK).loss
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert result.n_tokens == int((batch["labels"] != -100).sum())
    assert all(p.grad is not None for p in model.get_decoder_parameters(TASK))
    assert all(p.grad is None for p in model.get_decoder_parameters("qa_generation"))


def test_eval_step_sums_token_nll_consistently_with_the_mean_loss():
    model = tiny_model().eval()
    batch = batch_of(TASK)
    nll, n_tokens = eval_step(model, batch, TASK)
    mean = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 labels=batch["labels"], task=TASK).loss.item()
    assert nll / n_tokens == pytest.approx(mean, rel=1e-5)


def test_loss_scale_implements_gradient_accumulation():
    batch = batch_of(TASK)
    once, twice = tiny_model(), tiny_model()
    train_step(once, batch, TASK)
    for _ in range(2):
        train_step(twice, batch, TASK, loss_scale=0.5)
    for a, b in zip(once.parameters(), twice.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_optimizer_step_leaves_untouched_decoders_alone_despite_weight_decay():
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    other = snapshot(model.get_decoder_parameters("qa_generation"))
    mine = snapshot(model.get_decoder_parameters(TASK))
    train_step(model, batch_of(TASK), TASK)
    norm = optimizer_step(model, optimizer, None, max_grad_norm=1.0)
    assert norm > 0
    assert unchanged(other, model.get_decoder_parameters("qa_generation"))
    assert not unchanged(mine, model.get_decoder_parameters(TASK))
    assert all(p.grad is None for p in model.parameters())  # cleared to None, not zero


def test_static_task_weights_scale_loss_and_gradient_exactly():
    batch = batch_of(TASK)
    plain = TaskObjective(tiny_model(), StaticTaskWeights([TASK]), router_loss_weight=0.0)
    heavy = TaskObjective(tiny_model(), StaticTaskWeights([TASK], {TASK: 2.5}), router_loss_weight=0.0)
    r1, r2 = train_step(plain, batch, TASK), train_step(heavy, batch, TASK)
    assert r2.loss.item() == pytest.approx(2.5 * r1.loss.item(), rel=1e-6)
    assert r2.nll == pytest.approx(r1.nll, rel=1e-6)  # the unweighted NLL is reported unchanged
    g1 = plain.model.get_decoder_parameters(TASK)[0].grad
    g2 = heavy.model.get_decoder_parameters(TASK)[0].grad
    torch.testing.assert_close(g2, 2.5 * g1)


def test_static_weights_reject_untrained_tasks():
    with pytest.raises(ValueError, match="'qa_generation', which is not trained"):
        StaticTaskWeights([TASK], {"qa_generation": 2.0})


def test_router_loss_is_added_with_its_weight():
    batch = batch_of(TASK)
    without = TaskObjective(tiny_model(), StaticTaskWeights([TASK]), router_loss_weight=0.0)
    with_router = TaskObjective(tiny_model(), StaticTaskWeights([TASK]), router_loss_weight=0.5)
    a, b = train_step(without, batch, TASK), train_step(with_router, batch, TASK)
    assert b.router_loss == pytest.approx(math.log(4), rel=0.05)  # ~uniform over 4 tasks at init
    assert b.loss.item() == pytest.approx(a.loss.item() + 0.5 * b.router_loss, rel=1e-5)
    assert with_router.model.router_parameters()[0].grad is not None


def test_uncertainty_weighting_follows_kendall_and_learns():
    weighting = UncertaintyWeighting([TASK, "qa_generation"])
    loss = torch.tensor(3.0)
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([math.log(2.0), 0.0]))
    assert weighting(TASK, loss).item() == pytest.approx(3.0 / 2.0 + math.log(2.0))
    # Minimising exp(-s) * L + s drives the weight exp(-s) towards 1 / L.
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        weighting("qa_generation", torch.tensor(4.0)).backward()
        optimizer.step()
    assert weighting.current_weights()["qa_generation"] == pytest.approx(0.25, rel=0.02)


def test_cosine_schedule_warms_up_peaks_and_decays_to_the_floor():
    kw = dict(warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert cosine_factor(0, **kw) == pytest.approx(0.1)
    assert cosine_factor(9, **kw) == pytest.approx(1.0)
    assert cosine_factor(60, **kw) == pytest.approx(0.55)  # half-way through the cosine
    assert cosine_factor(110, **kw) == pytest.approx(0.1)
    assert cosine_factor(500, **kw) == pytest.approx(0.1)
    factors = [cosine_factor(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = cosine_with_warmup(optimizer, **kw)
    for _ in range(60):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(2.0 * 0.55)


def test_checkpoint_round_trip_restores_weights_optimizer_and_schedule(tmp_path):
    cfg = make_config(max_steps=10)
    engine = make_engine(cfg)
    for step in range(3):
        engine.train_step(step)
    save_checkpoint(tmp_path, model=engine.model,
                    state=engine.checkpoint_state(engine.gather_rank_states()[0], {"valid_loss": 1.0}),
                    config=cfg.to_dict(), optimizer=engine.optimizer, scheduler=engine.scheduler)
    assert {p.name for p in tmp_path.iterdir()} >= {"model.safetensors", "config.json", "train_config.json",
                                                    "trainer_state.json", "optimizer.pt", "scheduler.pt"}
    state = read_trainer_state(tmp_path)
    assert state.step == 3 and state.metrics == {"valid_loss": 1.0}

    fresh = make_engine(cfg, tiny_model(seed=123))
    fresh.restore(str(tmp_path))
    assert parameter_checksum(fresh.model) == parameter_checksum(engine.model)
    assert fresh.scheduler.last_epoch == engine.scheduler.last_epoch == 3
    assert fresh.state.step == 3
    assert {t: s.state_dict() for t, s in fresh.streams.items()} == \
        {t: s.state_dict() for t, s in engine.streams.items()}
    # The next step is identical in both: optimizer moments and data position came back too.
    engine.train_step(3)
    fresh.train_step(3)
    assert parameter_checksum(fresh.model) == parameter_checksum(engine.model)
    loaded = MultiTaskKoBART.from_pretrained(tmp_path)  # the weights stand on their own
    assert loaded.config == engine.model.config


def test_load_rejects_a_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        load_training_state(tmp_path, model=tiny_model())
    save_checkpoint(tmp_path / "c", model=tiny_model(), state=TrainerState(step=5))
    assert read_trainer_state(tmp_path / "c").step == 5
