"""Write an evaluation report as JSON, a Markdown table and per-task charts; log it to MLflow.

Files written by ``write_report(report, out_dir)``:

- ``report.json``: the whole report without the per-row predictions,
- ``report.md``: one table per task, metrics as rows, model and baselines as columns,
- ``chart_<task>.png``: bars of the 0-100 scores for the model and each baseline,
- ``predictions.jsonl``: one line per evaluated row (task, id, input, target, prediction).

MLflow metric names are ``eval/<task>/<metric>`` for the model and
``eval/<task>/<baseline>/<metric>`` for baselines; the files go under the ``evaluation``
artifact folder of the run.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PREDICTIONS = "predictions.jsonl"
ARTIFACT_DIR = "evaluation"
# Not percentages: drawn in the chart title instead of on the 0-100 axis.
_UNBOUNDED = ("perplexity",)


def _without_predictions(report: Mapping[str, Any]) -> dict[str, Any]:
    slim = copy.deepcopy(dict(report))
    for section in slim.get("tasks", {}).values():
        section.pop("predictions", None)
    return slim


def _format(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.2f}"
    return "–"


def _systems(section: Mapping[str, Any]) -> dict[str, Mapping[str, float]]:
    return {"model": section.get("metrics", {}), **section.get("baselines", {})}


def markdown_table(report: Mapping[str, Any]) -> str:
    """The report as Markdown: settings, then one metrics table per task."""
    settings = report.get("settings", {})
    lines = [f"# Evaluation report: {report.get('model') or 'model'}", "",
             f"Created {report.get('created_at', '?')}. Scores are percentages (0-100); "
             "perplexity is exp(mean target-token NLL).", "",
             f"- BLEU tokenization: sacrebleu `{settings.get('bleu_tokenize')}` "
             f"(bleu_word: `{settings.get('bleu_word_tokenize')}`)",
             f"- ROUGE: {settings.get('rouge_tokenizer')}",
             f"- QA: {settings.get('qa_metric')}",
             f"- Style accuracy: {settings.get('style_classifier')}",
             f"- Decoding: `{json.dumps(settings.get('generation', {}), ensure_ascii=False)}`, "
             f"batch size {settings.get('batch_size')}, limit {settings.get('limit')}", ""]
    for task, section in report.get("tasks", {}).items():
        lines += _task_table(task, section)
    return "\n".join(lines) + "\n"


def _task_table(task: str, section: Mapping[str, Any]) -> list[str]:
    systems = _systems(section)
    names = sorted({name for scores in systems.values() for name in scores},
                   key=lambda name: (name in _UNBOUNDED, name))
    lines = [f"## {task} (n={section.get('n_examples', 0)})", "",
             "| metric | " + " | ".join(systems) + " |",
             "|---|" + "---:|" * len(systems)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(_format(scores.get(name)) for scores in systems.values()) + " |")
    if "reference_style_accuracy" in section:
        lines += ["", f"Style accuracy of the gold targets (classifier ceiling): "
                      f"{_format(section['reference_style_accuracy'])}"]
    for metric, reason in section.get("skipped", {}).items():
        lines += ["", f"Skipped {metric}: {reason}."]
    return lines + [""]


def write_chart(task: str, section: Mapping[str, Any], path: Path) -> Path:
    """A grouped bar chart of one task's 0-100 scores: one bar per system and metric."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on workers or CI
    import matplotlib.pyplot as plt

    systems = _systems(section)
    names = sorted({n for scores in systems.values() for n in scores if n not in _UNBOUNDED})
    figure, axis = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 2), 3.6))
    width = 0.8 / max(len(systems), 1)
    for offset, (system, scores) in enumerate(systems.items()):
        positions = [i + offset * width for i in range(len(names))]
        axis.bar(positions, [scores.get(n, 0.0) for n in names], width=width, label=system)
    axis.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(names))], names)
    axis.set_ylim(0, 100)
    axis.set_ylabel("score (0-100)")
    perplexity = section.get("metrics", {}).get("perplexity")
    axis.set_title(f"{task} (n={section.get('n_examples', 0)}, perplexity {_format(perplexity)})")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md, predictions.jsonl and chart_<task>.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / REPORT_JSON, "markdown": out / REPORT_MD, "predictions": out / PREDICTIONS}
    paths["json"].write_text(json.dumps(_without_predictions(report), ensure_ascii=False, indent=2,
                                        default=str), encoding="utf-8")
    paths["markdown"].write_text(markdown_table(report), encoding="utf-8")
    with open(paths["predictions"], "w", encoding="utf-8") as handle:
        for task, section in report.get("tasks", {}).items():
            for row in section.get("predictions", []):
                handle.write(json.dumps({"task": task, **row}, ensure_ascii=False, default=str) + "\n")
    for task, section in report.get("tasks", {}).items():
        paths[f"chart_{task}"] = write_chart(task, section, out / f"chart_{task}.png")
    return paths


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Every finite score as ``eval/<task>/<metric>`` or ``eval/<task>/<baseline>/<metric>``."""
    flat: dict[str, float] = {}
    for task, section in report.get("tasks", {}).items():
        for system, scores in _systems(section).items():
            prefix = f"eval/{task}" if system == "model" else f"eval/{task}/{system}"
            for name, value in scores.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    flat[f"{prefix}/{name}"] = float(value)
        if "reference_style_accuracy" in section:
            flat[f"eval/{task}/reference_style_accuracy"] = float(section["reference_style_accuracy"])
    return flat


def log_report_to_mlflow(report: Mapping[str, Any], paths: Mapping[str, Path], *,
                         run_id: str | None = None, step: int | None = None,
                         tracking_uri: str | None = None) -> str:
    """Log the report's metrics and files to ``run_id`` (default: the active run); returns the id.

    The MLflow side is ``tracking.log_report`` (explicit run id and store), so this works inside
    a training run's ``with`` block as well as on a finished run picked by id.
    """
    from multi_task_kobart import tracking

    return tracking.log_report(report_metrics(report), paths.values(), artifact_path=ARTIFACT_DIR,
                               run_id=run_id, step=step, tracking_uri=tracking_uri)
