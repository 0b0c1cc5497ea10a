"""The evaluation job: resolve the model, load data, evaluate, write the report, log to MLflow.

``jobs/evaluate.py`` only calls :func:`main`; everything here is importable and testable::

    python jobs/evaluate.py --model runs/tiny/checkpoint --data data/prepared/tiny --split test
    python jobs/evaluate.py --model models:/multi-task-kobart-tiny@candidate \
        --data ../shared/realdata --limit 20 --num-beams 4 --mlflow-run-id <run id>
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multi_task_kobart.tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobs/evaluate.py", description="Evaluate a MultiTaskKoBART checkpoint on every task.")
    parser.add_argument("--model", required=True,
                        help="checkpoint dir, or MLflow URI (models:/name@alias, models:/name/3, runs:/id/path)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="a prepared dataset dir, or seed files/folders ({task,input,target} JSONL/CSV/...)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=None, help="default: every task in the data")
    parser.add_argument("--limit", type=int, default=None, help="at most N rows per task (quick looks)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--no-repeat-ngram-size", type=int, default=None)
    parser.add_argument("--length-penalty", type=float, default=None)
    parser.add_argument("--max-source-length", type=int, default=None,
                        help="default: the checkpoint's training setting, else the model's positions")
    parser.add_argument("--max-target-length", type=int, default=None)
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer path (default: the one saved in the checkpoint, else the bundled one)")
    parser.add_argument("--bertscore-model", default=None,
                        help="local Hugging Face encoder dir for BERTScore (skipped when absent)")
    parser.add_argument("--out", default="eval_report", help="output folder (default: ./eval_report)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlruns)")
    parser.add_argument("--mlflow-run-id", default=None, help="log metrics and files to this MLflow run")
    parser.add_argument("--mlflow-experiment", default=None,
                        help="log to a new run in this experiment (when no --mlflow-run-id is given)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Decoding settings passed to ``model.generate`` (only the ones that were set)."""
    if args.num_beams < 1 or args.max_new_tokens < 1:
        raise ValueError(f"--num-beams and --max-new-tokens must be >= 1, got "
                         f"{args.num_beams} and {args.max_new_tokens}")
    kwargs: dict[str, Any] = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens}
    if args.no_repeat_ngram_size is not None:
        kwargs["no_repeat_ngram_size"] = args.no_repeat_ngram_size
    if args.length_penalty is not None:
        kwargs["length_penalty"] = args.length_penalty
    return kwargs


def _training_lengths(checkpoint: Path) -> tuple[int | None, int | None]:
    """The max source/target lengths the checkpoint was trained with, if it saved them."""
    path = checkpoint / "train_config.json"
    if not path.is_file():
        return None, None
    data = json.loads(path.read_text(encoding="utf-8")).get("data", {})
    return data.get("max_source_length"), data.get("max_target_length")


def load_model_and_tokenizer(model: str, tokenizer: str | None, tracking_uri: str | None,
                             download_dir: Path, device: str | None) -> tuple[Any, Any, Path]:
    """The model (on ``device``), its tokenizer and the local checkpoint folder."""
    import torch

    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.tokenizer import load_tokenizer
    from multi_task_kobart.tracking import resolve_model_dir

    checkpoint = resolve_model_dir(model, tracking_uri=tracking_uri, dst_dir=download_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = MultiTaskKoBART.from_pretrained(checkpoint, device=device)
    if tokenizer is None and (checkpoint / "tokenizer.json").is_file():
        tokenizer = str(checkpoint)
    return loaded, load_tokenizer(tokenizer), checkpoint


def _log(report: dict[str, Any], paths: dict[str, Path], args: argparse.Namespace) -> str | None:
    """Log to ``--mlflow-run-id``, or to a new run in ``--mlflow-experiment``; None if neither."""
    if args.mlflow_run_id is None and args.mlflow_experiment is None:
        return None
    import mlflow

    from multi_task_kobart import tracking
    from multi_task_kobart.evaluation.report import log_report_to_mlflow

    tracking.configure(args.tracking_uri)
    if args.mlflow_run_id is not None:
        return log_report_to_mlflow(report, paths, run_id=args.mlflow_run_id)
    experiment_id = tracking.get_or_create_experiment(args.mlflow_experiment, args.tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate") as run:
        mlflow.set_tag("model", report.get("model"))
        return log_report_to_mlflow(report, paths, run_id=run.info.run_id)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The job body; returns ``{"report": ..., "paths": ..., "run_id": ...}``."""
    from multi_task_kobart.evaluation.evaluator import evaluate_model
    from multi_task_kobart.evaluation.examples import load_examples
    from multi_task_kobart.evaluation.report import write_report
    from multi_task_kobart.tokenizer import tokenizer_fingerprint

    kwargs = generation_kwargs(args)
    with tempfile.TemporaryDirectory(prefix="mtk-eval-model-") as download_dir:
        model, tokenizer, checkpoint = load_model_and_tokenizer(
            args.model, args.tokenizer, args.tracking_uri, Path(download_dir), args.device)
        loaded = load_examples(args.data if len(args.data) > 1 else args.data[0], split=args.split,
                               tasks=args.tasks, tokenizer_fingerprint=tokenizer_fingerprint(tokenizer))
        trained_source, trained_target = _training_lengths(checkpoint)
        report = evaluate_model(
            model, tokenizer, loaded.by_task, batch_size=args.batch_size, generation_kwargs=kwargs,
            limit=args.limit, bertscore_model=args.bertscore_model, progress=not args.no_progress,
            max_source_length=args.max_source_length or trained_source,
            max_target_length=args.max_target_length or trained_target, model_name=args.model)
    report["data"] = loaded.source
    paths = write_report(report, args.out)
    return {"report": report, "paths": paths, "run_id": _log(report, paths, args)}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    print(f"report files in {Path(args.out).resolve()}")
    if result["run_id"]:
        print(f"logged to MLflow run {result['run_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
