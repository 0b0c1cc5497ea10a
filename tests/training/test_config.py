"""ExperimentConfig: YAML profiles load, overrides apply, bad values are named in errors."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import typing
from pathlib import Path

import pytest

from multi_task_kobart import config as config_module
from multi_task_kobart.config import (PRECISIONS, STRATEGIES, EvaluationConfig, ExperimentConfig,
                                      TrackingConfig, TrainingConfig, apply_overrides, load_config)
from multi_task_kobart.generation import DEFAULT_GENERATION, GenerationSettings
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
    from multi_task_kobart.training.build import build_sampler

    cfg = load_config(CONFIGS / "tiny.yaml", ["data.sampling=weights",
                                              "data.sampling_weights={style_transfer: 3, qa_generation: 1}"])
    manifest = {"counts": {"train": {task: 100 for task in TASKS}}}
    sampler = build_sampler(cfg.data, manifest, cfg.tasks, cfg.seed)
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
    ("model.preset=huge", "model.preset='huge' is not valid; allowed: tiny, small, base."),
    ("model.preset=null", "model.preset=None is not allowed; expected one of tiny, small, base."),
    ("training.precision=fp16", "training.precision='fp16' is not valid; allowed: auto, fp32, bf16."),
    ("training.loss_weighting=learned",
     "training.loss_weighting='learned' is not valid; allowed: static, uncertainty."),
    ("data.sampling=random", "data.sampling='random' is not valid; allowed: proportional, temperature, "
                             "uniform, round_robin, weights."),
    ("evaluation.split=dev", "evaluation.split='dev' is not valid; allowed: train, valid, test."),
    ("evaluation.num_beams=0", "evaluation.num_beams=0 must be > 0"),
    ("evaluation.max_new_tokens=0", "evaluation.max_new_tokens=0 must be > 0"),
    ("evaluation.max_examples_per_task=0", "evaluation.max_examples_per_task=0 must be > 0"),
    ("evaluation.batch_size=-4", "evaluation.batch_size=-4 must be > 0"),
    ("evaluation.no_repeat_ngram_size=-1", "evaluation.no_repeat_ngram_size=-1 must be >= 0"),
    ("evaluation.repetition_penalty=0", "evaluation.repetition_penalty=0.0 must be > 0"),
    ("evaluation.num_beams=2.5", "evaluation.num_beams=2.5 must be of type int"),
    ("tracking.experiment_name=' '", "tracking.experiment_name=' ' must not be empty"),
    ("tracking.registered_model_name=team/model",
     "tracking.registered_model_name='team/model' must not contain '/' or ':'"),
    ("tracking.alias='my alias'", "tracking.alias='my alias' must be 1-255 letters, digits"),
    ("tracking.alias=latest", "tracking.alias='latest' is reserved by MLflow"),
    ("tracking.alias=V2", "tracking.alias='V2' is reserved by MLflow"),
    ("training.fail_at_step=4", "training.fail_at_step=4 is no longer a config setting"),
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
    from multi_task_kobart.training.build import build_planner

    cfg = load_config(CONFIGS / "tiny.yaml", [f"training.group_by_length={str(grouped).lower()}",
                                              "training.batch_size=10"])
    lengths = [(1 + i % 50, 1) for i in range(1000)]
    batches = build_planner(cfg.training)(lengths, 0, 0)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))  # every row once
    spread = sum(max(lengths[i][0] for i in b) - min(lengths[i][0] for i in b) for b in batches) / len(batches)
    # Sorted windows hold rows of (nearly) one length; random batches span most of 1..50.
    assert (spread <= 2) if grouped else (spread >= 25), spread


@pytest.mark.parametrize("section, key, value, allowed", [
    (TrainingConfig, "strategy", "alternate", STRATEGIES),
    (TrainingConfig, "precision", "fp16", PRECISIONS),
    (EvaluationConfig, "split", "heldout", ("train", "valid", "test")),
])
def test_sections_check_their_choices_without_the_loader(section, key, value, allowed):
    prefix = {TrainingConfig: "training", EvaluationConfig: "evaluation"}[section]
    with pytest.raises(ValueError) as error:
        section(**{key: value})
    assert str(error.value) == f"{prefix}.{key}={value!r} is not valid; allowed: {', '.join(allowed)}."


def test_choice_tuples_are_derived_from_the_literal_types():
    hints = typing.get_type_hints(TrainingConfig)
    assert typing.get_args(hints["strategy"]) == STRATEGIES == ("simultaneous", "sequential", "two_stage")
    assert typing.get_args(hints["precision"]) == PRECISIONS == ("auto", "fp32", "bf16")


def test_tracking_section_validates_itself():
    TrackingConfig(alias="champion-2", registered_model_name=None)  # valid: no error
    assert TrackingConfig(alias=None).alias is None  # None registers without an alias
    with pytest.raises(ValueError, match=r"tracking.experiment_name='' must not be empty"):
        TrackingConfig(experiment_name="")
    with pytest.raises(ValueError, match=r"tracking.alias='' must be 1-255"):
        TrackingConfig(alias="")
    with pytest.raises(ValueError, match="MLflow allows 500"):
        TrackingConfig(experiment_name="x" * 501)


def test_evaluation_decoding_defaults_are_the_shared_generation_defaults():
    assert EvaluationConfig().generation() == DEFAULT_GENERATION
    tuned = load_config(CONFIGS / "kobart-base.yaml", ["evaluation.no_repeat_ngram_size=0",
                                                       "evaluation.repetition_penalty=1"]).evaluation
    assert tuned.generation() == GenerationSettings(max_new_tokens=128, num_beams=4,
                                                    no_repeat_ngram_size=0, repetition_penalty=1.0)


def test_a_saved_config_with_a_retired_key_still_loads(tmp_path):
    cfg = load_config(CONFIGS / "tiny.yaml")
    saved = cfg.to_dict()
    saved["training"]["fail_at_step"] = None  # as train_config.json was written before it retired
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    loaded = ExperimentConfig.load(tmp_path / "train_config.json")
    assert loaded == cfg and "fail_at_step" not in loaded.to_dict()["training"]
    # Only the listed key is retired: any other unknown key is still an error.
    saved["training"]["fail_at_steps"] = None
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['training.fail_at_steps'\]"):
        ExperimentConfig.from_dict(saved)


def _undocumented_fields(class_node: ast.ClassDef) -> list[str]:
    """Annotated names in a class body that are not followed by a non-empty string literal."""
    body = class_node.body
    return [statement.target.id for statement, following in zip(body, body[1:] + [None])
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
            and not (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                     and isinstance(following.value.value, str) and following.value.value.strip())]


def test_every_field_of_every_section_has_a_docstring():
    root = ExperimentConfig()
    sections = [ExperimentConfig] + [type(getattr(root, item.name)) for item in dataclasses.fields(root)
                                     if dataclasses.is_dataclass(getattr(root, item.name))]
    assert len(sections) == 8, sections  # the root and its seven sections
    classes = {node.name: node for node in ast.parse(inspect.getsource(config_module)).body
               if isinstance(node, ast.ClassDef)}
    missing = []
    for section in sections:
        annotated = {s.target.id for s in classes[section.__name__].body if isinstance(s, ast.AnnAssign)}
        assert {item.name for item in dataclasses.fields(section)} <= annotated
        missing += [f"{section.__name__}.{name}" for name in _undocumented_fields(classes[section.__name__])]
    assert not missing, f"fields without a docstring right below them: {missing}"


def test_the_docstring_check_flags_an_undocumented_field():
    source = 'class C:\n    a: int = 1\n    """Documented."""\n    b: int = 2\n    c: int = 3\n    """ """\n'
    assert _undocumented_fields(ast.parse(source).body[0]) == ["b", "c"]
