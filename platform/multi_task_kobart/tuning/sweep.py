"""A Ray Tune sweep whose every trial is a full Ray Train run of our training.

Shape (the Ray Train V2 pattern; ``Tuner(trainer)`` is deprecated)::

    run_sweep: resolve paths, prepare the data once, open the parent MLflow run
      -> Tuner(run_trial)            one trial = a function trainable (1 CPU by default) ...
           -> run_training(cfg)      ... that builds and fits a TorchTrainer (its own workers),
                                     Train run "<sweep>-<trial id>", a child MLflow run, every
                                     validation reported to Tune (ObjectiveReportCallback)
      -> results table, plot, best_config.yaml on the parent run; optionally train the best

Trials are experiments, not releases: no held-out evaluation, no model logged or registered,
no alias moved. The best configuration becomes a model through a normal ``jobs/train.py`` run
(``--train-best`` starts it).

Recovery: a crashed trial is retried (Tune's ``FailureConfig``); its Train run has the same
name, so the retry resumes from that run's latest checkpoint. An interrupted sweep (Ctrl-C, a
lost driver) started again with the same name and storage restores the experiment: finished
trials are kept, the rest run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

from multi_task_kobart.config import ExperimentConfig, load_config
from multi_task_kobart.training.driver import (TrainingResult, init_ray, prepare_data, resolve_paths,
                                               run_training)
from multi_task_kobart.tuning.objective import OBJECTIVE, Objective, Rule
from multi_task_kobart.tuning.scheduler import build_asha
from multi_task_kobart.tuning.results import (BEST_CONFIG, PLOT_PNG, RESULTS_CSV, TrialRow, best_row,
                                              plot_objective, trial_rows, write_best_config, write_table)
from multi_task_kobart.tuning.space import SearchSpace
from multi_task_kobart.tuning.trial import ReleaseTrainResources, SweepProgress, TrialSpec, run_trial

#: The sweep's own bookkeeping in its experiment folder (the parent MLflow run's id).
STATE_FILE = "mtk_sweep.json"


@dataclass
class SweepSettings:
    """How a sweep searches; the space file says what it searches."""

    name: str = "sweep"
    """Tune experiment name: ``<storage_path>/<name>``; the same name again resumes it."""
    num_samples: int = 8
    """Configurations drawn from the space (each crossed with every ``grid`` value)."""
    objective: Rule = "mean"
    """Aggregate of the unweighted per-task validation losses: "mean" or "worst"."""
    search: Literal["random", "optuna"] = "random"
    """Random/grid search (Tune's variant generator) or Optuna's TPE (no ``grid`` keys)."""
    scheduler: Literal["asha", "fifo"] = "asha"
    """ASHA stops trials that trail at an evaluation; "fifo" runs every trial to the end."""
    grace_period: int = 1
    """Validations every trial gets before ASHA may stop it."""
    reduction_factor: int = 2
    """ASHA keeps the best 1/reduction_factor of the trials at each rung."""
    max_concurrent_trials: int | None = None
    """Trials at once; None derives it from the cluster and each trial's ScalingConfig."""
    trial_cpus: float = 1.0
    """CPUs of each trial's own process (the Train driver), on top of its Train workers."""
    max_failures: int = 1
    """Retries of a crashed trial (each resumes its Train run from the latest checkpoint)."""
    seed: int = 0
    """Seed of the search algorithm."""
    storage_path: str | None = None
    """Where the experiment lives; None: the config's ``run.storage_path``."""

    def __post_init__(self) -> None:
        for name in ("num_samples", "grace_period", "reduction_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"sweep {name}={getattr(self, name)!r} must be >= 1.")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise ValueError(f"max_concurrent_trials={self.max_concurrent_trials!r} must be >= 1 or None.")
        if self.trial_cpus <= 0 or self.max_failures < -1:
            raise ValueError(f"trial_cpus={self.trial_cpus!r} must be > 0 (a fraction is fine) and "
                             f"max_failures={self.max_failures!r} >= -1 (-1: retry forever).")
        for name, allowed in (("search", ("random", "optuna")), ("scheduler", ("asha", "fifo")),
                              ("objective", ("mean", "worst"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"sweep {name}={getattr(self, name)!r}; allowed: {', '.join(allowed)}.")


@dataclass
class SweepResult:
    """What ``run_sweep`` hands back."""

    experiment_path: str
    rows: list[TrialRow]
    interrupted: bool  # trials left to run: start the same sweep again to resume
    max_concurrent_trials: int
    best: TrialRow | None = None
    best_config_path: str | None = None
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    best_training: TrainingResult | None = None


# --------------------------------------------------------------------------- sizing


def derive_max_concurrent(cluster: dict[str, float], cfg: ExperimentConfig, trial_cpus: float) -> int:
    """Trials that fit at once: each holds ``trial_cpus`` plus its Train workers' CPUs (and GPUs)."""
    s = cfg.scaling
    per_trial_cpus = trial_cpus + s.num_workers * s.cpus_per_worker
    fits = [math.floor(cluster.get("CPU", 0.0) / per_trial_cpus) if per_trial_cpus else math.inf]
    if s.use_gpu:
        fits.append(math.floor(cluster.get("GPU", 0.0) / s.num_workers))
    fit = min(fits)
    if fit < 1:
        raise ValueError(f"one trial needs {per_trial_cpus:g} CPUs ({trial_cpus:g} for the trial, "
                         f"{s.num_workers} x {s.cpus_per_worker} for its workers)"
                         f"{f' and {s.num_workers} GPUs' if s.use_gpu else ''}; the cluster has "
                         f"{cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs. Lower "
                         "scaling.num_workers or the sweep's trial CPUs.")
    return int(min(fit, 1_000_000))




# --------------------------------------------------------------------------- the Tuner


def build_tuner(spec: TrialSpec, settings: SweepSettings, cfg: ExperimentConfig, storage: str,
                concurrency: int) -> Any:
    """A new Tuner, or the interrupted experiment of the same name restored (finished trials kept)."""
    import ray.tune

    trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, spec=spec),
                                        {"CPU": settings.trial_cpus})
    experiment = Path(storage) / settings.name
    if ray.tune.Tuner.can_restore(experiment):
        print(f"[sweep] resuming {experiment}: finished trials are kept", flush=True)
        # The space again: Tune checks it against the saved one and needs it if the first run
        # died before its first save.
        return ray.tune.Tuner.restore(str(experiment), trainable, resume_errored=True,
                                      param_space=spec.space.param_space())
    return ray.tune.Tuner(
        trainable, param_space=spec.space.param_space(),
        tune_config=ray.tune.TuneConfig(
            metric=OBJECTIVE, mode="min", num_samples=settings.num_samples,
            # The variant generator takes the limit itself (Tune passes it to Searchers only).
            max_concurrent_trials=concurrency if settings.search == "optuna" else None,
            scheduler=_scheduler(settings, cfg),
            search_alg=_search_alg(settings, spec.space, concurrency)),
        run_config=ray.tune.RunConfig(
            name=settings.name, storage_path=storage, verbose=1,
            failure_config=ray.tune.FailureConfig(max_failures=settings.max_failures),
            callbacks=[SweepProgress(spec.space, cfg.training.max_steps), ReleaseTrainResources()]))


def _scheduler(settings: SweepSettings, cfg: ExperimentConfig) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    if settings.scheduler == "fifo":
        return FIFOScheduler()
    return build_asha(cfg.training, settings.grace_period, settings.reduction_factor)


def _search_alg(settings: SweepSettings, space: SearchSpace, concurrency: int = 1) -> Any:
    if settings.search == "optuna":
        if space.has_grid:
            raise ValueError(f"{space.source}: Optuna samples from distributions; replace the grid "
                             "keys with choice, or use --search random.")
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=settings.seed)  # Tune wraps it in a ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Tune's max_concurrent_trials does not reach the variant generator: it takes its own.
    return BasicVariantGenerator(random_state=settings.seed, max_concurrent=concurrency)


# --------------------------------------------------------------------------- tracking


@contextmanager
def _tracking_uri_for_trials(cfg: ExperimentConfig, concurrency: int) -> Iterator[str | None]:
    """The URI trials log to: a local ``mlflow server`` in front of a SQLite store when trials
    run at once (SQLite takes one writer), else the store itself."""
    from multi_task_kobart import tracking

    uri = cfg.tracking.tracking_uri
    if not cfg.tracking.enabled:
        yield None
    elif uri.startswith("sqlite:") and concurrency > 1:
        with tracking.local_tracking_server(uri) as server:
            print(f"[sweep] {concurrency} trials at once share {uri} through a local MLflow "
                  f"server at {server}", flush=True)
            yield server
    else:
        yield uri


def sweep_state(experiment: Path, settings: SweepSettings, base: dict[str, Any],
                space: SearchSpace) -> dict[str, Any]:
    """The sweep's record in its folder: what it started with, and its parent MLflow run.

    Tune restores an experiment with the scheduler, search and sample count it started with,
    whatever the new command says; so a resume that asks for something else is refused here
    rather than silently mixed.
    """
    started = json.loads(json.dumps({"settings": settings.__dict__, "base": base, "space": space.to_dict()}))
    state_file = experiment / STATE_FILE
    if not state_file.is_file():
        experiment.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({**started, "parent_run_id": None}, ensure_ascii=False))
        return {**started, "parent_run_id": None}
    saved = json.loads(state_file.read_text())
    changed = sorted(key for part in started for key in _diff(saved.get(part), started[part], part))
    if changed:
        raise ValueError(f"sweep {settings.name!r} in {experiment} was started with other settings; "
                         f"changed now: {changed}. Resume it with the same command, or choose "
                         "another --name for a new sweep.")
    return saved


