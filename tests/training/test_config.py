"""ExperimentConfig: YAML profiles load, overrides apply, bad values are named in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from multi_task_kobart.config import ExperimentConfig, apply_overrides, load_config
from multi_task_kobart.tasks import TASKS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_tiny_profile_is_the_offline_cpu_default():
    cfg = load_config(CONFIGS / "tiny.yaml")
    assert cfg.model.preset == "small" and cfg.data.source == "bundled" and cfg.data.tokenizer == "bundled"
    assert cfg.scaling.num_workers == 2 and cfg.scaling.use_gpu is False
    assert cfg.tasks == list(TASKS)
    assert cfg.training.task_weights["dialogue_summarization"] == 1.5


def test_kobart_base_profile_is_the_gpu_cluster():
    cfg = load_config(CONFIGS / "kobart-base.yaml")
    assert cfg.model.preset == "base" and cfg.scaling.use_gpu and cfg.scaling.num_workers == 8
    assert cfg.training.strategy == "two_stage" and cfg.training.resolved_stage_one_steps == 2000


def test_overrides_parse_yaml_values_and_nested_keys():
    cfg = load_config(CONFIGS / "tiny.yaml", ["training.lr=3e-4", "training.max_grad_norm=null",
                                              "tasks=[qa_generation, style_transfer]",
                                              "training.task_weights={qa_generation: 2}", "name=x"])
    assert cfg.training.lr == pytest.approx(3e-4)  # "3e-4" is a YAML string; still a float here
    assert cfg.training.max_grad_norm is None
    assert cfg.tasks == ["style_transfer", "qa_generation"]  # canonical order
    assert cfg.training.task_weights == {"qa_generation": 2.0}
    assert cfg.run_name == "x"


def test_explicit_sampling_weights_reach_the_training_sampler():
    import torch

    from multi_task_kobart.training.worker_setup import build_sampler

    cfg = load_config(CONFIGS / "tiny.yaml", ["data.sampling=weights",
                                              "data.sampling_weights={style_transfer: 3, qa_generation: 1}"])
    sampler = build_sampler(cfg, {task: [None] * 100 for task in TASKS}, torch.device("cpu"))
    assert sampler.probabilities == pytest.approx({"style_transfer": 0.75, "qa_generation": 0.25})


def test_round_trip_through_dict_and_json(tmp_path):
    cfg = load_config(CONFIGS / "tiny.yaml", ["training.strategy=two_stage"])
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    cfg.save(tmp_path / "c.json")
    assert ExperimentConfig.load(tmp_path / "c.json") == cfg


def test_default_run_name_is_stable_so_a_restart_resumes():
    assert load_config(None, ["training.strategy=sequential"]).run_name == "mtk-tiny-sequential"


@pytest.mark.parametrize("override, message", [
    ("training.strategy=alternate", "training.strategy='alternate'"),
    ("training.lr=fast", "training.lr='fast' must be a number"),
    ("training.max_steps=0", "training.max_steps=0 must be > 0"),
    ("training.bogus=1", "unknown config key(s) ['training.bogus']"),
    ("tasks=[translation]", "Unknown task 'translation'"),
    ("training.task_weights={poetry: 1}", "Unknown task 'poetry'"),
    ("training.stage_one_steps=9999", "training.stage_one_steps=9999 must be in [0, max_steps=1500]"),
    ("scaling.num_workers=true", "must be an integer, not a boolean"),
    ("data.sampling=weights", "data.sampling='weights' needs data.sampling_weights"),
    ("data.sampling_weights={poetry: 1}", "Unknown task 'poetry'"),
    ("data.sampling_weights={qa_generation: -1}", "data.sampling_weights['qa_generation']=-1 must be >= 0"),
    ("model.preset=huge", "model.preset='huge'"),
])
def test_bad_values_are_rejected_with_the_value_named(override, message):
    with pytest.raises(ValueError) as error:
        load_config(CONFIGS / "tiny.yaml", [override])
    assert message in str(error.value)


def test_malformed_override_and_missing_file():
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["training.lr"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")


@pytest.mark.parametrize("grouped", [True, False])
def test_group_by_length_switches_between_sorted_and_random_batches(grouped):
    from multi_task_kobart.training.worker_setup import build_planner

    cfg = load_config(CONFIGS / "tiny.yaml", [f"training.group_by_length={str(grouped).lower()}",
                                              "training.batch_size=10"])
    lengths = [(1 + i % 50, 1) for i in range(1000)]
    batches = build_planner(cfg)(lengths, 0, 0)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))  # every row once
    spread = sum(max(lengths[i][0] for i in b) - min(lengths[i][0] for i in b) for b in batches) / len(batches)
    # Sorted windows hold rows of (nearly) one length; random batches span most of 1..50.
    assert (spread <= 2) if grouped else (spread >= 25), spread
