"""The search-space file and the sweep's arithmetic: no Ray cluster needed."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from multi_task_kobart.config import load_config
from multi_task_kobart.tuning.objective import OBJECTIVE, Objective
from multi_task_kobart.tuning.space import load_space, parse_space
from multi_task_kobart.tuning.scheduler import build_asha
from multi_task_kobart.tuning.sweep import SweepSettings, derive_max_concurrent

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("style_transfer", "dialogue_summarization", "role_generation", "qa_generation")


@pytest.fixture(scope="module")
def base() -> dict:
    return load_config(ROOT / "configs" / "tiny.yaml").to_dict()


def test_the_default_space_searches_the_learning_rate_and_the_four_task_weights(base):
    space = load_space(ROOT / "tune" / "space.yaml", base)
    assert space.keys == ["training.lr", *[f"training.task_weights.{task}" for task in TASKS]]
    lr = space.param_space()["training.lr"]
    assert (lr.lower, lr.upper) == (2.0e-4, 2.0e-3)
    # A sampled trial becomes a valid experiment config with its values in place.
    values = {"training.lr": 1.2e-3, **{f"training.task_weights.{task}": 1.5 for task in TASKS}}
    raw = space.apply(base, values)
    assert raw["training"]["lr"] == 1.2e-3 and raw["training"]["task_weights"]["qa_generation"] == 1.5
    assert base["training"]["lr"] == 1e-3  # the base is not modified


def test_any_config_key_can_be_searched(base):
    space = parse_space({"training.warmup_steps": {"choice": [0, 50]}, "model.adapter_rank": {"grid": [0, 4]},
                         "training.loss_weighting": {"choice": ["static", "uncertainty"]}}, base)
    assert space.has_grid and space.grid_size() == 2


@pytest.mark.parametrize("spec, message", [
    ({"training.lrr": {"uniform": [1e-4, 1e-3]}}, "unknown config key(s) ['training.lrr']"),
    ({"trainin.lr": {"uniform": [1e-4, 1e-3]}}, "unknown config key(s) ['trainin']"),
    ({"training.lr": {"loguniform": [1e-3, 1e-3]}}, "training.lr: empty range [0.001, 0.001]"),
    ({"training.lr": {"uniform": [2e-3, 1e-3]}}, "training.lr: empty range"),
    ({"training.warmup_steps": {"choice": []}}, "training.warmup_steps: choice needs a non-empty list"),
    ({"training.task_weights.qa_generation": {"uniform": [0.0, 2.0]}},
     "training.task_weights.qa_generation: every weight must be > 0"),
    ({"training.task_weights.role_generation": {"choice": [1.0, -0.5]}},
     "training.task_weights.role_generation: every weight must be > 0"),
    ({"training.task_weights.chat": {"uniform": [0.5, 2.0]}}, "chat"),
    ({"training.lr": {"normal": [0, 1]}}, "unknown distribution 'normal'; allowed: loguniform, uniform"),
    ({"training.strategy": {"choice": ["simultaneous", "round_robin"]}}, "training.strategy='round_robin'"),
    ({"training.lr": {"loguniform": [0.0, 1e-3]}}, "loguniform needs low > 0"),
])
def test_a_bad_space_is_refused_with_the_key_named(base, spec, message):
    with pytest.raises(ValueError) as error:
        parse_space(spec, base, source="space.yaml")
    assert message in str(error.value) and str(error.value).startswith("space.yaml: ")


def test_a_missing_or_empty_space_file_is_refused(base, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_space(tmp_path / "nope.yaml", base)
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    with pytest.raises(ValueError, match="non-empty mapping"):
        load_space(tmp_path / "empty.yaml", base)


def test_the_objective_aggregates_the_unweighted_task_losses():
    report = {f"valid_loss/{task}": loss for task, loss in zip(TASKS, (1.0, 2.0, 3.0, 6.0))}
    report["train_loss"] = 0.1  # weighted, never part of the objective
    assert Objective(TASKS, "mean").score(report) == 3.0
    assert Objective(TASKS, "worst").annotate(report)[OBJECTIVE] == 6.0
    assert Objective(TASKS).score({"step": 3}) is None  # a report without validation
    assert Objective(TASKS).score({**report, "valid_loss/qa_generation": math.nan}) == math.inf
    with pytest.raises(ValueError, match="allowed: mean, worst"):
        Objective(TASKS, "median")


def test_concurrency_follows_the_cluster_and_each_trials_workers():
    cfg = load_config(ROOT / "configs" / "tiny.yaml")  # 2 workers x 1 CPU
    assert derive_max_concurrent({"CPU": 16.0}, cfg, trial_cpus=1.0) == 5  # 16 // (1 + 2)
    assert derive_max_concurrent({"CPU": 16.0}, cfg, trial_cpus=0.5) == 6
    gpu = load_config(ROOT / "configs" / "tiny.yaml", ["scaling.use_gpu=true", "scaling.num_workers=4"])
    assert derive_max_concurrent({"CPU": 64.0, "GPU": 8.0}, gpu, trial_cpus=1.0) == 2  # 8 GPUs // 4
    with pytest.raises(ValueError, match="one trial needs 3 CPUs"):
        derive_max_concurrent({"CPU": 2.0}, cfg, trial_cpus=1.0)


def test_asha_rungs_sit_on_steps_and_survive_a_resume(tmp_path):
    """Rungs at validation steps; a restored scheduler re-learns the finished trials' results."""
    import json
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler

    cfg = load_config(ROOT / "configs" / "tiny.yaml",
                      ["training.max_steps=24", "training.warmup_steps=2", "training.eval_every=6",
                       "training.checkpoint_every=12"])
    finished = tmp_path / "trial_a"
    finished.mkdir()
    (finished / "result.json").write_text("\n".join(json.dumps(row) for row in (
        {"step": 6, OBJECTIVE: 1.0}, {"step": 12, OBJECTIVE: 0.8}, {"step": 24, OBJECTIVE: 0.5})))
    old = SimpleNamespace(trial_id="a", status="TERMINATED", path=str(finished))
    new = SimpleNamespace(trial_id="b", status="PENDING", path=None)
    actions = {}
    for name, scheduler in (("ours", build_asha(cfg.training, 1, 2)),
                            ("plain", ASHAScheduler(time_attr="step", max_t=24, grace_period=6, reduction_factor=2))):
        scheduler.set_search_properties(OBJECTIVE, "min")
        for trial in (old, new):  # what Tuner.restore does: every trial is added again
            scheduler.on_trial_add(None, trial)
        actions[name] = scheduler.on_trial_result(None, new, {"step": 6, OBJECTIVE: 5.0})
    # A resumed trial far behind the finished one at the first rung (step 6) is stopped by ours;
    # Ray's scheduler has forgotten the finished trial and lets it through.
    assert actions == {"ours": "STOP", "plain": "CONTINUE"}


