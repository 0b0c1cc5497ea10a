"""Task mixing: the observed mix matches each strategy, and every rank draws the same tasks."""

from __future__ import annotations

import pytest

from multi_task_kobart.data.sampling import (TaskSampler, format_balance, mixing_weights,
                                             step_uniform)
from multi_task_kobart.tasks import TASKS

SIZES = {"style_transfer": 8000, "dialogue_summarization": 1000,
         "role_generation": 500, "qa_generation": 2500}
N_STEPS = 20_000
# Binomial std of a share over 20k draws is at most 0.0035; 0.015 is > 4 std.
TOLERANCE = 0.015


@pytest.mark.parametrize("strategy, kwargs, expected", [
    ("proportional", {}, {"style_transfer": 8 / 12, "dialogue_summarization": 1 / 12,
                          "role_generation": 0.5 / 12, "qa_generation": 2.5 / 12}),
    ("proportional", {"cap": 2000}, {"style_transfer": 2 / 5.5, "dialogue_summarization": 1 / 5.5,
                                     "role_generation": 0.5 / 5.5, "qa_generation": 2 / 5.5}),
    ("temperature", {"temperature": 2.0}, None),
    ("uniform", {}, {task: 0.25 for task in TASKS}),
    ("weights", {"weights": {"style_transfer": 1.0, "dialogue_summarization": 1.5,
                             "role_generation": 1.2, "qa_generation": 1.0}},
     {"style_transfer": 1 / 4.7, "dialogue_summarization": 1.5 / 4.7,
      "role_generation": 1.2 / 4.7, "qa_generation": 1 / 4.7}),
])
def test_observed_mix_matches_strategy(strategy, kwargs, expected):
    sampler = TaskSampler(SIZES, strategy, seed=7, **kwargs)
    if expected is None:  # temperature: p ~ n ** (1/T)
        roots = {task: n ** 0.5 for task, n in SIZES.items()}
        expected = {task: r / sum(roots.values()) for task, r in roots.items()}
    assert sampler.probabilities == pytest.approx(expected)
    report = sampler.balance_report(N_STEPS)
    for task, row in report["tasks"].items():
        assert row["observed_fraction"] == pytest.approx(expected[task], abs=TOLERANCE), task
    assert report["max_abs_error"] < TOLERANCE
    assert sum(row["observed_steps"] for row in report["tasks"].values()) == N_STEPS
    assert "max |expected - observed|" in format_balance(report)


def test_temperature_interpolates_between_proportional_and_uniform():
    proportional = mixing_weights(SIZES, "proportional")
    assert mixing_weights(SIZES, "temperature", temperature=1.0) == pytest.approx(proportional)
    hot = mixing_weights(SIZES, "temperature", temperature=1000.0)
    assert hot == pytest.approx({task: 0.25 for task in TASKS}, abs=0.01)
    capped = mixing_weights(SIZES, "temperature", temperature=2.0, cap=1000)
    assert capped["style_transfer"] == pytest.approx(capped["dialogue_summarization"])


def test_round_robin_cycles_exactly():
    sampler = TaskSampler(SIZES, "round_robin")
    assert sampler.tasks_for_steps(0, 8) == list(TASKS) * 2
    assert sampler.balance_report(400)["max_abs_error"] == 0.0


def test_two_ranks_draw_the_same_sequence_and_resume_needs_no_state():
    # Two "ranks" build their own sampler from the same config: no communication needed.
    rank0 = TaskSampler(SIZES, "temperature", temperature=3.0, seed=11)
    rank1 = TaskSampler(dict(reversed(list(SIZES.items()))), "temperature", temperature=3.0, seed=11)
    assert rank0.tasks_for_steps(0, 2000) == rank1.tasks_for_steps(0, 2000)
    resumed = TaskSampler.from_state_dict(rank0.state_dict())
    assert [resumed.task_for_step(s) for s in range(1500, 1600)] == rank0.tasks_for_steps(1500, 1600)
    other_seed = TaskSampler(SIZES, "temperature", temperature=3.0, seed=12)
    assert other_seed.tasks_for_steps(0, 200) != rank0.tasks_for_steps(0, 200)


def test_step_uniform_is_uniform_and_pure():
    values = [step_uniform(3, step) for step in range(10_000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.01)
    assert step_uniform(3, 42) == values[42]


def test_tasks_without_rows_are_never_drawn_and_bad_settings_fail():
    sampler = TaskSampler({"style_transfer": 10, "qa_generation": 0, "role_generation": 5})
    assert set(sampler.tasks_for_steps(0, 500)) == {"style_transfer", "role_generation"}
    with pytest.raises(ValueError, match="strategy 'mixture' is not valid"):
        TaskSampler(SIZES, "mixture")
    with pytest.raises(ValueError, match="has weight 2 but no examples"):
        TaskSampler({"style_transfer": 10}, "weights", weights={"qa_generation": 2})
    with pytest.raises(ValueError, match="Unknown task 'chat'"):
        TaskSampler({"chat": 10})
    with pytest.raises(ValueError, match="no task has examples"):
        TaskSampler({"style_transfer": 0})


def test_sampler_from_manifest_counts():
    manifest = {"counts": {"train": {"style_transfer": 30, "qa_generation": 10}}}
    sampler = TaskSampler.from_manifest(manifest, seed=1)
    assert sampler.probabilities == pytest.approx({"style_transfer": 0.75, "qa_generation": 0.25})
