"""A finished sweep, read back: one row per trial, the best configuration, a plot.

Everything here works from Tune's ``ResultGrid`` and writes plain files (CSV, PNG, YAML) into
the sweep's folder; ``sweep.py`` logs them on the sweep's parent MLflow run.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from multi_task_kobart.tuning.objective import OBJECTIVE
from multi_task_kobart.tuning.space import SearchSpace

RESULTS_CSV = "results.csv"
PLOT_PNG = "objective_vs_params.png"
BEST_CONFIG = "best_config.yaml"


@dataclass
class TrialRow:
    """One trial of a sweep, as the results table shows it."""

    trial_id: str
    status: str  # TERMINATED (finished or stopped early) / ERROR / PENDING / RUNNING
    params: dict[str, Any]
    objective: float | None  # at the trial's last report
    best_objective: float | None  # lowest over its reports
    step: int  # optimizer steps reached
    stopped_early: bool  # ended by the scheduler before max_steps
    resumed_from_step: int | None  # a retry that resumed from a checkpoint
    last_report_time: float | None  # unix time of its last report
    valid_losses: dict[str, float]

    def flat(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "status": self.status, **self.params,
                "objective": self.objective, "best_objective": self.best_objective, "step": self.step,
                "stopped_early": self.stopped_early, "resumed_from_step": self.resumed_from_step,
                **self.valid_losses}


def trial_rows(grid: Any, space: SearchSpace, max_steps: int) -> list[TrialRow]:
    """A row per trial of Tune's ``ResultGrid``, in trial-id order.

    Status, config and id come from Tune's trial objects (a ``Result`` has no status, and no
    config before its first report); the grid lists its results in the same order.
    """
    rows = []
    for trial, result in zip(grid._experiment_analysis.trials, grid):
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        scores = ([float(v) for v in history[OBJECTIVE].dropna()]
                  if history is not None and OBJECTIVE in history else [])
        step = int(metrics.get("step", 0))
        rows.append(TrialRow(
            trial_id=trial.trial_id, status=trial.status,
            params={key: trial.config.get(key) for key in space.keys},
            objective=_number(metrics.get(OBJECTIVE)), best_objective=min(scores) if scores else None,
            step=step, stopped_early=trial.status == "TERMINATED" and step < max_steps,
            resumed_from_step=metrics.get("resumed_from_step"),
            last_report_time=_number(metrics.get("timestamp")),
            valid_losses={k: float(v) for k, v in metrics.items() if k.startswith("valid_loss/")}))
    return sorted(rows, key=lambda row: row.trial_id)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def best_row(rows: list[TrialRow]) -> TrialRow:
    """The trial with the lowest objective at its last report (finished trials first)."""
    scored = [row for row in rows if row.objective is not None and row.status == "TERMINATED"]
    if not scored:
        raise RuntimeError("no trial of the sweep reported an objective; see the trial errors above.")
    return min(scored, key=lambda row: (row.stopped_early, row.objective))


def write_table(rows: list[TrialRow], path: Path) -> Path:
    flat = [row.flat() for row in rows]
    columns = list(dict.fromkeys(key for row in flat for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
    return path


def plot_objective(rows: list[TrialRow], space: SearchSpace, path: Path) -> Path:
    """Objective against each searched value, one panel per key; early stops hollow."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    keys = space.keys
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for early in (False, True):
            points = [(row.params[key], row.objective) for row in rows
                      if row.stopped_early == early and row.objective is not None
                      and math.isfinite(row.objective) and isinstance(row.params[key], (int, float))]
            if points:
                xs, ys = zip(*points)
                ax.scatter(xs, ys, facecolors="none" if early else "C0", edgecolors="C0",
                           label="stopped early" if early else "finished")
        if any(d.key == key and d.kind == "loguniform" for d in space.dimensions):
            ax.set_xscale("log")
        ax.set_xlabel(key.split(".", 1)[-1], fontsize=8)
        ax.set_ylabel(OBJECTIVE)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_best_config(base: dict[str, Any], space: SearchSpace, best: TrialRow, name: str,
                      path: Path) -> Path:
    """``base`` (the config the sweep started from) with the best values and a fresh run name:
    ``jobs/train.py --config <path>`` trains and registers it as it is."""
    raw = space.apply(base, best.params)
    raw["name"] = name
    header = (f"# Best configuration of the sweep: trial {best.trial_id}, objective "
              f"{best.objective:.4f}.\n# Train it: python jobs/train.py --config {path}\n")
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path
