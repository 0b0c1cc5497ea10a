"""Evaluation: Korean-aware metrics, a formality classifier, the evaluator and its reports.

The entry points other packages use (training calls them at the end of a run)::

    from multi_task_kobart.evaluation import evaluate_model, write_report, log_report_to_mlflow
    report = evaluate_model(model, tokenizer, {"style_transfer": rows, ...}, batch_size=16,
                            generation_kwargs={"num_beams": 4})   # the rest: DEFAULT_GENERATION
    paths = write_report(report, out_dir)      # report.json, report.md, chart_<task>.png, predictions.jsonl
    log_report_to_mlflow(report, paths)        # metrics eval/<task>/<metric> on the active run
"""

from __future__ import annotations

__all__ = ["evaluate_model", "write_report", "log_report_to_mlflow", "load_examples"]

_HOMES = {"evaluate_model": "evaluator", "write_report": "report",
          "log_report_to_mlflow": "report", "load_examples": "examples"}


def __getattr__(name: str):
    # Lazy, so that importing the metrics alone does not import torch and matplotlib.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
