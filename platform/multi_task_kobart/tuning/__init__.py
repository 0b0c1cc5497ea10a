"""Ray Tune sweeps over the training job (``tune/sweep.py`` is the command line).

- ``space.py``: the search-space file, validated against the experiment config.
- ``objective.py``: the unweighted per-task validation losses, aggregated (mean or worst),
  added to the report that Tune sees.
- ``trial.py``: one trial (a full Ray Train run, named from the trial id) and progress lines.
- ``sweep.py``: settings, concurrency from the cluster, the Tuner (ASHA, Optuna), the parent
  MLflow run, resume, the best configuration.
- ``results.py``: the results table, the objective plot, ``best_config.yaml``.
"""