def _diff(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [key for name in set(old) | set(new)
                for key in _diff(old.get(name), new.get(name), f"{prefix}.{name}")]
    return [] if old == new else [prefix]


def _sweep_tracking(cfg: ExperimentConfig, uri: str) -> Any:
    """The tracking settings of the sweep's own runs: the trials' store, nothing to register."""
    return dataclasses.replace(cfg.tracking, tracking_uri=uri, registered_model_name=None, alias=None)


@contextmanager
def _parent_run(cfg: ExperimentConfig, uri: str | None, settings: SweepSettings, space: SearchSpace,
                experiment: Path, state: dict[str, Any]) -> Iterator[str | None]:
    """The sweep's MLflow run (the same one when the sweep resumes); trials nest under it."""
    from multi_task_kobart import tracking

    if uri is None:
        yield None
        return
    known = state.get("parent_run_id")
    params = None if known else {"sweep": settings.__dict__, "space": space.to_dict()}
    with tracking.start_run(_sweep_tracking(cfg, uri), settings.name, params, run_id=known,
                            tags={"mtk.kind": "sweep", "mtk.objective": settings.objective}) as run:
        state["parent_run_id"] = run.info.run_id
        (experiment / STATE_FILE).write_text(json.dumps(state, ensure_ascii=False))
        yield run.info.run_id


def _close_trial_runs(cfg: ExperimentConfig, uri: str | None, parent_id: str | None, name: str,
                      rows: list[TrialRow]) -> None:
    """End the trial runs that Tune's stop left RUNNING (a stopped trial's process is killed
    before its run can end): FINISHED when it trained to the end, KILLED when stopped early."""
    from multi_task_kobart import tracking

    if uri is None or parent_id is None:
        return
    statuses = {f"{name}-{row.trial_id}": "KILLED" if row.stopped_early else "FINISHED"
                for row in rows if row.status == "TERMINATED"}
    tracking.close_child_runs(_sweep_tracking(cfg, uri), parent_id, statuses,
                              tags={f"{name}-{row.trial_id}": {"mtk.stopped_early": str(row.stopped_early).lower()}
                                    for row in rows})


def _log_results(rows: list[TrialRow], best: TrialRow, files: Sequence[Path]) -> None:
    import mlflow

    from multi_task_kobart import tracking

    if mlflow.active_run() is None:
        return
    mlflow.set_tags({"mtk.best_trial": best.trial_id, "mtk.trials": str(len(rows))})
    numeric = {f"best/{key}": value for key, value in best.params.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    tracking.log_metrics({"best_objective": best.objective, **numeric,
                          "trials_stopped_early": sum(row.stopped_early for row in rows)}, step=0)
    for path in files:
        tracking.log_artifact(path)


# --------------------------------------------------------------------------- the sweep


def run_sweep(base: dict[str, Any], space: SearchSpace, settings: SweepSettings, *,
              root: str | Path | None = None, step_callbacks: Sequence[Any] = (),
              train_best: bool = False) -> SweepResult:
    """Run (or resume) the sweep of ``space`` around the nested config dict ``base``.

    ``step_callbacks`` go to every trial's workers (see ``worker.StepCallback``);
    ``train_best`` trains the best configuration with ``run_training`` afterwards (held-out
    evaluation, registration: a normal ``jobs/train.py`` run).
    """
    import ray

    cfg = resolve_paths(ExperimentConfig.from_dict(base), root)
    init_ray(cfg)
    # Prepared once here for every trial, unless the trials change the data (then each prepares its own).
    prepared_path = None if _changes_data(space) else str(prepare_data(cfg).path)
    storage = str(Path(settings.storage_path or cfg.run.storage_path).expanduser().resolve())
    experiment = Path(storage) / settings.name
    derived = derive_max_concurrent(ray.cluster_resources(), cfg, settings.trial_cpus)
    concurrency = min(settings.max_concurrent_trials or derived, derived)
    print(f"[sweep] {settings.name}: {_plan(space, settings)}; {concurrency} trial(s) at once "
          f"(cluster fits {derived}); objective: {settings.objective} of the per-task validation "
          f"losses; experiment {experiment}", flush=True)
    state = sweep_state(experiment, settings, base, space)
    with _tracking_uri_for_trials(cfg, concurrency) as uri, \
            _parent_run(cfg, uri, settings, space, experiment, state) as parent_id:
        spec = TrialSpec(base=cfg.to_dict(), space=space, sweep_name=settings.name,
                         train_storage=str(Path(storage) / f"{settings.name}-trials"), tracking_uri=uri,
                         parent_run_id=parent_id, objective=Objective(tuple(cfg.tasks), settings.objective),
                         step_callbacks=tuple(step_callbacks),
                         prepared_path=prepared_path)
        grid = build_tuner(spec, settings, cfg, storage, concurrency).fit()
        rows = trial_rows(grid, space, cfg.training.max_steps)
        _close_trial_runs(cfg, uri, parent_id, settings.name, rows)
        # Counted against the plan: trials the searcher had not created yet are not in the grid.
        left = settings.num_samples * space.grid_size() - sum(r.status in ("TERMINATED", "ERROR") for r in rows)
        result = SweepResult(str(experiment), rows, interrupted=left > 0,
                             max_concurrent_trials=concurrency, parent_run_id=parent_id, tracking_uri=uri)
        if result.interrupted:
            _end_interrupted(parent_id)
            print(f"[sweep] interrupted with {left} trial(s) left: run the same command again to resume",
                  flush=True)
            return result
        result.best = best_row(rows)
        best_path = experiment / BEST_CONFIG
        files = [write_table(rows, experiment / RESULTS_CSV),
                 plot_objective(rows, space, experiment / PLOT_PNG),
                 write_best_config(base, space, result.best, f"{settings.name}-best", best_path)]
        _log_results(rows, result.best, files)
        result.best_config_path = str(best_path)
    print(f"[sweep] best trial {result.best.trial_id}: {OBJECTIVE}={result.best.objective:.4f} "
          f"({', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in result.best.params.items())})"
          f"\n[sweep] best config: {best_path}", flush=True)
    if train_best:
        result.best_training = run_training(load_config(best_path), root=root)
    return result


def _changes_data(space: SearchSpace) -> bool:
    """Whether trials prepare data of their own (a searched ``data.*`` key or the seed)."""
    return any(key == "seed" or key.startswith("data.") for key in space.keys)


def _plan(space: SearchSpace, settings: SweepSettings) -> str:
    trials = settings.num_samples * space.grid_size()
    return (f"{trials} trial(s) over {', '.join(space.keys)} ({settings.search} search, "
            f"{settings.scheduler} scheduler)")


def _end_interrupted(parent_id: str | None) -> None:
    import mlflow

    if parent_id is not None and mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")  # set back to RUNNING when the sweep resumes