@pytest.mark.parametrize("field, value, message", [
    ("num_samples", 0, "num_samples=0 must be >= 1"), ("search", "hyperopt", "allowed: random, optuna"),
    ("objective", "best", "allowed: mean, worst"), ("max_concurrent_trials", 0, "must be >= 1 or None"),
    ("trial_cpus", 0, "trial_cpus=0 must be > 0")])
def test_sweep_settings_are_checked(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SweepSettings(**{field: value})


def test_optuna_takes_the_space_through_tunes_search_interface(base):
    from ray.tune.search.optuna import OptunaSearch

    from multi_task_kobart.tuning.sweep import _search_alg

    space = load_space(ROOT / "tune" / "space.yaml", base)
    searcher = _search_alg(SweepSettings(search="optuna"), space)
    assert isinstance(searcher, OptunaSearch)
    searcher.set_search_properties(OBJECTIVE, "min", space.param_space())
    suggestion = searcher.suggest("t1")
    assert set(suggestion) == set(space.keys) and 2e-4 <= suggestion["training.lr"] <= 2e-3
    grid = parse_space({"model.adapter_rank": {"grid": [0, 4]}}, base, "grid.yaml")
    with pytest.raises(ValueError, match="grid.yaml: Optuna samples from distributions"):
        _search_alg(SweepSettings(search="optuna"), grid)


def test_a_resume_with_other_settings_is_refused(base, tmp_path):
    from multi_task_kobart.tuning.sweep import sweep_state

    space = load_space(ROOT / "tune" / "space.yaml", base)
    first = sweep_state(tmp_path, SweepSettings(name="s"), base, space)
    assert first["parent_run_id"] is None and (tmp_path / "mtk_sweep.json").is_file()
    assert sweep_state(tmp_path, SweepSettings(name="s"), base, space)["settings"]["num_samples"] == 8
    with pytest.raises(ValueError, match=r"changed now: \['settings.num_samples'\]"):
        sweep_state(tmp_path, SweepSettings(name="s", num_samples=4), base, space)
    other = {**base, "training": {**base["training"], "max_steps": 10}}
    with pytest.raises(ValueError, match=r"\['base.training.max_steps'\].*another --name"):
        sweep_state(tmp_path, SweepSettings(name="s"), other, space)


def test_concurrent_trials_on_a_sqlite_store_log_through_a_local_server(tmp_path):
    """SQLite takes one writer: with two trials at once the sweep puts an mlflow server in front."""
    from mlflow import MlflowClient

    from multi_task_kobart.tuning.sweep import _tracking_uri_for_trials
    from multi_task_kobart.training.driver import resolve_paths

    cfg = resolve_paths(load_config(ROOT / "configs" / "tiny.yaml", [f"tracking.tracking_uri={tmp_path / 'store'}"]))
    store = cfg.tracking.tracking_uri
    with _tracking_uri_for_trials(cfg, concurrency=1) as uri:
        assert uri == store  # one writer: the file itself
    with _tracking_uri_for_trials(cfg, concurrency=2) as uri:
        assert uri.startswith("http://127.0.0.1:")
        client = MlflowClient(uri)
        experiment = client.create_experiment("through-server")
        run_id = client.create_run(experiment, run_name="trial-x").info.run_id
        client.log_metric(run_id, "objective", 1.25)
    # Written into the same SQLite store, and the server is gone afterwards.
    assert MlflowClient(store).get_run(run_id).data.metrics["objective"] == 1.25
    import urllib.request
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{uri}/health", timeout=2)
